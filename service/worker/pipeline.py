"""One model step over a batch of windows, and keypoints back to image pixels.

run_windows is what the batch scheduler calls: crops not yet encoded are
encoded in one go (each (frame, track) exactly once, see windows.py), then the
windows' cached features are stacked and decoded together. With the model's re-crop rule on
(model/windows.py wants_recrop), windows whose key frame's single-frame confidence dropped below
`recrop_drop` x both outermost neighbours' are decoded once more, from their key frame cropped at
the neighbours' mean box (Window.alt), and those keypoints are the result.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from model.heatmaps import heatmap_to_image
from model.windows import wants_recrop
from service import contract
from service.metrics import RECROPS
from service.worker.engine import DecodeOptions, Engine
from service.worker.windows import CropRef, Window


def encode_missing(engine: Engine, windows: list[Window], max_encode: int) -> int:
    """Encode every crop of these windows that has no features yet; returns how many were encoded."""
    todo: dict[int, CropRef] = {}
    for w in windows:
        for ref in w.refs:
            if ref.features is None and id(ref) not in todo:
                if ref.crop is None:
                    raise RuntimeError(f"crop of frame {ref.frame} track {ref.track_id} was freed before use")
                todo[id(ref)] = ref
    refs = list(todo.values())
    for i in range(0, len(refs), max_encode):
        chunk = refs[i:i + max_encode]
        feats = engine.encode(torch.from_numpy(np.stack([r.crop for r in chunk])))
        for ref, f in zip(chunk, feats, strict=True):
            ref.features = f
            ref.crop = None
            ref.encodes += 1
    return len(refs)


def run_windows(engine: Engine, windows: list[Window], options: DecodeOptions | None = None,
                max_encode: int = 32) -> np.ndarray:
    """Windows -> (B, K, 4) key-frame keypoints in heatmap cells: x, y, score, and the diffusion
    hypotheses' spread (NaN when the job draws fewer than 2)."""
    encode_missing(engine, windows, max_encode)
    feats = torch.stack([torch.stack([r.features for r in w.refs]) for w in windows])
    out = engine.decode(feats, options, seeds=[window_seed(w) for w in windows], with_spread=True)
    again = recrop_wanted(engine, windows, max_encode)
    if again:
        alt = engine.encode(torch.from_numpy(np.stack([engine.input_spec.normalize(windows[i].alt.crop)
                                                       for i in again])))
        feats = feats[again].clone()
        feats[:, len(windows[0].refs) // 2] = alt
        out[again] = engine.decode(feats, options, seeds=[window_seed(windows[i]) for i in again],
                                   with_spread=True)
        for i in again:
            windows[i].recropped = True
        RECROPS.labels(engine.name).inc(len(again))
    return out


def recrop_wanted(engine: Engine, windows: list[Window], max_encode: int = 32) -> list[int]:
    """Indices of the windows whose key frame is to be decoded again from its re-crop (each crop's
    single-frame confidence is computed once and kept on its CropRef)."""
    drop, sure = engine.recrop_drop, float(engine.cfg.recrop_min_confidence)
    candidates = [w for w in windows if drop > 0 and w.alt is not None]
    todo = {id(r): r for w in candidates for r in (w.refs[0], w.key_ref, w.refs[-1]) if r.confidence is None}
    refs = list(todo.values())
    for i in range(0, len(refs), max_encode):
        chunk = refs[i:i + max_encode]
        for ref, c in zip(chunk, engine.confidence(torch.stack([r.features for r in chunk])), strict=True):
            ref.confidence = float(c)
    return [i for i, w in enumerate(windows) if drop > 0 and w.alt is not None
            and wants_recrop(w.key_ref.confidence, w.refs[0].confidence, w.refs[-1].confidence, drop, sure)]


def window_seed(window: Window) -> int:
    """The diffusion-noise seed of a window: a hash of its track and key frame, so the same clip with the
    same options decodes to the same keypoints on any worker, in any batch, on any re-run or resume."""
    digest = hashlib.sha256(f"{window.track_id}:{window.key_frame}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def to_instance(window: Window, kps_hm: np.ndarray, engine: Engine, width: int, height: int) -> dict:
    """One window's decoded keypoints -> the result instance of its key frame (service/contract.py:
    image pixels clipped to the frame, scores in [0, 1])."""
    ref = window.key_ref
    center, size = (window.alt.center, window.alt.size) if window.recropped else (ref.center, ref.size)
    pts = heatmap_to_image(kps_hm[:, :3], center, size, engine.input_size, engine.heatmap_size)
    pts[:, 0] = np.clip(pts[:, 0], 0.0, width - 1.0)
    pts[:, 1] = np.clip(pts[:, 1], 0.0, height - 1.0)
    std = None
    if kps_hm.shape[1] > 3 and np.isfinite(kps_hm[:, 3]).all():  # heatmap cells -> image pixels
        std = kps_hm[:, 3] * float(size[0]) / engine.heatmap_size[1]
    bbox = window.alt.bbox if window.recropped else ref.box.bbox
    return contract.instance(ref.track_id, bbox, pts, ref.box.score, keypoint_std=std)
