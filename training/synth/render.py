"""Drawing: textured anti-aliased polygons with an owner buffer, people, occluders.

The owner buffer records which object (person track id, or an occluder id)
covers each pixel; a joint is *occluded* when something other than its own
person covers it (self-occlusion is not flagged).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.synth.textures import HAIR, SKIN, cloth_texture, random_color, skin_texture

_SHIFT = 4  # fixed-point bits for sub-pixel polygons


_HALF = np.linspace(-np.pi / 2, np.pi / 2, 6)
_ARC = np.stack([np.cos(_HALF), np.sin(_HALF)], 1)  # unit half circle facing +x


def capsule(p0, p1, r0: float, r1: float) -> np.ndarray:
    """Polygon of a tapered capsule from p0 (radius r0) to p1 (radius r1)."""
    p0, p1 = np.asarray(p0, float)[:2], np.asarray(p1, float)[:2]
    d = p1 - p0
    n = float(np.hypot(d[0], d[1]))
    c, s = (d / n) if n > 1e-6 else (1.0, 0.0)
    rot = np.array([[c, s], [-s, c]])  # row-vector rotation by the limb angle
    arc = _ARC @ rot
    return np.concatenate([p1 + r1 * arc, p0 - r0 * arc])


def ellipse(center, axes, angle: float, n: int = 20) -> np.ndarray:
    """Polygon of an ellipse with semi-axes (ax, ay), rotated by `angle` radians."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([center[0] + x * c - y * s, center[1] + x * s + y * c], 1)


