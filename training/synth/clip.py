"""One synthetic clip: people, occluders and a shaky camera simulated in continuous time.

Frame f shows time t = f / fps. With motion blur, a frame is the mean of
`subframes` renders spread over the shutter interval around t; the labels
(and the owner buffer that decides occlusion) come from the render at t.

Labels per person and frame (layout slots, see training/datasets/layouts.py):
    (x, y, 2)  visible joint
    (x, y, 1)  joint hidden by another person or an occluder (`occluded` flag 1);
               written as (0, 0, 0) instead when occluded_labels=False
    (0, 0, 0)  joint outside the image (or a slot the layout never labels)
A person is annotated in a frame only with >= min_visible visible joints.
box = the full (amodal) body silhouette clipped to the image; head box = the head ellipse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from training.synth.body import Motion, Proportions, forward_kinematics, project, standing_offset
from training.synth.render import (
    Appearance,
    Canvas,
    Occluder,
    draw_occluder,
    draw_person,
    ellipse,
    sample_occluder,
)
from training.synth.textures import background

# Which body point fills each of the 17 slots; None = never labelled.
SLOT_POINTS = {
    "coco": ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
    "posetrack18": ("nose", "head_bottom", "head_top", None, None),
}
LIMB_POINTS = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")


@dataclass
class SynthConfig:
    width: int = 320
    height: int = 240
    frames: int = 30
    fps: float = 25.0
    max_people: int = 4
    layout: str = "posetrack18"  # or "coco" (eyes/ears instead of head_bottom/head_top)
    occluded_labels: bool = True  # False: hidden joints are unlabelled (0, 0, 0), PoseTrack-style
    min_visible: int = 3
    blur_prob: float = 0.6  # share of clips rendered with motion blur
    subframes: int = 3
    jpeg_quality: int = 90

    def __post_init__(self):
        if self.layout not in SLOT_POINTS:
            raise ValueError(f"layout must be one of {sorted(SLOT_POINTS)}")
        if self.width < 64 or self.height < 64 or self.frames < 1:
            raise ValueError("clips need at least 64x64 pixels and 1 frame")


@dataclass
class PersonLabel:
    track_id: int
    keypoints: np.ndarray  # (17, 3)
    occluded: np.ndarray  # (17,) 0/1
    box: np.ndarray  # xywh
    head_box: np.ndarray  # xywh


@dataclass
class Clip:
    frames: list[np.ndarray]  # BGR uint8
    labels: list[list[PersonLabel]]
    info: dict = field(default_factory=dict)


@dataclass
class Person:
    track_id: int
    height: float
    props: Proportions
    motion: Motion
    app: Appearance
    yaw0: float
    yaw_rate: float
    x0: float
    vx: float
    ground_y: float

    def points(self, t: float) -> dict[str, np.ndarray]:
        angles, lift = self.motion.angles(t)
        pts3 = forward_kinematics(self.props, angles)
        pelvis_h = standing_offset(pts3, self.props) + lift
        root = (self.x0 + self.vx * t, self.ground_y - pelvis_h * self.height)
        return project(pts3, self.yaw0 + self.yaw_rate * t, self.height, root)


@dataclass
class Camera:
    """Smooth drift + high-frequency shake + slight zoom/roll about the frame centre."""

    center: np.ndarray
    drift: np.ndarray  # (2 axes, 2 terms, amp/freq/phase)
    shake: np.ndarray
    zoom: tuple[float, float, float]  # amp, freq, phase
    roll: tuple[float, float, float]  # radians

    @classmethod
    def sample(cls, rng: np.random.Generator, w: int, h: int) -> Camera:
        def terms(amp, f_lo, f_hi):
            a = np.zeros((2, 2, 3))
            a[..., 0] = rng.uniform(0, amp, (2, 2))
            a[..., 1] = rng.uniform(f_lo, f_hi, (2, 2))
            a[..., 2] = rng.uniform(0, 2 * np.pi, (2, 2))
            return a

        scale = max(w, h) / 320
        shake_amp = 0.0 if rng.random() < 0.35 else rng.uniform(0.5, 3.0) * scale
        return cls(np.array([w / 2, h / 2]), terms(8 * scale, 0.05, 0.4), terms(shake_amp, 3.0, 9.0),
                   (rng.uniform(0, 0.04), rng.uniform(0.05, 0.3), rng.uniform(0, 2 * np.pi)),
                   (rng.uniform(0, 0.02), rng.uniform(0.05, 0.3), rng.uniform(0, 2 * np.pi)))

    def matrix(self, t: float) -> np.ndarray:
        def ev(terms):
            return np.sum(terms[..., 0] * np.sin(2 * np.pi * terms[..., 1] * t + terms[..., 2]), axis=-1)

        shift = ev(self.drift) + ev(self.shake)
        s = 1.0 + self.zoom[0] * np.sin(2 * np.pi * self.zoom[1] * t + self.zoom[2])
        r = self.roll[0] * np.sin(2 * np.pi * self.roll[1] * t + self.roll[2])
        lin = s * np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
        return np.concatenate([lin, (self.center + shift - lin @ self.center)[:, None]], axis=1)


def _transform(pts: dict[str, np.ndarray], cam: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for name, p in pts.items():
        if name == "face_dir":
            out[name] = np.array([*(cam[:, :2] @ p[:2]), p[2]])
        else:
            out[name] = np.array([*(cam[:, :2] @ p[:2] + cam[:, 2]), p[2]])
    return out


def _sample_people(rng: np.random.Generator, cfg: SynthConfig) -> list[Person]:
    w, h = cfg.width, cfg.height
    n = int(rng.choice(np.arange(1, cfg.max_people + 1),
                       p=np.array([0.3, 0.35, 0.25, 0.1][: cfg.max_people]) / sum([0.3, 0.35, 0.25, 0.1][
                           : cfg.max_people])))
    duration = cfg.frames / cfg.fps
    people = []
    for track in range(n):
        g = rng.uniform(0.72, 0.98)
        height = h * (0.42 + 0.5 * (g - 0.72) / 0.26) * rng.uniform(0.9, 1.1)  # nearer (lower) = taller
        height = float(np.clip(height, 0.38 * h, 0.92 * h))
        motion = Motion.sample(rng)
        if motion.kind == "walk":
            yaw = np.deg2rad(rng.uniform(55, 110)) * (1 if rng.random() < 0.5 else -1)
            vx = np.sign(np.sin(yaw)) * height * rng.uniform(0.55, 0.9) * motion.amplitude
            yaw_rate = rng.normal(0, 0.05)
        else:
            yaw = np.deg2rad(rng.uniform(-70, 70) if rng.random() < 0.75 else 180 + rng.uniform(-60, 60))
            vx = rng.normal(0, 0.08) * height
            yaw_rate = rng.normal(0, 0.25)
        # best of 3 candidates: spread people out (overlaps still happen, by motion and chance)
        cands = rng.uniform(0.15, 0.85, 3) * w
        others = [p.x0 + p.vx * duration / 2 for p in people]
        x_mid = cands[int(np.argmax([min([abs(c - o) for o in others], default=0.0) for c in cands]))]
        people.append(Person(track, height, Proportions.sample(rng), motion, Appearance.sample(rng, height),
                             float(yaw), float(yaw_rate), float(x_mid - vx * duration / 2), float(vx), g * h))
    return people


def _sample_occluders(rng: np.random.Generator, cfg: SynthConfig, people: list[Person]) -> list[Occluder]:
    n = int(rng.choice([0, 1, 2, 3], p=[0.15, 0.45, 0.3, 0.1]))
    duration = cfg.frames / cfg.fps
    out = []
    for i in range(n):
        target = people[int(rng.integers(len(people)))]
        t0 = rng.uniform(0.2, 0.8) * duration
        pts = target.points(t0)
        aim = pts["pelvis"][:2] + (pts["shoulder_center"][:2] - pts["pelvis"][:2]) * rng.uniform(-0.8, 1.2)
        depth = 1e9 if rng.random() < 0.7 else target.ground_y + 0.5
        out.append(sample_occluder(rng, aim, target.height, (cfg.height, cfg.width), t0, depth, 1000 + i))
    return out


def _label(person: Person, pts: dict[str, np.ndarray], height: float, parts: list, owner: np.ndarray,
           cfg: SynthConfig) -> PersonLabel | None:
    w, h = cfg.width, cfg.height
    slots = (*SLOT_POINTS[cfg.layout], *LIMB_POINTS)
    kps = np.zeros((17, 3))
    occ = np.zeros(17, np.int64)
    for k, name in enumerate(slots):
        if name is None:
            continue
        x, y = pts[name][:2]
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
            continue
        who = owner[int(round(y)), int(round(x))]
        if who >= 0 and who != person.track_id:
            occ[k] = 1
            if cfg.occluded_labels:
                kps[k] = (x, y, 1)
        else:
            kps[k] = (x, y, 2)
    if int((kps[:, 2] == 2).sum()) < cfg.min_visible:
        return None
    allpts = np.concatenate([p[1] for p in parts])
    x0, y0 = np.clip(allpts.min(0), 0, [w - 1, h - 1])
    x1, y1 = np.clip(allpts.max(0), 0, [w - 1, h - 1])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    hb, ht = pts["head_bottom"][:2], pts["head_top"][:2]
    up = (ht - hb) / max(np.hypot(*(ht - hb)), 1e-6)
    head = ellipse(pts["head_center"], (0.05 * height, 0.068 * height), np.arctan2(up[1], up[0]) + np.pi / 2)
    hx0, hy0 = head.min(0)
    hx1, hy1 = head.max(0)
    return PersonLabel(person.track_id, kps, occ, np.array([x0, y0, x1 - x0, y1 - y0]),
                       np.array([hx0, hy0, hx1 - hx0, hy1 - hy0]))


def make_clip(rng: np.random.Generator, cfg: SynthConfig,
              backgrounds: list[np.ndarray] | None = None) -> Clip:
    w, h = cfg.width, cfg.height
    margin = int(0.15 * max(w, h))
    people = _sample_people(rng, cfg)
    bg = background(rng, h + 2 * margin, w + 2 * margin, backgrounds,
                    person_scale=float(np.mean([p.height for p in people])))
    camera = Camera.sample(rng, w, h)
    occluders = _sample_occluders(rng, cfg, people)
    shutter = float(rng.uniform(0.4, 1.0)) if rng.random() < cfg.blur_prob else 0.0
    sensor_noise = float(rng.uniform(0, 4))
    to_bg = np.array([[1.0, 0.0, margin], [0.0, 1.0, margin], [0.0, 0.0, 1.0]])
    order = sorted([(p.ground_y, 0, p.track_id, p) for p in people] +
                   [(o.depth, 1, o.owner, o) for o in occluders], key=lambda x: x[:3])

    def render(t: float):
        cam = camera.matrix(t)
        bg_to_img = np.vstack([cam, [0, 0, 1]]) @ np.linalg.inv(to_bg)
        canvas = Canvas(cv2.warpAffine(bg, bg_to_img[:2], (w, h), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT))
        zoom = float(np.sqrt(abs(np.linalg.det(cam[:, :2]))))
        drawn = {}
        for _, kind, _, obj in order:
            if kind == 1:
                draw_occluder(canvas, obj, t, cam)
                continue
            pts = _transform(obj.points(t), cam)
            ground = cam[:, :2] @ np.array([obj.x0 + obj.vx * t, obj.ground_y]) + cam[:, 2]
            parts = draw_person(canvas, pts, obj.height * zoom, obj.app, obj.track_id, float(ground[1]))
            drawn[obj.track_id] = (pts, obj.height * zoom, parts)
        return canvas, drawn

    frames, labels = [], []
    n_sub = max(1, cfg.subframes) if shutter > 0 else 1
    for f in range(cfg.frames):
        t = f / cfg.fps
        offsets = [0.0] if n_sub == 1 else list(np.linspace(-0.5, 0.5, n_sub) * shutter / cfg.fps)
        acc = None
        centre = None
        for dt in offsets:
            canvas, drawn = render(t + dt)
            acc = canvas.img if acc is None else acc + canvas.img
            if abs(dt) < 1e-12:
                centre = (canvas, drawn)
        if centre is None:  # even subframe count: label at t from its own render
            centre = render(t)
        img = acc / len(offsets) + rng.normal(0, sensor_noise, (h, w, 1))
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
        canvas, drawn = centre
        frame_labels = []
        for person in people:
            label = _label(person, *drawn[person.track_id], canvas.owner, cfg)
            if label is not None:
                frame_labels.append(label)
        labels.append(frame_labels)
    info = {
        "people": [{"track_id": p.track_id, "motion": p.motion.kind, "height_px": round(p.height, 1),
                    "yaw_deg": round(float(np.rad2deg(p.yaw0)), 1)} for p in people],
        "occluders": [o.kind for o in occluders],
        "motion_blur_shutter": round(shutter, 3),
        "camera_shake_px": round(float(camera.shake[..., 0].sum(axis=-1).max()), 2),
    }
    return Clip(frames, labels, info)
