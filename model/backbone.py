"""Per-frame backbone: a plain timm ViT laid out like ViTPose, plus ViTPose's simple head.

Module and parameter names follow ViTPose's mmpose checkpoints
(`backbone.patch_embed.proj`, `backbone.blocks.N.*`, `backbone.last_norm`,
`keypoint_head.deconv_layers.{0,1,3,4}`, `keypoint_head.final_layer`), so a
ViTPose state dict maps onto ours key for key (see vitpose.py); the only
difference is `pos_embed`, which has no class-token slot here.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from model import heatmaps as hm
from model.config import PoseModelConfig


class ViTBackbone(VisionTransformer):
    """timm VisionTransformer without class token or classifier: (N, 3, H, W) -> (N, C, gh, gw).

    ViTPose differences kept: the patch conv pads by `cfg.patch_padding` (2 in
    ViTPose; with H, W multiples of 16 the grid is unchanged), and the final
    LayerNorm is named `last_norm`.
    """

    def __init__(self, cfg: PoseModelConfig):
        super().__init__(
            img_size=cfg.input_size, patch_size=cfg.patch_size, in_chans=3, num_classes=0,
            global_pool="", embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio, qkv_bias=True, class_token=False, final_norm=False,
            drop_path_rate=cfg.drop_path_rate,
        )
        p = cfg.patch_size
        old = self.patch_embed.proj
        self.patch_embed.proj = nn.Conv2d(3, cfg.embed_dim, p, stride=p, padding=cfg.patch_padding,
                                          device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():  # keep timm's initialisation of the patch projection
            self.patch_embed.proj.weight.copy_(old.weight)
            self.patch_embed.proj.bias.copy_(old.bias)
        self.last_norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6, device=old.weight.device,
                                      dtype=old.weight.dtype)
        gh = (cfg.input_size[0] + 2 * cfg.patch_padding - p) // p + 1
        gw = (cfg.input_size[1] + 2 * cfg.patch_padding - p) // p + 1
        if (gh, gw) != cfg.patch_grid:
            raise ValueError(f"patch_padding {cfg.patch_padding} changes the patch grid to {(gh, gw)} "
                             f"(expected {cfg.patch_grid}); input_size must be a multiple of patch_size")
        self.grid = (gh, gw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.patch_embed(x)  # (N, gh*gw, C)
        x = x + self.pos_embed
        x = self.blocks(x)
        x = self.last_norm(x)
        return x.transpose(1, 2).reshape(n, -1, *self.grid)


class SimpleHead(nn.Module):
    """ViTPose's TopdownHeatmapSimpleHead: 2 x [deconv 4x4 /2, BN, ReLU] then a 1x1 conv to K.

    Implements the head interface of model/backbones.py (pyramid / predict / decode / hypothesis_points).
    """

    def __init__(self, in_channels: int, channels: int, num_keypoints: int):
        super().__init__()
        self.channels = {16: in_channels, 8: channels, 4: channels}
        self.deconv_layers = nn.Sequential(
            nn.ConvTranspose2d(in_channels, channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.final_layer = nn.Conv2d(channels, num_keypoints, 1)
        nn.init.normal_(self.final_layer.weight, std=0.001)  # as ViTPose: starts near-zero heatmaps
        nn.init.zeros_(self.final_layer.bias)
        for m in self.deconv_layers:
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)

    def deconv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, gh, gw) -> features at 1/8 (after the first deconv block) and 1/4 (after the second)."""
        f8 = self.deconv_layers[2](self.deconv_layers[1](self.deconv_layers[0](x)))
        f4 = self.deconv_layers[5](self.deconv_layers[4](self.deconv_layers[3](f8)))
        return f8, f4

    def pyramid(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (tokens, *self.deconv(tokens))

    def predict(self, f4: torch.Tensor) -> dict:
        return {"heatmaps": self.final_layer(f4)}

    @staticmethod
    def decode(heatmaps: torch.Tensor, prediction: dict | None = None) -> torch.Tensor:
        return hm.decode_heatmaps(heatmaps.float())

    @staticmethod
    def hypothesis_points(heatmaps: torch.Tensor, prediction: dict | None = None) -> torch.Tensor:
        """Where one diffusion hypothesis puts each joint: its decoded peak (already sub-pixel)."""
        return hm.decode_heatmaps(heatmaps.float())[..., :2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv(x)[1])
