"""Model files: one `.safetensors` file per model, never pickled.

Tensors are the model's state dict; string metadata holds
    format="vidpose", format_version, config (PoseModelConfig JSON),
    keypoints (names JSON), skeleton (0-based pairs JSON), info (free-form JSON).
`read_metadata` reads only the header, so workers can list models cheaply.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from model.config import PoseModelConfig
from model.keypoints import COCO_KEYPOINTS, COCO_SKELETON

FORMAT = "vidpose"
FORMAT_VERSION = "1"

# Fields that change how a model runs, not which weights it has: they may differ
# between a file and the config it is loaded into.
RUNTIME_FIELDS = frozenset({
    "name", "freeze_backbone", "drop_path_rate", "diffusion_steps", "hypotheses",
    "diffusion_init", "diffusion_init_step", "extra", "recrop_drop",
    "recrop_min_confidence",
})


class CheckpointError(ValueError):
    """A model file that is not a vidpose checkpoint, or does not fit the requested model."""


def save_checkpoint(model, path, info: dict | None = None, keypoints: list[str] | None = None,
                    skeleton: list | None = None, storage_dtype=None) -> Path:
    """Write `model` (a PoseModel) to a single .safetensors file (atomically: temp file + rename).

    storage_dtype (e.g. torch.float16): floating tensors are stored in it (halves the file);
    loading casts them back to the model's parameter dtype.
    """
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if storage_dtype is not None:
        tensors = {k: v.to(storage_dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    k = model.cfg.num_keypoints
    coco = k == len(COCO_KEYPOINTS)
    if keypoints is None:
        keypoints = list(COCO_KEYPOINTS) if coco else [f"joint_{i}" for i in range(k)]
    if skeleton is None:
        skeleton = [list(p) for p in COCO_SKELETON] if coco else []
    if len(keypoints) != k:
        raise ValueError(f"{len(keypoints)} keypoint names for a model with {k} keypoints")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.cfg.to_json(),
        "keypoints": json.dumps(list(keypoints)),
        "skeleton": json.dumps([list(p) for p in skeleton]),
        "info": json.dumps(info or {}, sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)  # the temp file is private (0600); a model file is for any reader (workers)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _raw_metadata(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise CheckpointError(f"{path}: not a safetensors file ({e})") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vidpose checkpoint (safetensors metadata has no "
                              f"format='{FORMAT}'; a ViTPose .pth needs `vidpose import-vitpose`)")
    missing = [k for k in ("format_version", "config") if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: vidpose metadata lacks {missing}")
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {meta['format_version']} is not supported "
                              f"(this vidpose reads version {FORMAT_VERSION})")
    return meta


def read_metadata(path) -> dict:
    """Header only, no tensors: config, keypoints, skeleton, info, format_version, num_parameters."""
    meta = _raw_metadata(path)
    try:
        cfg = PoseModelConfig.from_json(meta["config"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad config in metadata: {e}") from e
    n = 0
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            if not k.endswith("num_batches_tracked"):
                numel = 1
                for s in f.get_slice(k).get_shape():
                    numel *= s
                n += numel
    return {
        "config": cfg,
        "keypoints": json.loads(meta.get("keypoints", "[]")),
        "skeleton": json.loads(meta.get("skeleton", "[]")),
        "info": json.loads(meta.get("info", "{}")),
        "format_version": meta["format_version"],
        "num_parameters": n,
    }


def config_differences(a: PoseModelConfig, b: PoseModelConfig, ignore=RUNTIME_FIELDS) -> list[str]:
    """'field: a vs b' for every weight-relevant field that differs."""
    da, db = a.to_dict(), b.to_dict()
    return [f"{k}: {da[k]!r} vs {db[k]!r}" for k in da if k not in ignore and da[k] != db[k]]


def _load_state(model, tensors: dict, path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:8]}{' ...' if len(shapes) > 8 else ''}")
        raise CheckpointError(f"{path}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(tensors, strict=True)


def load_checkpoint(path, map_location="cpu", expect_config: PoseModelConfig | None = None,
                    overrides: dict | None = None):
    """Build PoseModel from the file's config and load its weights strictly.

    expect_config: fail (naming the fields) unless the file was written for this
    model (runtime-only fields such as hypotheses may differ; the file's win).
    overrides: runtime-only fields to change, e.g. {"hypotheses": 1}.
    Returns (model, meta) with meta as read_metadata's.
    """
    from model.pose_model import PoseModel

    meta = read_metadata(path)
    cfg = meta["config"]
    if expect_config is not None:
        diff = config_differences(cfg, expect_config)
        if diff:
            raise CheckpointError(f"{path} was written for a different model config (file vs expected): "
                                  + "; ".join(diff))
    if overrides:
        bad = sorted(set(overrides) - RUNTIME_FIELDS)
        if bad:
            raise CheckpointError(f"only runtime fields {sorted(RUNTIME_FIELDS)} can be overridden "
                                  f"when loading; got {bad}")
        cfg = cfg.replace(**overrides)
        meta["config"] = cfg
    model = PoseModel(cfg)
    tensors = load_file(str(path), device="cpu")
    _load_state(model, tensors, path)
    model.to(map_location)
    model.eval()
    return model, meta


def load_state_into(model, path) -> dict:
    """Load a checkpoint's weights into an existing PoseModel (e.g. to resume or fine-tune).

    Fails, naming the differing config fields or keys, if the file was written
    for another model. Returns the file's metadata.
    """
    meta = read_metadata(path)
    diff = config_differences(meta["config"], model.cfg)
    if diff:
        raise CheckpointError(f"{path} was written for a different model config (file vs model): "
                              + "; ".join(diff))
    device = next(model.parameters()).device
    _load_state(model, load_file(str(path), device=str(device)), path)
    return meta
