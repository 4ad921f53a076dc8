"""The training loop: AdamW + warmup/cosine, grad clipping, bf16 on CUDA, DDP, resume, CSV logs.

A run directory holds:
    config.yaml          the full TrainConfig (reproduce with `vidpose train --config RUN/config.yaml`)
    last.safetensors     latest model (vidpose checkpoint: config + info metadata)
    best.safetensors     best validation PCK so far
    trainer_state.pt     optimizer, LR schedule, step, RNG (tensors/primitives only: loaded weights_only)
    train_log.csv        step, losses, lr, seconds per step
    val_log.csv          step, pck, pck_base, pck_occluded, ...
Multi-GPU: `torchrun --nproc_per_node N -m service.cli train ...` (DistributedDataParallel +
DistributedSampler; rank 0 writes the run directory).
"""

from __future__ import annotations

import csv
import math
import os
import time
from importlib import metadata
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import PoseModelConfig, get_preset
from model.pose_model import PoseModel
from training.config import TrainConfig
from training.data import build_datasets, collate, set_epoch
from training.predict import pck_summary, predict


class _LossModule(nn.Module):
    """DDP syncs gradients of what `forward` computes, so the loss must be the forward."""

    def __init__(self, model: PoseModel):
        super().__init__()
        self.model = model

    def forward(self, frames, heatmaps, weights, clean_key=None):
        if clean_key is not None:  # cached features (features:CACHE_DIR): frames holds features
            return self.model.distill_loss(frames, clean_key, weights)
        return self.model.training_loss(frames, heatmaps, weights)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine down to min_ratio at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_model(tc: TrainConfig) -> PoseModel:
    overrides = dict(tc.model_overrides)
    if tc.freeze_backbone is not None:
        overrides["freeze_backbone"] = tc.freeze_backbone
    if tc.init_checkpoint:
        init, meta = load_checkpoint(tc.init_checkpoint)
        cfg: PoseModelConfig = meta["config"].replace(**overrides)
        model = PoseModel(cfg)
        missing, unexpected = model.load_state_dict(init.state_dict(), strict=False)
        if unexpected:
            raise ValueError(f"{tc.init_checkpoint}: weights the model does not have: {unexpected[:5]}")
        if missing:
            print(f"[train] initialised from {tc.init_checkpoint}; {len(missing)} tensors left at init")
        return model
    return PoseModel(get_preset(tc.model, **overrides))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


def _vidpose_version() -> str:
    """The installed vidpose distribution's version (training never imports `service`)."""
    try:
        return metadata.version("vidpose")
    except metadata.PackageNotFoundError:
        return "unknown"


