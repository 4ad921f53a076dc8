"""The janitor of the blob store, run by the API process (its only owner; workers never delete files).

Redis expires a finished job VIDPOSE_JOB_TTL_S after it ends, but a TTL cannot run a callback, so the
files stay behind. Every `interval(settings)` seconds the janitor deletes:
- uploads (and `.upload-*.part` leftovers) older than the job TTL that no job in Redis names. A job
  expires at finished_at + TTL, and its upload is older than that, so the upload of an expired job is
  always past the age; a fresh upload whose job is not written yet is not.
- rendered overlays (`overlays/<job_id>.mp4`) whose job is gone, and render leftovers older than the TTL.
- index entries of GET /jobs whose job expired.
With several API replicas on one blob store and Redis, a Redis lock lets one of them sweep per period.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from service.api.overlay import OVERLAY_DIR
from service.queue import JobQueue
from service.settings import Settings

log = logging.getLogger("vidpose.api.janitor")


def interval(settings: Settings) -> float:
    """Seconds between sweeps: a tenth of the job TTL, between 1 s and 5 minutes."""
    return min(300.0, max(1.0, settings.job_ttl_s / 10))


@dataclass
class Swept:
    uploads: int = 0
    overlays: int = 0
    index_entries: int = 0


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


class Janitor:
    def __init__(self, settings: Settings, queue: JobQueue):
        self.settings = settings
        self.queue = queue
        self.root = Path(settings.blob_dir).resolve()
        self.token = secrets.token_hex(8)

    def _lock(self) -> bool:
        """One sweep per period across API replicas sharing this Redis prefix."""
        ms = max(500, int(interval(self.settings) * 900))
        return bool(self.queue.r.set(f"{self.queue.prefix}:janitor", self.token, nx=True, px=ms))

    def _live_blobs(self) -> set[str]:
        """File names of the uploads that jobs in Redis name."""
        r, prefix = self.queue.r, self.queue.prefix
        keys = [k for k in (_s(k) for k in r.scan_iter(match=f"{prefix}:job:*", count=1000))
                if not k.endswith(":frames")]
        names: set[str] = set()
        for i in range(0, len(keys), 1000):
            pipe = r.pipeline(transaction=False)
            for k in keys[i:i + 1000]:
                pipe.hget(k, "blob")
            names |= {Path(_s(b)).name for b in pipe.execute() if b}
        return names

    def sweep(self, now: float | None = None) -> Swept:
        """One pass (blocking: run it in a thread). Skipped (all zero) when another replica holds the lock."""
        done = Swept()
        if not self._lock():
            return done
        now = time.time() if now is None else now
        ttl = self.settings.job_ttl_s
        live = self._live_blobs()
        for entry in _files(self.root):
            if entry.name not in live and now - entry.stat().st_mtime > ttl and _unlink(entry):
                done.uploads += 1
        overlays = self.root / OVERLAY_DIR
        for entry in _files(overlays):
            if entry.name.startswith("."):  # a render in progress, or one that crashed
                gone = now - entry.stat().st_mtime > ttl
            else:
                gone = not self.queue.r.exists(self.queue.job_key(Path(entry.name).stem))
            if gone and _unlink(entry):
                done.overlays += 1
        done.index_entries = self._prune_index()
        if done.uploads or done.overlays:
            log.info("janitor: deleted %d upload(s) and %d overlay(s) of expired or orphaned jobs",
                     done.uploads, done.overlays)
        return done

    def _prune_index(self) -> int:
        r, removed = self.queue.r, 0
        for key in r.scan_iter(match=f"{self.queue.prefix}:owner:*:jobs", count=1000):
            ids = [_s(x) for x in r.zrange(key, 0, -1)]
            pipe = r.pipeline(transaction=False)
            for jid in ids:
                pipe.exists(self.queue.job_key(jid))
            gone = [jid for jid, ok in zip(ids, pipe.execute(), strict=True) if not ok]
            if gone:
                removed += int(r.zrem(key, *gone))
        return removed


def _files(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _unlink(entry: os.DirEntry) -> bool:
    try:
        os.unlink(entry.path)
        return True
    except FileNotFoundError:  # someone else was faster
        return False

