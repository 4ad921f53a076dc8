"""Export a training run as the checkpoint workers serve.

The served file is a vidpose .safetensors checkpoint whose metadata carries the
model config, keypoints, skeleton and `info`: training data, metrics, vidpose
version and git commit. Workers load `<models_dir>/<name>.safetensors` by name;
roll a new model out by copying the file there and restarting (or rolling) the
workers — see docs/deploy.md.
"""

from __future__ import annotations

from pathlib import Path

from model.checkpoint import load_checkpoint, save_checkpoint


def export_run(run_dir, out_path, which: str = "best", extra_info: dict | None = None, fp16: bool = False,
               decode_defaults: dict | None = None) -> Path:
    """decode_defaults: the served defaults of diffusion_steps / hypotheses (jobs may still override) and
    single_frame_keep_score (decoding, model.config);
    fp16: floating tensors stored as float16."""
    run = Path(run_dir)
    src = run / f"{which}.safetensors"
    if not src.is_file():
        fallback = run / "last.safetensors"
        if which == "best" and fallback.is_file():
            src = fallback
        else:
            raise FileNotFoundError(f"{src} not found: is {run} a `vidpose train` run directory?")
    model, meta = load_checkpoint(src)
    unknown = set(decode_defaults or {}) - {"diffusion_steps", "hypotheses", "single_frame_keep_score"}
    if unknown:
        raise ValueError("only diffusion_steps, hypotheses and single_frame_keep_score can change at export, "
                         f"not {sorted(unknown)}")
    if decode_defaults:
        model.cfg = model.cfg.replace(**decode_defaults)
    info = dict(meta.get("info") or {})
    info.pop("train_config", None)  # the run's config.yaml holds it; keep the served metadata short
    info.update(extra_info or {})
    info["exported_from"] = str(src)
    import torch

    return save_checkpoint(model, out_path, info=info, keypoints=meta.get("keypoints"),
                           skeleton=meta.get("skeleton"), storage_dtype=torch.float16 if fp16 else None)
