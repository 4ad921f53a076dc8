"""The README's commands write into data/ (synth) and runs/ (train): neither may show up in `git status`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", ["data/synth/train/clip_000.mp4", "runs/a/best.safetensors",
                                  "var/uploads/x"])
def test_generated_output_is_ignored(path):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    r = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path], capture_output=True)
    assert r.returncode == 0, f"{path} is not git-ignored"


def test_source_is_not_ignored():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    r = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "training/data.py"],
                       capture_output=True)
    assert r.returncode == 1
