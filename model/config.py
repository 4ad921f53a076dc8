"""PoseModelConfig: every knob of the pose model, and the named presets.

A checkpoint stores the config it was built from (see checkpoint.py), so a
model can always be rebuilt exactly from its file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass
class PoseModelConfig:
    name: str = "tiny-cpu"

    # --- backbone: an entry of model/backbones.py's registry -----------------
    backbone: str = "vit"  # "vit" (timm ViT + ViTPose simple head) or "movenet" (MobileNetV2-FPN + heads)
    width_mult: float = 1.0  # movenet: MobileNetV2 width (Thunder 1.75, Lightning 1.0)
    # vit fields
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    patch_size: int = 16
    patch_padding: int = 2  # ViTPose's patch conv uses padding 2
    input_size: tuple[int, int] = (256, 192)  # crop (H, W)
    heatmap_size: tuple[int, int] = (64, 48)  # (h, w) = input / 4
    num_keypoints: int = 17
    head_channels: int = 256  # width of the two deconv layers of the simple head
    drop_path_rate: float = 0.0
    freeze_backbone: bool | str = False  # True/"backbone", or "single-frame" (backbone + its head)

    # --- temporal encoder (GLS-Mamba) ---------------------------------------
    temporal: bool = True
    window: int = 5  # T frames: key frame in the middle (t-2 .. t+2)
    temporal_dim: int = 64  # reduced width of the spatio-temporal features
    temporal_stride: int = 8  # feature resolution as input stride: 4 (GPU), 8 or 16 (CPU)
    global_blocks: int = 1  # six-order global scan blocks
    local_blocks: int = 1  # windowed tube refinement blocks
    local_window: tuple[int, int] = (8, 6)  # (h, w) of a local tube, spans all T frames
    # how the temporal features reach the key frame's stride-4 features: "add" (1x1 projection, resized
    # and added) or "gated" (also per-pixel, per-frame gates from the same features that borrow the
    # neighbours' own stride-4 features: fine detail at a coarse scan's cost); both zero-initialised
    temporal_fusion: str = "add"
    # decoding: a joint the single-frame branch itself scores >= this keeps its single-frame keypoint;
    # the temporal keypoint replaces the joints the key frame alone is unsure of (> 1: always temporal)
    single_frame_keep_score: float = 2.0
    # pipeline rule (model/windows.py wants_recrop): when the key frame's single-frame confidence
    # (mean joint score) falls below recrop_drop x that of BOTH outermost neighbours, the key frame is
    # cropped again at the mean of their boxes and decoded from that crop (0: never) -- only where both
    # neighbours' confidences are at least recrop_min_confidence (a person was really seen there: not
    # on a track of a sign or a cone, whose confidences are low and jump about)
    recrop_drop: float = 0.0
    recrop_min_confidence: float = 0.25
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2

    # --- diffusion head (DiffPose / DiffusionPose style) ---------------------
    diffusion: bool = False
    diffusion_steps: int = 1  # S: DDIM steps at inference
    hypotheses: int = 5  # K: hypotheses averaged at inference
    train_timesteps: int = 1000
    signal_scale: float = 2.0  # GT heatmaps are scaled to [-s, s]
    diffusion_dim: int = 64
    diffusion_init: str = "noise"  # DDIM start: "noise" (Gaussian) or "prior" (the head's heatmaps, noised)
    diffusion_init_step: int = 500  # step the prior is noised to when diffusion_init == "prior"
    # "lookup": the noisy heatmap only steers which features each joint pools (docs: model/diffusion.py);
    # "lookup+conv": also two 3x3 convolutions over [noisy heatmap, features], so x0 can follow x_t
    diffusion_decoder: str = "lookup"

    # --- free-form -----------------------------------------------------------
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------------------
    @property
    def key_index(self) -> int:
        """Position of the key frame inside a window."""
        return self.window // 2

    @property
    def heatmap_stride(self) -> int:
        return self.input_size[1] // self.heatmap_size[1]

    @property
    def patch_grid(self) -> tuple[int, int]:
        h, w = self.input_size
        return h // self.patch_size, w // self.patch_size

    @property
    def temporal_grid(self) -> tuple[int, int]:
        h, w = self.input_size
        return h // self.temporal_stride, w // self.temporal_stride

    def replace(self, **changes) -> PoseModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> PoseModelConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown PoseModelConfig fields: {unknown}")
        kwargs = {}
        for k, v in d.items():
            # JSON turns tuples into lists; restore them.
            if isinstance(v, list) and k in ("input_size", "heatmap_size", "local_window"):
                v = tuple(v)
            kwargs[k] = v
        return cls(**kwargs)

    @classmethod
    def from_json(cls, s: str) -> PoseModelConfig:
        return cls.from_dict(json.loads(s))


def _vit(embed_dim: int, depth: int, num_heads: int) -> dict:
    return dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads)


def _movenet(name: str, width: float, size: int) -> PoseModelConfig:
    # Google's MoveNet SinglePose (weights via `vidpose import-tfjs`); temporal at 1/16 and the
    # diffusion head as in tiny-cpu so the CPU budget holds (bench/model_bench.py).
    return PoseModelConfig(
        name=name, backbone="movenet", width_mult=width, input_size=(size, size),
        heatmap_size=(size // 4, size // 4), temporal_stride=16, temporal_dim=32,
        local_window=(size // 32, size // 32), diffusion=True, diffusion_steps=1, hypotheses=1,
        diffusion_dim=32,
    )


PRESETS: dict[str, PoseModelConfig] = {
    # CPU / CI: trains from scratch in minutes. The temporal encoder dominates CPU cost
    # (bench/model_bench.py, 1 thread, CPU ms per key frame with feature reuse): 1/8 dim 64 ~1500,
    # 1/8 dim 32 ~90, 1/16 dim 64 ~61, 1/16 dim 32 ~43 — so 1/16, dim 32; head width 128
    # (256 costs ~17 ms more per key frame and buys nothing for a model trained from scratch).
    "tiny-cpu": PoseModelConfig(
        name="tiny-cpu", **_vit(192, 6, 3), head_channels=128, temporal_stride=16, temporal_dim=32,
        diffusion=True, diffusion_steps=1, hypotheses=1, diffusion_dim=32,
    ),
    # ViT-S, ViTPose-S layout (head 256, importable); temporal at 1/16, dim 64 so it still runs on CPU.
    "small": PoseModelConfig(
        name="small", **_vit(384, 12, 6), temporal_stride=16, temporal_dim=64,
        diffusion=True, diffusion_steps=1, hypotheses=5,
    ),
    # ViTPose-B + temporal at 1/4: the paper setting (GPU).
    "base": PoseModelConfig(
        name="base", **_vit(768, 12, 12), temporal_stride=4, temporal_dim=128,
        global_blocks=2, local_blocks=1, diffusion=True, diffusion_steps=1, hypotheses=5,
        diffusion_dim=96,
    ),
    "large": PoseModelConfig(
        name="large", **_vit(1024, 24, 16), temporal_stride=4, temporal_dim=128,
        global_blocks=2, local_blocks=1, diffusion=True, diffusion_steps=1, hypotheses=5,
        diffusion_dim=96,
    ),
    "movenet-thunder": _movenet("movenet-thunder", 1.75, 256),
    "movenet-lightning": _movenet("movenet-lightning", 1.0, 192),
    "huge": PoseModelConfig(
        name="huge", **_vit(1280, 32, 16), temporal_stride=4, temporal_dim=128,
        global_blocks=2, local_blocks=1, diffusion=True, diffusion_steps=1, hypotheses=5,
        diffusion_dim=96,
    ),
}


def get_preset(name: str, /, **overrides) -> PoseModelConfig:
    """A copy of a named preset, with field overrides applied."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
