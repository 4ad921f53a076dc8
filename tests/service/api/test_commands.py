"""`vidpose estimate` and `vidpose api` against live servers (real HTTP, real Redis)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.cli import main
from service.embedded_redis import free_port

REPO = Path(__file__).resolve().parents[3]


def vidpose(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_estimate_downloads_every_page(api_factory, simulated_worker, clips, tmp_path):
    api = api_factory(result_page_limit=2)
    simulated_worker(api, frame_delay_s=0.05)
    out = tmp_path / "out" / "result.json"
    boxes = json.dumps({"boxes": [[[10, 10, 50, 100]]] * 5})
    run = vidpose("estimate", str(clips["street"]), "--server", api.url, "--out", str(out),
                  "--options", boxes, "--poll", "0.05")
    assert run.returncode == 0, run.stderr
    assert "frame" in run.stderr and f"wrote {out}" in run.stderr
    result = json.loads(out.read_text())
    assert [f["frame_index"] for f in result["frames"]] == [0, 1, 2, 3, 4]  # 3 pages merged
    assert result["next_start_frame"] is None and result["video"]["width"] == 960
    assert all(f["instances"][0]["bbox"] == [10, 10, 50, 100] for f in result["frames"])

    pt = tmp_path / "pt.json"
    run = vidpose("estimate", str(clips["soccer"]), "--server", api.url, "--out", str(pt), "--format",
                  "posetrack", "--poll", "0.05")
    assert run.returncode == 0, run.stderr
    posetrack = json.loads(pt.read_text())
    assert len(posetrack["images"]) == 5 and len(posetrack["annotations"]) == 5
    assert posetrack["images"][0]["vid_id"] == "soccer"
    assert all(len(a["keypoints"]) == 51 for a in posetrack["annotations"])


def test_estimate_in_process_formats_and_errors(api_factory, simulated_worker, clips, tmp_path, capsys):
    api = api_factory(api_keys=["sekrit"])
    simulated_worker(api)
    coco = tmp_path / "coco.json"
    args = ["estimate", str(clips["soccer"]), "--server", api.url, "--poll", "0.02"]
    assert main([*args, "--api-key", "sekrit", "--out", str(coco), "--format", "coco"]) == 0
    data = json.loads(coco.read_text())
    assert [d["image_id"] for d in data] == [0, 1, 2, 3, 4] and all(d["category_id"] == 1 for d in data)

    assert main([*args, "--out", str(tmp_path / "x.json")]) == 1  # no key
    assert "401 unauthorized" in capsys.readouterr().err
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert main(["estimate", str(notes), "--server", api.url, "--api-key", "sekrit"]) == 1
    assert "415 unsupported_media_type" in capsys.readouterr().err
    assert main([*args, "--api-key", "sekrit", "--options", "{bad"]) == 2
    assert "--options" in capsys.readouterr().err
    assert main(["estimate", str(tmp_path / "missing.mp4"), "--server", api.url]) == 2
    dead = f"http://127.0.0.1:{free_port()}"
    assert main(["estimate", str(clips["soccer"]), "--server", dead]) == 1
    assert f"cannot talk to the vidpose server at {dead}" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_estimate_reports_failed_job(api, simulated_worker, clips, tmp_path, capsys):
    simulated_worker(api, fail_with=("invalid_video", "corrupt stream at frame 3"))
    out = tmp_path / "r.json"
    code = main(["estimate", str(clips["soccer"]), "--server", api.url, "--out", str(out), "--poll", "0.02"])
    assert code == 1 and not out.exists()
    assert "failed: invalid_video: corrupt stream at frame 3" in capsys.readouterr().err


def test_estimate_timeout_has_a_default_and_a_clear_error(api, clips, capsys):
    """No worker: the job stays queued; estimate gives up after --timeout (default one hour, 0 = forever)."""
    from service.api.commands import DEFAULT_TIMEOUT_S
    from service.cli import build_parser

    assert build_parser().parse_args(["estimate", "x.mp4"]).timeout == DEFAULT_TIMEOUT_S == 3600
    started = time.monotonic()
    code = main(["estimate", str(clips["soccer"]), "--server", api.url, "--timeout", "0.3", "--poll", "0.05"])
    assert code == 1 and time.monotonic() - started < 20
    err = capsys.readouterr().err
    assert "gave up waiting" in err and "still queued" in err and "--timeout 0.3" in err
    assert "keeps running on the server" in err


def test_vidpose_api_command(redis_server, tmp_path):
    assert vidpose("api", env={"VIDPOSE_REDIS_URL": ""}).returncode == 2
    port = free_port()
    env = {**os.environ, "VIDPOSE_REDIS_URL": redis_server.url, "VIDPOSE_BLOB_DIR": str(tmp_path),
           "VIDPOSE_LOG_LEVEL": "warning", "VIDPOSE_API_PORT": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "api", "--port", str(port)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "vidpose api did not come up"
                time.sleep(0.1)
        assert r.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["error"]["code"] == "no_live_workers"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
