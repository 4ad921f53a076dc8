"""Structural lint of the Dockerfile and .dockerignore, and the helper scripts the images run.
No Docker engine: the images themselves are not built in CI (docs/deploy.md says which
checks that leaves out)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("api", "worker", "worker-cpu")
# An exact version at the start of the tag (1.2.3 or v1.2.3), or a digest.
PINNED = re.compile(r"^[^@\s]+:v?\d+\.\d+\.\d+[^@\s]*(@sha256:[0-9a-f]{64})?$|^[^@\s]+@sha256:[0-9a-f]{64}$")


def is_pinned(image: str) -> bool:
    return image == "scratch" or bool(PINNED.match(image))


def test_pin_rule_itself():
    assert is_pinned("python:3.12.10-slim-bookworm")
    assert is_pinned("nvidia/cuda:12.8.1-runtime-ubuntu24.04")
    assert is_pinned("prom/prometheus:v2.55.1")
    assert is_pinned("redis@sha256:" + "a" * 64)
    for loose in ("python", "python:latest", "python:3.12-slim", "redis:7", "nvidia/cuda:12-runtime"):
        assert not is_pinned(loose), loose


def test_targets_exist(dockerfile_stages):
    for target in TARGETS:
        assert target in dockerfile_stages, f"Dockerfile has no stage `{target}`"


def test_external_base_images_pinned(dockerfile_stages):
    for stage in dockerfile_stages.values():
        if stage.parent is None:
            assert "$" not in stage.base, f"stage {stage.name}: unresolved ARG in FROM {stage.base}"
            assert is_pinned(stage.base), f"stage {stage.name}: base image {stage.base} is not pinned"


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_as_non_root_with_healthcheck(dockerfile_stages, target):
    stage = dockerfile_stages[target]
    user = stage.last("USER")
    assert user is not None, f"{target}: no USER (would run as root)"
    name = user.split(":")[0]
    assert name not in ("root", "0"), f"{target}: USER {user}"
    health = stage.last("HEALTHCHECK")
    assert health and "CMD" in health and not health.upper().startswith("NONE"), f"{target}: no HEALTHCHECK"
    assert stage.last("CMD"), f"{target}: no CMD"


def test_healthchecks_call_the_shipped_script(dockerfile_stages):
    for target, role in (("api", "api"), ("worker", "worker"), ("worker-cpu", "worker")):
        stage = dockerfile_stages[target]
        assert f'"/opt/vidpose/healthcheck.py", "{role}"' in stage.last("HEALTHCHECK")
        copies = " ".join(stage.inherited("COPY"))
        assert "deploy/docker/healthcheck.py /opt/vidpose/healthcheck.py" in copies, target


def test_commands_are_the_service_entry_points(dockerfile_stages):
    assert dockerfile_stages["api"].last("CMD") == '["vidpose", "api"]'
    for target in ("worker", "worker-cpu"):
        assert dockerfile_stages[target].last("CMD") == '["vidpose", "worker"]'


def test_image_env_names_are_settings(dockerfile_stages):
    """Every VIDPOSE_* variable an image sets is a real setting with a valid value."""
    fields = set(Settings.model_fields)
    for target in TARGETS:
        env = {k: v for k, v in dockerfile_stages[target].env().items() if k.startswith("VIDPOSE_")}
        assert env, target
        for key in env:
            assert key[len("VIDPOSE_"):].lower() in fields, f"{target}: {key} is not a setting"
        Settings(**{k[len("VIDPOSE_"):].lower(): v for k, v in env.items()})


def test_api_image_has_no_torch(dockerfile_stages):
    """The api target installs vidpose without its dependencies, then only the API's list."""
    stage = dockerfile_stages["api"]
    runs = stage.inherited("RUN")
    text = " ".join(runs)
    assert "torch" not in text.replace("find_spec('torch')", ""), "api stage installs torch"
    assert "--index-url" not in text
    assert any("pip install -r /tmp/requirements-api.txt" in r for r in runs)
    project_installs = [r for r in runs if "pip install" in r and "/tmp/src" in r]
    assert project_installs and all("--no-deps" in r for r in project_installs)
    # and the build itself proves it: the api stage fails if torch is importable
    assert any("find_spec('torch') is not None" in r for r in runs)
    assert "deploy/docker/requirements-api.txt /tmp/requirements-api.txt" in " ".join(stage.own("COPY"))


def test_gpu_worker_compiles_mamba_kernels(dockerfile_stages):
    worker = dockerfile_stages["worker"]
    assert worker.external_base.startswith("nvidia/cuda:") and "-runtime-" in worker.external_base
    copies = [c for c in worker.own("COPY") if c.startswith("--from=")]
    assert any(c.startswith("--from=worker-build /opt/venv") for c in copies)
    build = dockerfile_stages["worker-build"]
    assert build.external_base.startswith("nvidia/cuda:") and "-devel-" in build.external_base
    # same CUDA version in the build and runtime stages
    assert build.external_base.split(":")[1].split("-")[0] == worker.external_base.split(":")[1].split("-")[0]
    env = build.env()
    assert env["MAMBA_FORCE_BUILD"] == "TRUE" and env["CAUSAL_CONV1D_FORCE_BUILD"] == "TRUE"
    assert set(env["TORCH_CUDA_ARCH_LIST"].split(";")) == {"8.0", "9.0"}
    runs = build.own("RUN")
    for package in ("causal-conv1d", "mamba-ssm"):
        install = [r for r in runs if f" {package}" in r and "pip install" in r]
        assert install and all("--no-build-isolation" in r for r in install), package
    assert any("check_cuda_archs.py sm_80 sm_90" in r for r in runs)
    assert any('"/tmp/src[cuda]"' in r for r in runs)


