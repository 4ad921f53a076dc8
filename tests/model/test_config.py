"""PoseModelConfig: presets, JSON round trip, validation."""

from __future__ import annotations

import pytest

from model.config import PRESETS, PoseModelConfig, get_preset


def test_required_presets_exist():
    for name in ("tiny-cpu", "small", "base", "large", "huge"):
        assert PRESETS[name].name == name


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_is_consistent(name):
    cfg = PRESETS[name]
    assert cfg.embed_dim % cfg.num_heads == 0
    assert cfg.input_size[0] % cfg.patch_size == 0 and cfg.input_size[1] % cfg.patch_size == 0
    gh, gw = cfg.patch_grid
    assert (gh * 4, gw * 4) == tuple(cfg.heatmap_size)
    th, tw = cfg.temporal_grid
    assert th * cfg.temporal_stride == cfg.input_size[0] and tw * cfg.temporal_stride == cfg.input_size[1]
    assert cfg.window % 2 == 1 and cfg.key_index == cfg.window // 2
    assert cfg.diffusion_init in ("noise", "prior")


def test_tiny_cpu_defaults_match_the_floor_setting():
    cfg = get_preset("tiny-cpu")
    assert cfg.temporal and cfg.diffusion
    assert (cfg.window, cfg.hypotheses, cfg.diffusion_steps) == (5, 1, 1)
    assert cfg.num_keypoints == 17


def test_base_is_the_paper_setting():
    cfg = get_preset("base")
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads) == (768, 12, 12)
    assert cfg.temporal_stride == 4 and cfg.input_size == (256, 192) and cfg.heatmap_size == (64, 48)
    assert cfg.patch_padding == 2 and cfg.head_channels == 256


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name):
    cfg = get_preset(name, extra={"note": "x"})
    back = PoseModelConfig.from_json(cfg.to_json())
    assert back == cfg
    assert isinstance(back.input_size, tuple) and isinstance(back.local_window, tuple)


def test_overrides_and_errors():
    before = PRESETS["small"].hypotheses
    cfg = get_preset("small", hypotheses=before + 2)
    assert cfg.hypotheses == before + 2
    assert PRESETS["small"].hypotheses == before  # presets are copied, never mutated
    with pytest.raises(KeyError, match="unknown preset"):
        get_preset("nope")
    with pytest.raises(ValueError, match="unknown PoseModelConfig fields"):
        PoseModelConfig.from_dict({"embed_dim": 8, "bogus": 1})
    with pytest.raises(TypeError):
        get_preset("small", bogus=1)
