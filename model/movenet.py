"""MoveNet SinglePose as PyTorch modules: MobileNetV2 + FPN backbone, four stride-4 heads, its decoding.

    crop (N, 3, S, S) RGB, (x - 127.5) / 127.5
      -> MobileNetV2 (width multiplier: Thunder 1.75, Lightning 1.0) taps at strides 4, 8, 16, 32
      -> FPN: top-down, lateral 1x1 + bilinear x2 + separable conv -> (N, 24, S/4, S/4)  [cached per crop]
      -> MoveNetHead, four branches (separable conv 96 + ReLU, 1x1):
           heatmaps (K, after sigmoid), centre (1, after sigmoid), regression (2K), offsets (2K)
      -> decode: person centre = argmax(centre x centre prior); per joint, the heatmap re-weighted by the
         inverse distance to the centre's regressed joint position, its argmax + sub-cell offset.

BatchNorm is folded into the convolutions' biases (as in the released graphs), so every conv has a
bias and the modules train as they are. TensorFlow's 'SAME' padding is kept exactly: stride-2 3x3
convolutions pad one pixel at the bottom/right only. The weights come from Google's released graphs
through `model/import_tfjs.py`; nothing here knows a TF node name.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CENTER_DISTANCE_BIAS = 1.8  # MoveNet's 1 / (distance + 1.8), for the centre prior and the joints
# MobileNetV2 stages: (expansion t, channels c, repeats n, first stride s)
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1))
FPN_TAPS = {4: 2, 8: 5, 16: 9}  # stride -> index of the inverted-residual block whose output the FPN reads
FPN_CHANNELS = (64, 32, 24, 24)  # laterals at strides 32/16, 8, 4 and the stride-4 output
HEAD_CHANNELS = 96


def make_divisible(v: float, divisor: int = 8) -> int:
    """Keras/TF MobileNet channel rounding."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _pad_nhwc(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Zero padding that keeps a channels-last tensor channels-last (F.pad is ~3x slower on those)."""
    n, c, h, w = x.shape
    out = x.new_empty((n, h + top + bottom, w + left + right, c))
    out[:, :top].zero_()
    out[:, top + h:].zero_()
    out[:, :, :left].zero_()
    out[:, :, left + w:].zero_()
    out[:, top:top + h, left:left + w] = x.permute(0, 2, 3, 1)
    return out.permute(0, 3, 1, 2)


