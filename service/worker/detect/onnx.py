"""A user-supplied YOLO-style person detector (.onnx), run with onnxruntime or OpenCV DNN.

Input: one tensor (N, 3, S_h, S_w), RGB float 0..1, each frame letterboxed
(aspect kept, grey 114 padding split evenly) to the file's fixed size, or to
config.input_size square when the file's size is dynamic. Output (first
output), told apart by shape (override: config.onnx_layout):

  v8  (N, 4 + C, A)  YOLOv8 / YOLO11: rows cx, cy, w, h, then C class scores
  v5  (N, A, 5 + C)  YOLOv5 / YOLOv7: cx, cy, w, h, objectness, C class scores

Boxes are in network-input pixels; scores are probabilities (post-sigmoid).
An anchor is a person when person_class has its highest class score; its
score is that class score (v8) or objectness x class score (v5). Rule for
"auto": the dimension that is the smaller of the last two holds the box
fields, so it is v8 when dim 1 < dim 2 (then A > 4 + C, true of every real
export), else v5. The exact contract is in docs/detectors.md.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from service.worker.detect.base import Detection, DetectorConfig, DetectorError, check_frame
from service.worker.detect.nms import select

PAD_VALUE = 114  # ultralytics' letterbox grey


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, float, float]:
    """RGB (H, W, 3) -> (S_h, S_w, 3) with the frame scaled by r and centred; returns (img, r, pad_x, pad_y).

    A point (x, y) of the frame lands at (x * r + pad_x, y * r + pad_y).
    """
    sh, sw = size
    h, w = frame.shape[:2]
    r = min(sh / h, sw / w)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
    px, py = (sw - nw) // 2, (sh - nh) // 2
    out = np.full((sh, sw, 3), PAD_VALUE, dtype=np.uint8)
    out[py:py + nh, px:px + nw] = img
    return out, r, float(px), float(py)


def decode(pred: np.ndarray, layout: str, person_class: int) -> tuple[np.ndarray, np.ndarray]:
    """One image's raw output (2-D) -> (M, 4) xyxy boxes in input pixels and (M,) person scores."""
    rows = pred.T if layout == "v8" else pred  # -> (A, fields)
    fields = 4 if layout == "v8" else 5
    classes = rows[:, fields:]
    if person_class >= classes.shape[1]:
        raise DetectorError(f"person_class {person_class} but the output has {classes.shape[1]} classes")
    is_person = np.argmax(classes, axis=1) == person_class
    score = classes[:, person_class] * (rows[:, 4] if layout == "v5" else 1.0)
    keep = is_person & np.isfinite(score)
    cx, cy, w, h = (rows[keep, i] for i in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes.astype(np.float64), score[keep].astype(np.float64)


def detect_layout(shape: tuple[int, ...], forced: str = "auto") -> str:
    if len(shape) != 3:
        raise DetectorError(f"YOLO output must be 3-D (N, 4+C, A) or (N, A, 5+C), got shape {tuple(shape)}")
    a, b = shape[1], shape[2]
    layout = forced if forced != "auto" else ("v8" if a < b else "v5")
    fields = a if layout == "v8" else b
    need = 5 if layout == "v8" else 6
    if fields < need:
        raise DetectorError(f"YOLO output shape {tuple(shape)} read as {layout} has {fields} fields per "
                            f"anchor; at least {need} needed (box + scores)")
    return layout


class _OrtRunner:
    """onnxruntime session: thread-safe run; CUDA provider when onnxruntime has it."""

    kind = "onnxruntime"

    def __init__(self, path: Path):
        import onnxruntime as ort

        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2  # the worker's torch threads share the CPU
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise DetectorError(f"cannot load ONNX detector {path}: {e}") from e
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise DetectorError(f"ONNX detector {path} must have one input (images), has {len(inputs)}")
        self.input_name = inputs[0].name
        self.input_shape = [d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape]

    def run(self, blob: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: blob})[0])


