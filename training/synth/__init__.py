"""Synthetic video pose data (`vidpose synth`): articulated people, occluders, blur, camera shake.

    from training.synth import SynthConfig, generate
    generate("data/synth", clips=50, cfg=SynthConfig(width=320, height=240, frames=30), seed=0)

Output is a PoseTrack18-format dataset (see writer.py and docs/data.md) that
training.datasets.PoseTrackDataset / synthetic_dataset load unchanged.
"""

from training.synth.clip import SynthConfig, make_clip
from training.synth.writer import generate

__all__ = ["SynthConfig", "generate", "make_clip"]
