"""TrainConfig: one training run, mapped from a YAML/TOML file or a preset name.

A run directory keeps `config.yaml` (the full config after CLI overrides), so
`vidpose train --config RUN/config.yaml` reproduces it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class TrainConfig:
    # model
    model: str = "tiny-cpu"  # preset name (model.config.PRESETS)
    model_overrides: dict = field(default_factory=dict)  # PoseModelConfig fields to change
    init_checkpoint: str | None = None  # start from weights (e.g. an imported ViTPose .safetensors)
    freeze_backbone: bool | str | None = None  # None: the model config decides; or "single-frame"
    # parameter-name prefixes to train (e.g. [diffusion.]); empty: all that freeze_backbone leaves
    train_only: list[str] = field(default_factory=list)

    # data: specs "synth:ROOT", "posetrack:ANNOTATIONS:IMAGE_ROOT", "coco:ANN_FILE:IMAGE_ROOT", "clips:ROOT"
    train_data: list[str] = field(default_factory=list)
    val_data: list[str] = field(default_factory=list)
    sigma: float = 3.0
    augment: bool = True
    corrupt_prob: float = 0.75  # features:CACHE data: share of training windows whose key frame is corrupted
    num_workers: int = 2

    # optimisation
    steps: int = 2000
    batch_size: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    seed: int = 0

    # bookkeeping
    out: str = "runs/train"
    log_every: int = 20
    val_every: int = 500  # also at the last step; 0 = only at the end
    ckpt_every: int = 500
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads, 0 = torch's default
    amp: str = "auto"  # auto (bf16 on CUDA) | bf16 | off

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown} (known: {sorted(names)})")
        return cls(**d)

    @classmethod
    def load(cls, source: str) -> TrainConfig:
        """A .yaml/.yml/.toml file, or a model preset name (defaults for everything else)."""
        path = Path(source)
        if path.suffix in (".yaml", ".yml", ".toml"):
            if not path.is_file():
                raise FileNotFoundError(f"training config {path} not found")
            if path.suffix == ".toml":
                import tomllib

                data = tomllib.loads(path.read_text())
            else:
                data = yaml.safe_load(path.read_text()) or {}
            if not isinstance(data, dict):
                raise ValueError(f"{path}: expected a mapping at the top level")
            return cls.from_dict(data)
        from model.config import PRESETS

        if source not in PRESETS:
            raise ValueError(f"{source!r} is neither a config file (.yaml/.toml) nor a preset "
                             f"{sorted(PRESETS)}")
        return cls(model=source)

    def save(self, path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
