"""ViTPose import: a reference ViTPose (written here from the paper/mmpose semantics) -> .pth -> vidpose."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from model.checkpoint import load_checkpoint, read_metadata
from model.commands import register
from model.vitpose import ViTPoseImportError, convert_vitpose

# Small ViT in the `base` preset's layout (overrides keep the test fast).
DIM, DEPTH, HEADS, HEAD_CH = 96, 2, 3, 32
OVR = dict(embed_dim=DIM, depth=DEPTH, num_heads=HEADS, head_channels=HEAD_CH, temporal_stride=16,
           temporal_dim=16, diffusion_dim=16, hypotheses=2)


# ----------------------------------------------------------------------------- reference ViTPose
class RefAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class RefMlp(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * 4)
        self.fc2 = nn.Linear(dim * 4, dim)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = RefMlp(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefPatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=16, stride=16, padding=2)  # ViTPose: 4 + 2 * (1 // 2 - 1)


class RefViT(nn.Module):
    def __init__(self, dim, depth, heads):
        super().__init__()
        self.patch_embed = RefPatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.randn(1, 16 * 12 + 1, dim) * 0.5)  # + 1: the class slot
        self.blocks = nn.ModuleList([RefBlock(dim, heads) for _ in range(depth)])
        self.last_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed.proj(x)
        b, c, hp, wp = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]  # ViTPose adds the class slot everywhere
        for blk in self.blocks:
            x = blk(x)
        x = self.last_norm(x)
        return x.permute(0, 2, 1).reshape(b, c, hp, wp)


class RefHead(nn.Module):
    def __init__(self, dim, ch, k=17):
        super().__init__()
        self.deconv_layers = nn.Sequential(
            nn.ConvTranspose2d(dim, ch, 4, 2, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(),
            nn.ConvTranspose2d(ch, ch, 4, 2, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU())
        self.final_layer = nn.Conv2d(ch, k, 1)

    def forward(self, x):
        return self.final_layer(self.deconv_layers(x))


class RefViTPose(nn.Module):
    def __init__(self, dim=DIM, depth=DEPTH, heads=HEADS, ch=HEAD_CH):
        super().__init__()
        self.backbone = RefViT(dim, depth, heads)
        self.keypoint_head = RefHead(dim, ch)
        with torch.no_grad():  # non-trivial BN statistics, so the running stats must map too
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
                    m.num_batches_tracked.fill_(1234)

    def forward(self, x):
        return self.keypoint_head(self.backbone(x))


@pytest.fixture(scope="module")
def ref():
    torch.manual_seed(0)
    return RefViTPose().eval()


@pytest.fixture(scope="module")
def ref_pth(ref, tmp_path_factory):
    path = tmp_path_factory.mktemp("vitpose") / "vitpose_small.pth"
    torch.save({"meta": {"epoch": 210, "mmpose_version": "0.29"}, "state_dict": ref.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def frames():
    return torch.randn(2, 5, 3, 256, 192, generator=torch.Generator().manual_seed(1))


def _run(path, frames, seed=0):
    model, meta = load_checkpoint(path)
    with torch.inference_mode():
        out = model(frames, generator=torch.Generator().manual_seed(seed))
    return model, meta, out


@pytest.mark.parametrize("diffusion", [False, True])
def test_imported_model_reproduces_vitpose(ref, ref_pth, frames, tmp_path, diffusion):
    out_path = convert_vitpose(ref_pth, tmp_path / "m.safetensors", preset="base", diffusion=diffusion, **OVR)
    model, meta, out = _run(out_path, frames)
    with torch.no_grad():
        want = ref(frames[:, 2])  # the key frame
    assert torch.allclose(out["base_heatmaps"], want, atol=1e-5, rtol=1e-4), \
        (out["base_heatmaps"] - want).abs().max()
    # Temporal parts (and the diffusion correction) are zero-initialised: exactly the base heatmaps.
    assert model.cfg.temporal and model.cfg.diffusion == diffusion
    assert torch.equal(out["heatmaps"], out["base_heatmaps"])
    cfg = meta["config"]
    assert cfg.freeze_backbone and cfg.embed_dim == DIM and cfg.depth == DEPTH
    assert meta["info"]["source"] == "vitpose" and meta["info"]["preset"] == "base"
    assert not any(p.requires_grad for p in model.backbone.parameters())
    sd = model.state_dict()
    assert torch.equal(sd["keypoint_head.deconv_layers.4.running_var"],
                       ref.state_dict()["keypoint_head.deconv_layers.4.running_var"])
    pos = ref.backbone.pos_embed
    assert torch.equal(sd["backbone.pos_embed"], pos[:, 1:] + pos[:, :1])


def test_padding_and_class_slot_matter(ref, ref_pth, frames, tmp_path):
    """The comparison above is sensitive to the patch padding and to the class-slot add."""
    with torch.no_grad():
        want = ref(frames[:, 2])
    path = convert_vitpose(ref_pth, tmp_path / "p0.safetensors", preset="base", patch_padding=0,
                           diffusion=False, **OVR)
    _, _, out = _run(path, frames)
    assert (out["base_heatmaps"] - want).abs().max() > 1e-3
    path = convert_vitpose(ref_pth, tmp_path / "m.safetensors", preset="base", diffusion=False, **OVR)
    model, _, _ = _run(path, frames)
    with torch.no_grad():
        model.backbone.pos_embed.sub_(ref.backbone.pos_embed[:, :1])  # as if the class slot were dropped
        out = model(frames)
    assert (out["base_heatmaps"] - want).abs().max() > 1e-3


def test_bare_state_dict_with_module_prefix(ref, frames, tmp_path):
    src = tmp_path / "bare.pth"
    sd = {f"module.{k}": v for k, v in ref.state_dict().items()}
    sd["module.backbone.cls_token"] = torch.zeros(1, 1, DIM)  # some exports carry an unused class token
    torch.save(sd, src)
    path = convert_vitpose(src, tmp_path / "m.safetensors", preset="base", temporal=False, diffusion=False,
                           **OVR)
    _, _, out = _run(path, frames)
    with torch.no_grad():
        assert torch.allclose(out["heatmaps"], ref(frames[:, 2]), atol=1e-5, rtol=1e-4)


def test_mismatched_checkpoints_fail_clearly(ref, ref_pth, tmp_path):
    with pytest.raises(ViTPoseImportError, match=r"2 blocks, preset has 3.*missing backbone.blocks.2"):
        convert_vitpose(ref_pth, tmp_path / "x.safetensors", preset="base", **{**OVR, "depth": 3})
    with pytest.raises(ViTPoseImportError, match="pos_embed"):
        convert_vitpose(ref_pth, tmp_path / "x.safetensors", preset="base", **{**OVR, "embed_dim": 48})
    with pytest.raises(ViTPoseImportError, match="final_layer"):
        convert_vitpose(ref_pth, tmp_path / "x.safetensors", preset="base", **{**OVR, "num_keypoints": 16})
    sd = dict(ref.state_dict())
    sd["backbone.blocks.0.attn.rel_pos_h"] = torch.zeros(3)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(ViTPoseImportError, match="unexpected keys.*rel_pos_h"):
        convert_vitpose(tmp_path / "extra.pth", tmp_path / "x.safetensors", preset="base", **OVR)
    assert not (tmp_path / "x.safetensors").exists()


class _NotWeights:
    pass


def test_unsafe_or_broken_files_are_refused(tmp_path):
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": _NotWeights()}, tmp_path / "pickled.pth")
    with pytest.raises(ViTPoseImportError, match="weights-only"):
        convert_vitpose(tmp_path / "pickled.pth", tmp_path / "x.safetensors", preset="base", **OVR)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ViTPoseImportError, match="weights-only"):
        convert_vitpose(tmp_path / "junk.pth", tmp_path / "x.safetensors", preset="base", **OVR)


def _cli(argv):
    parser = argparse.ArgumentParser(prog="vidpose")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_import_vitpose(ref_pth, tmp_path, capsys):
    # The CLI has no knobs for ViT size overrides: use a preset-sized fake (tiny-cpu layout).
    torch.manual_seed(3)
    from model.config import get_preset

    cfg = get_preset("tiny-cpu")
    ref = RefViTPose(cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.head_channels).eval()
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "tiny.pth")
    assert _cli(["import-vitpose", str(tmp_path / "tiny.pth"), str(tmp_path / "a.safetensors"),
                 "--preset", "tiny-cpu"]) == 0
    meta = read_metadata(tmp_path / "a.safetensors")
    assert meta["config"].diffusion is False and meta["config"].temporal and meta["config"].freeze_backbone
    assert _cli(["import-vitpose", str(tmp_path / "tiny.pth"), str(tmp_path / "b.safetensors"),
                 "--preset", "tiny-cpu", "--diffusion", "--no-temporal"]) == 0
    meta = read_metadata(tmp_path / "b.safetensors")
    assert meta["config"].diffusion is True and meta["config"].temporal is False
    # Wrong preset: exit code 2 and a message, no file.
    bad = ["import-vitpose", str(ref_pth), str(tmp_path / "c.safetensors"), "--preset", "tiny-cpu"]
    assert _cli(bad) == 2
    assert "import-vitpose:" in capsys.readouterr().err
    assert not (tmp_path / "c.safetensors").exists()
    assert _cli(["model-info", str(tmp_path / "a.safetensors")]) == 0
    assert '"source": "vitpose"' in capsys.readouterr().out