class SameConv2d(nn.Conv2d):
    """nn.Conv2d with TensorFlow 'SAME' padding (asymmetric for even inputs at stride 2).

    Fast paths for channels-last input (what MoveNetBackbone feeds it): a 1x1 convolution is one
    matrix product over the channels of the NHWC data, and padding stays NHWC.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pointwise = self.kernel_size == (1, 1) and self.stride == (1, 1) and self.groups == 1
        if self.stride == (1, 1):  # odd kernels at stride 1: SAME is symmetric, the conv pads itself
            self.padding = (self.kernel_size[0] // 2, self.kernel_size[1] // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if self.pointwise and nhwc:
            y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
            return y.permute(0, 3, 1, 2)
        if self.stride == (1, 1):
            return super().forward(x)
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ih, iw = x.shape[-2:]
        ph = max((-(-ih // sh) - 1) * sh + kh - ih, 0)
        pw = max((-(-iw // sw) - 1) * sw + kw - iw, 0)
        pads = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
        if torch.onnx.is_in_onnx_export() and pads == (0, 1, 0, 1):
            # the same sums as pad-bottom/right + 3x3: a 4x4 kernel with a zero first row and column,
            # padded 1 all round. Exports as one Conv (a separate Pad op makes onnxruntime reorder
            # layouts around it: ~15 % of the backbone's time, measured)
            w4 = np.pad(self.weight.detach().cpu().numpy(), ((0, 0), (0, 0), (1, 0), (1, 0)))  # a constant
            return F.conv2d(x, torch.from_numpy(w4), self.bias, self.stride, 1, self.dilation, self.groups)
        if ph or pw:
            x = _pad_nhwc(x, *pads) if nhwc else F.pad(x, (pads[2], pads[3], pads[0], pads[1]))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, bias: bool = True) -> SameConv2d:
    return SameConv2d(cin, cout, k, stride=stride, groups=groups, bias=bias)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 project; residual if shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = conv(cin, hidden) if expansion != 1 else None
        self.depthwise = conv(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = conv(hidden, cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # activations in place: conv outputs are fresh tensors, and out-of-place ReLU6 on NHWC data
        # costs ~6x more (bench/pose_bench.py)
        y = F.relu6(self.expand(x), inplace=True) if self.expand is not None else x
        y = self.project(F.relu6(self.depthwise(y), inplace=True))
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """Returns the features the FPN reads: {4: ..., 8: ..., 16: ..., 32: last 1x1 conv (1280)}."""

    def __init__(self, width: float):
        super().__init__()
        stem = make_divisible(32 * width)
        self.stem = conv(3, stem, 3, stride=2)
        blocks, cin = [], stem
        for t, c, n, s in MOBILENET_V2_STAGES:
            cout = make_divisible(c * width)
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.last = conv(cin, 1280)  # 1280 whatever the width (the released graphs: Conv_1 -> 1280)
        self.tap_channels = {s: blocks[i].project.out_channels for s, i in FPN_TAPS.items()}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = F.relu6(self.stem(x), inplace=True)
        taps = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            for s, j in FPN_TAPS.items():
                if i == j:
                    taps[s] = x
        taps[32] = F.relu6(self.last(x), inplace=True)
        return taps


class SeparableConv(nn.Module):
    """3x3 depthwise (no bias) then 1x1 (bias) and ReLU: Keras SeparableConv2D(activation='relu')."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = conv(cin, cin, 3, groups=cin, bias=False)
        self.pointwise = conv(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pointwise(self.depthwise(x)), inplace=True)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    # TF ResizeBilinear with half_pixel_centers == PyTorch's align_corners=False
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class MoveNetBackbone(nn.Module):
    """MobileNetV2 + FPN: (N, 3, S, S) normalised crop -> (N, 24, S/4, S/4)."""

    def __init__(self, width: float):
        super().__init__()
        self.mobilenet = MobileNetV2(width)
        c32, c16, c8, c4 = FPN_CHANNELS
        taps = self.mobilenet.tap_channels
        self.lateral32 = conv(1280, c32)
        self.lateral16 = conv(taps[16], c32)
        self.smooth16 = SeparableConv(c32, c16)
        self.lateral8 = conv(taps[8], c16)
        self.smooth8 = SeparableConv(c16, c8)
        self.lateral4 = conv(taps[4], c8)
        self.smooth4 = SeparableConv(c8, c4)
        self.out_channels = c4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NHWC: depthwise-heavy MobileNets run ~1.4x faster on CPU (bench/pose_bench.py); same numbers
        if not torch.onnx.is_in_onnx_export():  # exported graphs stay plain NCHW convs (ORT fuses those)
            x = x.contiguous(memory_format=torch.channels_last)
        t = self.mobilenet(x)
        y = self.smooth16(upsample2(self.lateral32(t[32])) + self.lateral16(t[16]))
        y = self.smooth8(upsample2(y) + self.lateral8(t[8]))
        return self.smooth4(upsample2(y) + self.lateral4(t[4]))


