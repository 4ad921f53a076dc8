"""The model holder of a worker: load a checkpoint once, pick the device, warm up,
and run encode (per-frame backbone) and decode (windows -> keypoints).

Only the batch scheduler thread calls encode/decode, so the model is never
used concurrently. CUDA runs under bf16 autocast; CPU runs in float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.backbones import InputSpec, entry, input_spec
from model.checkpoint import load_checkpoint
from service.api.catalog import config_summary
from service.contract import ModelInfo
from service.metrics import MODEL_FORWARD
from service.worker.modelfiles import ModelNotFound, resolve_model  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("worker_device=cuda but CUDA is not available")
        return torch.device("cuda")
    return torch.device("cpu")


def file_version(path: Path, info: dict) -> str:
    """The checkpoint's own version string, else 'sha256:<12 hex>' of the whole file -- the API's model
    catalog uses the same rule, so both report one version."""
    if info.get("version"):
        return str(info["version"])
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()[:12]


@dataclass(frozen=True)
class DecodeOptions:
    """Per-job knobs of the decoder; windows with equal options share batches."""

    diffusion_steps: int
    hypotheses: int


class Engine:
    def __init__(self, name: str, path: Path, model, meta: dict, device: torch.device,
                 cpu_runtime: str = "torch"):
        self.name = name
        self.path = path
        self.model = model
        self.meta = meta
        self.cfg = meta["config"]
        self.device = device
        self.version = file_version(path, meta.get("info", {}))
        self._lock = threading.Lock()
        self.warm = False

        # the backbone's CPU runtime: PyTorch, or its onnxruntime twin (model/ort_backbone.py)
        self.runtime = "torch"
        self._ort = None
        if device.type == "cpu" and cpu_runtime != "torch":
            want = entry(self.cfg).cpu_runtime if cpu_runtime == "auto" else cpu_runtime
            if want == "onnxruntime":
                try:
                    from model.ort_backbone import OrtBackbone

                    self._ort = OrtBackbone(model.backbone, self.input_size, threads=torch.get_num_threads())
                    self.runtime = "onnxruntime"
                except Exception as e:  # auto: a model that does not export still serves, slower
                    if cpu_runtime != "auto":
                        raise
                    log.warning("model %s: onnxruntime backbone unavailable (%s); using PyTorch", name, e)

    @classmethod
    def load(cls, name_or_path: str, models_dir: str | Path, device: str = "auto",
             cpu_runtime: str = "auto") -> Engine:
        """cpu_runtime: "auto" (what the backbone's registry entry prefers), "torch" or "onnxruntime"."""
        name, path = resolve_model(name_or_path, models_dir)
        dev = pick_device(device)
        t0 = time.perf_counter()
        model, meta = load_checkpoint(path, map_location=dev)
        model.eval()
        engine = cls(name, path, model, meta, dev, cpu_runtime=cpu_runtime)
        log.info("loaded model %s from %s on %s (backbone runtime %s) in %.2fs", name, path, dev,
                 engine.runtime, time.perf_counter() - t0)
        return engine

    # -- properties the window builder needs ---------------------------------------------
    @property
    def window(self) -> int:
        return int(self.cfg.window)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.cfg.input_size)

    @property
    def input_spec(self) -> InputSpec:
        """Crop size and normalisation the model's backbone wants."""
        return input_spec(self.cfg)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return tuple(self.cfg.heatmap_size)

    @property
    def recrop_drop(self) -> float:
        """The checkpoint's re-crop rule (model/windows.py wants_recrop); 0 without temporal neighbours."""
        if not self.cfg.temporal or self.window < 3:
            return 0.0
        return float(self.cfg.recrop_drop)

    def default_options(self) -> DecodeOptions:
        return DecodeOptions(int(self.cfg.diffusion_steps), int(self.cfg.hypotheses))

    def decode_options(self, diffusion_steps: int | None = None,
                       hypotheses: int | None = None) -> DecodeOptions:
        """A job's decoder options (None: the checkpoint's). Without a diffusion head they are moot, so
        every job of such a model gets the same options (and shares batches)."""
        base = self.default_options()
        if not self.cfg.diffusion:
            return base
        return DecodeOptions(base.diffusion_steps if diffusion_steps is None else int(diffusion_steps),
                             base.hypotheses if hypotheses is None else int(hypotheses))

    def info(self, detectors: list[str] | None = None) -> dict:
        """What the worker publishes for this model: a service.contract.ModelInfo, as JSON."""
        c = self.cfg
        return ModelInfo(
            name=self.name, version=self.version, input_size=list(c.input_size), window=c.window,
            keypoint_names=list(self.meta.get("keypoints") or []),
            skeleton=[list(p) for p in self.meta.get("skeleton") or []], detectors=list(detectors or []),
            config=config_summary(c.to_dict()), device=self.device.type, runtime=self.runtime, preset=c.name,
        ).model_dump()

    # -- compute ---------------------------------------------------------------------------
    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def encode(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised crops -> (N, C, gh, gw) features, kept on the device."""
        x = torch.as_tensor(crops).to(self.device, non_blocking=True)
        with self._lock, self._autocast():
            t0 = time.perf_counter()
            feats = self._ort(x) if self._ort is not None else self.model.encode_frames(x)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # so the metric measures compute, not the launch
            MODEL_FORWARD.labels(self.name, "encode").observe(time.perf_counter() - t0)
        return feats

    @torch.inference_mode()
    def decode(self, feats: torch.Tensor, options: DecodeOptions | None = None,
               seeds: list[int] | None = None, with_spread: bool = False) -> np.ndarray:
        """(B, T, C, gh, gw) features -> (B, K, 3) key-frame keypoints in heatmap cells + score.

        seeds: one diffusion-noise seed per window (pipeline.window_seed), so results do not depend
        on batch composition, worker or re-run; None draws from torch's global generator.
        with_spread: (B, K, 4), the 4th column the spread of the diffusion hypotheses' keypoints
        (heatmap cells; PoseModel.keypoint_spread), NaN when fewer than 2 hypotheses ran."""
        opts = options or self.default_options()
        with self._lock, self._autocast(), self._decode_config(opts):
            t0 = time.perf_counter()
            out = self.model.decode_windows(feats.to(self.device), noise_seeds=seeds)
            kps = self.model.decode_keypoints(out).float()
            if with_spread:
                spread = self.model.keypoint_spread(out)
                if spread is None:
                    spread = torch.full(kps.shape[:2], float("nan"), device=kps.device)
                kps = torch.cat([kps, spread.float()[..., None]], dim=-1)
            kps = kps.cpu().numpy()
            MODEL_FORWARD.labels(self.name, "decode").observe(time.perf_counter() - t0)
        return kps

    @torch.inference_mode()
    def confidence(self, feats: torch.Tensor) -> np.ndarray:
        """(N, C, gh, gw) single-crop features -> (N,) the single-frame branch's mean joint score."""
        with self._lock, self._autocast():
            t0 = time.perf_counter()
            conf = self.model.frame_confidence(feats.to(self.device)).float().cpu().numpy()
            MODEL_FORWARD.labels(self.name, "confidence").observe(time.perf_counter() - t0)
        return conf

    @contextlib.contextmanager
    def _decode_config(self, opts: DecodeOptions):
        # PoseModel.decode_windows reads diffusion_steps/hypotheses from model.cfg; swap a copy in for
        # this call (safe: only the scheduler thread decodes, under self._lock).
        # diffusion_steps == 0 means "no diffusion": the deterministic (temporal) head's heatmaps.
        base = self.model.cfg
        if (opts.diffusion_steps, opts.hypotheses) == (base.diffusion_steps, base.hypotheses):
            yield
            return
        if opts.diffusion_steps == 0:
            self.model.cfg = base.replace(diffusion=False)
        else:
            self.model.cfg = base.replace(diffusion_steps=opts.diffusion_steps, hypotheses=opts.hypotheses)
        try:
            yield
        finally:
            self.model.cfg = base

    def warmup(self, batch: int = 2) -> float:
        """One encode + decode on random crops (first-call allocations, kernel selection)."""
        t0 = time.perf_counter()
        h, w = self.input_size
        g = torch.Generator().manual_seed(0)
        crops = torch.randn(self.window, 3, h, w, generator=g)
        feats = self.encode(crops)
        self.decode(feats[None].expand(batch, *feats.shape).contiguous())
        self.warm = True
        return time.perf_counter() - t0

    def gpu_memory_bytes(self) -> int | None:
        if self.device.type != "cuda":
            return None
        return int(torch.cuda.memory_allocated(self.device))
