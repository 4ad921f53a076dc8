"""Export a training run as the checkpoint workers serve.

The served file is a vidpose .safetensors checkpoint whose metadata carries the
model config, keypoints, skeleton and `info`: training data, metrics, vidpose
version and git commit. Workers load `<models_dir>/<name>.safetensors` by name;
roll a new model out by copying the file there and restarting (or rolling) the
workers — see docs/deploy.md.
"""

from __future__ import annotations

from pathlib import Path

from model.checkpoint import load_checkpoint, read_metadata, save_checkpoint

# Where third-party weights came from and under which licence: carried from the initial checkpoint
# into every model trained from it, so a served file always names its sources.
PROVENANCE_KEYS = ("license", "attribution", "source", "source_model", "source_package", "generated_by")


def inherited_provenance(info: dict, depth: int = 0) -> dict:
    """The provenance fields of `info`, else of the checkpoint it was initialised from (followed
    through train_config.init_checkpoint, a few levels deep); {} when none can be found."""
    found = {k: info[k] for k in PROVENANCE_KEYS if k in info}
    if found or depth >= 8:
        return found
    init = (info.get("train_config") or {}).get("init_checkpoint")
    if init and Path(init).is_file():
        return inherited_provenance(read_metadata(init).get("info") or {}, depth + 1)
    return {}


DECODE_DEFAULTS = ("diffusion_steps", "hypotheses", "single_frame_keep_score", "recrop_drop",
                   "recrop_min_confidence")


def export_run(run_dir, out_path, which: str = "best", extra_info: dict | None = None, fp16: bool = False,
               decode_defaults: dict | None = None) -> Path:
    """decode_defaults: the served defaults of diffusion_steps / hypotheses (jobs may still override) and
    single_frame_keep_score and recrop_drop (decoding rules, model.config);
    fp16: floating tensors stored as float16."""
    run = Path(run_dir)
    src = run if run.is_file() else run / f"{which}.safetensors"  # a file: re-export it (new defaults)
    if not src.is_file():
        fallback = run / "last.safetensors"
        if which == "best" and fallback.is_file():
            src = fallback
        else:
            raise FileNotFoundError(f"{src} not found: is {run} a `vidpose train` run directory?")
    model, meta = load_checkpoint(src)
    unknown = set(decode_defaults or {}) - set(DECODE_DEFAULTS)
    if unknown:
        raise ValueError(f"only {', '.join(DECODE_DEFAULTS)} can change at export, not {sorted(unknown)}")
    if decode_defaults:
        model.cfg = model.cfg.replace(**decode_defaults)
    info = dict(meta.get("info") or {})
    info.update(inherited_provenance(info))
    info.pop("train_config", None)  # the run's config.yaml holds it; keep the served metadata short
    info.update(extra_info or {})
    # a re-exported file keeps where it was first exported from
    info["reexported_from" if run.is_file() and "exported_from" in info else "exported_from"] = str(src)
    import torch

    return save_checkpoint(model, out_path, info=info, keypoints=meta.get("keypoints"),
                           skeleton=meta.get("skeleton"), storage_dtype=torch.float16 if fp16 else None)
