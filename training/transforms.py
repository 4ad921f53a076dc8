"""Training/eval transforms: person crops by affine, augmentation, heatmap targets.

One window = T frames of one person. Each frame is cropped with that person's
box in that frame (the key frame's box where a neighbour is unlabelled), and
the SAME random augmentation (scale, rotation, flip, shift, colour) is applied
to every frame of the window, so the temporal model sees consistent motion.

Geometry comes from model.heatmaps (pixel-centre convention). A horizontal
flip is composed into the crop affine as a mirror in crop space
(x -> W_in - 1 - x), which equals cropping the mirrored image (x -> W - 1 - x)
with the rotation negated; the joint slots are then permuted with the
layout's flip permutation so left stays left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.backbones import InputSpec
from model.heatmaps import (
    apply_affine,
    box_to_center_size,
    crop_affine,
    gaussian_targets,
    input_to_heatmap,
    normalize_crop,
    warp_crop,
)


@dataclass
class AugmentConfig:
    """Random augmentation ranges (mmpose/ViTPose top-down defaults)."""

    scale_factor: float = 0.35  # box scale ~ clip(N(1, sf), 1 - sf, 1 + sf)
    rotation_factor: float = 40.0  # degrees ~ clip(N(0, rf), -2 rf, 2 rf) ...
    rotation_prob: float = 0.6  # ... applied with this probability
    flip_prob: float = 0.5
    shift_factor: float = 0.0  # box centre jitter, fraction of the box size (detector-box noise)
    color_prob: float = 0.8
    brightness: float = 0.25  # multiplicative factor in [1 - b, 1 + b]
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.03  # fraction of the hue circle


@dataclass
class AugmentParams:
    """One draw of the augmentation, shared by all frames of a window (identity by default)."""

    scale: float = 1.0
    rotation: float = 0.0
    flip: bool = False
    shift: tuple[float, float] = (0.0, 0.0)
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0

    @property
    def has_color(self) -> bool:
        return (self.brightness, self.contrast, self.saturation, self.hue) != (1.0, 1.0, 1.0, 0.0)


def sample_augment(rng: np.random.Generator, cfg: AugmentConfig | None = None) -> AugmentParams:
    cfg = cfg or AugmentConfig()
    sf, rf = cfg.scale_factor, cfg.rotation_factor
    scale = float(np.clip(rng.normal(1.0, sf), 1.0 - sf, 1.0 + sf)) if sf > 0 else 1.0
    rotation = 0.0
    if rf > 0 and rng.random() < cfg.rotation_prob:
        rotation = float(np.clip(rng.normal(0.0, rf), -2 * rf, 2 * rf))
    flip = bool(rng.random() < cfg.flip_prob)
    shift = (0.0, 0.0)
    if cfg.shift_factor > 0:
        shift = tuple(float(v) for v in rng.uniform(-cfg.shift_factor, cfg.shift_factor, size=2))
    p = AugmentParams(scale=scale, rotation=rotation, flip=flip, shift=shift)
    if rng.random() < cfg.color_prob:
        p.brightness = float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness))
        p.contrast = float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast))
        p.saturation = float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation))
        p.hue = float(rng.uniform(-cfg.hue, cfg.hue))
    return p


# --------------------------------------------------------------------------- geometry
def frame_affine(box_xywh, input_size: tuple[int, int], params: AugmentParams):
    """Box -> (2x3 image->crop affine, center (2,), size (2,)) under `params`.

    center/size are the augmented crop region before rotation and flip; with
    identity params they are exactly what model.heatmaps.heatmap_to_image expects.
    """
    center, size = box_to_center_size(box_xywh, input_size)
    size = size * params.scale
    center = center + np.asarray(params.shift) * size
    m = crop_affine(center, size, input_size, rotation_deg=params.rotation)
    if params.flip:
        mirror = np.array([[-1.0, 0.0, input_size[1] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        m = (mirror @ np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
    return m, center, size


def flip_keypoints(keypoints, flip_perm) -> np.ndarray:
    """Reorder joint slots after a horizontal flip (coordinates are mirrored elsewhere)."""
    return np.asarray(keypoints)[list(flip_perm)]


def crop_keypoints(keypoints_img, m: np.ndarray, params: AugmentParams, flip_perm) -> np.ndarray:
    """(K, 3) image keypoints -> (K, 3) crop-input pixels (slots permuted if flipped).

    Unlabelled joints (v <= 0) stay (0, 0, 0)."""
    kps = np.asarray(keypoints_img, dtype=np.float64)
    out = apply_affine(kps, m)
    out[kps[:, 2] <= 0] = 0.0
    if params.flip:
        out = flip_keypoints(out, flip_perm)
    return out


# --------------------------------------------------------------------------- pixels
def color_jitter(crop_rgb: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Brightness, contrast, saturation and hue on an HxWx3 uint8 RGB crop."""
    if not params.has_color:
        return crop_rgb
    import cv2

    x = crop_rgb.astype(np.float32)
    x *= params.brightness
    x = (x - x.mean()) * params.contrast + x.mean()
    gray = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = (x - gray[..., None]) * params.saturation + gray[..., None]
    x = np.clip(x, 0, 255).astype(np.uint8)
    if params.hue != 0.0:
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # OpenCV 8-bit hue is 0..179
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(params.hue * 180))) % 180).astype(np.uint8)
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return x


