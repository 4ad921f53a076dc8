"""Does the temporal path earn its place? PCK@0.1 on cached held-out windows, against the teacher.

For each window (training/datasets/features.py, train=False: every key sample clean and under its
fixed corruption) the target is the frozen single-frame model's keypoints on the CLEAN key frame. We
score, on the same joints (teacher-confident ones only):
    base      the single-frame branch on the (possibly corrupted) key frame -- what the served
              single-frame model would output
    temporal  the fused prediction for each diffusion setting asked for (none / K hypotheses)
and, with K > 1, the per-joint spread of the K hypotheses' decoded keypoints (crop pixels) on joints
the model gets right vs wrong -- the check that the uncertainty means something.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch.utils.data import DataLoader

from training.data import collate


def _correct(pred: torch.Tensor, target: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """(B, K, >=2) keypoints in heatmap cells -> (B, K) bool: within thr (B,) cells."""
    return torch.linalg.vector_norm(pred[..., :2] - target[..., :2], dim=-1) <= thr[:, None]


@torch.no_grad()
def evaluate_windows(model, dataset, settings: dict[str, tuple[int, int]] | None = None,
                     batch_size: int = 64, device: str | torch.device = "cpu", seed: int = 0) -> dict:
    """settings: name -> (diffusion_steps, hypotheses); default: the model's own configuration.

    Returns {"rows": {kind: {"n_joints", "base", <setting>...}}, "spread": {setting: {"right", "wrong",
    "n_right", "n_wrong", "auroc", "score_auroc"}}}, PCK in %; auroc: how well the spread tells wrong
    joints from right ones, score_auroc: the same for 1 - keypoint score (the signal it must beat).
    kind "clean" = uncorrupted key frames; "corrupted" = all corrupted ones together; plus one row per
    corruption kind.
    """
    model.eval()
    cfg = model.cfg
    if settings is None:
        settings = {"model": (cfg.diffusion_steps if cfg.diffusion else 0, cfg.hypotheses)}
    stride = cfg.input_size[1] / cfg.heatmap_size[1]
    hits: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    spread: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    start = 0
    for batch in loader:
        feats = batch["features"].to(device)
        w = batch["target_weight"].to(device) > 0
        thr = batch["pck_threshold"].to(device)
        f4_clean = model.keypoint_head.pyramid(batch["clean_key"].to(device))[2]
        clean_pred = model.keypoint_head.predict(f4_clean)
        teacher = model.keypoint_head.decode(clean_pred["heatmaps"], clean_pred)
        kinds = ["clean" if k < 0 else dataset.kinds[k] for k in batch["kind"]]
        seeds = [seed * 1_000_003 + start + i for i in range(len(kinds))]
        start += len(kinds)
        results = {}
        for name, (steps, k) in settings.items():
            out = model.decode_windows(feats, diffusion_steps=steps, hypotheses=k, noise_seeds=seeds)
            results[name] = model.decode_keypoints(out)
            results.setdefault("base", model.decode_keypoints(out, base=True))
            spread_cells = model.keypoint_spread(out)
            if spread_cells is not None:
                s = spread_cells * stride
                ok = _correct(results[name], teacher, thr)
                spread[name]["right"].append(s[w & ok].cpu())
                spread[name]["wrong"].append(s[w & ~ok].cpu())
                # the baseline a spread has to beat: the keypoint score itself (low = unsure)
                unsure = 1.0 - results[name][..., 2]
                spread[name]["score_right"].append(unsure[w & ok].cpu())
                spread[name]["score_wrong"].append(unsure[w & ~ok].cpu())
        for name, kps in results.items():
            ok = _correct(kps, teacher, thr)
            for i, kind in enumerate(kinds):
                for group in (kind, "corrupted") if kind != "clean" else (kind,):
                    hits[group][name].append(ok[i][w[i]].cpu())
    rows = {}
    for group, by_name in hits.items():
        first = next(iter(by_name.values()))
        row = {"n_joints": int(sum(len(x) for x in first))}
        for name, parts in by_name.items():
            cat = torch.cat(parts).float()
            row[name] = round(100.0 * float(cat.mean()), 2) if len(cat) else float("nan")
        rows[group] = row
    spreads = {}
    for name, d in spread.items():
        right, wrong = torch.cat(d["right"]), torch.cat(d["wrong"])
        spreads[name] = {"right": _mean(right), "wrong": _mean(wrong),
                         "n_right": len(right), "n_wrong": len(wrong), "auroc": auroc(wrong, right),
                         "score_auroc": auroc(torch.cat(d["score_wrong"]), torch.cat(d["score_right"]))}
    return {"rows": rows, "spread": spreads}


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(a random positive scores above a random negative), ties counted half (Mann-Whitney U):
    1.0 = the spread tells every wrong joint from every right one, 0.5 = it tells nothing."""
    if not len(positive) or not len(negative):
        return float("nan")
    scores = torch.cat([positive, negative]).double()
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inverse, ranks)
    ranks = (sums / counts)[inverse]  # tied scores share their mean rank
    n_p, n_n = len(positive), len(negative)
    return round(float((ranks[:n_p].sum() - n_p * (n_p + 1) / 2) / (n_p * n_n)), 3)


