"""Writes the generated monitoring files from their sources:

- grafana/dashboards/vidpose.json          <- the panel list below
- ../kubernetes/base/prometheusrule.yaml    <- prometheus/alerts.yml (same groups, as a PrometheusRule)

    python deploy/monitoring/build.py           # rewrite both
    python deploy/monitoring/build.py --check   # exit 1 if a committed file is stale (tests do this)

Every PromQL metric name used here must exist in service/metrics.py (tests/deploy checks it).
API-side gauges are read from Redis at scrape time, so all API replicas report the same value:
they are aggregated with max(), never sum().
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DASHBOARD_PATH = HERE / "grafana" / "dashboards" / "vidpose.json"
ALERTS_PATH = HERE / "prometheus" / "alerts.yml"
PROMETHEUS_RULE_PATH = HERE.parent / "kubernetes" / "base" / "prometheusrule.yaml"

DS = {"type": "prometheus", "uid": "${datasource}"}
M = 'model=~"$model"'
RATE = "[$__rate_interval]"


def quantiles(metric: str, by: str = "", qs: tuple[float, ...] = (0.5, 0.95, 0.99), sel: str = M):
    """histogram_quantile targets for a histogram, one per quantile."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{sel}}}{RATE})))",
             f"p{round(q * 100)}{suffix}") for q in qs]


class Layout:
    """Places panels left to right on Grafana's 24-column grid, rows top to bottom."""

    def __init__(self):
        self.panels: list[dict] = []
        self.x = self.y = 0
        self.row_h = 0

    def _place(self, w: int, h: int) -> dict:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.y += 1

    def add(self, kind: str, title: str, targets: list[tuple[str, str]], unit: str, description: str,
            w: int = 12, h: int = 8) -> None:
        panel = {
            "type": kind, "title": title, "description": description, "datasource": DS,
            "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
                        for i, (expr, legend) in enumerate(targets)],
        }
        if kind == "stat":
            panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                                "colorMode": "value", "graphMode": "area"}
        self.panels.append(panel)


