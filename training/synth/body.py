"""Articulated bodies: proportions, joint angles over time, forward kinematics.

Body frame: x = the person's left, y = up, z = forward, lengths in units of
body height. A pose is a set of joint angles; forward kinematics gives 3-D
joint positions; the global yaw turns the body and an orthographic camera
projects it (image x = x, image y = -y, depth = z, larger = nearer).

Motions are smooth functions of continuous time t (seconds): a periodic
pattern (walk, wave, jump, jumping jacks, squat, sway) plus low-frequency
random noise on every angle, so any sub-frame time can be rendered (motion
blur) and the ground truth is exact at every frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MOTIONS = ("walk", "wave", "jump", "jacks", "squat", "sway")
ANGLES = (
    "lean", "side", "twist", "head_yaw", "head_pitch",
    "l_sh_flex", "l_sh_abd", "l_elbow", "r_sh_flex", "r_sh_abd", "r_elbow",
    "l_hip_flex", "l_hip_abd", "l_knee", "r_hip_flex", "r_hip_abd", "r_knee",
)


@dataclass
class Proportions:
    """Segment lengths as fractions of body height (adult ranges, jittered per person)."""

    shoulder_w: float = 0.24
    hip_w: float = 0.17
    torso: float = 0.30  # pelvis centre -> shoulder centre
    neck: float = 0.045  # shoulder centre -> head_bottom (chin)
    head: float = 0.13  # head_bottom -> head_top
    upper_arm: float = 0.18
    forearm: float = 0.15
    thigh: float = 0.245
    shin: float = 0.245
    ankle_h: float = 0.04  # ankle above the ground

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Proportions:
        j = lambda v, r=0.06: float(v * rng.uniform(1 - r, 1 + r))
        return cls(shoulder_w=j(0.24, 0.1), hip_w=j(0.17, 0.1), torso=j(0.30), neck=j(0.045, 0.15),
                   head=j(0.13), upper_arm=j(0.18), forearm=j(0.15), thigh=j(0.245), shin=j(0.245))


@dataclass
class Motion:
    """A periodic pattern plus per-angle random noise; angles(t) in radians."""

    kind: str
    period: float  # seconds
    phase: float
    amplitude: float  # 0.6 .. 1.3 scales the pattern
    side: int  # +1 left / -1 right: which arm waves
    base: dict[str, float] = field(default_factory=dict)
    noise: np.ndarray = field(default_factory=lambda: np.zeros((len(ANGLES), 2, 3)))  # (amp, freq, phase) x 2
    jump_height: float = 0.0

    @classmethod
    def sample(cls, rng: np.random.Generator, kind: str | None = None) -> Motion:
        kind = kind or str(rng.choice(MOTIONS, p=[0.34, 0.16, 0.12, 0.12, 0.1, 0.16]))
        period = {"walk": (0.9, 1.3), "wave": (0.5, 0.9), "jump": (0.9, 1.3), "jacks": (0.7, 1.1),
                  "squat": (1.4, 2.4), "sway": (1.5, 3.0)}[kind]
        noise = np.zeros((len(ANGLES), 2, 3))
        noise[:, :, 0] = rng.uniform(0.03, 0.16, (len(ANGLES), 2))  # rad
        noise[:, :, 1] = rng.uniform(0.15, 0.8, (len(ANGLES), 2))  # Hz
        noise[:, :, 2] = rng.uniform(0, 2 * np.pi, (len(ANGLES), 2))
        noise[:3] *= 0.5  # the torso moves less than the limbs
        base = {"l_sh_abd": rng.uniform(0.05, 0.3), "r_sh_abd": rng.uniform(0.05, 0.3),
                "l_elbow": rng.uniform(0.1, 0.5), "r_elbow": rng.uniform(0.1, 0.5),
                "l_hip_abd": rng.uniform(0.0, 0.1), "r_hip_abd": rng.uniform(0.0, 0.1),
                "head_yaw": rng.uniform(-0.4, 0.4), "lean": rng.uniform(-0.05, 0.12)}
        if kind == "sway":  # free, larger random limb motion (dance-like)
            noise[5:, :, 0] *= 3.0
        return cls(kind=kind, period=float(rng.uniform(*period)), phase=float(rng.uniform(0, 2 * np.pi)),
                   amplitude=float(rng.uniform(0.7, 1.3)), side=int(rng.choice([-1, 1])), base=base,
                   noise=noise, jump_height=float(rng.uniform(0.08, 0.22)))

    def angles(self, t: float) -> tuple[dict[str, float], float]:
        """Joint angles at time t and the airborne height (fraction of body height)."""
        a = {name: self.base.get(name, 0.0) for name in ANGLES}
        ph = 2 * np.pi * t / self.period + self.phase
        s, c, amp = np.sin(ph), np.cos(ph), self.amplitude
        lift = 0.0
        if self.kind == "walk":
            hip = 0.42 * amp
            a["l_hip_flex"] += hip * s
            a["r_hip_flex"] -= hip * s
            a["l_knee"] += 0.1 + 0.9 * amp * ((1 + np.cos(ph - 0.4)) / 2) ** 2
            a["r_knee"] += 0.1 + 0.9 * amp * ((1 - np.cos(ph - 0.4)) / 2) ** 2
            a["l_sh_flex"] -= 0.45 * amp * s
            a["r_sh_flex"] += 0.45 * amp * s
            a["l_elbow"] += 0.25 * (1 - s)
            a["r_elbow"] += 0.25 * (1 + s)
            a["twist"] += 0.12 * s
        elif self.kind == "wave":
            arm = "l" if self.side > 0 else "r"
            a[f"{arm}_sh_abd"] = 2.3 + 0.25 * s * amp
            a[f"{arm}_sh_flex"] = 0.3
            a[f"{arm}_elbow"] = 0.7 + 0.55 * c * amp
            a["head_yaw"] += 0.2 * self.side
        elif self.kind == "jump":
            up = max(0.0, s)
            down = max(0.0, -s)
            lift = self.jump_height * up**1.5
            for side in "lr":
                a[f"{side}_knee"] += 1.3 * down * amp
                a[f"{side}_hip_flex"] += 0.75 * down * amp
                a[f"{side}_sh_flex"] += 2.2 * up * amp - 0.5 * down
                a[f"{side}_elbow"] += 0.3 * down
            a["lean"] += 0.45 * down * amp
        elif self.kind == "jacks":
            open_ = (1 - c) / 2
            lift = 0.04 * max(0.0, s) * amp
            for side in "lr":
                a[f"{side}_sh_abd"] = 0.15 + 2.6 * open_ * amp
                a[f"{side}_hip_abd"] = 0.03 + 0.32 * open_ * amp
                a[f"{side}_elbow"] = 0.15 + 0.2 * (1 - open_)
        elif self.kind == "squat":
            down = (1 - c) / 2
            for side in "lr":
                a[f"{side}_knee"] += 1.6 * down * amp
                a[f"{side}_hip_flex"] += 1.1 * down * amp
                a[f"{side}_sh_flex"] += 1.3 * down * amp
            a["lean"] += 0.5 * down * amp
        # sway: noise only (larger amplitude, set in sample)
        amp, freq, phase = self.noise[..., 0], self.noise[..., 1], self.noise[..., 2]
        wiggle = np.sum(amp * np.sin(2 * np.pi * freq * t + phase), axis=-1)
        for i, name in enumerate(ANGLES):
            a[name] += float(wiggle[i])
        for name in ("l_elbow", "r_elbow", "l_knee", "r_knee"):
            a[name] = float(np.clip(a[name], 0.0, 2.5))
        for name in ("l_hip_abd", "r_hip_abd"):
            a[name] = float(np.clip(a[name], -0.15, 0.6))
        return a, lift


# --------------------------------------------------------------------------- kinematics
def _rot_y(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([x * c + z * s, y, -x * s + z * c], axis=-1)


def _rot_x(v: np.ndarray, angle: float) -> np.ndarray:  # positive tips +y towards +z (lean forward)
    c, s = np.cos(angle), np.sin(angle)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([x, y * c - z * s, y * s + z * c], axis=-1)


def _rot_z(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([x * c - y * s, x * s + y * c, z], axis=-1)


def _limb(flex: float, abd: float, side: int, bend: float, bend_sign: int):
    """Upper and lower segment directions of a limb.

    flex swings it forward (+z), abd outward (towards the limb's side); the
    lower segment bends by `bend` forward (elbow, +1) or backward (knee, -1).
    """
    cb, sb = np.cos(abd), np.sin(abd)
    upper = np.array([side * sb, -cb * np.cos(flex), cb * np.sin(flex)])
    ref = np.array([0.0, np.sin(flex), np.cos(flex)]) * bend_sign
    ref = ref - ref.dot(upper) * upper
    n = np.linalg.norm(ref)
    ref = ref / n if n > 1e-6 else np.array([0.0, 0.0, float(bend_sign)])
    lower = np.cos(bend) * upper + np.sin(bend) * ref
    return upper, lower


def forward_kinematics(p: Proportions, a: dict[str, float]) -> dict[str, np.ndarray]:
    """3-D points (body frame, pelvis at the origin) of every joint the renderer and labels need."""
    up = _rot_z(_rot_x(np.array([0.0, 1.0, 0.0]), a["lean"]), a["side"])
    across = _rot_z(_rot_y(np.array([1.0, 0.0, 0.0]), a["twist"]), a["side"])
    hip_across = _rot_y(np.array([1.0, 0.0, 0.0]), 0.3 * a["twist"])
    pts: dict[str, np.ndarray] = {"pelvis": np.zeros(3)}
    sc = up * p.torso
    pts["shoulder_center"] = sc
    pts["left_shoulder"] = sc + across * p.shoulder_w / 2
    pts["right_shoulder"] = sc - across * p.shoulder_w / 2
    pts["left_hip"] = hip_across * p.hip_w / 2
    pts["right_hip"] = -hip_across * p.hip_w / 2
    for side, name, sign in ((1, "left", "l"), (-1, "right", "r")):
        u, lo = _limb(a[f"{sign}_sh_flex"], a[f"{sign}_sh_abd"], side, a[f"{sign}_elbow"], 1)
        u, lo = _rot_y(_rot_z(u, a["side"]), a["twist"]), _rot_y(_rot_z(lo, a["side"]), a["twist"])
        pts[f"{name}_elbow"] = pts[f"{name}_shoulder"] + u * p.upper_arm
        pts[f"{name}_wrist"] = pts[f"{name}_elbow"] + lo * p.forearm
        pts[f"{name}_hand"] = pts[f"{name}_wrist"] + lo * 0.04
        u, lo = _limb(a[f"{sign}_hip_flex"], a[f"{sign}_hip_abd"], side, a[f"{sign}_knee"], -1)
        pts[f"{name}_knee"] = pts[f"{name}_hip"] + u * p.thigh
        pts[f"{name}_ankle"] = pts[f"{name}_knee"] + lo * p.shin
        pts[f"{name}_toe"] = pts[f"{name}_ankle"] + np.array([0.0, -0.02, 0.07])
    head_up = _rot_x(up, a["head_pitch"])
    face = _rot_y(_rot_x(np.array([0.0, 0.0, 1.0]), a["head_pitch"] + a["lean"]), a["twist"] + a["head_yaw"])
    head_across = _rot_y(_rot_z(np.array([1.0, 0.0, 0.0]), a["side"]), a["twist"] + a["head_yaw"])
    hb = sc + up * p.neck
    hc = hb + head_up * p.head * 0.5
    pts["head_bottom"] = hb
    pts["head_top"] = hb + head_up * p.head
    pts["head_center"] = hc
    pts["nose"] = hc + face * p.head * 0.36 - head_up * p.head * 0.06
    pts["left_eye"] = hc + face * p.head * 0.28 + head_across * p.head * 0.17 + head_up * p.head * 0.08
    pts["right_eye"] = hc + face * p.head * 0.28 - head_across * p.head * 0.17 + head_up * p.head * 0.08
    pts["left_ear"] = hc + head_across * p.head * 0.36 - face * p.head * 0.04
    pts["right_ear"] = hc - head_across * p.head * 0.36 - face * p.head * 0.04
    pts["face_dir"] = face  # a direction, not a point
    return pts


def project(pts: dict[str, np.ndarray], yaw: float, height_px: float, root_xy) -> dict[str, np.ndarray]:
    """Turn by `yaw` (0 = facing the camera, +90 deg = facing image right) and project to pixels.

    Returns (3,) arrays: image x, image y, depth (pixels, larger = nearer)."""
    out = {}
    for name, v in pts.items():
        w = _rot_y(v, yaw)
        if name == "face_dir":
            out[name] = np.array([w[0], -w[1], w[2]])
            continue
        out[name] = np.array([root_xy[0] + w[0] * height_px, root_xy[1] - w[1] * height_px, w[2] * height_px])
    return out


def standing_offset(pts: dict[str, np.ndarray], p: Proportions) -> float:
    """Height of the pelvis above the ground (body units) so the lower foot touches it."""
    lowest = min(pts["left_ankle"][1], pts["right_ankle"][1])
    return -lowest + p.ankle_h