def crop_frame(image_rgb: np.ndarray, m: np.ndarray, input_size: tuple[int, int],
               params: AugmentParams, spec: InputSpec | None = None) -> np.ndarray:
    """One frame -> normalised (3, H, W) float32 crop (the backbone's `spec`; ImageNet stats if None)."""
    crop = color_jitter(warp_crop(image_rgb, m, input_size), params)
    return spec.normalize(crop) if spec is not None else normalize_crop(crop)


# --------------------------------------------------------------------------- one window
def make_window(images: list[np.ndarray], boxes, key_keypoints, input_size: tuple[int, int],
                heatmap_size: tuple[int, int], flip_perm, params: AugmentParams | None = None,
                key_index: int | None = None, sigma: float = 3.0, spec: InputSpec | None = None) -> dict:
    """Crops, targets and geometry for one person window.

    images: T RGB uint8 frames; boxes: T COCO xywh boxes (that person in that
    frame); key_keypoints: (K, 3) key-frame GT in image pixels (v > 0 = labelled).
    Returns frames (T,3,H,W) float32, heatmaps (K,h,w), target_weight (K,),
    keypoints_crop (K,3) in crop pixels, affine (2,3) of the key frame,
    center/size (2,) of the key frame.
    """
    params = params or AugmentParams()
    t = len(images)
    if len(boxes) != t:
        raise ValueError(f"{t} frames but {len(boxes)} boxes")
    key_index = t // 2 if key_index is None else key_index
    frames = np.empty((t, 3, input_size[0], input_size[1]), dtype=np.float32)
    key = None
    for i, (image, box) in enumerate(zip(images, boxes, strict=True)):
        m, center, size = frame_affine(box, input_size, params)
        frames[i] = crop_frame(image, m, input_size, params, spec)
        if i == key_index:
            key = (m, center, size)
    m, center, size = key
    kps_crop = crop_keypoints(key_keypoints, m, params, flip_perm)
    stride = input_size[1] / heatmap_size[1]
    heatmaps, weights = gaussian_targets(input_to_heatmap(kps_crop, stride), heatmap_size, sigma)
    return {
        "frames": frames,
        "heatmaps": heatmaps,
        "target_weight": weights,
        "keypoints_crop": kps_crop.astype(np.float32),
        "affine": m.astype(np.float32),
        "center": center.astype(np.float32),
        "size": size.astype(np.float32),
    }