def _mean(x: torch.Tensor) -> float:
    return round(float(x.mean()), 3) if len(x) else float("nan")


def summary(result: dict, setting: str = "model") -> dict:
    """The trainer's validation metrics: pck = temporal on corrupted key frames (what training is for)."""
    rows = result["rows"]
    out = {}
    for group, key in (("corrupted", "pck"), ("clean", "pck_clean")):
        if group in rows:
            out[key] = rows[group][setting] / 100.0
            out[key + "_base"] = rows[group]["base"] / 100.0
    return out


def format_table(result: dict) -> str:
    """Markdown: one row per key-frame condition, one column per prediction."""
    rows = result["rows"]
    names = [n for n in next(iter(rows.values())) if n != "n_joints"]
    order = ["clean", "corrupted"] + sorted(k for k in rows if k not in ("clean", "corrupted"))
    lines = ["| key frame | joints | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for group in order:
        if group in rows:
            r = rows[group]
            lines.append(f"| {group} | {r['n_joints']} | " + " | ".join(f"{r[n]:.1f}" for n in names) + " |")
    for name, s in result["spread"].items():
        lines.append(f"\n{name}: hypothesis spread (crop px) on right joints {s['right']} "
                     f"(n={s['n_right']}), "
                     f"on wrong joints {s['wrong']} (n={s['n_wrong']}); AUROC of spread for wrong vs "
                     f"right {s.get('auroc', float('nan'))} (1 - keypoint score: "
                     f"{s.get('score_auroc', float('nan'))})")
    return "\n".join(lines)


@torch.no_grad()
def keep_score_sweep(model, dataset, grid: list[float], batch_size: int = 64,
                     device: str | torch.device = "cpu") -> dict[float, dict[str, float]]:
    """PCK@0.1 (%) on clean and corrupted key frames for each candidate single_frame_keep_score:
    joints the single-frame branch scores >= it keep the single-frame keypoint, the others take the
    temporal one (no diffusion). Pick the value on windows the held-out split does not contain."""
    model.eval()
    saved = model.cfg
    model.cfg = saved.replace(single_frame_keep_score=2.0)  # raw temporal keypoints; mixed below
    groups: dict[str, list] = defaultdict(list)
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
            feats = batch["features"].to(device)
            f4_clean = model.keypoint_head.pyramid(batch["clean_key"].to(device))[2]
            clean_pred = model.keypoint_head.predict(f4_clean)
            teacher = model.keypoint_head.decode(clean_pred["heatmaps"], clean_pred)
            out = model.decode_windows(feats, diffusion_steps=0)
            temporal, single = model.decode_keypoints(out), model.decode_keypoints(out, base=True)
            w = batch["target_weight"].to(device) > 0
            thr = batch["pck_threshold"].to(device)
            for i, k in enumerate(batch["kind"]):
                group = "clean" if k < 0 else "corrupted"
                groups[group].append((temporal[i], single[i], teacher[i], w[i], thr[i]))
    finally:
        model.cfg = saved
    result = {}
    for tau in grid:
        row = {}
        for group, items in groups.items():
            ok = []
            for temporal, single, teacher, w, thr in items:
                mixed = torch.where(single[:, 2:3] >= tau, single, temporal)
                ok.append(_correct(mixed[None], teacher[None], thr[None])[0][w])
            row[group] = round(100.0 * float(torch.cat(ok).float().mean()), 2)
        result[tau] = row
    return result
