"""ViT backbone (ViTPose layout) and the simple head."""

from __future__ import annotations

import pytest
import torch

from model.backbone import SimpleHead, ViTBackbone
from model.config import get_preset


def _small(**kw):
    return get_preset("tiny-cpu", embed_dim=64, depth=2, num_heads=2, **kw)


def test_backbone_output_grid_and_names():
    cfg = _small()
    vit = ViTBackbone(cfg).eval()
    x = torch.randn(3, 3, *cfg.input_size)
    with torch.no_grad():
        f = vit(x)
    assert f.shape == (3, cfg.embed_dim, *cfg.patch_grid) == (3, 64, 16, 12)
    keys = set(vit.state_dict())
    # ViTPose names; no class token, no classifier, pos_embed covers the patches only.
    assert {"patch_embed.proj.weight", "pos_embed", "last_norm.weight", "blocks.1.attn.qkv.bias",
            "blocks.0.mlp.fc2.weight"} <= keys
    assert not any(k.startswith(("cls_token", "head.", "norm.", "fc_norm")) for k in keys)
    assert vit.pos_embed.shape == (1, 16 * 12, 64)
    assert vit.patch_embed.proj.padding == (2, 2)


def test_patch_padding_is_applied():
    """Padding 2 shifts the patch windows: outputs differ from padding 0 with the same weights."""
    torch.manual_seed(0)
    a = ViTBackbone(_small(patch_padding=2)).eval()
    b = ViTBackbone(_small(patch_padding=0)).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        assert a(x).shape == b(x).shape
        assert not torch.allclose(a(x), b(x))
        # The first patch row/col of padding 2 sees 14 input pixels: check the conv directly.
        ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 2, 2)), a.patch_embed.proj.weight,
                                         a.patch_embed.proj.bias, stride=16)
        assert torch.allclose(a.patch_embed.proj(x), ref, atol=1e-5)


def test_padding_that_changes_the_grid_is_rejected():
    with pytest.raises(ValueError, match="patch grid"):
        ViTBackbone(_small(patch_padding=8))


def test_simple_head_shapes_and_names():
    head = SimpleHead(64, 32, 17).eval()
    f8, f4 = head.deconv(torch.randn(2, 64, 16, 12))
    assert f8.shape == (2, 32, 32, 24) and f4.shape == (2, 32, 64, 48)
    assert head(torch.randn(2, 64, 16, 12)).shape == (2, 17, 64, 48)
    keys = set(head.state_dict())
    assert {"deconv_layers.0.weight", "deconv_layers.1.running_mean", "deconv_layers.3.weight",
            "deconv_layers.4.running_var", "final_layer.weight", "final_layer.bias"} <= keys
    assert not any(k.startswith(("deconv_layers.2", "deconv_layers.5")) for k in keys)  # ReLUs
    assert head.deconv_layers[0].bias is None and head.deconv_layers[3].bias is None


def test_backbone_gradients_flow():
    cfg = _small()
    vit = ViTBackbone(cfg)
    vit(torch.randn(1, 3, 256, 192)).square().mean().backward()
    assert vit.patch_embed.proj.weight.grad is not None and vit.pos_embed.grad.abs().sum() > 0
