"""The onnx backend on small YOLO-layout graphs built here with onnx.helper.

The graph's scores depend on the image: the letterboxed input is cut into a
4x4 grid of 16-px cells (64x64 input); anchor a sits on cell a, and
its class-0 ("person") score is the cell's mean brightness, class 1 scores
1 - brightness. A second anchor set (boxes 1.25x the cell, score 0.9x) overlaps
the first with IoU 0.64, for NMS. v5 files add objectness = brightness.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from service.worker.detect import DetectorConfig, DetectorError, make_detector  # noqa: E402

S, CELL = 64, 16
G = S // CELL
A = G * G


def _anchors(scale: float) -> np.ndarray:
    ys, xs = np.mgrid[0:G, 0:G]
    cx = (xs.reshape(-1) + 0.5) * CELL
    cy = (ys.reshape(-1) + 0.5) * CELL
    side = np.full(A, CELL * scale)
    return np.stack([cx, cy, side, side]).astype(np.float32)  # (4, A)


def build_yolo(path, layout: str = "v8", batch: int | str = "N", size: int | str = S, channels: int = 3,
               flat_output: bool = False, boxes_only: bool = False) -> str:
    """Write a YOLO-layout detector file; batch/size: an int = fixed dim, a str = dynamic dim."""
    const = lambda name, arr: helper.make_tensor(name, TensorProto.FLOAT, arr.shape, arr.reshape(-1))  # noqa: E731
    boxes = np.concatenate([_anchors(1.0), _anchors(1.25)], axis=1)[None]  # (1, 4, 2A)
    nodes = [
        helper.make_node("AveragePool", ["images"], ["cells"], kernel_shape=[CELL] * 2, strides=[CELL] * 2),
        helper.make_node("ReduceMean", ["cells"], ["bright4"], axes=[1], keepdims=1),  # (N, 1, G, G)
        helper.make_node("Reshape", ["bright4", "shape_n1a"], ["bright"]),  # (N, 1, A)
        helper.make_node("Mul", ["bright", "k09"], ["bright09"]),
        helper.make_node("Concat", ["bright", "bright09"], ["p0"], axis=2),  # (N, 1, 2A) person scores
        helper.make_node("Sub", ["one", "p0"], ["p1"]),  # class 1
        helper.make_node("Mul", ["p0", "zero"], ["z"]),
        helper.make_node("Add", ["boxes", "z"], ["b"]),  # (N, 4, 2A): anchors broadcast over the batch
    ]
    inits = [helper.make_tensor("shape_n1a", TensorProto.INT64, [3], [0, 1, A]),
             const("k09", np.array([0.9], np.float32)), const("one", np.array([1.0], np.float32)),
             const("zero", np.array([0.0], np.float32)), const("boxes", boxes)]
    fields = ["b", "p0", "p1"] if layout == "v8" else ["b", "p0", "p0", "p1"]  # v5: objectness = p0
    if boxes_only:
        fields = ["b"]  # (N, 4, 2A): boxes without any class score
    out_shape = [batch, 2 * A] if flat_output else [batch, len(fields) + 3, 2 * A]
    if layout == "v5" and not flat_output:
        out_shape = [batch, 2 * A, len(fields) + 3]
    nodes.append(helper.make_node("Concat", fields, ["raw"], axis=1))  # (N, F, 2A)
    if flat_output:
        nodes.append(helper.make_node("ReduceMean", ["raw"], ["output0"], axes=[1], keepdims=0))  # (N, 2A)
    elif layout == "v8":
        nodes.append(helper.make_node("Identity", ["raw"], ["output0"]))
    else:
        nodes.append(helper.make_node("Transpose", ["raw"], ["output0"], perm=[0, 2, 1]))  # (N, 2A, 6+1)
    graph = helper.make_graph(
        nodes, "yolo_test",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def scene(value: int = 255, h: int = 100, w: int = 200) -> np.ndarray:
    """A black (h, w) frame with one cell-aligned patch: letterboxed into 64x64 (r = 0.32, pad_y = 16) the
    patch x 100..150, y 0..50 is exactly grid cell (row 1, col 2)."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[0:50, 100:150] = value
    return frame


def cfg(path, **kw) -> DetectorConfig:
    return DetectorConfig(model_path=path, input_size=S, **kw)


@pytest.mark.parametrize("runtime", ["onnxruntime", "opencv"])
@pytest.mark.parametrize("layout", ["v8", "v5"])
def test_letterbox_mapping_scores_and_class_filter(tmp_path, runtime, layout):
    det = make_detector("onnx", cfg(build_yolo(tmp_path / "m.onnx", layout), onnx_runtime=runtime))
    assert det.layout == layout
    [found] = det.detect([scene(255)])
    # The white cell maps back to the patch; padding (grey 114: class 1 wins) and black cells are not
    # people; the 1.25x anchor on the same cell is suppressed (IoU 0.71 > 0.45).
    assert len(found) == 1
    np.testing.assert_allclose(found[0].bbox, (100, 0, 50, 50), atol=1e-3)
    assert found[0].score == pytest.approx(1.0, abs=1e-3)

    [found] = det.detect([scene(200)])  # brightness 0.784: v8 score = class score, v5 = objectness x class
    expect = 200 / 255 if layout == "v8" else (200 / 255) ** 2
    assert [round(d.score, 3) for d in found] == [pytest.approx(expect, abs=2e-3)]

    assert det.detect([scene(100)]) == [[]]  # brightness 0.39 < 0.5: class 1 has the higher score


