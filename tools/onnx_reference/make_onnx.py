"""Convert a TF.js *graph model* (MoveNet SinglePose) to ONNX, unchanged in maths.

Runs ONLY in the throwaway TensorFlow venv made by make_onnx.sh (never the project venv).

Steps:
1. model.json `modelTopology` is a TF GraphDef in JSON form; parse it into a GraphDef.
2. Fill every weight `Const` node from the .bin shards with tensorflowjs.read_weights
   (fp16-quantised weights are dequantised to float32, exactly as TF.js does at load time).
3. Un-fuse the TF.js-converter ops that stock TensorFlow/tf2onnx cannot take as-is:
   `FusedDepthwiseConv2dNative` (TF.js-only) and `_FusedConv2D` (TF grappler-internal)
   -> `DepthwiseConv2dNative`/`Conv2D` + `BiasAdd` [+ `Relu`/`Relu6`]. The last op keeps the
   fused node's name, so nothing downstream changes.
4. Check the GraphDef in TensorFlow against the parity fixture (optional, --fixture).
5. tf2onnx.convert.from_graph_def -> ONNX (input `input:0` int32 [1,S,S,3], output `Identity:0`
   float32 [1,1,17,3]).
"""
import argparse
import json
import os
import sys

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflowjs import read_weights


def load_graph_def(model_json):
    with open(model_json) as f:
        model = json.load(f)
    assert model.get("format") == "graph-model", model.get("format")
    topo = dict(model["modelTopology"])
    if not topo.get("library"):
        topo.pop("library", None)
    gd = json_format.ParseDict(topo, tf.compat.v1.GraphDef())
    root = os.path.dirname(os.path.abspath(model_json))
    weights = read_weights.read_weights(model["weightsManifest"], root, flatten=True)
    wmap = {w["name"]: w["data"] for w in weights}
    by_name = {n.name: n for n in gd.node}
    for name, data in wmap.items():
        node = by_name[name]
        assert node.op == "Const", (name, node.op)
        dtype = tf.as_dtype(node.attr["dtype"].type)
        proto = tf.make_tensor_proto(np.asarray(data).astype(dtype.as_numpy_dtype), dtype=dtype)
        node.attr["value"].tensor.CopyFrom(proto)
    return gd, model["signature"]


def unfuse(gd):
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(gd.versions)
    n_unfused = 0
    for node in gd.node:
        if node.op not in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            out.node.add().CopyFrom(node)
            continue
        fused = [s.decode() for s in node.attr["fused_ops"].list.s]
        assert fused[0] == "BiasAdd" and len(fused) <= 2 and node.attr["num_args"].i == 1, (node.name, fused)
        assert len(node.input) == 3, node.name
        conv_op = "Conv2D" if node.op == "_FusedConv2D" else "DepthwiseConv2dNative"
        keep = ["T", "strides", "padding", "data_format", "dilations", "explicit_paddings"]
        if conv_op == "Conv2D":
            keep.append("use_cudnn_on_gpu")
        conv = out.node.add()
        conv.name, conv.op = node.name + "/conv", conv_op
        conv.input.extend(node.input[:2])
        for k in keep:
            if k in node.attr:
                conv.attr[k].CopyFrom(node.attr[k])
        if "T" not in node.attr:
            conv.attr["T"].type = tf.float32.as_datatype_enum
        bias = out.node.add()
        bias.name = node.name if len(fused) == 1 else node.name + "/bias"
        bias.op = "BiasAdd"
        bias.input.extend([conv.name, node.input[2]])
        bias.attr["T"].CopyFrom(conv.attr["T"])
        bias.attr["data_format"].CopyFrom(node.attr["data_format"])
        if len(fused) == 2:
            assert fused[1] in ("Relu", "Relu6"), fused
            act = out.node.add()
            act.name, act.op = node.name, fused[1]
            act.input.append(bias.name)
            act.attr["T"].CopyFrom(conv.attr["T"])
        n_unfused += 1
    return out, n_unfused


def run_tf(gd, inp, out, x):
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=g) as s:
        return s.run(out, {inp: x})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_json")
    ap.add_argument("output_onnx")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--fixture",
                    help="tests/fixtures/movenet_parity dir: check the TF graph before converting")
    ap.add_argument("--name", help="model key in expected.json (movenet-thunder / movenet-lightning)")
    a = ap.parse_args()

    gd, sig = load_graph_def(a.model_json)
    gd, n = unfuse(gd)
    inp, out = list(sig["inputs"])[0], list(sig["outputs"])[0]
    ops = sorted({nd.op for nd in gd.node})
    print(f"{a.model_json}: {len(gd.node)} nodes after un-fusing {n} fused convs; ops: {ops}")
    assert not any(nd.op.startswith("_") or nd.op.startswith("Fused") for nd in gd.node)

    if a.fixture:
        import cv2
        exp = json.load(open(os.path.join(a.fixture, "expected.json")))["models"][a.name]
        worst = 0.0
        for c in exp["crops"]:
            img = cv2.cvtColor(cv2.imread(os.path.join(a.fixture, c["png"])), cv2.COLOR_BGR2RGB)
            y = run_tf(gd, inp, out, img[None].astype(np.int32))
            d = float(np.abs(y.reshape(17, 3) - np.asarray(c["keypoints"], np.float32)).max())
            worst = max(worst, d)
            print(f"  TF graph vs TF.js  {c['png']}: max|diff| = {d:.3g}")
        print(f"  TF graph vs TF.js worst: {worst:.3g}")

    import tf2onnx
    model_proto, _ = tf2onnx.convert.from_graph_def(gd, input_names=[inp], output_names=[out], opset=a.opset,
                                                    output_path=a.output_onnx)
    print(f"wrote {a.output_onnx} (opset {a.opset}, tf2onnx {tf2onnx.__version__}, tf {tf.__version__})")


if __name__ == "__main__":
    sys.exit(main())
