"""docker-compose.yml, parsed (PyYAML, anchors and merge keys resolved) and checked against the
Dockerfile, the settings and the monitoring files it mounts. No Docker engine needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
VIDPOSE_SERVICES = ("api", "worker", "worker-cpu")
_DEFAULT = re.compile(r"\$\{([A-Z0-9_]+)(:?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with an empty environment: the default (or '')."""
    return _DEFAULT.sub(lambda m: m.group(3) or "", str(value))


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form for environment"
    return {k: interpolate(v) for k, v in env.items()}


def test_services_present(compose):
    assert {"redis", "api", "worker", "worker-cpu", "prometheus", "grafana"} <= set(compose["services"])


def test_redis_persists_with_aof(compose):
    redis = compose["services"]["redis"]
    cmd = redis["command"]
    assert cmd[0] == "redis-server"
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    volume = [v for v in redis["volumes"] if v.endswith(":/data")]
    assert volume and volume[0].split(":")[0] in compose["volumes"]
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_build_targets_match_dockerfile(compose, dockerfile_stages):
    for name, target in (("api", "api"), ("worker", "worker"), ("worker-cpu", "worker-cpu")):
        build = compose["services"][name]["build"]
        assert build["context"] == "." and build["target"] == target
        assert target in dockerfile_stages


def test_gpu_worker_reserves_a_gpu_and_cpu_profile_replaces_it(compose):
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d.get("count", 1) >= 1
               for d in devices)
    assert "profiles" not in worker, "the GPU worker is the default stack"
    assert env_of(worker)["VIDPOSE_WORKER_DEVICE"] == "cuda"
    cpu = compose["services"]["worker-cpu"]
    assert cpu["profiles"] == ["cpu"]
    assert "deploy" not in cpu
    assert env_of(cpu)["VIDPOSE_WORKER_DEVICE"] == "cpu"
    # every other service runs in both modes
    for name, svc in compose["services"].items():
        if name not in ("worker-cpu",):
            assert "profiles" not in svc, name


def test_upload_volume_shared_at_blob_dir(compose):
    mounts = {}
    for name in VIDPOSE_SERVICES:
        svc = compose["services"][name]
        blob_dir = env_of(svc)["VIDPOSE_BLOB_DIR"]
        found = [v.split(":")[0] for v in svc["volumes"] if v.split(":")[1] == blob_dir]
        assert found, f"{name}: nothing mounted at VIDPOSE_BLOB_DIR={blob_dir}"
        mounts[name] = found[0]
    assert len(set(mounts.values())) == 1, f"API and workers must share one upload volume: {mounts}"
    assert next(iter(mounts.values())) in compose["volumes"], "uploads must be a named volume"


def test_vidpose_env_is_valid_settings(compose):
    fields = set(Settings.model_fields)
    for name in VIDPOSE_SERVICES:
        env = {k: v for k, v in env_of(compose["services"][name]).items() if k.startswith("VIDPOSE_")}
        for key in env:
            assert key[len("VIDPOSE_"):].lower() in fields, f"{name}: {key} is not a setting"
        s = Settings(**{k[len("VIDPOSE_"):].lower(): v for k, v in env.items()})
        assert s.redis_url == "redis://redis:6379/0", name
        assert s.api_host == "0.0.0.0", f"{name}: must listen on all interfaces in a container"


def test_healthchecks_and_dependencies(compose):
    for name in ("redis", *VIDPOSE_SERVICES):
        hc = compose["services"][name].get("healthcheck")
        assert hc and hc["test"][0] == "CMD", f"{name}: no healthcheck"
    for name in VIDPOSE_SERVICES:
        svc = compose["services"][name]
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        role = "api" if name == "api" else "worker"
        assert svc["healthcheck"]["test"][1:] == ["python", "/opt/vidpose/healthcheck.py", role]
    for name in ("worker", "worker-cpu"):
        grace = compose["services"][name]["stop_grace_period"]
        assert re.fullmatch(r"\d+m", grace) and int(grace[:-1]) >= 1, "workers need time to drain"


def test_api_port_published_and_consistent(compose):
    api = compose["services"]["api"]
    port = env_of(api)["VIDPOSE_API_PORT"]
    published = [interpolate(p) for p in api["ports"]]
    assert any(p.endswith(f":{port}") for p in published)
    assert all(p.startswith("127.0.0.1:") for p in published), "bind to loopback unless VIDPOSE_BIND is set"


def test_third_party_images_pinned(compose):
    pinned = re.compile(r"^[^:@]+(/[^:@]+)*:v?\d+\.\d+\.\d+[\w.-]*$")
    for name in ("redis", "prometheus", "grafana"):
        image = compose["services"][name]["image"]
        assert pinned.match(image), f"{name}: {image} not pinned to an exact version"


def test_prometheus_mounts_and_scrapes_every_vidpose_process(compose):
    prom = compose["services"]["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prom["volumes"])
    config_src = [s for s, d in mounts.items() if d == "/etc/prometheus/prometheus.yml"][0]
    rules_src = [s for s, d in mounts.items() if d == "/etc/prometheus/alerts.yml"][0]
    assert (REPO / config_src).is_file() and (REPO / rules_src).is_file()
    config = yaml.safe_load((REPO / config_src).read_text())
    assert config["rule_files"] == ["alerts.yml"]  # resolved next to prometheus.yml in the container
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    api_port = int(env_of(compose["services"]["api"])["VIDPOSE_API_PORT"])
    api_sd = jobs["vidpose-api"]["dns_sd_configs"][0]
    assert api_sd["names"] == ["api"] and api_sd["port"] == api_port
    worker_sd = jobs["vidpose-worker"]["dns_sd_configs"][0]
    assert set(worker_sd["names"]) == {"worker", "worker-cpu"}
    for name in ("worker", "worker-cpu"):
        assert int(env_of(compose["services"][name])["VIDPOSE_WORKER_METRICS_PORT"]) == worker_sd["port"]
    for job in ("vidpose-api", "vidpose-worker"):
        assert jobs[job].get("metrics_path", "/metrics") == "/metrics"


def test_grafana_provisioning_points_at_mounted_files(compose):
    grafana = compose["services"]["grafana"]
    mounts = {}
    for v in grafana["volumes"]:
        src, dst = v.split(":")[:2]
        mounts[dst] = src
    prov = REPO / mounts["/etc/grafana/provisioning"]
    ds = yaml.safe_load((prov / "datasources/prometheus.yml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((prov / "dashboards/vidpose.yml").read_text())["providers"]
    path = providers[0]["options"]["path"]
    assert path in mounts, f"dashboard provider reads {path}, which is not mounted"
    assert (REPO / mounts[path] / "vidpose.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/vidpose.json"


def test_named_volumes_declared(compose):
    for name, svc in compose["services"].items():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if not src.startswith((".", "/")):
                assert src in compose["volumes"], f"{name}: volume {src} not declared"
            else:
                assert (REPO / src).exists(), f"{name}: bind mount {src} missing"


@pytest.mark.parametrize("value,expected", [("${X:-a}", "a"), ("${X}", ""), ("p:${X:-1}:2", "p:1:2")])
def test_interpolate_helper(value, expected):
    assert interpolate(value) == expected