def _git_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class Trainer:
    def __init__(self, tc: TrainConfig, resume: bool = False, progress: bool = True):
        self.tc = tc
        self.out = Path(tc.out)
        self.progress = progress
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.device = _device(tc.device)
        if self.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        if tc.threads > 0:
            torch.set_num_threads(tc.threads)
        amp = tc.amp if tc.amp != "auto" else ("bf16" if self.device.type == "cuda" else "off")
        self.amp_dtype = torch.bfloat16 if amp == "bf16" else None
        torch.manual_seed(tc.seed + self.rank)

        self.model = build_model(tc).to(self.device)
        if tc.train_only:
            self.model.train_only(tc.train_only)
        cfg = self.model.cfg
        self.train_set = build_datasets(tc.train_data, cfg, train=True, sigma=tc.sigma, augment=tc.augment,
                                        seed=tc.seed, corrupt_prob=tc.corrupt_prob)
        self.val_set = (build_datasets(tc.val_data, cfg, train=False, sigma=tc.sigma, augment=False)
                        if tc.val_data else None)

        self.optimizer = torch.optim.AdamW(self.model.optimizer_groups(tc.weight_decay), lr=tc.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, tc.warmup_steps, tc.steps, tc.min_lr_ratio))
        self.step = 0
        self.best = -1.0
        self.history: list[dict] = []
        if resume:
            self._resume()
        elif self._state_path().exists():
            raise FileExistsError(f"{self.out} already holds a run: pass --resume to continue it, "
                                  "or choose a new --out")
        self.loss_module = _LossModule(self.model)
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = nn.parallel.DistributedDataParallel(self.loss_module, device_ids=ids)

    # ------------------------------------------------------------------ state
    def _state_path(self) -> Path:
        return self.out / "trainer_state.pt"

    def _resume(self) -> None:
        path = self._state_path()
        last = self.out / "last.safetensors"
        if not path.is_file() or not last.is_file():
            raise FileNotFoundError(f"nothing to resume in {self.out} "
                                    "(need last.safetensors and trainer_state.pt)")
        loaded, _ = load_checkpoint(last, map_location="cpu")
        self.model.load_state_dict(loaded.state_dict())
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.best = float(state["best"])
        torch.set_rng_state(state["rng"])
        if self.rank == 0:
            print(f"[train] resumed {self.out} at step {self.step}")

    def _info(self, metrics: dict | None = None) -> dict:
        provenance = {}
        if self.tc.init_checkpoint:
            from training.export import inherited_provenance

            provenance = inherited_provenance({"train_config": {"init_checkpoint": self.tc.init_checkpoint}})
        return {
            **provenance,
            "step": self.step,
            "train_data": self.tc.train_data,
            "val_data": self.tc.val_data,
            "train_config": self.tc.to_dict(),
            "metrics": metrics or {},
            "vidpose_version": _vidpose_version(),
            "git_commit": _git_commit(),
        }

    def save(self, metrics: dict | None = None, best: bool = False) -> None:
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        # The slot names come from the data: a PoseTrack-layout model predicts head_bottom/head_top.
        names = list(self.train_set.layout.keypoints)
        for path in [self.out / "last.safetensors"] + ([self.out / "best.safetensors"] if best else []):
            save_checkpoint(self.model, path, info=self._info(metrics), keypoints=names)
        tmp = self._state_path().with_suffix(".tmp")
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "step": self.step, "best": self.best, "rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, self._state_path())

    def _log(self, name: str, row: dict) -> None:
        if self.rank != 0:
            return
        path = self.out / name
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    # ------------------------------------------------------------------ loop
    def _loader(self, epoch: int) -> DataLoader:
        tc = self.tc
        if self.distributed:
            sampler = DistributedSampler(self.train_set, shuffle=True, seed=tc.seed)
            sampler.set_epoch(epoch)
        else:
            g = torch.Generator().manual_seed(tc.seed * 100_003 + epoch)
            sampler = RandomSampler(self.train_set, generator=g)
        set_epoch(self.train_set, epoch)
        return DataLoader(self.train_set, batch_size=tc.batch_size, sampler=sampler, drop_last=False,
                          num_workers=tc.num_workers, collate_fn=collate,
                          persistent_workers=False, pin_memory=self.device.type == "cuda")

    def validate(self) -> dict:
        if self.val_set is None:
            return {}
        if "features" in self.val_set[0]:  # cached windows: PCK against the clean-frame teacher
            from training.evaluate.temporal_eval import evaluate_windows, summary

            was_training = self.model.training
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype,
                                enabled=self.amp_dtype is not None):
                result = evaluate_windows(self.model, self.val_set, batch_size=self.tc.batch_size,
                                          device=self.device, seed=self.tc.seed)
            self.model.train(was_training)
            return summary(result)
        preds = predict(self.model, self.val_set, batch_size=self.tc.batch_size, device=self.device,
                        seed=self.tc.seed, amp_dtype=self.amp_dtype)
        return pck_summary(preds)

    def train(self) -> dict:
        tc = self.tc
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            tc.save(self.out / "config.yaml")
        self.model.train()
        bar = None
        if self.progress and self.rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=tc.steps, initial=self.step, desc="train", dynamic_ncols=True)
        metrics: dict = {}
        epoch = self.step // max(1, math.ceil(len(self.train_set) / (tc.batch_size * self.world)))
        t_last = time.perf_counter()
        while self.step < tc.steps:
            for batch in self._loader(epoch):
                weight = batch["target_weight"].to(self.device, non_blocking=True)
                if "features" in batch:
                    frames = batch["features"].to(self.device, non_blocking=True)
                    target, clean = None, batch["clean_key"].to(self.device, non_blocking=True)
                else:
                    frames = batch["frames"].to(self.device, non_blocking=True)
                    target, clean = batch["heatmaps"].to(self.device, non_blocking=True), None
                with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype,
                                    enabled=self.amp_dtype is not None):
                    losses = self.loss_module(frames, target, weight, clean)
                self.optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                if tc.grad_clip > 0:
                    nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1

                now = time.perf_counter()
                row = {"step": self.step, **{k: round(float(v.detach()), 6) for k, v in losses.items()},
                       "lr": self.optimizer.param_groups[0]["lr"], "sec_per_step": round(now - t_last, 4)}
                t_last = now
                if self.step % tc.log_every == 0 or self.step == tc.steps:
                    self._log("train_log.csv", row)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.5f}", lr=f"{row['lr']:.2e}")
                last = self.step >= tc.steps
                if (tc.val_every and self.step % tc.val_every == 0) or last:
                    metrics = self.validate()
                    if metrics and self.rank == 0:
                        self._log("val_log.csv", {"step": self.step, **metrics})
                        if bar is not None:
                            bar.write(f"[val] step {self.step}: " + ", ".join(
                                f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
                    improved = bool(metrics) and metrics.get("pck", -1) > self.best
                    if improved:
                        self.best = metrics["pck"]
                    self.save(metrics, best=improved or not metrics)
                elif tc.ckpt_every and self.step % tc.ckpt_every == 0:
                    self.save(metrics)
                if last:
                    break
            epoch += 1
        if bar is not None:
            bar.close()
        if self.distributed:
            dist.barrier()
        return metrics
