"""The checkpoint `./run serve` serves by default ships with the package and runs."""

from __future__ import annotations

import numpy as np

from model.checkpoint import read_metadata
from service.settings import PACKAGE_MODELS_DIR, Settings
from service.worker.engine import Engine


def test_default_checkpoint_ships_loads_and_decodes():
    s = Settings(_env_file=None)
    path = PACKAGE_MODELS_DIR / f"{s.default_model}.safetensors"
    assert path.is_file(), f"default checkpoint missing: {path}"
    assert path.stat().st_size <= 30 * 2**20
    meta = read_metadata(path)
    cfg = meta["config"]
    assert cfg.name == "tiny-cpu" and cfg.temporal and cfg.diffusion
    assert len(meta["keypoints"]) == 17 and meta["info"]["train_data"]
    assert "metrics" in meta["info"]

    engine = Engine.load(s.default_model, PACKAGE_MODELS_DIR, device="cpu")
    rng = np.random.default_rng(0)
    crops = rng.standard_normal((engine.window, 3, *engine.input_size)).astype(np.float32)
    feats = engine.encode(crops)[None]  # one window of T frames
    kps = engine.decode(feats)
    assert kps.shape == (1, 17, 3) and np.isfinite(kps).all()
    h, w = engine.heatmap_size
    assert (kps[..., 0] >= -1).all() and (kps[..., 0] <= w).all() and (kps[..., 1] <= h).all()
