"""GET /jobs (the caller's jobs, paged) and the API's janitor of expired uploads and overlays."""

from __future__ import annotations

import os
import time

import httpx

from service.api.janitor import Janitor, interval
from service.api.overlay import overlay_path


def submit(client: httpx.Client, clip) -> httpx.Response:
    with open(clip, "rb") as f:
        return client.post("/estimate", files={"video": (clip.name, f, "video/mp4")})


def wait_for(client: httpx.Client, job_id: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/jobs/{job_id}").json())["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    return job


def test_job_list_is_paged_and_per_key(api_factory, simulated_worker, clips):
    api = api_factory(api_keys=["alice", "bob"])
    simulated_worker(api)
    with api.client("alice") as alice, api.client("bob") as bob, api.client() as anon:
        mine = []
        for _ in range(3):
            r = submit(alice, clips["soccer"])
            assert r.status_code == 202, r.text
            mine.append(r.json()["job_id"])
            time.sleep(0.01)  # distinct creation times: the order is defined
        theirs = submit(bob, clips["soccer"]).json()["job_id"]
        for jid in mine:
            wait_for(alice, jid)

        first = alice.get("/jobs", params={"limit": 2}).json()
        assert [j["job_id"] for j in first["jobs"]] == mine[::-1][:2]  # newest first
        assert first["total"] == 3 and first["offset"] == 0 and first["next_offset"] == 2
        job = first["jobs"][0]
        assert job["status"] == "succeeded" and job["frames_total"] == 5
        assert job["model"]["name"] == "test-model"
        assert job["video"]["width"] == 1280 and job["progress"] == 1.0
        second = alice.get("/v1/jobs", params={"limit": 2, "offset": 2}).json()
        assert [j["job_id"] for j in second["jobs"]] == [mine[0]] and second["next_offset"] is None

        assert [j["job_id"] for j in bob.get("/jobs").json()["jobs"]] == [theirs]  # only one's own
        r = anon.get("/jobs")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert alice.get("/jobs", params={"limit": 0}).status_code == 422

        api.queue.r.delete(api.queue.job_key(mine[1]))  # as if it expired
        after = alice.get("/jobs").json()
        assert [j["job_id"] for j in after["jobs"]] == [mine[2], mine[0]] and after["total"] == 2


def _age(path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_janitor_deletes_files_of_expired_jobs_and_old_orphans(api_factory, simulated_worker, clips):
    api = api_factory(job_ttl_s=60)
    simulated_worker(api)
    janitor = Janitor(api.settings, api.queue)
    with api.client() as c:
        job_id = submit(c, clips["soccer"]).json()["job_id"]
        wait_for(c, job_id)
    [blob] = api.blobs()
    overlay = overlay_path(api.settings, job_id)
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.write_bytes(b"rendered")
    stray_render = overlay.parent / f".{job_id}.abcd.mp4.part"
    stray_render.write_bytes(b"half")
    _age(stray_render, 120)
    old_orphan = api.blob_dir / "AAAAAAAAAAAAAAAAAAAAAAAA.mp4"  # an upload no job names
    old_orphan.write_bytes(b"x")
    _age(old_orphan, 120)
    fresh_orphan = api.blob_dir / "BBBBBBBBBBBBBBBBBBBBBBBB.mp4"  # maybe a job being created right now
    fresh_orphan.write_bytes(b"x")
    _age(blob, 120)  # older than the TTL, but its job is alive: kept

    swept = janitor.sweep()
    assert (swept.uploads, swept.overlays) == (1, 1)
    assert blob.exists() and overlay.exists() and fresh_orphan.exists()
    assert not old_orphan.exists() and not stray_render.exists()
    assert janitor.sweep().uploads == 0  # another sweep within the period: skipped (the lock)

    api.queue.r.delete(api.queue.job_key(job_id), api.queue.frames_key(job_id))  # the job expires
    api.queue.r.delete(f"{api.queue.prefix}:janitor")
    swept = janitor.sweep()
    assert (swept.uploads, swept.overlays, swept.index_entries) == (1, 1, 1)
    assert not blob.exists() and not overlay.exists() and fresh_orphan.exists()
    assert interval(api.settings) == 6.0


def test_models_carry_their_card(api_factory, tmp_path):
    """GET /models: a card per model, from <name>.card.json or else from the checkpoint's metadata."""
    import shutil
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[3] / "service" / "models"
    api = api_factory(models_dir=shipped, default_model="vidpose-movenet-thunder",
                      models=["vidpose-movenet-thunder"])
    with api.client() as c:
        models = {m["name"]: m for m in c.get("/models").json()["models"]}
    card = models["vidpose-movenet-thunder"]["card"]
    assert "MoveNet" in card["summary"] and "COCO" in card["trained_on"]
    assert (card["accuracy"][0]["metric"], card["accuracy"][0]["value"]) == ("PoseTrack mAP", 55.5)
    assert card["doc"] == "docs/model-card.md"

    own = tmp_path / "own-models"
    own.mkdir()
    shutil.copy(shipped / "vidpose-tiny-cpu.safetensors", own / "mine.safetensors")  # no card file
    api = api_factory(models_dir=own, default_model="mine", models=["mine"])
    with api.client() as c:
        [entry] = c.get("/models").json()["models"]
    assert "synthetic" in entry["card"]["summary"] and entry["card"]["trained_on"] == "synth:runs/synth-v1"
    assert {a["metric"] for a in entry["card"]["accuracy"]} >= {"pck", "pck_occluded"}
