"""Which models exist: what workers registered in Redis, else the checkpoints in models_dir.

Checkpoint headers are read without torch or safetensors' loader: a .safetensors
file starts with an 8-byte little-endian header length, then that many bytes of
JSON whose "__metadata__" object holds string metadata (vidpose writes format,
config JSON, keypoints, skeleton and info JSON there).
"""

from __future__ import annotations

import hashlib
import json
import struct
from functools import lru_cache
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024
# Config fields worth showing in GET /models.
SUMMARY_FIELDS = ("backbone", "width_mult", "embed_dim", "depth", "num_heads", "patch_size", "input_size",
                  "heatmap_size", "num_keypoints", "temporal", "window", "diffusion", "diffusion_steps",
                  "hypotheses")
# Fields that describe one backbone only (a config keeps every field; showing ViT's depth for a
# MoveNet model would mislead). A config without "backbone" predates the registry: a ViT.
BACKBONE_FIELDS = {"vit": ("embed_dim", "depth", "num_heads", "patch_size"), "movenet": ("width_mult",)}


def _summary(config: dict) -> dict:
    backbone = config.get("backbone", "vit")
    foreign = {f for b, fields in BACKBONE_FIELDS.items() if b != backbone for f in fields}
    return {k: config[k] for k in SUMMARY_FIELDS if config.get(k) is not None and k not in foreign}


def read_safetensors_header(path: str | Path) -> tuple[dict, bytes]:
    """(parsed header, raw header bytes) of a .safetensors file; ValueError if it is not one."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("file too short for a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > MAX_HEADER_BYTES:
            raise ValueError(f"implausible safetensors header length {n}")
        raw = f.read(n)
    if len(raw) != n:
        raise ValueError("truncated safetensors header")
    try:
        header = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"safetensors header is not JSON: {e}") from e
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not an object")
    return header, raw


def file_hash(path: Path) -> str:
    """'sha256:<12 hex>' of the whole file: the version workers report for a checkpoint without one."""
    st = path.stat()
    return _file_hash(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:  # size/mtime: recompute when the file changes
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()[:12]


def config_summary(info: dict) -> dict:
    """The SUMMARY_FIELDS of a model config, or of a model info (under "config", or flat)."""
    source = info.get("config") if isinstance(info.get("config"), dict) and info["config"] else info
    return _summary(source)


def checkpoint_info(path: str | Path) -> dict:
    """{name, version, config summary, keypoint_names, skeleton, window, info} of a vidpose checkpoint (or
    {name, error}): the fields of a service.contract.ModelInfo."""
    path = Path(path)
    entry: dict = {"name": path.stem}
    try:
        header, _ = read_safetensors_header(path)
        meta = header.get("__metadata__") or {}
        if meta.get("format") != "vidpose":
            raise ValueError("not a vidpose checkpoint (metadata format != 'vidpose')")
        config = json.loads(meta.get("config", "{}"))
        info = json.loads(meta.get("info", "{}"))
        entry["config"] = _summary(config)
        entry["keypoint_names"] = json.loads(meta.get("keypoints", "[]"))
        entry["skeleton"] = json.loads(meta.get("skeleton", "[]"))
        entry["window"] = config.get("window")
        entry["info"] = info
        entry["version"] = str(info.get("version") or file_hash(path))
    except (OSError, ValueError) as e:
        entry["error"] = str(e)
    return entry


def scan_models_dir(models_dir: str | Path) -> list[dict]:
    """checkpoint_info for every `*.safetensors` in the directory, sorted by name."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return [checkpoint_info(p) for p in sorted(root.glob("*.safetensors"))]


def worker_models(worker: dict) -> list[str]:
    """Model names a live worker's heartbeat info says it serves ('model' str or 'models' list)."""
    names: list[str] = []
    for key in ("model", "models"):
        value = worker.get(key)
        if isinstance(value, str) and value:
            names.append(value)
        elif isinstance(value, list):
            names += [str(v) for v in value]
    return names


def served_models(workers: list[dict]) -> list[str] | None:
    """Sorted names of the models these live workers serve; None when one of them has not said what it
    serves (it might serve any model)."""
    lists = [worker_models(w) for w in workers]
    if not all(lists):
        return None
    return sorted({m for names in lists for m in names})


def model_card(models_dir: str | Path, name: str) -> dict | None:
    """The short model card GET /models shows next to the model picker: {summary, trained_on, accuracy
    [{data, metric, value}], doc}. From `<name>.card.json` beside the checkpoint when there is one (the
    shipped models have one, summarising docs/model-card.md and docs/results.md), else from the
    checkpoint's metadata (`info.description`, `info.train_data`, `info.metrics`, as `vidpose export`
    writes them); None when neither says anything."""
    root = Path(models_dir)
    sidecar = root / f"{name}.card.json"
    if sidecar.is_file():
        try:
            card = json.loads(sidecar.read_text())
            if isinstance(card, dict):
                return card
        except (OSError, ValueError):
            pass
    path = root / f"{name}.safetensors"
    info = checkpoint_info(path).get("info") if path.is_file() else None
    if not isinstance(info, dict):
        return None
    card: dict = {}
    if info.get("description"):
        card["summary"] = str(info["description"])
    if info.get("train_data"):
        data = info["train_data"]
        card["trained_on"] = ", ".join(map(str, data)) if isinstance(data, list) else str(data)
    metrics = info.get("metrics")
    if isinstance(metrics, dict):
        card["accuracy"] = [{"data": "its validation split", "metric": k, "value": v}
                            for k, v in metrics.items() if isinstance(v, int | float)]
    return card or None