def test_nms_threshold_and_cap(tmp_path):
    path = build_yolo(tmp_path / "m.onnx")
    loose = make_detector("onnx", cfg(path, nms_iou=0.8))  # clipped pair: IoU 0.71
    [found] = loose.detect([scene(255)])
    assert [round(d.score, 3) for d in found] == [1.0, 0.9]  # both anchors of the cell, score-descending
    cx = [d.bbox[0] + d.bbox[2] / 2 for d in found]
    assert cx == pytest.approx([125, 125])
    # the 1.25x box is clipped at the frame top: y0 = (24 - 10 - 16) / 0.32 < 0 -> 0
    assert found[1].bbox[1] == 0 and found[1].bbox[2] == pytest.approx(62.5)
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[50:100, :] = 255  # four white cells (row 2)
    assert len(make_detector("onnx", cfg(path)).detect([frame])[0]) == 4
    assert len(make_detector("onnx", cfg(path, max_people=3)).detect([frame])[0]) == 3
    strict = make_detector("onnx", cfg(path, low_score=0.95, nms_iou=0.8))
    assert [d.score for d in strict.detect([scene(255)])[0]] == [1.0]  # the 0.9 anchor is under low_score


def _count_runs(det) -> list:
    calls = []
    run = det.runner.run

    def counting(blob):
        calls.append(blob.shape[0])
        return run(blob)

    det.runner.run = counting
    return calls


@pytest.mark.parametrize("runtime", ["onnxruntime", "opencv"])
def test_batches_dynamic_and_fixed(tmp_path, runtime):
    frames = [scene(255), scene(200, h=100, w=200), np.ascontiguousarray(np.flipud(scene(255)))]
    frames.append(np.zeros((300, 120, 3), np.uint8))  # another size: letterboxed with side padding
    expected = None
    for batch, size, runs in [("N", S, {"onnxruntime": [4], "opencv": [1, 1, 1, 1]}),
                              (1, S, {"onnxruntime": [1, 1, 1, 1], "opencv": [1, 1, 1, 1]}),
                              (3, S, {"onnxruntime": [3, 3], "opencv": [3, 3]}),
                              ("N", "S", {"onnxruntime": [4], "opencv": [1, 1, 1, 1]})]:
        path = build_yolo(tmp_path / f"m_{batch}_{size}.onnx", batch=batch, size=size)
        det = make_detector("onnx", cfg(path, onnx_runtime=runtime))
        calls = _count_runs(det)
        got = det.detect(frames)
        assert calls == runs[runtime], (batch, size)
        if expected is None:
            expected = got
        assert got == expected
    assert [len(x) for x in expected] == [1, 1, 1, 0]
    flipped = expected[2][0].bbox  # the patch moved to the frame bottom: y 50..100
    np.testing.assert_allclose(flipped, (100, 50, 50, 50), atol=1e-3)


def test_fixed_input_size_wins_over_config(tmp_path):
    path = build_yolo(tmp_path / "m.onnx", batch=1, size=S)
    det = make_detector("onnx", DetectorConfig(model_path=path, input_size=320))
    assert det.input_hw == (S, S)
    np.testing.assert_allclose(det.detect([scene(255)])[0][0].bbox, (100, 0, 50, 50), atol=1e-3)


def test_falls_back_to_opencv_without_onnxruntime(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    det = make_detector("onnx", cfg(build_yolo(tmp_path / "m.onnx")))
    assert det.runner.kind == "opencv"
    assert len(det.detect([scene(255)])[0]) == 1
    with pytest.raises(DetectorError, match="onnxruntime is not installed"):
        make_detector("onnx", cfg(build_yolo(tmp_path / "m.onnx"), onnx_runtime="onnxruntime"))


def test_thread_safe(tmp_path):
    det = make_detector("onnx", cfg(build_yolo(tmp_path / "m.onnx", batch=1), onnx_runtime="opencv"))
    want = det.detect([scene(255), scene(200)])
    got, errors = [], []

    def work():
        try:
            for _ in range(10):
                got.append(det.detect([scene(255), scene(200)]))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 40 and all(g == want for g in got)


@pytest.mark.parametrize("runtime", ["onnxruntime", "opencv"])
def test_bad_files_are_detector_errors(tmp_path, runtime):
    with pytest.raises(DetectorError, match="needs a model file"):
        make_detector("onnx", DetectorConfig(onnx_runtime=runtime))
    with pytest.raises(DetectorError, match="not found"):
        make_detector("onnx", cfg(tmp_path / "missing.onnx", onnx_runtime=runtime))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf \x00\x01\x02" * 50)
    with pytest.raises(DetectorError, match="garbage.onnx"):
        make_detector("onnx", cfg(garbage, onnx_runtime=runtime))
    flat = build_yolo(tmp_path / "flat.onnx", flat_output=True)
    with pytest.raises(DetectorError, match="YOLO"):
        make_detector("onnx", cfg(flat, onnx_runtime=runtime))
    gray = build_yolo(tmp_path / "gray.onnx", channels=1)
    with pytest.raises(DetectorError, match=r"\(N, 3, H, W\)"):
        make_detector("onnx", cfg(gray, onnx_runtime=runtime))


def test_layout_override_and_too_few_fields(tmp_path):
    v5 = build_yolo(tmp_path / "v5.onnx", "v5")
    assert make_detector("onnx", cfg(v5, onnx_layout="v5")).detect([scene(255)])[0][0].score == 1.0
    with pytest.raises(DetectorError, match="fields per anchor"):
        make_detector("onnx", cfg(build_yolo(tmp_path / "boxes.onnx", boxes_only=True)))
