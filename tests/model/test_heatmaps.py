"""model.heatmaps (the lead's): Gaussian targets, decoding accuracy, crop/heatmap/image coordinate maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import heatmaps as hm
from model.pose_model import PoseModel

H, W = 64, 48


def _gaussians(points, sigma):
    ys = torch.arange(H, dtype=torch.float64)[:, None]
    xs = torch.arange(W, dtype=torch.float64)[None, :]
    maps = [torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in points]
    return torch.stack(maps)[None].float()  # (1, K, H, W)


@pytest.mark.parametrize("sigma", [2.0, 3.0])
def test_decode_subpixel_accuracy_interior(sigma):
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(2, W - 3, 200), rng.uniform(2, H - 3, 200)], axis=1)
    out = hm.decode_heatmaps(_gaussians(pts, sigma))[0].double().numpy()
    err = np.abs(out[:, :2] - pts).max()
    assert err < 0.1, err
    assert np.allclose(out[:, 2], np.exp(-((out[:, :2] - pts) ** 2).sum(1) / (2 * sigma**2)).clip(0, 1),
                       atol=0.2)
    assert (out[:, 2] <= 1.0 + 1e-6).all() and (out[:, 2] > 0.9).all()


def test_decode_subpixel_accuracy_near_border():
    """Peaks within a cell of the map edge must decode no worse than the plain argmax.

    The decoder moves its stencils inward at the edge, so the refinement stays exact there.
    """
    pts = [(0.3, 30.2), (W - 1.4, 10.6), (20.5, 0.45), (11.2, H - 1.3), (0.6, 0.4)]
    out = hm.decode_heatmaps(_gaussians(pts, 3.0))[0].double().numpy()
    err = np.abs(out[:, :2] - np.array(pts)).max()
    assert err < 0.1, err


def test_decode_matches_pose_model_and_handles_flat_maps():
    maps = torch.zeros(2, 3, H, W)
    maps[0, 0, 10, 7] = 1.0
    out = PoseModel.decode_heatmaps(maps)
    assert torch.equal(out, hm.decode_heatmaps(maps))
    assert out.shape == (2, 3, 3) and torch.isfinite(out).all()
    assert out[0, 0].tolist() == [7.0, 10.0, 1.0]  # a single-cell peak: no refinement possible
    assert out[1, 2, 2] == 0


def test_gaussian_targets():
    kps = np.array([[10.3, 20.7, 2], [5, 5, 0], [-20, 5, 1], [47.5, 63.5, 1]], dtype=np.float64)
    maps, w = hm.gaussian_targets(kps, (H, W), sigma=3)
    assert maps.shape == (4, H, W) and maps.dtype == np.float32
    assert w.tolist() == [1, 0, 0, 1]
    assert maps[1].max() == 0 and maps[2].max() == 0
    y, x = np.unravel_index(maps[0].argmax(), maps[0].shape)
    assert (x, y) == (10, 21)
    dec = hm.decode_heatmaps(torch.from_numpy(maps[None]))[0]
    assert abs(dec[0, 0] - 10.3) < 0.1 and abs(dec[0, 1] - 20.7) < 0.1


def test_crop_affine_maps_box_to_crop_and_back():
    center, size = hm.box_to_center_size([100, 50, 60, 120], (256, 192))
    assert np.allclose(center, [130, 110])
    assert np.isclose(size[0] / size[1], 192 / 256) and np.isclose(size[1], 120 * 1.25)
    m = hm.crop_affine(center, size, (256, 192))
    assert np.allclose(hm.apply_affine(center[None], m), [[95.5, 127.5]])
    inv = hm.crop_affine(center, size, (256, 192), inverse=True)
    pts = np.array([[101.0, 52.0, 1.0], [170.0, 190.0, 0.5]])
    back = hm.apply_affine(hm.apply_affine(pts, m), inv)
    assert np.allclose(back, pts)
    assert np.allclose(hm.invert_affine(m), inv)


def test_rotation_is_about_the_box_center():
    center, size = np.array([50.0, 60.0]), np.array([30.0, 40.0])
    m = hm.crop_affine(center, size, (256, 192), rotation_deg=30)
    assert np.allclose(hm.apply_affine(center[None], m), [[95.5, 127.5]])
    inv = hm.crop_affine(center, size, (256, 192), rotation_deg=30, inverse=True)
    p = np.array([[55.0, 40.0]])
    assert np.allclose(hm.apply_affine(hm.apply_affine(p, m), inv), p)


def test_heatmap_to_image_inverts_the_forward_mapping():
    center, size = hm.box_to_center_size([300, 120, 80, 200], (256, 192))
    m = hm.crop_affine(center, size, (256, 192))
    img_pts = np.array([[310.0, 130.0, 0.9], [377.5, 318.25, 0.2]])
    crop_pts = hm.apply_affine(img_pts, m)
    hm_pts = hm.input_to_heatmap(crop_pts, stride=4)
    assert np.allclose(hm.heatmap_to_input(hm_pts, 4), crop_pts)
    back = hm.heatmap_to_image(hm_pts, center, size, (256, 192), (64, 48))
    assert np.allclose(back, img_pts)


def test_warp_and_normalize_crop():
    img = np.zeros((200, 300, 3), dtype=np.uint8)
    img[90:110, 140:160] = 255  # a white square around (149.5, 99.5)
    center, size = np.array([149.5, 99.5]), np.array([96.0, 128.0])
    crop = hm.warp_crop(img, hm.crop_affine(center, size, (256, 192)), (256, 192))
    assert crop.shape == (256, 192, 3)
    assert crop[127, 95].min() == 255 and crop[5, 5].max() == 0
    x = hm.normalize_crop(crop)
    assert x.shape == (3, 256, 192) and x.dtype == np.float32
    assert np.allclose(x[:, 127, 95], (1 - hm.IMAGENET_MEAN) / hm.IMAGENET_STD, atol=1e-6)


def test_pose_model_decodes_bf16_heatmaps_in_float32():
    """model.heatmaps.decode_heatmaps returns the input dtype (bf16 steps by 0.25 at x >= 32);
    PoseModel.decode_heatmaps decodes in float32 so GPU bf16 outputs keep sub-pixel accuracy."""
    rng = np.random.default_rng(1)
    pts = np.stack([rng.uniform(2, W - 3, 100), rng.uniform(2, H - 3, 100)], axis=1)
    maps = _gaussians(pts, 3.0).bfloat16()
    out = PoseModel.decode_heatmaps(maps)
    assert out.dtype == torch.float32
    assert np.abs(out[0, :, :2].double().numpy() - pts).max() < 0.1