def dashboard() -> dict:
    g = Layout()
    g.row("Queue")
    g.add("stat", "Jobs queued or running", [(f"sum(max by (model) (vidpose_queue_jobs{{{M}}}))", "jobs")],
          "short", "Stream length of the selected models (queued + in progress).", w=6, h=4)
    g.add("stat", "Backlog frames", [("max(vidpose_backlog_frames)", "frames")], "short",
          "Frames of queued and running jobs; POST /estimate answers 429 past max_queued_frames.", w=6, h=4)
    g.add("stat", "Live workers", [("max(vidpose_live_workers)", "workers")], "short",
          "Workers with a heartbeat in Redis within worker_ttl_s.", w=6, h=4)
    g.add("stat", "Dead-letter jobs", [("max(vidpose_dead_letter_jobs)", "jobs")], "short",
          "Entries in the dead-letter stream (jobs delivered more than worker_max_deliveries times).",
          w=6, h=4)
    g.add("timeseries", "Queue depth by model",
          [(f"max by (model) (vidpose_queue_jobs{{{M}}})", "{{model}}")], "short",
          "Jobs queued or in progress per model (KEDA scales workers on this stream).")
    g.add("timeseries", "Queue wait", quantiles("vidpose_job_queue_wait_seconds"), "s",
          "Submit to a worker starting the job.")

    g.row("Throughput and batching")
    g.add("timeseries", "Frames per second",
          [(f"sum by (model) (rate(vidpose_frames_processed_total{{{M}}}{RATE}))", "{{model}}")], "short",
          "Result frames written per second, all workers.")
    g.add("timeseries", "Jobs per second",
          [(f"sum(rate(vidpose_jobs_submitted_total{{{M}}}{RATE}))", "submitted"),
           (f"sum by (status) (rate(vidpose_jobs_finished_total{RATE}))", "{{status}}")], "short",
          "Jobs submitted and jobs finished by terminal status.")
    g.add("timeseries", "Batch size",
          [(f"sum(rate(vidpose_batch_size_sum{{{M}}}{RATE}))"
            f" / sum(rate(vidpose_batch_size_count{{{M}}}{RATE}))", "mean")]
          + quantiles("vidpose_batch_size", qs=(0.95,)), "short",
          "Windows per forward pass of the dynamic batcher (max: worker_max_batch).")
    g.add("timeseries", "Batch wait", quantiles("vidpose_batch_wait_seconds", qs=(0.5, 0.95)), "s",
          "How long the oldest window of a batch waited (bounded by worker_max_wait_ms).")
    g.add("timeseries", "Model forward time (p95)",
          quantiles("vidpose_model_forward_seconds", by="stage", qs=(0.95,)), "s",
          "Per forward call: encode (backbone per frame) and decode (temporal model per window).", w=24)

    g.row("People and overlays")
    g.add("timeseries", "Detector time per frame",
          [(f"sum by (detector) (rate(vidpose_detect_seconds_sum{RATE}))"
            f" / sum by (detector) (rate(vidpose_detect_frames_total{RATE}))", "{{detector}}")], "s",
          "Person-detector seconds per frame (calls run a batch of detector_batch frames).", w=8)
    g.add("timeseries", "People per frame and new tracks",
          [(f"sum by (detector) (rate(vidpose_people_detected_total{RATE}))"
            f" / sum by (detector) (rate(vidpose_detect_frames_total{RATE}))", "per frame {{detector}}"),
           (f"sum(rate(vidpose_tracks_started_total{RATE}))", "tracks started/s")], "short",
          "Detections per frame before tracking, and how fast new track ids appear.", w=8)
    g.add("timeseries", "Overlay renders",
          [(f"sum by (outcome) (rate(vidpose_overlay_renders_total{RATE}))", "{{outcome}}")], "short",
          "Overlay videos rendered by the API per second, by outcome (each job's overlay renders once).",
          w=4)
    g.add("timeseries", "Overlay render time",
          quantiles("vidpose_overlay_render_seconds", qs=(0.5, 0.95), sel=""), "s",
          "Render + H.264 encode of one overlay (the first GET of a job's overlay.mp4 waits this long).",
          w=4)

    g.row("Latency")
    g.add("timeseries", "Job duration", quantiles("vidpose_job_duration_seconds"), "s",
          "Worker start to finish, per job.")
    g.add("timeseries", "HTTP latency (p95) by route",
          quantiles("vidpose_http_request_duration_seconds", by="route", qs=(0.95,), sel=""), "s",
          "Whole request, uploads included.")

    g.row("Errors")
    g.add("timeseries", "Failed job ratio",
          [(f'sum(rate(vidpose_jobs_finished_total{{status="failed"}}{RATE})) / '
            f'sum(rate(vidpose_jobs_finished_total{{status=~"succeeded|failed"}}{RATE}))', "failed")],
          "percentunit", "Failed / (succeeded + failed); cancellations excluded.", w=8)
    g.add("timeseries", "HTTP errors by status",
          [(f'sum by (status) (rate(vidpose_http_requests_total{{status=~"4..|5.."}}{RATE}))', "{{status}}")],
          "reqps", "4xx (client errors, 429 backpressure) and 5xx responses.", w=8)
    g.add("timeseries", "Rejected submissions by reason",
          [(f"sum by (reason) (rate(vidpose_jobs_rejected_total{RATE}))", "{{reason}}")], "reqps",
          "POST /estimate rejections by error code.", w=8)

    g.row("Workers and GPU")
    g.add("timeseries", "GPU memory",
          [("sum by (instance, device) (vidpose_gpu_memory_allocated_bytes)",
            "allocated {{instance}} {{device}}"),
           ("sum by (instance, device) (vidpose_gpu_memory_reserved_bytes)",
            "reserved {{instance}} {{device}}")],
          "bytes", "torch.cuda memory per worker and device (CUDA workers only).")
    g.add("timeseries", "Jobs held per worker",
          [("sum by (instance) (vidpose_worker_jobs_held)", "{{instance}}")], "short",
          "Jobs each worker holds (max: worker_max_jobs).")
    g.add("timeseries", "Workers per model version",
          [("count by (name, version, device) (vidpose_model_info)", "{{name}} {{version}} ({{device}})")],
          "short", "Follow a model rollout: old versions drain to zero as workers restart.")
    g.add("timeseries", "Heartbeat age",
          [("time() - vidpose_worker_last_heartbeat_timestamp_seconds", "{{instance}}"),
           ("vidpose_worker_up", "up {{instance}}")], "s",
          "Seconds since each worker's last Redis heartbeat (a worker is dead past worker_ttl_s).")

    for i, panel in enumerate(g.panels, start=1):
        panel["id"] = i
    return {
        "uid": "vidpose-overview",
        "title": "vidpose",
        "description": "vidpose service: queue, throughput, batching, latency, errors, workers and GPU.",
        "tags": ["vidpose"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "options": []},
            {"name": "model", "label": "Model", "type": "query", "datasource": DS,
             "definition": "label_values(vidpose_queue_jobs, model)",
             "query": {"query": "label_values(vidpose_queue_jobs, model)", "refId": "model"},
             "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "hide": 0, "refresh": 2,
             "options": [], "sort": 1},
        ]},
        "panels": g.panels,
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def prometheus_rule() -> str:
    groups = yaml.safe_load(ALERTS_PATH.read_text())["groups"]
    obj = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
           "metadata": {"name": "vidpose", "labels": {"app.kubernetes.io/part-of": "vidpose"}},
           "spec": {"groups": groups}}
    header = ("# GENERATED by deploy/monitoring/build.py from deploy/monitoring/prometheus/alerts.yml:\n"
              "# edit alerts.yml, then run `python deploy/monitoring/build.py`.\n")
    return header + yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=110)


def outputs() -> dict[Path, str]:
    return {DASHBOARD_PATH: json.dumps(dashboard(), indent=2) + "\n", PROMETHEUS_RULE_PATH: prometheus_rule()}


def main(argv: list[str]) -> int:
    stale = []
    for path, text in outputs().items():
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    for path in stale:
        print(f"stale: {path} (run python deploy/monitoring/build.py)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
