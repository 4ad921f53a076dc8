"""MoveNet modules: TF 'SAME' padding, MoveNet's decoding, and the import of the real released graphs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.backbones import input_spec
from model.config import get_preset
from model.movenet import CENTER_DISTANCE_BIAS, MoveNetHead, SameConv2d, make_divisible


@pytest.mark.parametrize("size,stride", [(8, 2), (9, 2), (8, 1), (7, 1)])
def test_same_conv_pads_like_tensorflow(size, stride):
    conv = SameConv2d(1, 1, 3, stride=stride, bias=False)
    x = torch.randn(1, 1, size, size)
    out_size = -(-size // stride)
    pad = max((out_size - 1) * stride + 3 - size, 0)  # TF: any odd pixel goes bottom/right
    padded = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    want = F.conv2d(padded, conv.weight, stride=stride)
    assert conv(x).shape[-1] == out_size
    torch.testing.assert_close(conv(x), want)


def test_make_divisible_matches_the_released_widths():
    assert [make_divisible(c * 1.75) for c in (32, 16, 24, 32, 64, 96, 160, 320)] == \
        [56, 32, 40, 56, 112, 168, 280, 560]


def _prediction(h=16, w=16, k=2):
    heat = torch.zeros(1, k, h, w)
    center = torch.zeros(1, 1, h, w)
    regress = torch.zeros(1, 2 * k, h, w)
    offset = torch.zeros(1, 2 * k, h, w)
    return heat, center, regress, offset


def test_decode_follows_the_centre_person_and_offsets():
    head = MoveNetHead(8, 2, (16, 16))
    heat, center, regress, offset = _prediction()
    # two people: a centre-most one at (8, 8), another at (2, 2) with a higher raw centre score
    center[0, 0, 8, 8], center[0, 0, 2, 2] = 0.5, 0.9
    # joint 0: a strong peak near the other person and a weaker one where the centre person's
    # regression points -> the distance weighting picks the weaker, nearby peak
    regress[0, 0:2, 8, 8] = torch.tensor([3.0, -2.0])  # (dy, dx) from (8, 8) -> (11, 6)
    heat[0, 0, 11, 6], heat[0, 0, 3, 3] = 0.6, 0.95
    offset[0, 0:2, 11, 6] = torch.tensor([0.25, -0.4])
    # joint 1: a single peak
    heat[0, 1, 5, 12] = 0.8
    offset[0, 2:4, 5, 12] = torch.tensor([-0.1, 0.3])
    kps = head.decode(heat, {"center": center, "regress": regress, "offset": offset})
    # vidpose cells: MoveNet's (cell + offset) minus half a cell
    torch.testing.assert_close(kps[0, 0], torch.tensor([6 - 0.4 - 0.5, 11 + 0.25 - 0.5, 0.6]))
    torch.testing.assert_close(kps[0, 1], torch.tensor([12 + 0.3 - 0.5, 5 - 0.1 - 0.5, 0.8]))


def test_hypothesis_points_are_the_chosen_cell_refined_by_its_own_heatmap():
    """The spread's points: decode()'s cell (same centre-person choice), moved to the 3x3 heat centroid,
    so two hypotheses peaking in one cell still differ when their heatmaps do (decode gives one point)."""
    head = MoveNetHead(8, 1, (16, 16))
    heat, center, regress, offset = _prediction(k=1)
    center[0, 0, 8, 8], center[0, 0, 2, 2] = 0.5, 0.9
    regress[0, 0:2, 8, 8] = torch.tensor([3.0, -2.0])  # the centre person's joint is near (11, 6)
    heat[0, 0, 11, 6], heat[0, 0, 3, 3] = 0.6, 0.95  # the far, stronger peak is not chosen
    offset[0, 0:2, 11, 6] = torch.tensor([0.25, -0.4])
    a, b = heat.clone(), heat.clone()
    a[0, 0, 11, 7] = 0.2  # hypothesis a leans right, b leans up
    b[0, 0, 10, 6] = 0.3
    aux = {"center": center.expand(2, -1, -1, -1), "regress": regress.expand(2, -1, -1, -1),
           "offset": offset.expand(2, -1, -1, -1)}
    both = torch.cat([a, b])
    kps = head.decode(both, aux)
    torch.testing.assert_close(kps[0], kps[1])  # same cell, same shared offset
    pts = head.hypothesis_points(both, aux)
    torch.testing.assert_close(pts[0, 0], torch.tensor([6 + 0.2 / 0.8, 11.0]))
    torch.testing.assert_close(pts[1, 0], torch.tensor([6.0, 11 - 0.3 / 0.9]))
    # a peak on the border: the window is clamped to the map, nothing is read outside it
    edge = torch.zeros(1, 1, 16, 16)
    edge[0, 0, 0, 15], edge[0, 0, 0, 14] = 1.0, 0.5
    flat = {"center": torch.zeros(1, 1, 16, 16), "regress": torch.zeros(1, 2, 16, 16),
            "offset": torch.zeros(1, 2, 16, 16)}
    want = torch.tensor([(15 + 14 * 0.5) / 1.5, 0.0])
    torch.testing.assert_close(head.hypothesis_points(edge, flat)[0, 0], want)
    # no positive heat around the chosen cell (a hypothesis is the prior plus an unclamped correction):
    # the point is the cell itself, not the origin
    dead = torch.full((1, 1, 16, 16), -0.01)
    dead[0, 0, 5, 9] = -0.001
    torch.testing.assert_close(head.hypothesis_points(dead, flat)[0, 0], torch.tensor([9.0, 5.0]))


def test_centre_prior_is_the_released_formula():
    head = MoveNetHead(8, 17, (64, 64))
    prior = head.center_prior
    assert prior[32, 32] == pytest.approx(1 / CENTER_DISTANCE_BIAS)
    assert prior[0, 0] == pytest.approx(1 / (np.hypot(32, 32) + CENTER_DISTANCE_BIAS))


@pytest.mark.parametrize("variant", ["movenet-thunder", "movenet-lightning"])
def test_import_of_the_real_package(human_models, variant):
    from model.import_tfjs import import_movenet

    model, info = import_movenet(human_models, variant)
    assert info["license"] == "Apache-2.0" and info["source_model"] == variant
    cfg = get_preset(variant)
    x = torch.zeros(1, cfg.window, 3, *cfg.input_size)
    with torch.no_grad():
        out = model(x)
    kps = model.decode_keypoints(out)
    assert kps.shape == (1, 17, 3) and torch.isfinite(kps).all()
    # untrained temporal + diffusion parts are zero-initialised: the single-frame branch's output
    torch.testing.assert_close(out["heatmaps"], out["base_heatmaps"])


def test_importer_output_equals_the_committed_default(human_models):
    """The single-frame MoveNet file is exactly what the importer makes of the real package (fp16
    storage), and the served default (its temporal version) keeps those tensors untouched (frozen)."""
    from safetensors.torch import load_file

    from model.checkpoint import read_metadata
    from model.import_tfjs import import_movenet
    from service.settings import PACKAGE_MODELS_DIR, Settings

    path = PACKAGE_MODELS_DIR / "vidpose-movenet-thunder.safetensors"
    default = load_file(str(PACKAGE_MODELS_DIR / f"{Settings(_env_file=None).default_model}.safetensors"))
    meta = read_metadata(path)
    cfg = meta["config"]
    model, _ = import_movenet(human_models, meta["info"]["source_model"], temporal=cfg.temporal,
                              diffusion=cfg.diffusion)
    committed = load_file(str(path))
    ours = {k: v for k, v in model.state_dict().items() if k.startswith(("backbone.", "keypoint_head."))}
    assert ours and set(ours) <= set(committed)
    for k, v in ours.items():
        assert torch.equal(v.to(committed[k].dtype), committed[k]), k
        # the released weights are fp16: storing them as fp16 loses nothing
        assert torch.equal(committed[k].to(v.dtype), v), k
        assert torch.equal(default[k], committed[k]), k


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "movenet_parity"


@pytest.mark.parametrize("variant", ["movenet-thunder", "movenet-lightning"])
def test_parity_with_the_original_graph_in_tfjs(human_models, variant):
    """Keypoints of the imported model == the original TFJS graph's (tools/tfjs_reference) on real crops.

    MoveNet's own output is (y, x) normalised to the crop; ours is in heatmap cells with the cell
    centre at integer positions, so ours = theirs * size - 0.5.
    """
    from model.import_tfjs import import_movenet

    expected = json.loads((FIXTURE / "expected.json").read_text())["models"][variant]
    model, _ = import_movenet(human_models, variant, temporal=False, diffusion=False)
    spec = input_spec(model.cfg)
    crops = []
    for c in expected["crops"]:
        rgb = cv2.imread(str(FIXTURE / c["png"]))[:, :, ::-1]
        assert rgb.shape[:2] == spec.size
        crops.append(spec.normalize(rgb))
    assert len(crops) >= 3
    x = torch.from_numpy(np.stack(crops))[:, None].expand(-1, model.cfg.window, -1, -1, -1)
    with torch.no_grad():
        kps = model.decode_keypoints(model(x)).numpy()
    h, w = model.cfg.heatmap_size
    for c, ours in zip(expected["crops"], kps):
        ref = np.asarray(c["keypoints"], dtype=np.float64)  # (17, 3): y, x, score
        ours_norm = np.c_[(ours[:, 1] + 0.5) / h, (ours[:, 0] + 0.5) / w]
        err = np.abs(ours_norm - ref[:, :2]).max()
        assert err <= 1e-3, f"{c['png']}: keypoints differ by {err:.2e} of the crop size"
        assert np.abs(ours[:, 2] - ref[:, 2]).max() <= 1e-3, c["png"]


def test_onnxruntime_twin_matches_the_pytorch_backbone(shared_data):
    """The CPU worker's onnxruntime backbone (model/ort_backbone.py) == PoseModel.encode_frames."""
    from model.checkpoint import load_checkpoint
    from model.heatmaps import box_to_center_size, crop_affine, warp_crop
    from model.ort_backbone import OrtBackbone
    from service.settings import PACKAGE_MODELS_DIR, Settings

    model, _ = load_checkpoint(PACKAGE_MODELS_DIR / f"{Settings(_env_file=None).default_model}.safetensors")
    spec = input_spec(model.cfg)
    coco = json.loads((shared_data / "coco" / "test_coco.json").read_text())
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    crops = []
    for ann in coco["annotations"][:3]:
        rgb = cv2.imread(str(shared_data / "coco" / files[ann["image_id"]]))[:, :, ::-1]
        center, size = box_to_center_size(ann["bbox"], spec.size)
        crops.append(spec.normalize(warp_crop(rgb, crop_affine(center, size, spec.size), spec.size)))
    x = torch.from_numpy(np.stack(crops))
    twin = OrtBackbone(model.backbone, spec.size, threads=1)
    with torch.no_grad():
        ref = model.encode_frames(x)
    got = twin(x)  # batch 3 through a graph exported at batch 1: the batch dim is dynamic
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref.contiguous(), atol=1e-4, rtol=1e-4)
    # and the keypoints they lead to
    windows = lambda f: f[:, None].expand(-1, model.cfg.window, -1, -1, -1)  # noqa: E731
    with torch.no_grad():
        a = model.decode_keypoints(model.decode_windows(windows(ref)))
        b = model.decode_keypoints(model.decode_windows(windows(got)))
    torch.testing.assert_close(a, b, atol=1e-3, rtol=0)
