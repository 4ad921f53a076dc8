"""MoveNet modules: TF 'SAME' padding, MoveNet's decoding, and the import of the real released graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.config import get_preset
from model.movenet import CENTER_DISTANCE_BIAS, MoveNetHead, SameConv2d, make_divisible


@pytest.mark.parametrize("size,stride", [(8, 2), (9, 2), (8, 1), (7, 1)])
def test_same_conv_pads_like_tensorflow(size, stride):
    conv = SameConv2d(1, 1, 3, stride=stride, bias=False)
    x = torch.randn(1, 1, size, size)
    out_size = -(-size // stride)
    pad = max((out_size - 1) * stride + 3 - size, 0)  # TF: the extra pixel goes bottom/right
    want = F.conv2d(F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)), conv.weight, stride=stride)
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
    """The served default is exactly what the importer makes of the real package (fp16 storage)."""
    from safetensors.torch import load_file

    from model.checkpoint import read_metadata
    from model.import_tfjs import import_movenet
    from service.settings import PACKAGE_MODELS_DIR, Settings

    path = PACKAGE_MODELS_DIR / f"{Settings(_env_file=None).default_model}.safetensors"
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