class Canvas:
    """A float32 BGR image plus an int16 owner buffer (-1 = background)."""

    def __init__(self, image: np.ndarray):
        self.img = image.astype(np.float32)
        self.h, self.w = image.shape[:2]
        self.owner = np.full((self.h, self.w), -1, np.int16)

    def fill(self, poly: np.ndarray, texture: np.ndarray, tex_origin, shade: float = 1.0,
             owner: int | None = None, opacity: float = 1.0) -> None:
        """Fill `poly` with `texture` (tex_origin = the image point at texture pixel (0, 0))."""
        x0, y0 = np.floor(poly.min(0)).astype(int) - 1
        x1, y1 = np.ceil(poly.max(0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        pts = np.round((poly - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
        alpha = mask.astype(np.float32) * (opacity / 255.0)
        th, tw = texture.shape[:2]
        ty, tx = y0 - int(round(tex_origin[1])), x0 - int(round(tex_origin[0]))
        if 0 <= ty and ty + (y1 - y0) <= th and 0 <= tx and tx + (x1 - x0) <= tw:
            tex = texture[ty:ty + y1 - y0, tx:tx + x1 - x0]
        else:  # clamp at the texture border
            tex = texture[np.ix_(np.clip(np.arange(ty, ty + y1 - y0), 0, th - 1),
                                 np.clip(np.arange(tx, tx + x1 - x0), 0, tw - 1))]
        tex = tex.astype(np.float32) * shade
        roi = self.img[y0:y1, x0:x1]
        roi += alpha[..., None] * (tex - roi)
        if owner is not None:
            self.owner[y0:y1, x0:x1][mask > 127] = owner


# --------------------------------------------------------------------------- people
@dataclass
class Appearance:
    skin: np.ndarray
    shirt: np.ndarray
    pants: np.ndarray
    shoes: np.ndarray
    hair: np.ndarray
    long_sleeves: bool
    shorts: bool
    bald: bool
    brightness: float

    @classmethod
    def sample(cls, rng: np.random.Generator, height_px: float) -> Appearance:
        size = int(2.4 * height_px) + 8  # texture covers the whole person around the pelvis
        tone = SKIN[rng.integers(len(SKIN))] * rng.uniform(0.9, 1.1)
        return cls(
            skin=skin_texture(rng, size, size, tone),
            shirt=cloth_texture(rng, size, size),
            pants=cloth_texture(rng, size, size, random_color(rng, sat=(0.0, 0.7), val=(0.15, 0.8))),
            shoes=cloth_texture(rng, size, size, random_color(rng, sat=(0.0, 0.5), val=(0.05, 0.6))),
            hair=cloth_texture(rng, size, size, HAIR[rng.integers(len(HAIR))]),
            long_sleeves=bool(rng.random() < 0.5), shorts=bool(rng.random() < 0.3),
            bald=bool(rng.random() < 0.1), brightness=float(rng.uniform(0.8, 1.15)))


def person_parts(pts: dict[str, np.ndarray], height: float, app: Appearance):
    """(depth, polygon, texture) for every body part of one projected person, unsorted.

    pts: image-space points (x, y, depth) from body.project (+ camera)."""
    h = height
    parts = []

    def add(depth, poly, tex):
        parts.append((float(depth), poly, tex))

    def cap(a, b, r0, r1, tex, bias=0.0):
        add((pts[a][2] + pts[b][2]) / 2 + bias, capsule(pts[a], pts[b], r0 * h, r1 * h), tex)

    torso_depth = (pts["pelvis"][2] + pts["shoulder_center"][2]) / 2 - 0.02 * h
    ls, rs, lh, rh = (pts[k][:2] for k in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    out_s = (ls - rs) / max(np.hypot(*(ls - rs)), 1e-6) * 0.025 * h
    out_h = (lh - rh) / max(np.hypot(*(lh - rh)), 1e-6) * 0.02 * h
    add(torso_depth, np.stack([ls + out_s, rs - out_s, rh - out_h, lh + out_h]), app.shirt)
    add(torso_depth, capsule(pts["pelvis"], pts["shoulder_center"], 0.07 * h, 0.075 * h), app.shirt)
    add(torso_depth + 0.001, capsule(pts["left_hip"], pts["right_hip"], 0.055 * h, 0.055 * h), app.pants)
    cap("shoulder_center", "head_bottom", 0.026, 0.024, app.skin, bias=-0.01 * h)
    for side in ("left", "right"):
        cap(f"{side}_shoulder", f"{side}_elbow", 0.03, 0.025, app.shirt)
        cap(f"{side}_elbow", f"{side}_wrist", 0.023, 0.018, app.shirt if app.long_sleeves else app.skin)
        cap(f"{side}_wrist", f"{side}_hand", 0.02, 0.022, app.skin, bias=0.001)
        cap(f"{side}_hip", f"{side}_knee", 0.047, 0.034, app.pants)
        cap(f"{side}_knee", f"{side}_ankle", 0.032, 0.023, app.skin if app.shorts else app.pants)
        cap(f"{side}_ankle", f"{side}_toe", 0.022, 0.02, app.shoes, bias=0.001)
    # head: skin ellipse, hair cap away from the face, eyes on the visible side
    hc, hb, ht = pts["head_center"], pts["head_bottom"], pts["head_top"]
    face = pts["face_dir"]
    up = (ht[:2] - hb[:2]) / max(np.hypot(*(ht[:2] - hb[:2])), 1e-6)
    angle = np.arctan2(up[1], up[0]) + np.pi / 2
    hd = hc[2] + 0.02 * h
    head_axes = (0.05 * h, 0.068 * h)
    add(hd, ellipse(hc, head_axes, angle), app.hair if face[2] < -0.25 and not app.bald else app.skin)
    if face[2] >= -0.25 and not app.bald:
        cap_c = hc[:2] + up * 0.03 * h - face[:2] * 0.025 * h
        add(hd + 0.001, ellipse(cap_c, (0.05 * h, 0.042 * h), angle), app.hair)
    return parts, hd


def draw_face(canvas: Canvas, pts: dict[str, np.ndarray], height: float, owner: int) -> None:
    """Eyes and nose marks on the side of the head facing the camera."""
    r = max(0.8, 0.009 * height)
    dark = np.full((1, 1, 3), 30, np.uint8)
    for eye in ("left_eye", "right_eye"):
        if pts[eye][2] > pts["head_center"][2]:
            canvas.fill(ellipse(pts[eye], (r, r), 0.0, n=8), dark, pts[eye], owner=owner)
    if pts["nose"][2] > pts["head_center"][2]:
        canvas.fill(ellipse(pts["nose"], (r * 0.8, r * 0.8), 0.0, n=8), dark, pts["nose"], shade=3.0,
                    owner=owner, opacity=0.5)


def draw_person(canvas: Canvas, pts: dict[str, np.ndarray], height: float, app: Appearance, owner: int,
                ground_y: float) -> list:
    shadow = np.zeros((1, 1, 3), np.uint8)
    canvas.fill(ellipse((pts["pelvis"][0], ground_y), (0.2 * height, 0.03 * height), 0.0), shadow,
                (0, 0), opacity=0.35)
    parts, _ = person_parts(pts, height, app)
    origin = pts["pelvis"][:2] - 1.2 * height
    base = pts["pelvis"][2]
    for depth, poly, tex in sorted(parts, key=lambda p: p[0]):
        shade = float(np.clip(1.0 + 0.9 * (depth - base) / height, 0.72, 1.12)) * app.brightness
        canvas.fill(poly, tex, origin, shade=shade, owner=owner)
    draw_face(canvas, pts, height, owner)
    return parts


# --------------------------------------------------------------------------- occluders
@dataclass
class Occluder:
    kind: str  # pole | box | blob | bar
    size: tuple[float, float]  # (w, h) pixels (semi-axes for blobs)
    pos0: np.ndarray  # centre at t = 0 (scene pixels)
    vel: np.ndarray  # pixels / second
    angle: float
    texture: np.ndarray
    depth: float  # drawing order key: people use their ground line, larger = nearer
    owner: int

    def polygon(self, t: float) -> np.ndarray:
        c = self.pos0 + self.vel * t
        w, h = self.size
        if self.kind == "blob":
            return ellipse(c, (w, h), self.angle)
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        cs, sn = np.cos(self.angle), np.sin(self.angle)
        return c + corners @ np.array([[cs, sn], [-sn, cs]])


def sample_occluder(rng: np.random.Generator, target_xy, person_h: float, frame_hw, t0: float,
                    depth: float, owner: int) -> Occluder:
    """An occluder whose path crosses `target_xy` at time t0 (so it hides joints for several frames)."""
    fh, fw = frame_hw
    kind = str(rng.choice(["pole", "box", "blob", "bar"], p=[0.35, 0.3, 0.2, 0.15]))
    speed = rng.uniform(0.5, 1.6) * person_h  # px / s
    direction = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "pole":
        size = (rng.uniform(0.12, 0.3) * person_h, 2.0 * fh)
        vel, angle = np.array([direction * speed, 0.0]), rng.normal(0, 0.08)
    elif kind == "box":
        size = (rng.uniform(0.3, 0.6) * person_h, rng.uniform(0.25, 0.55) * person_h)
        vel, angle = np.array([direction * speed, rng.normal(0, 0.1) * speed]), rng.normal(0, 0.1)
    elif kind == "blob":
        size = (rng.uniform(0.08, 0.2) * person_h, rng.uniform(0.08, 0.2) * person_h)
        heading = rng.uniform(0, 2 * np.pi)
        vel, angle = speed * np.array([np.cos(heading), np.sin(heading)]), rng.uniform(0, np.pi)
    else:  # bar: a horizontal band drifting vertically
        size = (2.0 * fw, rng.uniform(0.08, 0.2) * person_h)
        vel, angle = np.array([0.0, direction * speed * 0.4]), rng.normal(0, 0.05)
    offset = rng.normal(0, 0.12, 2) * person_h
    pos0 = np.asarray(target_xy, float) + offset - vel * t0
    tex = cloth_texture(rng, int(max(size[1], 8)) + 8, int(max(size[0], 8)) + 8)
    if kind in ("pole", "bar"):
        tex = cloth_texture(rng, int(2.2 * max(fh, fw)), int(2.2 * max(fh, fw)))
    return Occluder(kind, (float(size[0]), float(size[1])), pos0, vel, float(angle), tex, depth, owner)


def draw_occluder(canvas: Canvas, occ: Occluder, t: float, camera: np.ndarray) -> None:
    poly = occ.polygon(t) @ camera[:, :2].T + camera[:, 2]
    origin = poly.mean(0) - np.array(occ.texture.shape[1::-1]) / 2
    canvas.fill(poly, occ.texture, origin, owner=occ.owner)
