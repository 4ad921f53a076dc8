"""All Redis access of the API and the workers: jobs, Streams queue, results, heartbeats.

Data model (P = settings.key_prefix):
- stream `P:jobs:{model}` per model, consumer group `workers`; entry fields {job_id}.
  Dead letters go to stream `P:dead`. Finished entries are XACKed and XDELed, so a
  stream's length is the number of jobs queued or in progress for that model.
- hash `P:job:{id}`: status, owner, model, options (compact JSON), fingerprint (sha256 of the
  request body, for Idempotency-Key reuse), blob, entry_id, created_at,
  started_at, finished_at, frames_total, frames_done (frames whose poses are stored),
  frames_detected (frames decoded with their people detected and tracked, by the current attempt:
  reset to 0 when a worker starts or resumes the job), video (JSON), error_code,
  error_message, worker, deliveries, backlog (frames this job holds in the backlog
  counter; zeroed when it is released, which makes the release exactly-once).
- hash `P:job:{id}:frames`: frame_index -> JSON of one result frame. HSET per
  (job, frame) is idempotent, so a reclaimed job rewrites fields, never duplicates.
- zset `P:owner:{owner}:jobs`: job_id -> created_at, the owner's jobs for GET /jobs (members of
  expired jobs are dropped when read and by the API's janitor).
- `P:idem:{owner}:{key}` -> job_id; `P:backlog_frames` counter; `P:workers` zset
  (worker_id -> last heartbeat) + `P:worker:{id}` info hash with TTL; `P:models` hash;
  `P:owner_secret`: the API replicas' shared HMAC secret for job owners (service/api/auth.py).

State transitions that must not race (submit, start, write, finish, cancel,
requeue) are single Lua scripts: Redis runs each one atomically.
Finished (or cancelled) jobs and their frames expire after job_ttl_s.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from typing import Any

from service.queue_scripts import (
    DETECTED_LUA,
    FINISH_LUA,
    REQUEUE_LUA,
    SET_TOTAL_LUA,
    START_LUA,
    SUBMIT_LUA,
    WRITE_LUA,
)
from service.settings import Settings

GROUP = "workers"
ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
DEAD_MAXLEN = 10000  # dead-letter stream keeps about this many entries
# Job hash fields but the options: what status reads fetch (get_job(with_options=False)).
_SUMMARY_FIELDS = ("status", "owner", "model", "fingerprint", "blob", "entry_id", "created_at", "started_at",
                   "finished_at", "frames_total", "frames_done", "frames_detected", "video", "error_code",
                   "error_message", "worker", "deliveries")

def _s(value: Any) -> Any:
    """bytes -> str (the client may or may not decode responses)."""
    return value.decode() if isinstance(value, bytes) else value


def new_job_id() -> str:
    """192 random bits, URL-safe (32 characters)."""
    return secrets.token_urlsafe(24)


def _float_or_none(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


class JobQueue:
    """Jobs, the Streams queue, results and worker registry on one Redis client (sync)."""

    def __init__(self, redis_client, settings: Settings):
        self.r = redis_client
        self.settings = settings
        self.prefix = settings.key_prefix
        self._submit = self.r.register_script(SUBMIT_LUA)
        self._start = self.r.register_script(START_LUA)
        self._set_total = self.r.register_script(SET_TOTAL_LUA)
        self._write = self.r.register_script(WRITE_LUA)
        self._detected = self.r.register_script(DETECTED_LUA)
        self._finish = self.r.register_script(FINISH_LUA)
        self._requeue = self.r.register_script(REQUEUE_LUA)

    # ---- keys ----
    def stream_key(self, model: str) -> str:
        return f"{self.prefix}:jobs:{model}"

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def frames_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:frames"

    def owner_jobs_key(self, owner: str) -> str:
        return f"{self.prefix}:owner:{owner or '-'}:jobs"

    def idem_key(self, owner: str, key: str) -> str:
        return f"{self.prefix}:idem:{owner}:{key}"

    @property
    def backlog_key(self) -> str:
        return f"{self.prefix}:backlog_frames"

    @property
    def dead_key(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def workers_key(self) -> str:
        return f"{self.prefix}:workers"

    def worker_key(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def models_key(self) -> str:
        return f"{self.prefix}:models"

    # ================= API side =================
    def submit(self, owner: str, model: str, blob: str, options: dict | str, frames_total: int, video: dict,
               idempotency_key: str | None = None, fingerprint: str = "") -> tuple[str, bool]:
        """Create a queued job and enqueue it. Returns (job_id, created).

        `options` is a dict or its JSON already serialised (stored as given). With an idempotency
        key, a live job already created by the same owner with the same key is returned instead
        (created=False; the caller compares fingerprints and drops its new blob).
        """
        job_id = new_job_id()
        if not isinstance(options, str):
            options = json.dumps(options, separators=(",", ":"))
        fields = {
            "status": "queued", "owner": owner, "model": model, "options": options,
            "fingerprint": fingerprint, "blob": blob, "created_at": repr(time.time()), "started_at": "",
            "finished_at": "",
            "frames_total": int(frames_total), "frames_done": 0, "frames_detected": 0,
            "video": json.dumps(video),
            "error_code": "", "error_message": "", "worker": "", "deliveries": 0,
        }
        flat: list[Any] = []
        for k, v in fields.items():
            flat += [k, v]
        idem = self.idem_key(owner, idempotency_key) if idempotency_key else self.idem_key(owner, "-")
        created, jid = self._submit(
            keys=[idem, self.job_key(job_id), self.backlog_key, self.stream_key(model)],
            args=["1" if idempotency_key else "0", job_id, self.settings.idempotency_ttl_s,
                  int(frames_total), self.prefix, *flat],
        )
        if int(created):
            self.index_job(owner, _s(jid), float(fields["created_at"]))
        return _s(jid), bool(int(created))

    def index_job(self, owner: str, job_id: str, created_at: float) -> None:
        """List the job under its owner (GET /jobs). The index outlives its jobs by a week at most."""
        key = self.owner_jobs_key(owner)
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(key, {job_id: created_at})
        pipe.expire(key, int(self.settings.job_ttl_s) + 7 * 86400)
        pipe.execute()

    def list_jobs(self, owner: str, offset: int, limit: int) -> tuple[list[dict], int]:
        """(the owner's jobs, newest first, from `offset`, at most `limit`; how many the owner has).
        Members whose job hash expired are removed as they are met."""
        key = self.owner_jobs_key(owner)
        jobs: list[dict] = []
        pos = max(0, offset)
        while len(jobs) < limit:
            ids = [_s(x) for x in self.r.zrevrange(key, pos, pos + limit - len(jobs) - 1)]
            if not ids:
                break
            pipe = self.r.pipeline(transaction=False)
            for jid in ids:  # without the options: a list never reads megabytes of boxes
                pipe.hmget(self.job_key(jid), _SUMMARY_FIELDS)
            gone = []
            for jid, values in zip(ids, pipe.execute(), strict=True):
                raw = {k: v for k, v in zip(_SUMMARY_FIELDS, values, strict=True) if v is not None}
                job = self._job_from_hash(jid, raw)
                if job is None:
                    gone.append(jid)
                elif job["owner"] == owner:
                    jobs.append(job)
                    pos += 1
                else:  # cannot happen through submit(); never show another owner's job
                    pos += 1
            if gone:
                self.r.zrem(key, *gone)
        return jobs, int(self.r.zcard(key))

    def find_idempotent(self, owner: str, key: str) -> str | None:
        """The live job id stored under (owner, key), if any."""
        jid = _s(self.r.get(self.idem_key(owner, key)))
        if jid and self.r.exists(self.job_key(jid)):
            return jid
        return None

    def get_job(self, job_id: str, with_options: bool = True) -> dict | None:
        """The job hash with typed fields, or None when unknown/expired. `with_options=False` leaves
        the options (up to max_options_bytes of JSON) in Redis: `options` is then {}."""
        if with_options:
            raw = self.r.hgetall(self.job_key(job_id))
        else:
            values = self.r.hmget(self.job_key(job_id), _SUMMARY_FIELDS)
            raw = {k: v for k, v in zip(_SUMMARY_FIELDS, values, strict=True) if v is not None}
        return self._job_from_hash(job_id, raw)

    @staticmethod
    def _job_from_hash(job_id: str, raw: dict) -> dict | None:
        if not raw:
            return None
        h = {_s(k): _s(v) for k, v in raw.items()}
        return {
            "job_id": job_id,
            "status": h.get("status", ""),
            "owner": h.get("owner", ""),
            "model": h.get("model", ""),
            "options": json.loads(h["options"]) if h.get("options") else {},
            "blob": h.get("blob", ""),
            "entry_id": h.get("entry_id", ""),
            "created_at": _float_or_none(h.get("created_at")),
            "started_at": _float_or_none(h.get("started_at")),
            "finished_at": _float_or_none(h.get("finished_at")),
            "frames_total": int(h.get("frames_total") or 0),
            "frames_done": int(h.get("frames_done") or 0),
            "frames_detected": int(h.get("frames_detected") or 0),
            "video": json.loads(h["video"]) if h.get("video") else {},
            "error_code": h.get("error_code") or None,
            "error_message": h.get("error_message") or None,
            "worker": h.get("worker", ""),
            "deliveries": int(h.get("deliveries") or 0),
            "fingerprint": h.get("fingerprint") or None,
        }

    def get_frames(self, job_id: str, start: int, limit: int) -> list[dict]:
        """Result frames with start <= frame_index < start + limit, in order (missing ones skipped)."""
        if limit <= 0:
            return []
        fields = [str(i) for i in range(max(0, start), max(0, start) + limit)]
        values = self.r.hmget(self.frames_key(job_id), fields)
        return [json.loads(_s(v)) for v in values if v is not None]

    def frame_count(self, job_id: str) -> int:
        return int(self.r.hlen(self.frames_key(job_id)))

    def cancel_job(self, job_id: str) -> tuple[bool, str | None]:
        """Cancel a queued/running job. Returns (changed, status before the call); None if unknown.

        The stream entry stays: the worker that holds (or next claims) it sees the
        cancelled status, stops within one batch, and acks it.
        """
        changed, before = self._terminal(job_id, "cancelled", code="cancelled",
                                         message="cancelled by the client")
        before = _s(before)
        return bool(int(changed)), (before or None)

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued/running job; returns the job's status after the call (None if unknown)."""
        changed, before = self.cancel_job(job_id)
        if before is None:
            return None
        return "cancelled" if changed else before

    def backlog_frames(self) -> int:
        """Frames of queued + running jobs (what backpressure compares to max_queued_frames)."""
        return max(0, int(_s(self.r.get(self.backlog_key)) or 0))

    def dead_letter_count(self) -> int:
        """Entries in the dead-letter stream (capped at DEAD_MAXLEN)."""
        return int(self.r.xlen(self.dead_key))

    def live_workers(self) -> list[dict]:
        """Workers whose last heartbeat is within worker_ttl_s, with their info."""
        cutoff = time.time() - self.settings.worker_ttl_s
        members = self.r.zrangebyscore(self.workers_key, f"({cutoff}", "+inf", withscores=True)
        workers = []
        for member, score in members:
            wid = _s(member)
            info = {_s(k): _s(v) for k, v in self.r.hgetall(self.worker_key(wid)).items()}
            for k, v in list(info.items()):
                try:
                    info[k] = json.loads(v)
                except ValueError:  # written by hand: keep the raw string
                    pass
            workers.append({**info, "worker_id": wid, "last_heartbeat": float(score)})
        return workers

    def list_models(self) -> dict:
        """Model name -> info registered by workers (`P:models`)."""
        raw = self.r.hgetall(self.models_key)
        return {_s(k): json.loads(_s(v)) for k, v in raw.items()}

    def queue_length(self, model: str) -> int:
        """Jobs of this model queued or in progress (finished entries are deleted)."""
        return int(self.r.xlen(self.stream_key(model)))

    def ping(self) -> bool:
        return bool(self.r.ping())

    # ================= worker side =================
    def ensure_groups(self, models: list[str]) -> None:
        """Create each model's stream + consumer group (from id 0: nothing queued earlier is missed)."""
        import redis

        for model in models:
            try:
                self.r.xgroup_create(self.stream_key(model), GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def claim(self, consumer: str, models: list[str], count: int, block_ms: int | None
              ) -> list[tuple[str, str, str]]:
        """New entries for this consumer: [(model, entry_id, job_id)]. block_ms None/0 = don't block."""
        if not models or count <= 0:
            return []
        streams = {self.stream_key(m): ">" for m in models}
        resp = self.r.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms or None)
        return self._entries(resp, models)

    def reclaim(self, consumer: str, models: list[str], min_idle_ms: int, count: int
                ) -> list[tuple[str, str, str]]:
        """Take over entries pending longer than min_idle_ms on other (dead) consumers (XAUTOCLAIM)."""
        out: list[tuple[str, str, str]] = []
        for model in models:
            stream = self.stream_key(model)
            cursor = "0-0"
            while len(out) < count:
                resp = self.r.xautoclaim(stream, GROUP, consumer, min_idle_ms, start_id=cursor,
                                         count=count - len(out))
                cursor = _s(resp[0])
                for entry_id, fields in resp[1]:
                    eid = _s(entry_id)
                    if not fields:  # entry deleted under us: nothing to run
                        self.r.xack(stream, GROUP, eid)
                        continue
                    out.append((model, eid, _s(fields.get(b"job_id", fields.get("job_id")))))
                if cursor == "0-0":
                    break
        return out

    def _entries(self, resp, models: list[str]) -> list[tuple[str, str, str]]:
        by_key = {self.stream_key(m): m for m in models}
        out = []
        for stream, entries in resp or []:
            model = by_key[_s(stream)]
            for entry_id, fields in entries:
                out.append((model, _s(entry_id), _s(fields.get(b"job_id", fields.get("job_id")))))
        return out

    def deliveries(self, model: str, entry_id: str) -> int:
        """How many times this entry was delivered (XPENDING); 0 if not pending."""
        rows = self.r.xpending_range(self.stream_key(model), GROUP, min=entry_id, max=entry_id, count=1)
        return int(rows[0]["times_delivered"]) if rows else 0

    def start(self, job_id: str, worker_id: str, frames_total: int, video: dict) -> bool:
        """Mark the job running on this worker. False if it was cancelled/finished meanwhile.

        frames_total is the worker's decoded count; the backlog counter is adjusted by the
        difference to what the API counted at submit.
        """
        ok = self._start(keys=[self.job_key(job_id), self.backlog_key],
                         args=[worker_id, int(frames_total), json.dumps(video), repr(time.time())])
        return bool(int(ok))

    def set_frames_total(self, job_id: str, frames_total: int, video: dict) -> bool:
        """Correct a running job's frame count (the decoder found fewer/more frames than the container
        said); the backlog counter follows. False unless the job is running."""
        ok = self._set_total(keys=[self.job_key(job_id), self.backlog_key],
                             args=[int(frames_total), json.dumps(video)])
        return bool(int(ok))

    def write_frames(self, job_id: str, frames: dict[int, dict], frames_detected: int | None = None) -> int:
        """Store result frames (idempotent per frame) and return frames_done; with `frames_detected`,
        record the detection progress in the same step (so it is never behind the frames written).

        Writes nothing unless the job is running (a cancelled job keeps what it had);
        returns the job's frames_done either way.
        """
        flat: list[Any] = ["" if frames_detected is None else int(frames_detected)]
        for idx, frame in frames.items():
            flat += [str(int(idx)), json.dumps(frame, separators=(",", ":"))]
        return int(self._write(keys=[self.job_key(job_id), self.frames_key(job_id)], args=flat))

    def set_frames_detected(self, job_id: str, n: int) -> bool:
        """Record how many frames the running job has decoded and found the people of (detected and
        tracked, or looked up in the client's boxes). False unless the job is running."""
        return bool(int(self._detected(keys=[self.job_key(job_id)], args=[int(n)])))

    def is_cancelled(self, job_id: str) -> bool:
        """True when the client cancelled the job, or the job no longer exists."""
        status = _s(self.r.hget(self.job_key(job_id), "status"))
        return status is None or status == "cancelled"

    def finish(self, job_id: str, model: str, entry_id: str, status: str, error_code: str | None = None,
               error_message: str | None = None) -> bool:
        """Terminal transition (only from queued/running), atomic with the backlog release.

        Always XACKs (and deletes) the stream entry, also when the job was already
        finished or cancelled, so a worker calls this for every entry it took.
        Returns True if this call moved the job to `status`.
        """
        if status not in TERMINAL:
            raise ValueError(f"not a terminal status: {status!r}")
        changed, _ = self._terminal(job_id, status, model, entry_id, error_code or "", error_message or "")
        return bool(int(changed))

    def _terminal(self, job_id: str, status: str, model: str = "", entry_id: str = "", code: str = "",
                  message: str = "", dead_reason: str | None = None):
        """The one call of the FINISH_LUA script: job -> `status` (from queued/running only), backlog
        released, the model's stream entry (if any) acked and deleted, and with `dead_reason` the entry
        recorded in the dead-letter stream. Returns the script's (changed, status before)."""
        return self._finish(
            keys=[self.job_key(job_id), self.frames_key(job_id), self.backlog_key,
                  self.stream_key(model or "-"), self.dead_key],
            args=[status, repr(time.time()), self.settings.job_ttl_s, GROUP, entry_id or "", code, message,
                  "1" if dead_reason is not None else "0", job_id, model, dead_reason or "", self.prefix,
                  DEAD_MAXLEN],
        )

    def touch(self, consumer: str, model: str, entry_id: str) -> bool:
        """Reset the idle time of an entry `consumer` holds (XCLAIM to itself, JUSTID: the delivery
        count stays), so other workers' XAUTOCLAIM takes only dead workers' entries. False when
        another consumer holds it now (it was taken over) or it is gone."""
        stream = self.stream_key(model)
        rows = self.r.xpending_range(stream, GROUP, min=entry_id, max=entry_id, count=1)
        if not rows or _s(rows[0]["consumer"]) != consumer:
            return False
        self.r.xclaim(stream, GROUP, consumer, 0, [entry_id], justid=True)
        return True

    def ack(self, model: str, entry_id: str) -> None:
        """Acknowledge and delete a stream entry without touching the job (finish() already does this)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(self.stream_key(model), GROUP, entry_id)
        pipe.xdel(self.stream_key(model), entry_id)
        pipe.execute()

    def dead_letter(self, job_id: str, model: str, entry_id: str, reason: str) -> bool:
        """Record the entry in `P:dead`, fail the job with too_many_deliveries, ack the entry."""
        changed, _ = self._terminal(job_id, "failed", model, entry_id, "too_many_deliveries", reason,
                                    dead_reason=reason)
        return bool(int(changed))

    def fail_stranded(self, job_id: str, model: str, entry_id: str, message: str) -> bool:
        """Fail a job whose model no live worker serves (the API's check, service/api/stranded.py); the
        entry is acked and deleted either way. True if this call moved the job to failed."""
        changed, _ = self._terminal(job_id, "failed", model, entry_id, "model_not_served", message)
        return bool(int(changed))

    def requeue(self, job_id: str, model: str, entry_id: str) -> bool:
        """Give a held, unfinished job back (SIGTERM drain): ack the entry and enqueue a fresh one.

        Returns True if the job was re-queued (False: it had finished or been cancelled;
        the entry is acked either way).
        """
        ok = self._requeue(keys=[self.job_key(job_id), self.stream_key(model), self.frames_key(job_id)],
                           args=[GROUP, entry_id, job_id])
        return bool(int(ok))

    def heartbeat(self, worker_id: str, info: dict) -> None:
        """Mark the worker alive now and refresh its info hash (expires after worker_ttl_s)."""
        now = time.time()
        ttl = max(1, math.ceil(self.settings.worker_ttl_s))
        mapping = {k: json.dumps(v) for k, v in info.items()}  # JSON per field keeps types
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(self.workers_key, {worker_id: now})
        # Dead workers' members are dropped so the zset does not grow forever.
        pipe.zremrangebyscore(self.workers_key, "-inf", now - 10 * self.settings.worker_ttl_s)
        if mapping:
            pipe.hset(self.worker_key(worker_id), mapping=mapping)
        pipe.expire(self.worker_key(worker_id), ttl)
        pipe.execute()

    def deregister(self, worker_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.workers_key, worker_id)
        pipe.delete(self.worker_key(worker_id))
        pipe.execute()

    def register_model(self, name: str, info: dict) -> None:
        self.r.hset(self.models_key, name, json.dumps(info))
