"""Transforms: flip swaps left/right (pixels and labels agree), shared window augmentation, targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.heatmaps import (
    apply_affine,
    decode_heatmaps,
    gaussian_targets,
    heatmap_to_image,
    input_to_heatmap,
)
from model.keypoints import flip_permutation
from training.datasets.layouts import COCO, POSETRACK18, layout_from_names
from training.transforms import AugmentConfig, AugmentParams, frame_affine, make_window, sample_augment

INPUT, HEATMAP = (256, 192), (64, 48)


def dot_image(points, h=240, w=320):
    """Black RGB image with one bright 3x3 dot per point, channel-coded by index."""
    img = np.zeros((h, w, 3), np.uint8)
    for i, (x, y) in enumerate(points):
        img[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = (255, 40 + 10 * i, 0)
    return img


def test_layout_flip_permutations():
    assert list(COCO.flip_perm) == flip_permutation(17)
    # PoseTrack18 slots 1/2 are head_bottom/head_top: on the midline, never swapped.
    assert POSETRACK18.flip_perm[1] == 1 and POSETRACK18.flip_perm[2] == 2
    assert POSETRACK18.flip_perm[5] == 6 and POSETRACK18.flip_perm[16] == 15
    for layout in (COCO, POSETRACK18):
        perm = np.array(layout.flip_perm)
        assert (perm[perm] == np.arange(17)).all()  # an involution
        names = layout.keypoints
        for i, j in enumerate(perm):
            if i != j:
                mirrored = names[i].replace("left", "R").replace("right", "left").replace("R", "right")
                assert mirrored == names[j]
    assert layout_from_names(POSETRACK18.keypoints) is POSETRACK18
    with pytest.raises(ValueError):
        layout_from_names(["a"] * 17)


def test_flip_mirrors_pixels_and_swaps_slots():
    # left wrist (9) at image left of the right wrist (10): after a flip the crop shows them mirrored
    kps = np.zeros((17, 3))
    kps[9] = (130, 120, 1)
    kps[10] = (190, 100, 1)
    kps[0] = (160, 60, 1)
    image = dot_image([kps[0, :2], kps[9, :2], kps[10, :2]])
    box = [110, 40, 100, 140]
    plain = make_window([image], [box], kps, INPUT, HEATMAP, COCO.flip_perm, AugmentParams(), key_index=0)
    flipped = make_window([image], [box], kps, INPUT, HEATMAP, COCO.flip_perm, AugmentParams(flip=True),
                          key_index=0)
    kp, kf = plain["keypoints_crop"], flipped["keypoints_crop"]
    w_in = INPUT[1]
    # x -> W_in - 1 - x in the crop (pixel-centre convention), and slots 9/10 swap
    np.testing.assert_allclose(kf[10, :2], [w_in - 1 - kp[9, 0], kp[9, 1]], atol=1e-4)
    np.testing.assert_allclose(kf[9, :2], [w_in - 1 - kp[10, 0], kp[10, 1]], atol=1e-4)
    np.testing.assert_allclose(kf[0, :2], [w_in - 1 - kp[0, 0], kp[0, 1]], atol=1e-4)
    # the pixels agree with the labels: the dot drawn at the (old) left wrist sits at the new slot 10
    crop = flipped["frames"][0].transpose(1, 2, 0)
    red = crop[..., 0]
    for slot in (10, 9, 0):
        x, y = np.round(kf[slot, :2]).astype(int)
        assert red[y, x] > red.mean() + 3 * red.std(), f"no dot under flipped slot {slot}"
    # targets follow: heatmap 10 of the flip is the mirror of heatmap 9 of the plain crop
    np.testing.assert_allclose(flipped["heatmaps"][10], plain["heatmaps"][9][:, ::-1], atol=0.02)
    # the image-space mirror relation: crop(flip) == mirror(crop)
    np.testing.assert_allclose(flipped["frames"][0], plain["frames"][0][:, :, ::-1], atol=1e-5)


def test_posetrack_flip_keeps_head_slots():
    kps = np.zeros((17, 3))
    kps[1] = (160, 90, 1)  # head_bottom
    kps[2] = (162, 50, 1)  # head_top
    out = make_window([dot_image([])], [[110, 40, 100, 140]], kps, INPUT, HEATMAP, POSETRACK18.flip_perm,
                      AugmentParams(flip=True), key_index=0)
    assert out["keypoints_crop"][2, 1] < out["keypoints_crop"][1, 1]  # head_top stays above head_bottom


def test_same_augmentation_for_every_frame_of_a_window():
    rng = np.random.default_rng(0)
    image = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    kps = np.zeros((17, 3))
    kps[5] = (150, 100, 1)
    box = [100, 50, 120, 160]
    cfg = AugmentConfig(rotation_prob=1.0, flip_prob=1.0, color_prob=1.0)
    params = sample_augment(np.random.default_rng(3), cfg)
    assert params.flip and params.rotation != 0 and params.scale != 1 and params.has_color
    out = make_window([image] * 5, [box] * 5, kps, INPUT, HEATMAP, COCO.flip_perm, params)
    for t in range(1, 5):
        np.testing.assert_array_equal(out["frames"][t], out["frames"][0])
    # a neighbour with its own box is cropped with that box (same params): shifting the box by (dx, dy)
    # and the image by the same amount gives the same crop
    shifted = np.roll(image, (7, 11), axis=(0, 1))
    out2 = make_window([image, shifted, image], [box, [111, 57, 120, 160], box], kps, INPUT, HEATMAP,
                       COCO.flip_perm, params)
    inner = (slice(None), slice(40, -40), slice(40, -40))
    diff = np.abs(out2["frames"][1][inner] - out2["frames"][0][inner])
    assert np.mean(diff > 0.05) < 0.01  # equal up to interpolation/colour rounding of single pixels
    assert np.abs(out2["frames"][2] - out2["frames"][0]).max() == 0


def test_augmented_keypoints_follow_the_affine():
    kps = np.array([[150.0, 100.0, 1.0]] + [[0.0, 0.0, 0.0]] * 16)
    params = AugmentParams(scale=1.2, rotation=25.0, flip=False, shift=(0.05, -0.05))
    m, center, size = frame_affine([100, 50, 120, 160], INPUT, params)
    out = make_window([dot_image([kps[0, :2]])], [[100, 50, 120, 160]], kps, INPUT, HEATMAP, COCO.flip_perm,
                      params, key_index=0)
    np.testing.assert_allclose(out["keypoints_crop"][0, :2], apply_affine(kps[:1, :2], m)[0], atol=1e-4)
    assert out["target_weight"][0] == 1 and out["target_weight"][1:].sum() == 0


def test_target_decoder_round_trip():
    rng = np.random.default_rng(1)
    kps = np.stack([rng.uniform(3, 44, 17), rng.uniform(3, 60, 17), np.ones(17)], axis=1)
    heatmaps, weights = gaussian_targets(kps, HEATMAP, sigma=3.0)
    decoded = decode_heatmaps(torch.from_numpy(heatmaps)[None])[0].numpy()
    assert weights.all()
    assert np.abs(decoded[:, :2] - kps[:, :2]).max() < 0.1
    # and back to the image through the crop geometry (identity augmentation)
    box = [100, 50, 120, 160]
    m, center, size = frame_affine(box, INPUT, AugmentParams())
    image_pts = rng.uniform([110, 60], [210, 200], (17, 2))
    crop_pts = apply_affine(image_pts, m)
    hm_pts = input_to_heatmap(np.concatenate([crop_pts, np.ones((17, 1))], 1), INPUT[1] / HEATMAP[1])
    hms, _ = gaussian_targets(hm_pts, HEATMAP, sigma=3.0)
    back = heatmap_to_image(decode_heatmaps(torch.from_numpy(hms)[None])[0].numpy(), center, size, INPUT,
                            HEATMAP)
    cell_px = size[0] / HEATMAP[1]
    assert np.abs(back[:, :2] - image_pts).max() < 0.1 * cell_px


def test_color_jitter_changes_pixels_not_geometry():
    rng = np.random.default_rng(2)
    image = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    kps = np.zeros((17, 3))
    plain = make_window([image], [[100, 50, 120, 160]], kps, INPUT, HEATMAP, COCO.flip_perm, AugmentParams(),
                        key_index=0)
    jit = make_window([image], [[100, 50, 120, 160]], kps, INPUT, HEATMAP, COCO.flip_perm,
                      AugmentParams(brightness=1.2, contrast=0.8, saturation=0.7, hue=0.02), key_index=0)
    assert np.abs(jit["frames"] - plain["frames"]).mean() > 0.05
    np.testing.assert_array_equal(jit["affine"], plain["affine"])
