"""`vidpose serve`: embedded Redis + API + worker as children; the printed curl example works; Ctrl-C
(SIGINT to the process group) or SIGTERM stops everything with no process left behind."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def serve_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDPOSE_")}
    env.update(VIDPOSE_BLOB_DIR=str(tmp_path / "blobs"), VIDPOSE_WORKER_METRICS_PORT="0",
               VIDPOSE_WORKER_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def start_serve(model: Path, tmp_path: Path, log_name: str = "serve.log"
                ) -> tuple[subprocess.Popen, list[str]]:
    """`vidpose serve --model MODEL` on tmp_path (its own process group, as a terminal would give it);
    returns the process and its banner lines, once the banner says Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--model", str(model), "--port", "0",
         "--drain-timeout", "2"],
        env=serve_env(tmp_path), cwd=REPO, stdout=subprocess.PIPE, stderr=open(tmp_path / log_name, "ab"),
        text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    banner, deadline = [], time.monotonic() + 240
    while not any("Ctrl-C" in line for line in banner):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError((tmp_path / log_name).read_text())
        try:
            banner.append(lines.get(timeout=1))
        except queue.Empty:
            pass
    return proc, banner


def stop_serve(proc: subprocess.Popen, log: Path, sig: int = signal.SIGTERM, group: bool = False) -> int:
    """Signal `vidpose serve` (its process group: a terminal's Ctrl-C) and return its exit status; a serve
    that does not exit in 90 s is killed with its children and fails the test with its log."""
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    try:
        return proc.wait(90)
    except subprocess.TimeoutExpired:
        for pid in descendants(proc.pid) | {proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        raise AssertionError(f"serve did not exit within 90 s of signal {sig}; its log:\n"
                             + log.read_text()[-4000:]) from None


def test_serve_missing_model_says_which_file(tmp_path):
    env = {**serve_env(tmp_path), "VIDPOSE_MODELS_DIR": str(tmp_path / "models")}
    r = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--port", "0"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert str(tmp_path / "models" / "vidpose-movenet-thunder-video.safetensors") in r.stderr
    assert "--model" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_serve_all_in_one(e2e_model, tmp_path, shared_data, stop):
    proc, banner = start_serve(e2e_model, tmp_path)
    try:
        text = "".join(banner)
        assert not [line for line in banner if "/readyz" in line and " 503" in line], text  # a quiet start
        url = re.search(r"API:\s+(http://\S+)", text).group(1)
        curl = next(line.strip() for line in banner if "video=@clip.mp4" in line)
        kids = descendants(proc.pid)
        assert len(kids) >= 3  # redis-server, API, worker (and their own children)

        # The banner's curl example, copy-pasted with a real clip.
        clip = shared_data / "videos" / "street_walk.mp4"
        if shutil.which("curl"):
            out = subprocess.run(curl.replace("clip.mp4", str(clip)), shell=True, capture_output=True,
                                 text=True, timeout=60).stdout
            job_id = re.search(r'"job_id":"([^"]+)"', out).group(1)
        else:
            with open(clip, "rb") as f:
                job_id = httpx.post(f"{url}/estimate", files={"video": f}).json()["job_id"]
        deadline = time.monotonic() + 120
        while (j := httpx.get(f"{url}/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert j["status"] == "succeeded", j
        frames = httpx.get(f"{url}/jobs/{job_id}/result").json()["frames"]
        assert len(frames) == 5 and all(len(f["instances"]) >= 2 for f in frames)  # default detector
        overlay = httpx.get(f"{url}/jobs/{job_id}/overlay.mp4", timeout=60)
        assert overlay.status_code == 200 and overlay.content[4:8] == b"ftyp"
        assert "<html" in httpx.get(f"{url}/").text.lower()  # the web page the banner points to
    finally:
        # Ctrl-C: SIGINT to the process group, what a terminal does
        rc = stop_serve(proc, tmp_path / "serve.log", *((signal.SIGINT, True) if stop == "ctrl-c" else ()))
    assert rc == 0, (tmp_path / "serve.log").read_text()[-3000:]
    time.sleep(0.5)
    assert [p for p in kids if alive(p)] == []
    # The embedded Redis kept its AOF next to the uploads: a restart on this folder finds the job.
    assert f"data kept in {tmp_path / 'redis'}" in text
    import redis

    from service.embedded_redis import RedisServer

    with RedisServer(data_dir=str(tmp_path / "redis"), appendonly=True) as srv:
        r = redis.Redis.from_url(srv.url)
        assert [k for k in r.scan_iter(f"*{job_id}*")], "the finished job is gone after a restart"
        r.close()


@pytest.mark.slow
def test_serve_restart_finishes_the_job_in_flight(e2e_model, tmp_path, long_clip):
    """Stop `vidpose serve` while a job runs: the worker hands the job back, the embedded Redis keeps it
    (AOF next to the uploads); `vidpose serve` started again on the same folder finishes it, every frame
    exactly once."""
    proc, banner = start_serve(e2e_model, tmp_path)
    try:
        url = re.search(r"API:\s+(http://\S+)", "".join(banner)).group(1)
        boxes = [[[10, 10, 60, 80], [80, 10, 60, 80]]] * 900
        with open(long_clip, "rb") as f:
            r = httpx.post(f"{url}/estimate", files={"video": ("long.mp4", f, "video/mp4")},
                           data={"options": json.dumps({"boxes": boxes})}, timeout=60)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        deadline = time.monotonic() + 120
        while (j := httpx.get(f"{url}/jobs/{job_id}").json())["frames_done"] == 0:
            assert time.monotonic() < deadline and j["status"] in ("queued", "running"), j
            time.sleep(0.05)
    finally:
        rc = stop_serve(proc, tmp_path / "serve.log")  # drain timeout 2 s: too short for 900 frames
    assert rc == 0
    assert j["status"] == "running", j
    assert "requeued" in (tmp_path / "serve.log").read_text()

    proc, banner = start_serve(e2e_model, tmp_path, "serve2.log")
    try:
        url = re.search(r"API:\s+(http://\S+)", "".join(banner)).group(1)
        deadline = time.monotonic() + 300
        while (j := httpx.get(f"{url}/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, j
            time.sleep(0.2)
        assert j["status"] == "succeeded", j
        frames, start = [], 0
        while start is not None:
            page = httpx.get(f"{url}/jobs/{job_id}/result", params={"start_frame": start}).json()
            frames += page["frames"]
            start = page["next_start_frame"]
        assert [f["frame_index"] for f in frames] == list(range(900))
        assert all(sorted(i["track_id"] for i in f["instances"]) == [0, 1] for f in frames)
    finally:
        assert stop_serve(proc, tmp_path / "serve2.log") == 0