def test_worker_images_pin_torch_consistently(repo):
    pins = {}
    for line in (repo / "deploy/docker/constraints-worker.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraint not exact: {line}"
            pins[name] = version
    assert {"torch", "torchvision", "mamba-ssm", "causal-conv1d"} <= set(pins)
    # torch on PyPI is the CUDA 12.8 build for 2.9.x; the CUDA base images must match it
    text = (repo / "Dockerfile").read_text()
    assert pins["torch"].startswith("2.9.") and "nvidia/cuda:12.8." in text


def test_copied_sources_exist(dockerfile_stages, repo):
    for stage in dockerfile_stages.values():
        for args in stage.own("COPY"):
            if args.startswith("--from="):
                continue
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert (repo / src).exists(), f"COPY {src}: missing"


# ---------------------------------------------------------------- .dockerignore
def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out, i = out[:-2] + "(.*/)?", i + 1
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a path is excluded if the last pattern matching it (or one of its
    parent directories) is not a `!` exception."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _pattern_regex(raw.lstrip("!").strip("/"))
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


@pytest.fixture(scope="module")
def ignore_patterns(repo) -> list[str]:
    lines = (repo / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_dockerignore_matcher_itself():
    pats = ["*", "!model", "**/__pycache__"]
    assert dockerignored(".venv/bin/python", pats)
    assert not dockerignored("model/config.py", pats)
    assert dockerignored("model/__pycache__/config.cpython-311.pyc", pats)


def test_dockerignore_keeps_build_inputs_and_drops_the_rest(ignore_patterns, dockerfile_stages, repo):
    needed = []
    for stage in dockerfile_stages.values():
        for args in stage.own("COPY"):
            if not args.startswith("--from="):
                needed += shlex.split(args)[:-1]
    assert needed
    for src in needed:
        path = repo / src
        files = [p for p in path.rglob("*.py")] if path.is_dir() else [path]
        assert files, src
        for f in files:
            rel = f.relative_to(repo).as_posix()
            if "__pycache__" not in rel:
                assert not dockerignored(rel, ignore_patterns), f".dockerignore drops {rel}, which COPY needs"
    for junk in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "var/uploads/x.mp4", "runs/a/b.pt",
                 "service/__pycache__/cli.cpython-311.pyc", "vidpose.egg-info/PKG-INFO", ".notes/x.md"):
        assert dockerignored(junk, ignore_patterns), f".dockerignore lets {junk} into the build context"


# ---------------------------------------------------------------- healthcheck.py
@pytest.fixture(scope="module")
def status_server():
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            state["path"] = self.path
            self.send_response(state["status"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], state
    server.shutdown()
    server.server_close()


def _healthcheck(role: str, env: dict) -> subprocess.CompletedProcess:
    script = REPO / "deploy/docker/healthcheck.py"
    return subprocess.run([sys.executable, str(script), role], env=env, capture_output=True, text=True,
                          timeout=30)


def test_healthcheck_script_against_real_http(status_server):
    port, state = status_server
    state["status"] = 200
    assert _healthcheck("api", {"VIDPOSE_API_PORT": str(port)}).returncode == 0
    assert state["path"] == "/healthz"
    assert _healthcheck("worker", {"VIDPOSE_WORKER_METRICS_PORT": str(port)}).returncode == 0
    assert state["path"] == "/readyz"
    state["status"] = 503  # e.g. a worker still warming up, or draining
    assert _healthcheck("worker", {"VIDPOSE_WORKER_METRICS_PORT": str(port)}).returncode == 1


def test_healthcheck_script_failures(status_server):
    port, _ = status_server
    res = _healthcheck("worker", {"VIDPOSE_WORKER_METRICS_PORT": "0"})
    assert res.returncode == 1 and "cannot be checked" in res.stderr
    # nothing listens on a port we just closed
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert _healthcheck("api", {"VIDPOSE_API_PORT": str(free)}).returncode == 1
    assert _healthcheck("nope", {}).returncode == 2


def test_healthcheck_defaults_match_settings(load):
    hc = load("vidpose_tests_healthcheck", REPO / "deploy/docker/healthcheck.py")
    defaults = Settings()
    assert hc.target_url("api", {}) == f"http://127.0.0.1:{defaults.api_port}/healthz"
    assert hc.target_url("worker", {}) == f"http://127.0.0.1:{defaults.worker_metrics_port}/readyz"


def test_cuda_arch_listing_parser(load):
    mod = load("vidpose_tests_check_cuda_archs", REPO / "deploy/docker/check_cuda_archs.py")
    listing = ("ELF file    1: selective_scan_cuda.cpython-312-x86_64-linux-gnu.1.sm_75.cubin\n"
               "ELF file    2: selective_scan_cuda.cpython-312-x86_64-linux-gnu.2.sm_80.cubin\n"
               "ELF file    3: selective_scan_cuda.cpython-312-x86_64-linux-gnu.3.sm_90a.cubin\n")
    assert mod.archs_in_listing(listing) == {"sm_75", "sm_80", "sm_90a"}
    assert mod.archs_in_listing("") == set()
