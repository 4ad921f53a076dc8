"""The re-crop rule (model/windows.py wants_recrop) on a feature cache, decided and decoded as the
worker does it (service/worker/pipeline.py run_windows).

A window's key frame is cropped again at the mean of its outermost neighbours' boxes when its own
single-frame confidence falls below `recrop_drop` x both of theirs; the key's features from that crop
replace the cached ones and the window is decoded again. The cache holds features only, so the key
frames are decoded from the clip again (the clean ones), or rebuilt exactly as the cache made them
(the corrupted ones: feature_cache.corrupted_keys with the cache's seed), and encoded by the runtime
that made the cache. Keypoints from the re-crop are mapped back into the key crop's heatmap cells, so
they are scored against the same targets and thresholds as everything else.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from model.backbones import input_spec
from model.heatmaps import apply_affine, box_to_center_size, crop_affine, heatmap_to_image, input_to_heatmap
from model.windows import recrop_box, wants_recrop
from training.datasets.teacher import key_samples, load_labels, split_frames
from training.feature_cache import _encoder, corrupted_keys, crop, read_frames

# A rebuilt corrupted key frame must encode to the cached features (float16) within this.
REBUILD_TOLERANCE = 0.05


def cache_rows(meta: dict, labels) -> tuple[list, dict[tuple[int, int], int]]:
    """A cache's key samples, and (frame, track) -> row of clean.npy, rebuilt as build_cache laid them out."""
    samples = key_samples(labels, split_frames(labels.num_frames, meta["split"], meta["val_fraction"]),
                          meta["window"], meta["min_score"], meta["min_joints"], meta.get("key_every", 1))
    rows: dict[tuple[int, int], int] = {}
    for s in samples:
        for f in s.window:
            rows.setdefault((f, s.track), len(rows))
    return samples, rows


