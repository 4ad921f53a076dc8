"""Crop geometry, Gaussian heatmap targets and sub-pixel heatmap decoding.

Coordinate convention (used everywhere in vidpose): an integer coordinate is
the *centre* of a pixel, as in OpenCV's warpAffine. A heatmap cell (i, j) covers
`stride` input pixels, so
    input = (heatmap + 0.5) * stride - 0.5        heatmap = (input + 0.5) / stride - 0.5
The crop affine maps a box (enlarged 25 %, fixed 3:4 aspect) onto the model
input; its inverse maps decoded keypoints back to image pixels.
"""

from __future__ import annotations

import math

import numpy as np
import torch

BOX_PADDING = 1.25
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# --------------------------------------------------------------------------- crops
def box_to_center_size(box_xywh, input_size: tuple[int, int], padding: float = BOX_PADDING):
    """COCO box [x, y, w, h] -> (center (2,), size (w, h)) enlarged by `padding`
    and grown along one side to the input's aspect ratio (W/H, 3:4 by default)."""
    x, y, w, h = (float(v) for v in box_xywh)
    in_h, in_w = input_size
    aspect = in_w / in_h
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float64)
    w, h = max(w, 1.0), max(h, 1.0)
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w * padding, h * padding], dtype=np.float64)


def crop_affine(center, size, output_size: tuple[int, int], rotation_deg: float = 0.0,
                inverse: bool = False) -> np.ndarray:
    """2x3 affine taking image points to crop points (or back, with inverse=True).

    The region of `size` (w, h) around `center`, rotated by `rotation_deg`
    (counter-clockwise, in image space), fills the `output_size` (H, W) crop.
    """
    out_h, out_w = output_size
    sx = out_w / float(size[0])
    sy = out_h / float(size[1])
    theta = math.radians(rotation_deg)
    c, s = math.cos(theta), math.sin(theta)
    # crop = S @ R(theta) @ (p - center) + out_center
    rot = np.array([[c, s], [-s, c]], dtype=np.float64)
    lin = np.diag([sx, sy]) @ rot
    out_center = np.array([out_w * 0.5 - 0.5, out_h * 0.5 - 0.5])
    t = out_center - lin @ np.asarray(center, dtype=np.float64)
    m = np.concatenate([lin, t[:, None]], axis=1)
    if inverse:
        return invert_affine(m)
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    lin_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([lin_inv, (-lin_inv @ m[:, 2])[:, None]], axis=1)


