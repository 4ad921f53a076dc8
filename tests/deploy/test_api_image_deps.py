"""The api image installs vidpose with `pip install --no-deps` plus deploy/docker/requirements-api.txt,
so torch never enters it. These tests keep that list honest without building the image:
- it mirrors pyproject's dependency specifiers (no drift) and leaves out the model stack;
- the real API (`vidpose api`, uvicorn, real Redis) runs and accepts a real clip in a process where
  every package left out of the list is unimportable - what the image would do."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from importlib.metadata import packages_distributions
from pathlib import Path

import httpx
import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
MUST_STAY_OUT = {"torch", "torchvision", "timm"}


def _reqs(lines: list[str]) -> dict[str, Requirement]:
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            out[canonicalize_name(req.name)] = req
    return out


@pytest.fixture(scope="module")
def project_deps() -> dict[str, Requirement]:
    return _reqs(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


@pytest.fixture(scope="module")
def api_deps() -> dict[str, Requirement]:
    return _reqs((REPO / "deploy/docker/requirements-api.txt").read_text().splitlines())


def test_api_requirements_mirror_pyproject(project_deps, api_deps):
    assert not MUST_STAY_OUT & set(api_deps), "the api image must not install the model stack"
    for name, req in api_deps.items():
        assert name in project_deps, f"{name} is not a vidpose dependency (add it to pyproject first)"
        base = project_deps[name]
        assert (req.specifier, req.extras, req.marker) == (base.specifier, base.extras, base.marker), \
            f"{name}: requirements-api.txt says {req}, pyproject says {base}"


def _left_out_modules(project_deps, api_deps) -> list[str]:
    """Top-level import names of the dependencies the api image does not install."""
    left_out = set(project_deps) - set(api_deps)
    assert MUST_STAY_OUT <= left_out
    modules = sorted({mod for mod, dists in packages_distributions().items()
                      if any(canonicalize_name(d) in left_out for d in dists) and not mod.startswith("_")})
    found = {canonicalize_name(d) for mod in modules for d in packages_distributions()[mod]}
    assert left_out <= found, f"not installed here, cannot map to modules: {left_out - found}"
    return modules


BLOCKER = """
import importlib.abc, sys
BLOCKED = set({blocked!r})
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            print(f"BLOCKED IMPORT: {{name}}", file=sys.stderr, flush=True)
            raise ImportError(f"{{name}} is not installed in the api image")
        return None
sys.meta_path.insert(0, Block())
from service.cli import main
sys.exit(main(sys.argv[1:]))
"""


def finish_like_a_worker(redis_url: str, prefix: str, job_id: str) -> None:
    import redis

    from service.queue import JobQueue
    from service.settings import Settings

    settings = Settings(redis_url=redis_url, key_prefix=prefix)
    q = JobQueue(redis.Redis.from_url(redis_url), settings)
    job = q.get_job(job_id)
    q.ensure_groups([job["model"]])
    [(model, entry, claimed)] = q.claim("deploy-test-worker", [job["model"]], 1, None)
    assert claimed == job_id
    video = job["video"]
    assert q.start(job_id, "deploy-test-worker", job["frames_total"], video)
    kps = [[video["width"] / 2 + 10 * k, video["height"] / 2, 0.9] for k in range(17)]
    q.write_frames(job_id, {i: {"frame_index": i, "timestamp_s": i / video["fps"], "instances": [
        {"track_id": 0, "bbox": [0.0, 0.0, video["width"], video["height"]], "score": 0.9, "keypoints": kps}]}
        for i in range(job["frames_total"])})
    assert q.finish(job_id, model, entry, "succeeded")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_help_without_left_out_packages(project_deps, api_deps):
    code = BLOCKER.format(blocked=_left_out_modules(project_deps, api_deps))
    for argv in (["--help"], ["api", "--help"], ["estimate", "--help"]):
        res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                             cwd=REPO)
        assert res.returncode == 0, f"vidpose {' '.join(argv)}: {res.stderr[-2000:]}"


@pytest.mark.slow
def test_api_serves_a_clip_without_left_out_packages(project_deps, api_deps, redis_server, shared_data,
                                                    tmp_path):
    code = BLOCKER.format(blocked=_left_out_modules(project_deps, api_deps))
    port = _free_port()
    env = {**os.environ, "VIDPOSE_REDIS_URL": redis_server.url, "VIDPOSE_API_HOST": "127.0.0.1",
           "VIDPOSE_API_PORT": str(port), "VIDPOSE_BLOB_DIR": str(tmp_path / "uploads"),
           "VIDPOSE_KEY_PREFIX": f"deploytest-{secrets.token_hex(4)}", "VIDPOSE_API_KEYS": ""}
    log = tmp_path / "api.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, "api"], env=env, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"api exited: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"api not up: {log.read_text()[-3000:]}"
            time.sleep(0.2)
        clip = shared_data / "videos" / "street_walk.mp4"
        with open(clip, "rb") as f:
            resp = httpx.post(f"{base}/estimate", files={"video": (clip.name, f, "video/mp4")}, timeout=60)
        assert resp.status_code == 202, resp.text
        job = httpx.get(f"{base}/jobs/{resp.json()['job_id']}", timeout=10).json()
        assert job["status"] == "queued" and job["frames_total"] == 5
        junk = {"video": ("x.mp4", b"not a video", "video/mp4")}
        bad = httpx.post(f"{base}/estimate", files=junk, timeout=30)
        assert bad.status_code == 422, bad.text  # the OpenCV probe runs in this process
        metrics = httpx.get(f"{base}/metrics", timeout=10)
        assert metrics.status_code == 200 and "vidpose_jobs_submitted_total" in metrics.text
        assert "<html" in httpx.get(f"{base}/", timeout=10).text.lower()  # the web page
        # Finish the job as a worker would (one full-frame person per frame): the API renders its
        # overlay (OpenCV + PyAV) in this process, with the left-out packages unimportable.
        finish_like_a_worker(redis_server.url, env["VIDPOSE_KEY_PREFIX"], job["job_id"])
        overlay = httpx.get(f"{base}/jobs/{job['job_id']}/overlay.mp4", timeout=120)
        assert overlay.status_code == 200 and overlay.content[4:8] == b"ftyp", overlay.text[:500]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "BLOCKED IMPORT" not in log.read_text(), log.read_text()[-3000:]
