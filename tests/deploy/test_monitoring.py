"""Prometheus rules and config (promtool), the Grafana dashboard, and their metric names
against the registries in service/metrics.py.

promtool comes from Debian's `prometheus` package (`apt-get install -y prometheus`, or just
the binary: `apt-get download prometheus && dpkg-deb -x prometheus_*.deb x` gives
x/usr/bin/promtool). These tests FAIL without it: the rules would otherwise go unchecked.
Set PROMTOOL=/path/to/promtool to use a binary outside PATH."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MON = REPO / "deploy/monitoring"
ALERTS = MON / "prometheus/alerts.yml"
DASHBOARD = MON / "grafana/dashboards/vidpose.json"
METRIC = re.compile(r"\bvidpose_[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: install Debian's `prometheus` package (apt-get install -y "
                    "prometheus) or set PROMTOOL; the alert rules cannot be checked without it")
    return path


def run(cmd: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_alert_rules_check(promtool):
    res = run([promtool, "check", "rules", str(ALERTS)])
    assert res.returncode == 0, res.stdout + res.stderr


def test_prometheus_config_check(promtool):
    res = run([promtool, "check", "config", str(MON / "prometheus/prometheus.yml")])
    assert res.returncode == 0, res.stdout + res.stderr


def test_alert_rules_unit_tests(promtool):
    """tests/deploy/alerts_test.yml: every alert fires on its condition and stays silent otherwise."""
    res = run([promtool, "test", "rules", "alerts_test.yml"], cwd=HERE)
    assert res.returncode == 0, res.stdout + res.stderr
    tested = {t["alertname"] for case in yaml.safe_load((HERE / "alerts_test.yml").read_text())["tests"]
              for t in case["alert_rule_test"]}
    defined = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert defined == tested, f"alerts without a unit test: {defined - tested}"


def test_alerts_cover_the_issue(promtool):
    rules = {r["alert"]: r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    expr = lambda name: rules[name]["expr"]  # noqa: E731
    assert "vidpose_job_queue_wait_seconds_bucket" in expr("VidposeQueueWaitHigh")
    assert "vidpose_live_workers" in expr("VidposeNoLiveWorkers")
    assert 'status="failed"' in expr("VidposeJobErrorRatioHigh")
    assert "vidpose_dead_letter_jobs" in expr("VidposeDeadLetters")
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def test_dashboard_promql_parses(promtool, tmp_path):
    """Every panel query, with Grafana's variables filled in, is valid PromQL (as a recording rule)."""
    dash = json.loads(DASHBOARD.read_text())
    rules = []
    for panel in dash["panels"]:
        for i, target in enumerate(panel.get("targets", [])):
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$model", ".*")
            assert "$" not in expr, f"unknown variable in {target['expr']}"
            rules.append({"record": f"vidpose:panel{panel['id']}:{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = run([promtool, "check", "rules", str(path)])
    assert res.returncode == 0, res.stdout + res.stderr


def test_prometheusrule_matches_alerts_file(promtool, load, tmp_path):
    build = load("vidpose_monitoring_build", MON / "build.py")
    rule = yaml.safe_load((REPO / "deploy/kubernetes/base/prometheusrule.yaml").read_text())
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    assert build.main(["--check"]) == 0, "run `python deploy/monitoring/build.py` and commit the result"
    path = tmp_path / "from_prometheusrule.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    assert run([promtool, "check", "rules", str(path)]).returncode == 0


# ---------------------------------------------------------------- metric names
@pytest.fixture(scope="module")
def series_names() -> set[str]:
    """Every series name the API and worker registries can expose."""
    from service.metrics import API_REGISTRY, WORKER_REGISTRY

    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",)}
    names = set()
    for registry in (API_REGISTRY, WORKER_REGISTRY):
        for family in registry.collect():
            for suffix in suffixes.get(family.type, ("",)):
                names.add(family.name + suffix)
    assert "vidpose_http_requests_total" in names and "vidpose_batch_size_bucket" in names
    return names


def _exprs() -> dict[str, str]:
    out = {}
    for g in yaml.safe_load(ALERTS.read_text())["groups"]:
        for r in g["rules"]:
            out[f"alert {r['alert']}"] = r["expr"]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for t in panel.get("targets", []):
            out[f"panel {panel['title']!r} {t['refId']}"] = t["expr"]
    for var in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        if var["type"] == "query":
            out[f"variable {var['name']}"] = var["query"]["query"]
    return out


def test_every_metric_used_exists(series_names):
    missing = {where: sorted(set(METRIC.findall(expr)) - series_names)
               for where, expr in _exprs().items() if set(METRIC.findall(expr)) - series_names}
    assert not missing, f"metric names not defined in service/metrics.py: {missing}"


def test_dashboard_structure():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] == "vidpose"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    cells = set()
    for p in dash["panels"]:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, p["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert p["targets"] and all(t["expr"].strip() for t in p["targets"])
            assert all(t["datasource"] == p["datasource"] for t in p["targets"])


def test_dashboard_covers_the_issue():
    text = " ".join(_exprs().values())
    for needed in ("vidpose_queue_jobs", "vidpose_job_queue_wait_seconds_bucket", "vidpose_batch_size_sum",
                   "vidpose_frames_processed_total", "vidpose_job_duration_seconds_bucket",
                   'vidpose_jobs_finished_total{status="failed"}', "vidpose_gpu_memory_allocated_bytes",
                   "vidpose_http_requests_total"):
        assert needed in text, needed
    quantile_panels = [e for w, e in _exprs().items() if "vidpose_job_duration_seconds_bucket" in e]
    found = {re.search(r"histogram_quantile\(([\d.]+)", e).group(1) for e in quantile_panels}
    assert found >= {"0.5", "0.95", "0.99"}