def apply_affine(points, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to points (..., 2) (extra trailing columns are kept)."""
    pts = np.asarray(points, dtype=np.float64)
    xy = pts[..., :2] @ m[:, :2].T + m[:, 2]
    return np.concatenate([xy, pts[..., 2:]], axis=-1)


def warp_crop(image: np.ndarray, m: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    import cv2  # local: keeps `import model.heatmaps` light for tools that never crop

    out_h, out_w = output_size
    return cv2.warpAffine(image, m.astype(np.float32), (out_w, out_h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def normalize_crop(crop_rgb_uint8: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> 3xHxW float32, ImageNet mean/std."""
    x = crop_rgb_uint8.astype(np.float32) / 255.0
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def input_to_heatmap(points, stride: float) -> np.ndarray:
    pts = np.array(points, dtype=np.float64)
    pts[..., :2] = (pts[..., :2] + 0.5) / stride - 0.5
    return pts


def heatmap_to_input(points, stride: float) -> np.ndarray:
    pts = np.array(points, dtype=np.float64)
    pts[..., :2] = (pts[..., :2] + 0.5) * stride - 0.5
    return pts


def heatmap_to_image(keypoints_hm, center, size, input_size: tuple[int, int],
                     heatmap_size: tuple[int, int]) -> np.ndarray:
    """Decoded keypoints (K, 3) in heatmap cells -> (K, 3) image pixels (score kept)."""
    stride = input_size[1] / heatmap_size[1]
    pts = heatmap_to_input(keypoints_hm, stride)
    return apply_affine(pts, crop_affine(center, size, input_size, inverse=True))


# --------------------------------------------------------------------------- targets
def gaussian_targets(keypoints_hm, heatmap_size: tuple[int, int], sigma: float = 3.0):
    """Unnormalised Gaussian targets (peak 1) and target weights.

    keypoints_hm: (K, 3) x, y in heatmap cells and visibility (>0 = labelled).
    Returns heatmaps (K, h, w) float32 and weights (K,) float32; a joint that is
    unlabelled or whose Gaussian lies wholly outside the map gets weight 0.
    """
    kps = np.asarray(keypoints_hm, dtype=np.float64)
    h, w = heatmap_size
    ys = np.arange(h, dtype=np.float64)[:, None]
    xs = np.arange(w, dtype=np.float64)[None, :]
    heatmaps = np.zeros((kps.shape[0], h, w), dtype=np.float32)
    weights = np.zeros((kps.shape[0],), dtype=np.float32)
    for k, (x, y, v) in enumerate(kps[:, :3]):
        if v <= 0:
            continue
        if x < -3 * sigma or y < -3 * sigma or x > w - 1 + 3 * sigma or y > h - 1 + 3 * sigma:
            continue
        heatmaps[k] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
        weights[k] = 1.0
    return heatmaps, weights


# --------------------------------------------------------------------------- decoding
def decode_heatmaps(heatmaps: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """(B, K, h, w) heatmaps -> (B, K, 3) float32: x, y in heatmap cells, score = peak value.

    Argmax, then one Newton step on the log-heatmap (second-order Taylor
    expansion, as in DARK): exact for a Gaussian peak, so sub-pixel error on
    clean Gaussian heatmaps is far below 0.1 cell. The 3-point stencils are
    moved inward at the map's edge (a quadratic fit through cells that exist),
    so peaks on the border refine too. Always decoded in float32: bf16 cannot
    hold sub-pixel coordinates.
    """
    b, k, h, w = heatmaps.shape
    hm = heatmaps.detach().float().reshape(b * k, h, w)
    score, idx = hm.reshape(b * k, -1).max(dim=1)
    y = torch.div(idx, w, rounding_mode="floor")
    x = idx - y * w
    out = torch.stack([x.float(), y.float(), score], dim=-1)
    if h < 3 or w < 3:  # too small for a stencil: plain argmax
        return out.reshape(b, k, 3)

    log_hm = torch.log(hm.clamp_min(eps))
    n = torch.arange(b * k, device=hm.device)
    cx, cy = x.clamp(1, w - 2), y.clamp(1, h - 2)  # stencil centres, inside the map

    def at(yy, xx):
        return log_hm[n, yy, xx]

    f0 = at(cy, cx)
    cxx = at(cy, cx + 1) - 2 * f0 + at(cy, cx - 1)  # second derivatives of the quadratic fit
    cyy = at(cy + 1, cx) - 2 * f0 + at(cy - 1, cx)
    dxy = 0.25 * (at(cy + 1, cx + 1) - at(cy + 1, cx - 1) - at(cy - 1, cx + 1) + at(cy - 1, cx - 1))
    # first derivatives at the argmax itself (it may sit one cell off the stencil centre)
    dx = 0.5 * (at(cy, cx + 1) - at(cy, cx - 1)) + cxx * (x - cx).float() + dxy * (y - cy).float()
    dy = 0.5 * (at(cy + 1, cx) - at(cy - 1, cx)) + cyy * (y - cy).float() + dxy * (x - cx).float()
    det = cxx * cyy - dxy * dxy
    ok = (det.abs() > 1e-12) & (cxx < 0) & (cyy < 0)
    safe_det = torch.where(ok, det, torch.ones_like(det))
    ox = -(cyy * dx - dxy * dy) / safe_det
    oy = -(cxx * dy - dxy * dx) / safe_det
    out[:, 0] += torch.where(ok, ox, torch.zeros_like(ox)).clamp(-1.0, 1.0)
    out[:, 1] += torch.where(ok, oy, torch.zeros_like(oy)).clamp(-1.0, 1.0)
    return out.reshape(b, k, 3)
