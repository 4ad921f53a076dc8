"""Read TensorFlow.js graph models (`model.json` + `.bin` weight shards) with numpy only.

A TFJS graph model is a JSON file holding the graph (`modelTopology.node`) and a weights manifest:
groups of `{paths: [shard files], weights: [{name, shape, dtype, quantization?}]}`. The weights of a
group are stored back to back across its shards, as if the shards were one file, so a tensor may
straddle a shard boundary. Stored dtypes: float32, int32, bool (1 byte), string (length-prefixed),
and quantized floats (`quantization.dtype` uint8 / uint16 with scale and min, or float16).

Sources: a folder with the json and shards, a `.json` path, or an npm tarball (`.tgz`) that holds
them under `package/<subdir>/`. Nothing here knows a node name: the model-specific importers
(`model/import_tfjs.py`) do.
"""

from __future__ import annotations

import base64
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class TfjsError(ValueError):
    """A file that is not a readable TFJS graph model."""


@dataclass
class TfjsNode:
    name: str
    op: str
    inputs: list[str]
    attr: dict  # decoded: strides -> [1, 2, 2, 1], padding -> "SAME", fused_ops -> ["BiasAdd", "Relu6"]


@dataclass
class TfjsGraph:
    nodes: dict[str, TfjsNode]
    weights: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)  # format, generatedBy, convertedBy, signature

    def node(self, name: str) -> TfjsNode:
        if name not in self.nodes:
            raise TfjsError(f"graph has no node {name!r}")
        return self.nodes[name]

    def weight(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise TfjsError(f"graph has no weight {name!r}")
        return self.weights[name]

    def const_inputs(self, node_name: str) -> list[np.ndarray]:
        """The weights a node reads, in input order (its non-constant inputs skipped)."""
        return [self.weights[i] for i in self.node(node_name).inputs if i in self.weights]


_PLAIN = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("u1"),
          "complex64": np.dtype("<c8")}
_QUANT = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}


def _decode_attr(attr: dict) -> dict:
    out = {}
    for key, v in attr.items():
        if "list" in v:
            lst = v["list"]
            if "i" in lst:
                out[key] = [int(x) for x in lst["i"]]
            elif "s" in lst:
                out[key] = [base64.b64decode(x).decode() for x in lst["s"]]
            elif "f" in lst:
                out[key] = [float(x) for x in lst["f"]]
            else:
                out[key] = []
        elif "s" in v:
            out[key] = base64.b64decode(v["s"]).decode()
        elif "i" in v:
            out[key] = int(v["i"])
        elif "f" in v:
            out[key] = float(v["f"])
        elif "b" in v:
            out[key] = bool(v["b"])
        else:
            out[key] = v
    return out


def decode_weights(specs: list[dict], buffer: bytes) -> dict[str, np.ndarray]:
    """One manifest group's weight specs + the concatenation of its shards -> name -> array.

    Quantized weights are dequantized to float32 (the dtype TFJS itself hands the graph).
    """
    out: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        name, shape, dtype = spec["name"], [int(s) for s in spec.get("shape", [])], spec["dtype"]
        n = int(np.prod(shape)) if shape else 1
        q = spec.get("quantization")
        if dtype == "string":
            items = []
            for _ in range(n):
                if offset + 4 > len(buffer):
                    raise TfjsError(f"weight {name!r}: shards end inside a string length")
                size = int(np.frombuffer(buffer, "<u4", 1, offset)[0])
                offset += 4
                items.append(bytes(buffer[offset:offset + size]))
                offset += size
            out[name] = np.array(items, dtype=object).reshape(shape)
            continue
        if q is not None:
            qd = q["dtype"]
            if qd not in _QUANT:
                raise TfjsError(f"weight {name!r}: unsupported quantization dtype {qd!r}")
            store = _QUANT[qd]
        else:
            if dtype not in _PLAIN:
                raise TfjsError(f"weight {name!r}: unsupported dtype {dtype!r}")
            store = _PLAIN[dtype]
        nbytes = n * store.itemsize
        if offset + nbytes > len(buffer):
            raise TfjsError(f"weight {name!r} needs bytes {offset}..{offset + nbytes} but the shards "
                            f"hold {len(buffer)}")
        raw = np.frombuffer(buffer, store, n, offset)
        offset += nbytes
        if q is not None and qd == "float16":
            arr = raw.astype(np.float32)
        elif q is not None:  # affine uint8/uint16: value = q * scale + min
            arr = raw.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
            arr = arr.astype(np.int32) if dtype == "int32" else arr
        elif dtype == "bool":
            arr = raw.astype(bool)
        else:
            arr = raw.copy()
        out[name] = arr.reshape(shape)
    if offset != len(buffer):
        raise TfjsError(f"manifest describes {offset} bytes but the shards hold {len(buffer)}")
    return out


class _Source:
    """Files of a model by name: a folder, or members of an npm tarball."""

    def __init__(self, path: Path, model: str | None):
        self.path = path
        self.tar = None
        if not path.exists():
            raise TfjsError(f"{path}: no such file or folder")
        if path.is_file() and path.suffix == ".json":
            self.root, self.json_name = path.parent, path.name
        elif path.is_dir():
            if model is None:
                raise TfjsError(f"{path}: a folder needs the model name (e.g. 'movenet-thunder')")
            self.root = path / "models" if (path / "models" / f"{model}.json").exists() else path
            self.json_name = f"{model}.json"
        elif path.is_file() and (path.name.endswith((".tgz", ".tar.gz", ".tar"))):
            if model is None:
                raise TfjsError(f"{path}: a tarball needs the model name (e.g. 'movenet-thunder')")
            self.tar = tarfile.open(path)
            names = {m.name: m for m in self.tar.getmembers()}
            hits = [n for n in names if n.endswith(f"/{model}.json")]
            if not hits:
                raise TfjsError(f"{path}: no {model}.json in the tarball")
            self.members = names
            self.root = Path(hits[0]).parent
            self.json_name = Path(hits[0]).name
        else:
            raise TfjsError(f"{path}: not a TFJS model folder, .json file or npm tarball")

    def read(self, name: str) -> bytes:
        if self.tar is not None:
            member = self.members.get(str(self.root / name))
            if member is None:
                raise TfjsError(f"{self.path}: no {self.root / name} in the tarball")
            return self.tar.extractfile(member).read()
        f = self.root / name
        if not f.is_file():
            raise TfjsError(f"{f}: missing (named by the weights manifest)")
        return f.read_bytes()


def load_graph(path, model: str | None = None) -> TfjsGraph:
    """Parse a TFJS graph model and all of its weights."""
    src = _Source(Path(path), model)
    try:
        doc = json.loads(src.read(src.json_name))
    except json.JSONDecodeError as e:
        raise TfjsError(f"{src.json_name}: not JSON ({e})") from e
    if "modelTopology" not in doc or "weightsManifest" not in doc:
        raise TfjsError(f"{src.json_name}: not a TFJS graph model (no modelTopology/weightsManifest)")
    weights: dict[str, np.ndarray] = {}
    for group in doc["weightsManifest"]:
        buffer = b"".join(src.read(p) for p in group["paths"])
        weights.update(decode_weights(group["weights"], buffer))
    nodes = {}
    for n in doc["modelTopology"].get("node", []):
        attr = _decode_attr(n.get("attr", {}))
        nodes[n["name"]] = TfjsNode(n["name"], n["op"], list(n.get("input", [])), attr)
    meta = {k: doc[k] for k in ("format", "generatedBy", "convertedBy", "signature") if k in doc}
    return TfjsGraph(nodes=nodes, weights=weights, meta=meta)