class HeadBranch(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(SeparableConv(cin, HEAD_CHANNELS), conv(HEAD_CHANNELS, cout))


class MoveNetHead(nn.Module):
    """The four stride-4 heads on (fused) stride-4 features, and MoveNet's keypoint decoding.

    `pyramid` gives the diffusion head its 1/16 and 1/8 conditioning by average-pooling the stride-4
    features (the backbone caches one map per crop, the finest).
    """

    fuse_stride = 4

    def __init__(self, in_channels: int, num_keypoints: int, heatmap_size: tuple[int, int]):
        super().__init__()
        k = num_keypoints
        self.heatmap = HeadBranch(in_channels, k)
        self.center = HeadBranch(in_channels, 1)
        self.regress = HeadBranch(in_channels, 2 * k)
        self.offset = HeadBranch(in_channels, 2 * k)
        self.channels = {16: in_channels, 8: in_channels, 4: in_channels}
        h, w = heatmap_size
        ys = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        xs = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
        # the centre prior: people are cropped centred, so prefer the centre-most person
        dist = torch.sqrt((ys - h / 2) ** 2 + (xs - w / 2) ** 2)
        self.register_buffer("center_prior", 1.0 / (dist + CENTER_DISTANCE_BIAS), persistent=False)
        self.register_buffer("grid_y", ys.clone(), persistent=False)
        self.register_buffer("grid_x", xs.clone(), persistent=False)

    def pyramid(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return F.avg_pool2d(feats, 4), F.avg_pool2d(feats, 2), feats

    def predict(self, f4: torch.Tensor) -> dict:
        return {"heatmaps": torch.sigmoid(self.heatmap(f4)), "center": torch.sigmoid(self.center(f4)),
                "regress": self.regress(f4), "offset": self.offset(f4)}

    def _joint_cells(self, heat: torch.Tensor, aux: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, h, w) float heatmaps -> each joint's chosen cell (ky, kx), (B, K) long each: the
        person centre = argmax(centre x centre prior), then per joint the heatmap re-weighted by the
        inverse distance to the centre's regressed joint position, its argmax."""
        b, k, h, w = heat.shape
        n = torch.arange(b, device=heat.device)
        center = aux["center"].float()[:, 0] * self.center_prior  # (B, h, w)
        ci = center.flatten(1).argmax(1)
        cy, cx = torch.div(ci, w, rounding_mode="floor"), ci % w
        reg = aux["regress"].float()[n, :, cy, cx].view(b, k, 2)  # (dy, dx) per joint from the centre
        ry = cy[:, None].float() + reg[..., 0]
        rx = cx[:, None].float() + reg[..., 1]
        dist = torch.sqrt((self.grid_y - ry[..., None, None]) ** 2 + (self.grid_x - rx[..., None, None]) ** 2)
        ki = (heat / (dist + CENTER_DISTANCE_BIAS)).flatten(2).argmax(2)  # (B, K)
        return torch.div(ki, w, rounding_mode="floor"), ki % w

    def decode(self, heatmaps: torch.Tensor, aux: dict) -> torch.Tensor:
        """(B, K, h, w) heatmaps + the same prediction's centre/regress/offset -> (B, K, 3) float32.

        x, y in heatmap cells in vidpose's convention (integer = cell centre; MoveNet's own output
        is (cell + offset) / size with 0 at the crop's edge, i.e. half a cell less here), score =
        the heatmap value at the chosen cell.
        """
        heat = heatmaps.float()
        b, k, h, w = heat.shape
        ky, kx = self._joint_cells(heat, aux)
        nb = torch.arange(b, device=heat.device)[:, None].expand(b, k)
        joints = torch.arange(k, device=heat.device)[None].expand(b, k)
        off = aux["offset"].float().view(b, k, 2, h, w)[nb, joints, :, ky, kx]  # (B, K, 2) = (dy, dx)
        score = heat[nb, joints, ky, kx]
        x = kx.float() + off[..., 1] - 0.5
        y = ky.float() + off[..., 0] - 0.5
        return torch.stack([x, y, score], dim=-1)

    def hypothesis_points(self, heatmaps: torch.Tensor, aux: dict) -> torch.Tensor:
        """Where one diffusion hypothesis puts each joint, (B, K, 2) float32 x, y in heatmap cells: the
        cell decode() picks, moved to the heat-weighted centroid of the 3x3 cells around it.

        For the hypotheses' spread only. The offset field is shared by all hypotheses, so cell +
        offset gives K identical points whenever their peaks share a cell (~70 % of joints on
        held-out vtest), and the spread is then 0 whatever their heatmaps' shapes; the centroid
        follows each hypothesis' own heatmap (docs/results.md#temporal-path measures both).
        """
        heat = heatmaps.float()
        b, k, h, w = heat.shape
        ky, kx = self._joint_cells(heat, aux)
        d = torch.arange(-1, 2, device=heat.device)
        ys = (ky[..., None, None] + d[:, None]).expand(b, k, 3, 3)
        xs = (kx[..., None, None] + d[None, :]).expand(b, k, 3, 3)
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)  # a border peak has fewer neighbours
        nb = torch.arange(b, device=heat.device)[:, None, None, None].expand(b, k, 3, 3)
        joints = torch.arange(k, device=heat.device)[None, :, None, None].expand(b, k, 3, 3)
        v = heat[nb, joints, ys.clamp(0, h - 1), xs.clamp(0, w - 1)].clamp_min(0) * inside
        total = v.sum((-1, -2))
        # a hypothesis is the prior plus an unclamped correction, so a window may hold no positive
        # heat at all: then the point is the cell itself
        alive = total > 1e-12
        safe = torch.where(alive, total, torch.ones_like(total))
        x = torch.where(alive, (v * xs.float()).sum((-1, -2)) / safe, kx.float())
        y = torch.where(alive, (v * ys.float()).sum((-1, -2)) / safe, ky.float())
        return torch.stack([x, y], dim=-1)
