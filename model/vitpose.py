"""Import ViTPose (mmpose-format) checkpoints into vidpose model files.

ViTPose's key names are ours (backbone.py keeps them); two things differ:
  * `backbone.pos_embed` has num_patches + 1 entries and ViTPose adds the
    class-token slot to every patch: ours = ck[:, 1:] + ck[:, :1];
  * temporal and diffusion parts do not exist in ViTPose: they keep their
    initialisation, whose zero-initialised outputs leave the heatmaps equal to
    ViTPose's (see pose_model.py).
The file is read with torch.load(weights_only=True): never unpickles code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from model.config import PoseModelConfig, get_preset

# Keys that map by name (ours == ViTPose's), besides the patch embedding and last_norm.
_HEAD_SUFFIXES = (
    "deconv_layers.0.weight",
    "deconv_layers.1.weight", "deconv_layers.1.bias", "deconv_layers.1.running_mean",
    "deconv_layers.1.running_var", "deconv_layers.1.num_batches_tracked",
    "deconv_layers.3.weight",
    "deconv_layers.4.weight", "deconv_layers.4.bias", "deconv_layers.4.running_mean",
    "deconv_layers.4.running_var", "deconv_layers.4.num_batches_tracked",
    "final_layer.weight", "final_layer.bias",
)
_BLOCK_SUFFIXES = (
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
)
# Present in some ViTPose files, carry nothing a top-down heatmap model uses.
_IGNORED = ("backbone.cls_token",)


class ViTPoseImportError(ValueError):
    pass


def read_vitpose_state(src) -> dict[str, torch.Tensor]:
    """Tensors of an mmpose checkpoint ({"state_dict": ...} or a bare state dict, "module." prefixes ok)."""
    try:
        ck = torch.load(str(src), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ViTPoseImportError(f"{src}: cannot read as a weights-only torch checkpoint: {e}") from e
    if isinstance(ck, dict) and isinstance(ck.get("state_dict"), dict):
        ck = ck["state_dict"]
    if not isinstance(ck, dict) or not ck:
        raise ViTPoseImportError(f"{src}: expected a state dict (or {{'state_dict': ...}})")
    out = {}
    for k, v in ck.items():
        if not isinstance(v, torch.Tensor):
            continue
        k = k[len("module."):] if k.startswith("module.") else k
        if k.startswith("head."):  # mmpose 1.x names the simple head `head`
            k = "keypoint_head." + k[len("head."):]
        out[k] = v
    return out


def vitpose_to_vidpose(src: dict[str, torch.Tensor], cfg: PoseModelConfig) -> dict[str, torch.Tensor]:
    """Map a ViTPose state dict onto our backbone + keypoint_head keys, checking every shape."""
    gh, gw = cfg.patch_grid
    want = ["backbone.patch_embed.proj.weight", "backbone.patch_embed.proj.bias",
            "backbone.last_norm.weight", "backbone.last_norm.bias"]
    want += [f"backbone.blocks.{i}.{s}" for i in range(cfg.depth) for s in _BLOCK_SUFFIXES]
    want += [f"keypoint_head.{s}" for s in _HEAD_SUFFIXES]
    out: dict[str, torch.Tensor] = {}
    errors: list[str] = []

    pos = src.get("backbone.pos_embed")
    if pos is None:
        errors.append("missing backbone.pos_embed")
    elif tuple(pos.shape) != (1, gh * gw + 1, cfg.embed_dim):
        errors.append(f"backbone.pos_embed: shape {tuple(pos.shape)}, expected (1, {gh * gw + 1}, "
                      f"{cfg.embed_dim}) for a {gh}x{gw} patch grid plus the class slot")
    else:  # ViTPose: x + pos[:, 1:] + pos[:, :1]
        out["backbone.pos_embed"] = pos[:, 1:] + pos[:, :1]

    for k in want:
        if k not in src:
            errors.append(f"missing {k}")
        else:
            out[k] = src[k]
    wanted = set(want)
    extra = sorted(k for k in src if k not in wanted and k != "backbone.pos_embed" and k not in _IGNORED)
    if extra:
        errors.append(f"unexpected keys: {extra[:8]}{' ...' if len(extra) > 8 else ''}")
    if errors:
        n_blocks = len({k.split(".")[2] for k in src if k.startswith("backbone.blocks.")})
        hint = f" (file has {n_blocks} blocks, preset has {cfg.depth})" if n_blocks != cfg.depth else ""
        raise ViTPoseImportError(f"not a ViTPose checkpoint for preset {cfg.name!r}{hint}: "
                                 + "; ".join(errors[:12]))
    return out


def convert_vitpose(src_pth, out_safetensors, preset: str = "base", **overrides) -> Path:
    """ViTPose .pth -> vidpose .safetensors (backbone frozen in the saved config).

    Temporal/diffusion parts are left at their initialisation; both are
    zero-initialised residuals, so the model serves exactly like ViTPose until
    they are trained. `overrides` are PoseModelConfig fields (e.g. diffusion=False).
    """
    from model.checkpoint import _load_state, save_checkpoint
    from model.pose_model import PoseModel

    cfg = get_preset(preset, **overrides).replace(freeze_backbone=True)
    mapped = vitpose_to_vidpose(read_vitpose_state(src_pth), cfg)
    model = PoseModel(cfg)
    state = model.state_dict()
    shape_errors = [f"{k}: file {tuple(v.shape)} vs model {tuple(state[k].shape)}"
                    for k, v in mapped.items() if tuple(v.shape) != tuple(state[k].shape)]
    if shape_errors:
        raise ViTPoseImportError(f"{src_pth}: does not fit preset {preset!r} "
                                 f"(embed_dim {cfg.embed_dim}, depth {cfg.depth}, "
                                 f"{cfg.num_keypoints} keypoints): " + "; ".join(shape_errors[:8]))
    state.update({k: v.to(state[k].dtype) for k, v in mapped.items()})
    _load_state(model, state, src_pth)
    info = {"source": "vitpose", "source_file": Path(src_pth).name, "preset": preset}
    return save_checkpoint(model, out_safetensors, info=info)
