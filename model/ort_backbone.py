"""A backbone's forward in onnxruntime on CPU: the fast twin of its PyTorch forward.

PyTorch's eager CPU kernels ran MoveNet's MobileNetV2 at about 0.3x of the original graph in
onnxruntime, which fuses conv + bias + activation into blocked-layout kernels; exported and run here,
the same module reaches ~0.95x (bench/pose_bench.py, docs/benchmarks.md). The model stays a PyTorch
module -- trained, checkpointed and run on GPUs as such; a CPU worker may export its backbone once at load
(torch.onnx, in memory, dynamic batch) and run that graph instead. `PoseModel.encode_frames` is the
reference twin: tests check both give the same features on real crops.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn


def export_onnx(module: nn.Module, sample: torch.Tensor, input_names: list[str],
                output_names: list[str]) -> bytes:
    """`module` (in eval mode for the export) as ONNX bytes, opset 17, batch dimension dynamic."""
    was_training = module.training
    module.eval()
    buf = io.BytesIO()
    axes = {name: {0: "n"} for name in (*input_names, *output_names)}
    try:
        with torch.no_grad(), torch.inference_mode(False), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation/tracer chatter
            torch.onnx.export(module, (sample,), buf, dynamo=False, opset_version=17, input_names=input_names,
                              output_names=output_names, dynamic_axes=axes)
    finally:
        module.train(was_training)
    return buf.getvalue()


class OrtBackbone:
    """callable: (N, 3, H, W) float crops -> (N, C, h, w) features, computed by onnxruntime."""

    def __init__(self, backbone: nn.Module, input_size: tuple[int, int], threads: int = 1, chunk: int = 1):
        """backbone: a float32 module on the CPU (exported as it is). chunk: crops per session run --
        one at a time keeps a crop's feature maps in cache (measured 1.2x faster per crop than 8)."""
        self.chunk = max(1, int(chunk))
        import onnxruntime as ort

        sample = torch.zeros(1, 3, *input_size, dtype=next(backbone.parameters()).dtype)
        graph = export_onnx(backbone, sample, ["crops"], ["features"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        self.graph_bytes = len(graph)

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(crops.detach().cpu().float().numpy())
        outs = [self.session.run(None, {"crops": x[i:i + self.chunk]})[0]
                for i in range(0, len(x), self.chunk)]
        return torch.from_numpy(outs[0] if len(outs) == 1 else np.concatenate(outs))
