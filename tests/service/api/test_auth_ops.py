"""Auth isolation, readiness, metrics, models, and the no-torch rule of the API process."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[3]


def upload(client, clip, headers=None):
    with open(clip, "rb") as f:
        return client.post("/estimate", files={"video": (clip.name, f, "video/mp4")}, headers=headers)


def test_auth_isolation(api_factory, clips):
    api = api_factory(api_keys=["key-a", "key-b"])
    with api.client() as anon, api.client("key-a") as a, api.client("key-b") as b, api.client("wrong") as bad:
        r = upload(anon, clips["soccer"])
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        assert upload(bad, clips["soccer"]).status_code == 401
        assert anon.post("/estimate", headers={"Authorization": "Basic a2V5LWE="}).status_code == 401
        assert api.blobs() == []
        r = upload(a, clips["soccer"])
        assert r.status_code == 202
        job_id = r.json()["job_id"]
        assert a.get(f"/jobs/{job_id}").status_code == 200
        for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/result", f"/v1/jobs/{job_id}"):
            assert b.get(path).status_code == 404
            assert anon.get(path).status_code == 401
        assert b.delete(f"/jobs/{job_id}").status_code == 404
        assert a.get(f"/jobs/{job_id}").json()["status"] == "queued"  # b could not cancel it
        assert api.queue.get_job(job_id)["owner"] not in ("", "key-a")  # the key itself is never stored
        assert anon.get("/models").status_code == 401 and a.get("/models").status_code == 200
        for path in ("/healthz", "/metrics"):
            assert anon.get(path).status_code == 200
        assert anon.get("/readyz").status_code == 503  # no worker, but no 401 either


def test_readyz_follows_worker_heartbeats(api):
    with api.client() as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_live_workers"
        api.queue.heartbeat("w-1", {"model": "test-model", "device": "cpu"})
        assert c.get("/readyz").json() == {"status": "ready", "workers": 1}
        api.queue.r.zadd(api.queue.workers_key, {"w-1": time.time() - 60})  # heartbeat went stale
        assert c.get("/readyz").status_code == 503


def _sample(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line[:line.rindex("}")])) if "{" in line else {}
            if all(got.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_exposed_with_route_templates(api, simulated_worker, clips):
    with api.client() as c:
        job_id = upload(c, clips["soccer"]).json()["job_id"]
        c.get(f"/jobs/{job_id}")
        c.get("/jobs/" + "Z" * 30)
        text = c.get("/metrics").text
        assert c.get("/metrics").headers["content-type"].startswith("text/plain")
    for name in ("vidpose_http_requests_total", "vidpose_http_request_duration_seconds_bucket",
                 "vidpose_jobs_submitted_total", "vidpose_queue_jobs", "vidpose_backlog_frames",
                 "vidpose_live_workers", "vidpose_jobs_rejected_total", "vidpose_jobs_finished_total",
                 "vidpose_upload_bytes_bucket"):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text or name in text, name
    requests = "vidpose_http_requests_total"
    assert _sample(text, requests, route="/jobs/{job_id}", method="GET", status="200") >= 1
    assert _sample(text, requests, route="/jobs/{job_id}", method="GET", status="404") >= 1
    assert _sample(text, requests, route="/estimate", method="POST", status="202") >= 1
    assert _sample(text, "vidpose_jobs_submitted_total", model="test-model") >= 1
    assert _sample(text, "vidpose_queue_jobs", model="test-model") == 1
    assert _sample(text, "vidpose_backlog_frames") == 5
    assert job_id not in text and "Z" * 30 not in text  # no ids in labels
    simulated_worker(api)
    with api.client() as c:
        deadline = time.monotonic() + 10
        while c.get(f"/jobs/{job_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        text = c.get("/metrics").text
    assert _sample(text, "vidpose_queue_jobs", model="test-model") == 0
    assert _sample(text, "vidpose_backlog_frames") == 0 and _sample(text, "vidpose_live_workers") == 1


def _write_checkpoint(path: Path, info: dict) -> None:
    config = {"embed_dim": 64, "depth": 2, "num_heads": 2, "input_size": [256, 192], "window": 5,
              "temporal": True, "num_keypoints": 17}
    meta = {"format": "vidpose", "format_version": "1", "config": json.dumps(config),
            "keypoints": json.dumps(["nose"] * 17), "skeleton": "[]", "info": json.dumps(info)}
    save_file({"w": np.zeros((2, 3), np.float32)}, str(path), metadata=meta)


def test_models_from_checkpoints_then_workers(api, clips):
    models_dir = Path(api.settings.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    _write_checkpoint(models_dir / "test-model.safetensors", {"version": "2024.1"})
    _write_checkpoint(models_dir / "other.safetensors", {})
    (models_dir / "broken.safetensors").write_bytes(struct.pack("<Q", 10) + b"not json!!")
    with api.client() as c:
        listing = c.get("/models").json()
        assert listing["default_model"] == "test-model"
        by_name = {m["name"]: m for m in listing["models"]}
        assert set(by_name) == {"test-model", "other", "broken"}
        tm = by_name["test-model"]
        assert tm["version"] == "2024.1" and tm["default"] and not tm["loaded"]
        assert tm["source"] == "models_dir"
        assert tm["config"]["embed_dim"] == 64 and tm["config"]["window"] == 5 and tm["window"] == 5
        assert len(tm["keypoint_names"]) == 17  # the checkpoint's, read as a contract.ModelInfo
        # no version in the file: a content hash, the same string workers report
        assert re.fullmatch(r"sha256:[0-9a-f]{12}", by_name["other"]["version"])
        assert "JSON" in by_name["broken"]["error"]
        # "other" is a checkpoint file, so it may be requested before a worker registers it
        with open(clips["soccer"], "rb") as f:
            r = c.post("/estimate", files={"video": ("s.mp4", f, "video/mp4")},
                       data={"options": json.dumps({"model": "other"})})
        assert r.status_code == 202 and api.queue.get_job(r.json()["job_id"])["model"] == "other"

        api.queue.register_model("test-model", {"name": "test-model", "version": "2024.1", "device": "cuda",
                                                "window": 5, "embed_dim": 64, "preset": "tiny"})
        api.queue.heartbeat("w1", {"model": "test-model", "device": "cuda"})
        api.queue.heartbeat("w2", {"models": ["test-model"], "device": "cpu"})
        listing = c.get("/v1/models").json()
        [tm] = listing["models"]
        assert tm["source"] == "workers" and tm["loaded"] and tm["workers"] == 2
        assert tm["devices"] == ["cpu", "cuda"] and tm["version"] == "2024.1"
        assert tm["config"] == {"window": 5, "embed_dim": 64}


def test_api_process_never_imports_torch(redis_server, tmp_path):
    code = (
        "import sys\n"
        "from service.settings import Settings\n"
        "from service.api.app import create_app\n"
        "import service.api.commands, service.api.client, service.queue, service.blobs, service.metrics\n"
        "import service.cli\n"
        "service.cli.build_parser()\n"
        f"app = create_app(Settings(redis_url={redis_server.url!r}, blob_dir={str(tmp_path)!r}))\n"
        "app.openapi()\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
