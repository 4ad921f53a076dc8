"""The backbone registry: `PoseModelConfig.backbone` name -> how to build it and what it expects.

Each entry declares
  - its input (`InputSpec`: crop size, channel order, per-channel mean/std on 0..255 pixels),
  - a builder returning the per-frame `backbone` (crop -> cached feature map) and its single-frame
    `head`, which exposes
        head.channels   {16: c, 8: c, 4: c}  channels of `pyramid`'s outputs (the diffusion head's cond)
        head.pyramid(feats) -> (f16, f8, f4)  f4 is where the temporal features are fused
        head.predict(f4) -> {"heatmaps": (B, K, h, w) in [0, 1]-ish, ...backbone-specific outputs}
        head.decode(heatmaps, prediction) -> (B, K, 3) x, y in heatmap cells (integer = cell centre), score
        head.hypothesis_points(heatmaps, prediction) -> (B, K, 2) x, y of one diffusion hypothesis,
                                        sub-cell from its own heatmap (PoseModel.keypoint_spread)
  - `feature_channels(cfg)`: channels of the cached per-frame features (the temporal encoder's input).

Adding a backbone is one `register(...)` call here; PoseModel, the worker's crops, training transforms
and evaluation all read these declarations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model.config import PoseModelConfig
from model.heatmaps import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class InputSpec:
    size: tuple[int, int]  # crop (H, W); the crop box is grown to this aspect
    mean: tuple[float, float, float]  # per channel, on 0..255 pixel values, in `channel_order`
    std: tuple[float, float, float]
    channel_order: str = "RGB"

    def normalize(self, crop_rgb_uint8: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 3xHxW float32 as the backbone wants it."""
        x = crop_rgb_uint8.astype(np.float32)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))


@dataclass(frozen=True)
class BackboneEntry:
    build: Callable  # cfg -> (backbone nn.Module, head nn.Module)
    input_spec: Callable[[PoseModelConfig], InputSpec]
    feature_channels: Callable[[PoseModelConfig], int]
    description: str
    # what runs the backbone on a CPU worker by default: "torch", or "onnxruntime" (the module exported
    # once at load: model/ort_backbone.py; measured ~3x faster for MoveNet's MobileNetV2)
    cpu_runtime: str = "torch"


BACKBONES: dict[str, BackboneEntry] = {}


def register(name: str, entry: BackboneEntry) -> None:
    if name in BACKBONES:
        raise ValueError(f"backbone {name!r} is registered twice")
    BACKBONES[name] = entry


def entry(cfg_or_name) -> BackboneEntry:
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name.backbone
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; registered: {sorted(BACKBONES)}")
    return BACKBONES[name]


def input_spec(cfg: PoseModelConfig) -> InputSpec:
    return entry(cfg).input_spec(cfg)


def build_backbone(cfg: PoseModelConfig):
    """(backbone, head) for cfg.backbone."""
    return entry(cfg).build(cfg)


# --------------------------------------------------------------------------- ViT (ViTPose layout)
_IMAGENET_MEAN = tuple(float(v) * 255 for v in IMAGENET_MEAN)  # heatmaps.normalize_crop's stats, on 0..255
_IMAGENET_STD = tuple(float(v) * 255 for v in IMAGENET_STD)


def _build_vit(cfg: PoseModelConfig):
    from model.backbone import SimpleHead, ViTBackbone

    gh, gw = cfg.patch_grid
    if (gh * 4, gw * 4) != tuple(cfg.heatmap_size):
        raise ValueError(f"heatmap_size {tuple(cfg.heatmap_size)} must be 4x the patch grid {(gh, gw)}")
    return ViTBackbone(cfg), SimpleHead(cfg.embed_dim, cfg.head_channels, cfg.num_keypoints)


register("vit", BackboneEntry(
    build=_build_vit,
    input_spec=lambda cfg: InputSpec(tuple(cfg.input_size), _IMAGENET_MEAN, _IMAGENET_STD),
    feature_channels=lambda cfg: cfg.embed_dim,
    description="plain ViT (timm) at 1/16 + ViTPose's deconv head; ViTPose weights via import-vitpose",
))


# --------------------------------------------------------------------------- MoveNet SinglePose
def _build_movenet(cfg: PoseModelConfig):
    from model.movenet import MoveNetBackbone, MoveNetHead

    h, w = cfg.input_size
    if h != w or h % 32:
        raise ValueError(f"movenet needs a square input whose side is a multiple of 32, got {(h, w)}")
    if tuple(cfg.heatmap_size) != (h // 4, w // 4):
        raise ValueError(f"movenet's heatmaps are at 1/4: heatmap_size must be {(h // 4, w // 4)}")
    backbone = MoveNetBackbone(cfg.width_mult)
    return backbone, MoveNetHead(backbone.out_channels, cfg.num_keypoints, tuple(cfg.heatmap_size))


register("movenet", BackboneEntry(
    build=_build_movenet,
    input_spec=lambda cfg: InputSpec(tuple(cfg.input_size), (127.5,) * 3, (127.5,) * 3),
    feature_channels=lambda cfg: 24,
    description="Google's MoveNet SinglePose: MobileNetV2 + FPN at 1/4, centre/heatmap/regression/offset "
                "heads; weights via import-tfjs",
    cpu_runtime="onnxruntime",
))