class CacheRecrop:
    """One cache's clip, teacher boxes and rows, and the encoder that made its features."""

    def __init__(self, cache: str | Path, model, threads: int = 2):
        self.cache = Path(cache)
        self.meta = json.loads((self.cache / "meta.json").read_text())
        self.labels = load_labels(self.meta["labels"])
        self.model = model
        self.cfg = model.cfg
        self.spec = input_spec(self.cfg)
        self.size = tuple(self.cfg.input_size)
        self.hm_size = tuple(self.cfg.heatmap_size)
        self.key = self.cfg.window // 2
        self.samples, self.rows = cache_rows(self.meta, self.labels)
        self.frame_of = {r: k[0] for k, r in self.rows.items()}
        self._encode = _encoder(model, "cpu", threads)

    def encode(self, crops: list[np.ndarray]) -> torch.Tensor:
        with torch.no_grad():
            return self._encode(torch.from_numpy(np.stack(crops))).float()

    @torch.no_grad()
    def fires(self, feats: torch.Tensor, frames: list[list[int]]) -> list[bool]:
        """feats (B, T, C, h, w) as cached (the key possibly corrupted) -> does the rule fire, per window."""
        drop, sure = float(self.cfg.recrop_drop), float(self.cfg.recrop_min_confidence)
        k, t = self.key, feats.shape[1]
        conf = self.model.frame_confidence(feats[:, [0, k, t - 1]].flatten(0, 1)).view(-1, 3).tolist()
        return [fr[0] == fr[k] - k and fr[-1] == fr[k] + k and wants_recrop(c[1], c[0], c[2], drop, sure)
                for c, fr in zip(conf, frames, strict=True)]

    def alt_box(self, frames: list[int], track: int):
        return recrop_box(self.labels.boxes[(frames[0], track)], self.labels.boxes[(frames[-1], track)])

    @torch.no_grad()
    def decode(self, feats: torch.Tensor, key_feats: torch.Tensor, frames: list[list[int]],
               tracks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows with their key features replaced by the re-crop's -> (single-frame, served) keypoints
        (B, K, 3) in the cached key crop's heatmap cells."""
        feats = feats.clone()
        feats[:, self.key] = key_feats
        out = self.model.decode_windows(feats, diffusion_steps=0)
        both = [self.model.decode_keypoints(out, base=True), self.model.decode_keypoints(out)]
        stride = self.size[1] / self.hm_size[1]
        for b, (fr, track) in enumerate(zip(frames, tracks, strict=True)):
            alt_c, alt_wh = box_to_center_size(self.alt_box(fr, track), self.size)
            key_c, key_wh = box_to_center_size(self.labels.boxes[(fr[self.key], track)], self.size)
            for kps in both:
                img = heatmap_to_image(kps[b, :, :2].numpy().astype(np.float64), alt_c, alt_wh, self.size,
                                       self.hm_size)
                cells = input_to_heatmap(apply_affine(img, crop_affine(key_c, key_wh, self.size)), stride)
                kps[b, :, :2] = torch.from_numpy(np.asarray(cells, np.float32))
        return both[0], both[1]


def _right(pred: torch.Tensor, target: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(pred[..., :2] - target[..., :2], dim=-1) <= thr[:, None]


@torch.no_grad()
def evaluate_key_samples(model, cache: str | Path, every: int = 1, threads: int = 2) -> dict:
    """PCK@0.1 (%) against the clean-frame teacher on every `every`-th key sample, clean and under its
    cached corruption, without and with the re-crop rule: {group: {"n_joints", "fired", "base",
    "base+recrop", "served", "served+recrop"}} for clean, corrupted and each corruption kind."""
    rc = CacheRecrop(cache, model, threads)
    model.eval()
    index = json.loads((rc.cache / "index.json").read_text())
    chosen = set(range(0, len(index), max(1, int(every))))
    clean = np.load(rc.cache / "clean.npy", mmap_mode="r")
    bad = np.load(rc.cache / "corrupt.npy", mmap_mode="r")
    frames_needed = {f for f, _ in rc.rows}
    images = read_frames(rc.meta["video"], frames_needed)
    kinds = tuple(k for k in rc.meta["kinds"])
    hits: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    fired: dict[str, int] = defaultdict(int)

    def score(group_names, feats, key_images, entries):
        frames = [[rc.frame_of[r] for r in e["window"]] for e in entries]
        tracks = [e["track"] for e in entries]
        key_clean = torch.from_numpy(np.stack([np.asarray(clean[e["window"][rc.key]], np.float32)
                                               for e in entries]))
        p = model.keypoint_head.predict(model.keypoint_head.pyramid(key_clean)[2])
        teacher = model.keypoint_head.decode(p["heatmaps"], p)
        out = model.decode_windows(feats, diffusion_steps=0)
        base, served = model.decode_keypoints(out, base=True), model.decode_keypoints(out)
        base_rc, served_rc = base.clone(), served.clone()
        fire = rc.fires(feats, frames)
        idx = [i for i, f in enumerate(fire) if f]
        if idx:
            alt = rc.encode([crop(key_images[i], rc.alt_box(frames[i], tracks[i]), rc.spec) for i in idx])
            b2, s2 = rc.decode(feats[idx], alt, [frames[i] for i in idx], [tracks[i] for i in idx])
            base_rc[idx], served_rc[idx] = b2, s2
        w = torch.tensor([e["weights"] for e in entries]) > 0
        thr = torch.tensor([e["pck_threshold"] for e in entries])
        preds = {"base": base, "base+recrop": base_rc, "served": served, "served+recrop": served_rc}
        for name, kps in preds.items():
            ok = _right(kps, teacher, thr)
            for i, g in enumerate(group_names):
                for group in g:
                    hits[group][name].append(ok[i][w[i]])
        for i, g in enumerate(group_names):
            for group in g:
                fired[group] += int(fire[i])

    # clean key frames: the cached windows as they are, key images from the clip
    todo = sorted(chosen)
    for start in range(0, len(todo), 32):
        part = [index[i] for i in todo[start:start + 32]]
        feats = torch.from_numpy(np.stack([np.asarray(clean[e["window"]], np.float32) for e in part]))
        score([("clean",)] * len(part), feats, [images[e["frame"]] for e in part], part)
    # corrupted key frames, rebuilt in the cache's order (one rng) so that they are the cached ones
    pending: list = []
    variant = defaultdict(int)
    for i, kind, image in corrupted_keys(rc.samples, images, rc.labels, kinds, rc.meta["split"],
                                         rc.meta["variants"], rc.meta["seed"]):
        if kind is None or i not in chosen:
            continue
        e = index[i]
        row = e["corrupt"][variant[i]]
        variant[i] += 1
        if e["kinds"][variant[i] - 1] != kind:
            raise ValueError(f"{cache}: sample {i}'s corruption rebuilt as {kind}, cached as "
                             f"{e['kinds'][variant[i] - 1]}: the cache was built differently")
        pending.append((e, row, kind, image))
        if len(pending) == 32:
            _score_corrupted(rc, pending, clean, bad, score)
            pending = []
    if pending:
        _score_corrupted(rc, pending, clean, bad, score)
    result = {}
    for group, by_name in hits.items():
        row = {"n_joints": int(sum(len(x) for x in by_name["base"])), "fired": fired[group]}
        for name, parts in by_name.items():
            row[name] = round(100.0 * float(torch.cat(parts).float().mean()), 2)
        result[group] = row
    return result


def _score_corrupted(rc: CacheRecrop, pending: list, clean, bad, score) -> None:
    entries = [p[0] for p in pending]
    feats = torch.from_numpy(np.stack([np.asarray(clean[e["window"]], np.float32) for e in entries]))
    cached = torch.from_numpy(np.stack([np.asarray(bad[p[1]], np.float32) for p in pending]))
    # the rebuilt corrupted frame, cropped at the cached box, must be what the cache encoded
    rebuilt = rc.encode([crop(image, rc.labels.boxes[(e["frame"], e["track"])], rc.spec)
                         for e, _, _, image in pending])
    worst = float((rebuilt - cached).abs().amax())
    if worst > REBUILD_TOLERANCE:
        raise ValueError(f"{rc.cache}: rebuilt corrupted key frames differ from the cached ones by "
                         f"{worst:.3f} (a cache built by another version of training/feature_cache.py?)")
    feats[:, rc.key] = cached
    score([("corrupted", p[2]) for p in pending], feats, [p[3] for p in pending], entries)


def format_recrop(result: dict) -> str:
    """Markdown: evaluate_key_samples' rows."""
    names = ("base", "base+recrop", "served", "served+recrop")
    lines = ["| key frame | joints | fired | " + " | ".join(names) + " |", "|---" * (len(names) + 3) + "|"]
    order = ["clean", "corrupted"] + sorted(k for k in result if k not in ("clean", "corrupted"))
    for group in order:
        if group in result:
            r = result[group]
            cells = " | ".join(f"{r[n]:.1f}" for n in names)
            lines.append(f"| {group} | {r['n_joints']} | {r['fired']} | {cells} |")
    return "\n".join(lines)