class _CvRunner:
    """OpenCV DNN net (fallback without onnxruntime): not thread-safe, so calls are serialised."""

    kind = "opencv"

    def __init__(self, path: Path):
        try:
            self.net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as e:
            raise DetectorError(f"cannot load ONNX detector {path} with OpenCV DNN: {e}") from e
        self.input_shape = _onnx_input_shape(path)
        self.lock = threading.Lock()

    def run(self, blob: np.ndarray) -> np.ndarray:
        with self.lock:
            self.net.setInput(blob)
            return np.asarray(self.net.forward())


def _onnx_input_shape(path: Path) -> list[int | None]:
    """The file's input shape when the `onnx` package is there to read it; else all dynamic."""
    try:
        import onnx
    except ImportError:
        return [None, 3, None, None]
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise DetectorError(f"cannot read ONNX detector {path}: {e}") from e
    init = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in init]
    if len(graph_inputs) != 1:
        raise DetectorError(f"ONNX detector {path} must have one input (images), has {len(graph_inputs)}")
    dims = graph_inputs[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]


def _make_runner(path: Path, runtime: str):
    if runtime in ("auto", "onnxruntime"):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            if runtime == "onnxruntime":
                raise DetectorError("onnx_runtime=onnxruntime but onnxruntime is not installed") from None
        else:
            return _OrtRunner(path)
    return _CvRunner(path)


class OnnxDetector:
    name = "onnx"

    def __init__(self, config: DetectorConfig):
        if config.model_path is None:
            raise DetectorError("the onnx detector needs a model file (VIDPOSE_DETECTOR_MODEL)")
        path = Path(config.model_path)
        if not path.is_file():
            raise DetectorError(f"ONNX detector file not found: {path}")
        self.config = config
        self.runner = _make_runner(path, config.onnx_runtime)
        shape = self.runner.input_shape
        if len(shape) != 4 or shape[1] not in (None, 3):
            raise DetectorError(f"ONNX detector {path}: input must be (N, 3, H, W), got {shape}")
        n, _, sh, sw = shape
        self.input_hw = (sh or config.input_size, sw or config.input_size)
        # Dynamic batch: one run per call; a fixed batch B: chunks of B (the last one padded).
        self.fixed_batch = n
        if self.runner.kind == "opencv" and n is None:
            self.fixed_batch = 1  # OpenCV DNN does not reliably resize a dynamic batch
        # One run on a grey frame checks the output layout now rather than in the first job.
        probe = self._run(np.full((1, 3, *self.input_hw), PAD_VALUE / 255, dtype=np.float32))
        self.layout = detect_layout(probe.shape, config.onnx_layout)
        self._check_output(probe, 1)

    def _run(self, blob: np.ndarray) -> np.ndarray:
        b = self.fixed_batch
        try:
            if b is None:
                return self.runner.run(blob)
            outs = []
            for i in range(0, len(blob), b):
                chunk = blob[i:i + b]
                n = len(chunk)
                if n < b:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
                outs.append(self.runner.run(chunk)[:n])
            return np.concatenate(outs)
        except DetectorError:
            raise
        except Exception as e:  # a runtime error inside the user's graph
            raise DetectorError(f"ONNX detector failed on input {blob.shape}: {e}") from e

    def _check_output(self, out: np.ndarray, n: int) -> None:
        if out.ndim != 3 or out.shape[0] != n:
            raise DetectorError(f"ONNX detector output {out.shape} does not match the YOLO layouts "
                                f"(N, 4+C, A) / (N, A, 5+C) for a batch of {n}")

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        frames = [check_frame(f) for f in frames]
        if not frames:
            return []
        boxes = [letterbox(f, self.input_hw) for f in frames]
        blob = np.stack([b[0] for b in boxes]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        out = self._run(np.ascontiguousarray(blob))
        self._check_output(out, len(frames))
        detect_layout(out.shape, self.layout)  # same layout as the probe run
        results = []
        for frame, (_, r, px, py), pred in zip(frames, boxes, out):
            xyxy, scores = decode(pred, self.layout, self.config.person_class)
            xyxy[:, [0, 2]] = (xyxy[:, [0, 2]] - px) / r
            xyxy[:, [1, 3]] = (xyxy[:, [1, 3]] - py) / r
            h, w = frame.shape[:2]
            results.append(select(xyxy, scores, w, h, self.config))
        return results
