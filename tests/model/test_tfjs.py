"""The numpy TFJS graph-model reader: every manifest dtype, quantization, shard boundaries, sources."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from model.tfjs import TfjsError, decode_weights, load_graph


def _model_json(specs, paths):
    return {"format": "graph-model", "generatedBy": "test",
            "modelTopology": {"node": [
                {"name": "x", "op": "Placeholder"},
                {"name": "conv", "op": "_FusedConv2D", "input": ["x", "w"],
                 "attr": {"strides": {"list": {"i": ["1", "2", "2", "1"]}}, "padding": {"s": "U0FNRQ=="},
                          "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdTY="]}}}}]},
            "weightsManifest": [{"paths": paths, "weights": specs}]}


def test_every_dtype_and_quantization_decodes():
    f32 = np.arange(6, dtype="<f4").reshape(2, 3) / 7
    i32 = np.array([-3, 7], dtype="<i4")
    b = np.array([1, 0, 1], dtype="u1")
    f16 = np.array([0.5, -1.25, 3.0], dtype="<f2")
    u8 = np.array([0, 128, 255], dtype="u1")
    u16 = np.array([0, 65535], dtype="<u2")
    strings = [b"ab", b""]
    sbytes = b"".join(np.array([len(s)], "<u4").tobytes() + s for s in strings)
    buf = f32.tobytes() + i32.tobytes() + b.tobytes() + f16.tobytes() + u8.tobytes() + u16.tobytes() + sbytes
    specs = [
        {"name": "f32", "shape": [2, 3], "dtype": "float32"},
        {"name": "i32", "shape": [2], "dtype": "int32"},
        {"name": "b", "shape": [3], "dtype": "bool"},
        {"name": "f16", "shape": [3], "dtype": "float32", "quantization": {"dtype": "float16"}},
        {"name": "u8", "shape": [3], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1}},
        {"name": "u16", "shape": [2], "dtype": "float32",
         "quantization": {"dtype": "uint16", "scale": 0.001, "min": 2.0}},
        {"name": "s", "shape": [2], "dtype": "string"},
    ]
    out = decode_weights(specs, buf)
    np.testing.assert_array_equal(out["f32"], f32)
    np.testing.assert_array_equal(out["i32"], i32)
    assert out["b"].dtype == bool and out["b"].tolist() == [True, False, True]
    assert out["f16"].dtype == np.float32 and out["f16"].tolist() == [0.5, -1.25, 3.0]
    np.testing.assert_allclose(out["u8"], [-1.0, 63.0, 126.5])
    np.testing.assert_allclose(out["u16"], [2.0, 2.0 + 65.535], rtol=1e-6)
    assert out["s"].tolist() == strings


def test_size_mismatches_are_errors():
    specs = [{"name": "a", "shape": [4], "dtype": "float32"}]
    with pytest.raises(TfjsError, match="needs bytes"):
        decode_weights(specs, b"\0" * 12)
    with pytest.raises(TfjsError, match="describes 16 bytes but the shards hold 20"):
        decode_weights(specs, b"\0" * 20)
    with pytest.raises(TfjsError, match="unsupported dtype"):
        decode_weights([{"name": "c", "shape": [1], "dtype": "complex128"}], b"\0" * 16)


@pytest.mark.parametrize("cut", [1, 5, 10, 13])
def test_tensor_straddling_a_shard_boundary(tmp_path, cut):
    a = np.arange(3, dtype="<f4")
    w = np.linspace(-1, 1, 12).astype("<f2")
    data = a.tobytes() + w.tobytes()
    (tmp_path / "m.shard1of2.bin").write_bytes(data[:cut])
    (tmp_path / "m.shard2of2.bin").write_bytes(data[cut:])
    specs = [{"name": "a", "shape": [3], "dtype": "float32"},
             {"name": "w", "shape": [3, 4], "dtype": "float32", "quantization": {"dtype": "float16"}}]
    (tmp_path / "m.json").write_text(json.dumps(_model_json(specs, ["m.shard1of2.bin", "m.shard2of2.bin"])))
    g = load_graph(tmp_path / "m.json")
    np.testing.assert_array_equal(g.weight("a"), a)
    np.testing.assert_array_equal(g.weight("w"), w.astype(np.float32).reshape(3, 4))
    conv = g.node("conv")
    assert conv.attr == {"strides": [1, 2, 2, 1], "padding": "SAME", "fused_ops": ["BiasAdd", "Relu6"]}
    assert [x.shape for x in g.const_inputs("conv")] == [(3, 4)]


def test_folder_and_npm_tarball_sources(tmp_path):
    w = np.ones(2, dtype="<f4")
    doc = _model_json([{"name": "w", "shape": [2], "dtype": "float32"}], ["net.bin"])
    models = tmp_path / "package" / "models"
    models.mkdir(parents=True)
    (models / "net.json").write_text(json.dumps(doc))
    (models / "net.bin").write_bytes(w.tobytes())
    assert load_graph(tmp_path / "package", "net").weight("w").tolist() == [1.0, 1.0]
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for f in ("net.json", "net.bin"):
            data = (models / f).read_bytes()
            info = tarfile.TarInfo(f"package/models/{f}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    g = load_graph(tgz, "net")
    assert g.meta["generatedBy"] == "test" and g.weight("w").tolist() == [1.0, 1.0]
    with pytest.raises(TfjsError, match="no other.json"):
        load_graph(tgz, "other")
    with pytest.raises(TfjsError, match="needs the model name"):
        load_graph(tgz)
    (models / "net.bin").unlink()
    with pytest.raises(TfjsError, match="missing"):
        load_graph(models / "net.json")
