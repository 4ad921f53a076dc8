"""PoseModel: per-frame backbone + its single-frame head, optional temporal encoder and diffusion head.

    frames (B, T, 3, H, W)
      -> encode_frames: backbone per frame -> feats (B, T, C, gh, gw)      [cacheable per video frame]
      -> decode_windows:
           key frame feats -> head.pyramid -> f16, f8, f4 (1/4) -> head.predict -> base prediction
           temporal: TemporalEncoder(all T) -> zero-init 1x1 proj -> resize -> f4 + it = fused
           fused -> head.predict -> heatmaps (deterministic)
           diffusion: DDIM on (f16, f8, fused), prior = deterministic heatmaps -> heatmaps
      -> decode_keypoints: head.decode (ViT: heatmap peak; MoveNet: its centre-weighted peak + offsets)
The backbone and head come from the registry in model/backbones.py (cfg.backbone). Zero-initialised
temporal projection and diffusion correction mean an untrained model predicts exactly its
single-frame base heatmaps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model import heatmaps as hm
from model.backbones import build_backbone, entry
from model.config import PoseModelConfig
from model.diffusion import DiffusionCond, HeatmapDiffusion, weighted_mse


class PoseModel(nn.Module):
    def __init__(self, cfg: PoseModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.diffusion_init not in ("noise", "prior"):
            raise ValueError(f"diffusion_init must be 'noise' or 'prior', got {cfg.diffusion_init!r}")
        self.backbone, self.keypoint_head = build_backbone(cfg)
        ch = self.keypoint_head.channels
        if cfg.temporal:
            from model.temporal import TemporalEncoder  # H1's GLS-Mamba encoder

            self.temporal_encoder = TemporalEncoder(cfg, in_channels=entry(cfg).feature_channels(cfg))
            self.temporal_proj = nn.Conv2d(cfg.temporal_dim, ch[4], 1)
            nn.init.zeros_(self.temporal_proj.weight)
            nn.init.zeros_(self.temporal_proj.bias)
            if cfg.temporal_fusion not in ("add", "gated"):
                raise ValueError(f"temporal_fusion must be 'add' or 'gated', got {cfg.temporal_fusion!r}")
            if cfg.temporal_fusion == "gated":  # one gate per window frame and pixel
                self.temporal_gate = nn.Conv2d(cfg.temporal_dim, cfg.window, 1)
                nn.init.zeros_(self.temporal_gate.weight)
                nn.init.zeros_(self.temporal_gate.bias)
        if cfg.diffusion:
            self.diffusion = HeatmapDiffusion(cfg, c16=ch[16], c8=ch[8], c4=ch[4])
        self.set_backbone_frozen(cfg.freeze_backbone)

    # ------------------------------------------------------------------ freezing
    def _frozen_modules(self) -> list[nn.Module]:
        # "backbone": the feature extractor; "single-frame": also its head (a pretrained single-frame
        # model kept exactly, so that only the temporal encoder and diffusion head learn)
        if self._freeze == "single-frame":
            return [self.backbone, self.keypoint_head]
        return [self.backbone] if self._freeze == "backbone" else []

    def set_backbone_frozen(self, frozen: bool | str) -> None:
        """Frozen parts: no grads, and kept in eval mode (no drop-path, BN stats) even under .train().

        frozen: False, True / "backbone", or "single-frame" (backbone and its single-frame head).
        """
        mode = {False: "", True: "backbone", "": "", "backbone": "backbone", "single-frame": "single-frame"}
        if frozen not in mode:
            raise ValueError(f"freeze_backbone: false, true, 'backbone' or 'single-frame', not {frozen!r}")
        self._freeze = mode[frozen]
        self._backbone_frozen = bool(self._freeze)
        for module in (self.backbone, self.keypoint_head):
            for p in module.parameters():
                p.requires_grad_(True)
        for module in self._frozen_modules():
            for p in module.parameters():
                p.requires_grad_(False)
            module.eval()

    def train_only(self, prefixes: list[str]) -> None:
        """Train only the parameters whose names start with one of `prefixes` (e.g. ["diffusion."] to
        fit the diffusion head on a finished temporal model); the rest keep their weights."""
        names = [n for n, _ in self.named_parameters()]
        unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
        if unknown:
            raise ValueError(f"train_only: no parameter starts with {unknown}")
        for name, p in self.named_parameters():
            p.requires_grad_(any(name.startswith(pfx) for pfx in prefixes))

    def train(self, mode: bool = True) -> PoseModel:
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    # ------------------------------------------------------------------ forward
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised crops -> (N, C, gh, gw) backbone features."""
        if self._backbone_frozen:
            with torch.no_grad():
                return self.backbone(frames)
        return self.backbone(frames)

    def _heads(self, feats: torch.Tensor, with_base: bool = True) -> dict:
        """Everything after the backbone except diffusion sampling. with_base=False skips the
        single-frame branch's prediction when the temporal one replaces it (training needs only it)."""
        cfg = self.cfg
        if feats.dim() != 5 or feats.shape[1] != cfg.window:
            raise ValueError(f"expected features (B, T={cfg.window}, C, gh, gw), got {tuple(feats.shape)}")
        key = feats[:, cfg.key_index]
        f16, f8, f4 = self.keypoint_head.pyramid(key)
        base = self.keypoint_head.predict(f4) if with_base or not cfg.temporal else None
        fused, det = f4, base
        if cfg.temporal:
            enc = self.temporal_encoder(feats)
            t = self._to_f4(self.temporal_proj(enc), f4)
            fused = f4 + t
            if cfg.temporal_fusion == "gated":
                # fused += sum_t gate_t * (f4_t - f4_key): where the key frame is occluded, blurred or
                # lost, borrow the neighbours' own stride-4 features (crops follow the person's box,
                # so they are roughly aligned); the gates come from the spatio-temporal scan
                gates = self._to_f4(self.temporal_gate(enc), f4)  # (B, T, h, w)
                others = torch.stack([f4 if i == cfg.key_index else self.keypoint_head.pyramid(feats[:, i])[2]
                                      for i in range(cfg.window)], dim=1)  # (B, T, C, h, w)
                fused = fused + (gates.unsqueeze(2) * (others - f4.unsqueeze(1))).sum(dim=1)
            det = self.keypoint_head.predict(fused)
        return {"key": f16, "f8": f8, "fused": fused, "base": base, "det": det,
                "base_heatmaps": None if base is None else base["heatmaps"], "det_heatmaps": det["heatmaps"]}

    @staticmethod
    def _to_f4(x: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == f4.shape[-2:]:
            return x
        return F.interpolate(x, size=f4.shape[-2:], mode="bilinear", align_corners=False)

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups of the trainable parameters: matrices decay; biases, norms, embeddings and
        whatever a module marks `_no_weight_decay` (the SSM's A_log and D) do not."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if p.ndim < 2 or "pos_embed" in name or getattr(p, "_no_weight_decay", False):
                no_decay.append(p)
            else:
                decay.append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def _cond(self, parts: dict) -> DiffusionCond:
        return DiffusionCond(f16=parts["key"], f8=parts["f8"], f4=parts["fused"], prior=parts["det_heatmaps"])

    def decode_windows(self, feats: torch.Tensor, generator: torch.Generator | None = None,
                       diffusion_steps: int | None = None, hypotheses: int | None = None,
                       noise_seeds: list[int] | None = None) -> dict:
        """feats (B, T, C, gh, gw) -> {"heatmaps", "base_heatmaps"} (B, K, h, w) for the key frame T//2,
        plus "prediction" / "base_prediction": the head's full outputs (what decode_keypoints needs).

        Without temporal, only the key frame's features are used (the others may be anything).
        diffusion_steps / hypotheses override the config's S / K for this call; S = 0 skips
        diffusion (the deterministic head's heatmaps). noise_seeds (one per window) draw each window's
        diffusion noise from its own seed, so a window decodes the same whatever batch it is in
        (the service seeds by track and frame); else `generator` draws the whole batch's noise.
        """
        cfg = self.cfg
        steps = cfg.diffusion_steps if diffusion_steps is None else int(diffusion_steps)
        k = cfg.hypotheses if hypotheses is None else int(hypotheses)
        if steps < 0 or k < 1:
            raise ValueError(f"need diffusion_steps >= 0 and hypotheses >= 1, got {steps}, {k}")
        parts = self._heads(feats)
        heat = parts["det_heatmaps"]
        if cfg.diffusion and steps > 0:
            init = heat if cfg.diffusion_init == "prior" else None
            noise = None
            if noise_seeds is not None:
                if len(noise_seeds) != heat.shape[0]:
                    raise ValueError(f"{len(noise_seeds)} noise seeds for {heat.shape[0]} windows")
                shape = (k, *heat.shape[1:])
                noise = torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(int(s)))
                                   for s in noise_seeds]).to(heat.device, heat.dtype)
            every = self.diffusion.sample(self._cond(parts), steps=steps, hypotheses=k, generator=generator,
                                          init=init, init_step=cfg.diffusion_init_step, noise=noise,
                                          return_all=True)
            prior = parts["det_heatmaps"]
            heat = prior + (every - prior[:, None]).mean(dim=1)  # exactly the prior while corrections are 0
            hypotheses = every if k > 1 else None
        else:
            hypotheses = None
        return {"heatmaps": heat, "base_heatmaps": parts["base_heatmaps"], "prediction": parts["det"],
                "base_prediction": parts["base"], "hypotheses": hypotheses}

    def _encode_windows(self, frames: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if frames.dim() != 5 or frames.shape[1] != cfg.window:
            raise ValueError(f"expected frames (B, T={cfg.window}, 3, H, W), got {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        # Only the key frame matters without temporal; and image datasets (COCO) repeat one frame
        # T times, so a batch of static windows needs the backbone once per window, not T times.
        static = not frames.is_meta and bool((frames == frames[:, cfg.key_index, None]).all())
        if not cfg.temporal or static:
            key = self.encode_frames(frames[:, cfg.key_index])
            return key[:, None].expand(b, t, *key.shape[1:])
        return self.encode_frames(frames.flatten(0, 1)).unflatten(0, (b, t))

    def forward(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """frames (B, T, 3, H, W) normalised crops -> {"heatmaps", "base_heatmaps"} (B, K, h, w)."""
        return self.decode_windows(self._encode_windows(frames), generator=generator)

    def frame_confidence(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, C, gh, gw) features of single crops -> (N,) float32: the single-frame branch's mean joint
        score, what the re-crop rule compares across a window (model/windows.py wants_recrop)."""
        f4 = self.keypoint_head.pyramid(feats)[2]
        p = self.keypoint_head.predict(f4)
        return self.keypoint_head.decode(p["heatmaps"].float(), p)[..., 2].float().mean(dim=-1)

    def decode_keypoints(self, out: dict, base: bool = False) -> torch.Tensor:
        """decode_windows' output -> (B, K, 3) float32: x, y in heatmap cells (sub-pixel) and score.

        base=True decodes the single-frame branch. With cfg.single_frame_keep_score <= 1, a joint the
        single-frame branch scores at least that keeps its single-frame keypoint (and score); the others
        take the temporal one. Decoded in float32 whatever the dtype: bf16
        cannot hold sub-pixel coordinates (its step is 0.25 between 32 and 64).
        """
        single = None
        if base or (self.cfg.temporal and self.cfg.single_frame_keep_score <= 1.0):
            single = self.keypoint_head.decode(out["base_heatmaps"].float(), out["base_prediction"])
        if base:
            return single
        kps = self.keypoint_head.decode(out["heatmaps"].float(), out["prediction"])
        if single is not None:  # keep the joints the key frame alone is sure of (cfg.single_frame_keep_score)
            keep = single[..., 2:3] >= self.cfg.single_frame_keep_score
            kps = torch.where(keep, single, kps)
        return kps

    def keypoint_spread(self, out: dict) -> torch.Tensor | None:
        """Per-joint uncertainty from the K diffusion hypotheses: (B, K_joints) float32, the root mean
        squared distance (heatmap cells) of each hypothesis' keypoint (the head's hypothesis_points:
        sub-cell, from that hypothesis' heatmap alone) from their mean. None when decode_windows drew
        fewer than 2 hypotheses (or no diffusion ran)."""
        every = out.get("hypotheses")
        if every is None:
            return None
        b, n = every.shape[:2]
        aux = {name: v.repeat_interleave(n, dim=0) for name, v in out["prediction"].items()}
        kps = self.keypoint_head.hypothesis_points(every.flatten(0, 1).float(), aux).view(b, n, -1, 2)
        return ((kps - kps.mean(dim=1, keepdim=True)) ** 2).sum(-1).mean(dim=1).sqrt()

    @staticmethod
    def decode_heatmaps(heatmaps: torch.Tensor) -> torch.Tensor:
        """(B, K, h, w) -> (B, K, 3) float32 by heatmap peak alone (DARK-style sub-pixel refinement)."""
        return hm.decode_heatmaps(heatmaps.float())

    # ------------------------------------------------------------------ training
    def distill_loss(self, feats: torch.Tensor, clean_key: torch.Tensor, target_weight: torch.Tensor,
                     generator: torch.Generator | None = None) -> dict:
        """Train the temporal path (and diffusion head) against the frozen single-frame model itself.

        feats (B, T, C, gh, gw): cached backbone features of a window whose key frame may be corrupted;
        clean_key (B, C, gh, gw): the key frame's clean features. The teacher is this model's own
        single-frame branch on the clean key: its heatmaps are the target of the fused heatmaps
        (weighted per joint by target_weight, the clean-frame confidence), and its stride-4 features
        the target of the fused features, so the centre, regression and offset heads -- frozen, and
        read by the keypoint decoder too -- see features like a clean frame's. Both terms are relative
        (1.0 = predicting zeros), so neither scale dominates. Needs cfg.temporal.
        """
        if not self.cfg.temporal:
            raise ValueError("distill_loss trains the temporal path: the model has temporal=False")
        parts = self._heads(feats, with_base=False)
        with torch.no_grad():
            f4_clean = self.keypoint_head.pyramid(clean_key)[2]
            teacher = self.keypoint_head.predict(f4_clean)["heatmaps"]
        w = target_weight.reshape(*target_weight.shape[:2], 1, 1).to(teacher.dtype)
        heat_norm = (w * teacher ** 2).mean().clamp_min(1e-8)
        out = {"heatmap_loss": weighted_mse(parts["det_heatmaps"], teacher, target_weight) / heat_norm,
               "feature_loss": F.mse_loss(parts["fused"], f4_clean) / (f4_clean ** 2).mean().clamp_min(1e-8)}
        loss = out["heatmap_loss"] + out["feature_loss"]
        if self.cfg.diffusion:
            out["diffusion_loss"] = self.diffusion.training_loss(self._cond(parts), teacher, target_weight,
                                                                 generator=generator) / heat_norm
            loss = loss + out["diffusion_loss"]
        out["loss"] = loss
        return out

    def training_loss(self, frames: torch.Tensor, target_heatmaps: torch.Tensor, target_weight: torch.Tensor,
                      generator: torch.Generator | None = None) -> dict:
        """Weighted heatmap MSE on the base and the (temporal) heatmaps, plus the diffusion x0 loss.

        target_heatmaps (B, K, h, w) in [0, 1] (Gaussians, peak 1); target_weight (B, K).
        """
        cfg = self.cfg
        parts = self._heads(self._encode_windows(frames))
        base_loss = weighted_mse(parts["base_heatmaps"], target_heatmaps, target_weight)
        out = {"base_loss": base_loss}
        loss = base_loss
        if cfg.temporal:
            out["temporal_loss"] = weighted_mse(parts["det_heatmaps"], target_heatmaps, target_weight)
            loss = loss + out["temporal_loss"]
        if cfg.diffusion:
            out["diffusion_loss"] = self.diffusion.training_loss(self._cond(parts), target_heatmaps,
                                                                 target_weight, generator=generator)
            loss = loss + out["diffusion_loss"]
        out["loss"] = loss
        return out
