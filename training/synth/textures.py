"""Procedural textures and backgrounds (BGR uint8), all drawn from one numpy Generator."""

from __future__ import annotations

import cv2
import numpy as np

# Skin tones (BGR), light to dark; hair colours (BGR).
SKIN = np.array([[189, 205, 241], [160, 190, 234], [130, 170, 222], [100, 140, 198], [70, 105, 160],
                 [50, 75, 115], [40, 55, 85]], dtype=np.float32)
HAIR = np.array([[20, 20, 25], [30, 40, 70], [40, 70, 120], [60, 110, 170], [150, 150, 150], [50, 50, 60]],
                dtype=np.float32)


def value_noise(rng: np.random.Generator, h: int, w: int, cells: int = 4, octaves: int = 4) -> np.ndarray:
    """Smooth multi-octave noise in [0, 1], (h, w) float32."""
    out = np.zeros((h, w), np.float32)
    total = 0.0
    for o in range(octaves):
        n = cells * 2**o
        gh, gw = max(2, int(round(n * h / max(h, w))) + 1), max(2, int(round(n * w / max(h, w))) + 1)
        grid = rng.random((gh, gw)).astype(np.float32)
        weight = 0.55**o
        out += weight * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += weight
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def random_color(rng: np.random.Generator, sat: tuple[float, float] = (0.2, 1.0),
                 val: tuple[float, float] = (0.2, 1.0)) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]


def cloth_texture(rng: np.random.Generator, h: int, w: int, color: np.ndarray | None = None) -> np.ndarray:
    """A garment texture: solid, stripes, checks or blotches, with grain."""
    color = random_color(rng) if color is None else color
    other = random_color(rng) if rng.random() < 0.6 else color * rng.uniform(0.5, 0.8)
    kind = rng.choice(["solid", "stripes", "checks", "blotches"], p=[0.35, 0.3, 0.15, 0.2])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "stripes":
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(4, 14)
        t = (np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period) > 0).astype(np.float32)
    elif kind == "checks":
        period = rng.uniform(5, 14)
        t = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float32)
    elif kind == "blotches":
        t = (value_noise(rng, h, w, cells=int(rng.integers(3, 8)), octaves=2) > 0.5).astype(np.float32)
    else:
        t = np.zeros((h, w), np.float32)
    img = _mix(color, other, t)
    shade = 0.75 + 0.5 * value_noise(rng, h, w, cells=3, octaves=3)  # folds / lighting
    img = img * shade[..., None] + rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def skin_texture(rng: np.random.Generator, h: int, w: int, tone: np.ndarray) -> np.ndarray:
    shade = 0.88 + 0.24 * value_noise(rng, h, w, cells=3, octaves=2)
    img = tone[None, None] * shade[..., None] + rng.normal(0, 3, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _shapes(rng: np.random.Generator, img: np.ndarray, n: int) -> None:
    h, w = img.shape[:2]
    for _ in range(n):
        color = tuple(float(c) for c in random_color(rng))
        kind = rng.integers(0, 4)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        s = int(rng.integers(max(4, min(h, w) // 30), max(8, min(h, w) // 4)))
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + s, y + int(s * rng.uniform(0.3, 2.5))), color, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), s // 2, color, -1, lineType=cv2.LINE_AA)
        elif kind == 2:
            cv2.line(img, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))), color,
                     int(rng.integers(1, 6)), lineType=cv2.LINE_AA)
        else:
            pts = (np.array([x, y]) + rng.normal(0, s, (int(rng.integers(3, 7)), 2))).astype(np.int32)
            cv2.fillPoly(img, [pts], color, lineType=cv2.LINE_AA)


def _distractor_limbs(rng: np.random.Generator, img: np.ndarray, n: int, scale: float) -> None:
    """Body-part-like capsules in the background, so that 'a skin-coloured bar' is not a person."""
    h, w = img.shape[:2]
    for _ in range(n):
        color = SKIN[rng.integers(len(SKIN))] if rng.random() < 0.5 else random_color(rng)
        p0 = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        ang = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.1, 0.3) * scale
        p1 = p0 + length * np.array([np.cos(ang), np.sin(ang)])
        cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), tuple(float(c) for c in color),
                 max(2, int(rng.uniform(0.03, 0.07) * scale)), lineType=cv2.LINE_AA)


def background(rng: np.random.Generator, h: int, w: int, images: list[np.ndarray] | None = None,
               person_scale: float = 150.0) -> np.ndarray:
    """A varied (h, w, 3) BGR background: noise, gradient, shapes, sky/ground scene or an image crop."""
    kinds = ["noise", "gradient", "shapes", "scene"] + (["image", "image"] if images else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = random_color(rng), random_color(rng)
    if kind == "noise":
        img = _mix(c0, c1, value_noise(rng, h, w, cells=int(rng.integers(2, 10))))
    elif kind == "gradient":
        if rng.random() < 0.5:
            theta = rng.uniform(0, 2 * np.pi)
            t = xx * np.cos(theta) + yy * np.sin(theta)
        else:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            t = np.hypot(xx - cx, yy - cy)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        img = _mix(c0, c1, t)
    elif kind == "shapes":
        img = _mix(c0, c1, yy / max(h - 1, 1))
        img = np.clip(img, 0, 255).astype(np.uint8)
        _shapes(rng, img, int(rng.integers(10, 40)))
        img = img.astype(np.float32)
    elif kind == "scene":
        horizon = rng.uniform(0.25, 0.6) * h
        sky = _mix(random_color(rng, val=(0.6, 1.0)), random_color(rng, val=(0.7, 1.0)),
                   np.clip(yy / max(horizon, 1), 0, 1))
        ground = _mix(c0, c1, value_noise(rng, h, w, cells=int(rng.integers(4, 16))))
        img = np.where((yy < horizon)[..., None], sky, ground)
        img = np.clip(img, 0, 255).astype(np.uint8)
        _shapes(rng, img[: max(1, int(horizon))], int(rng.integers(0, 8)))  # buildings / trees
        img = img.astype(np.float32)
    else:
        src = images[int(rng.integers(len(images)))]
        sh, sw = src.shape[:2]
        frac = rng.uniform(0.4, 1.0)
        ch, cw = max(8, int(sh * frac)), max(8, int(min(sw, sh * frac * w / h)))
        y0, x0 = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
        img = cv2.resize(src[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        if rng.random() < 0.5:
            img = img[:, ::-1]
    img = img * (0.8 + 0.4 * value_noise(rng, h, w, cells=2, octaves=2))[..., None]  # uneven lighting
    img = np.clip(img + rng.normal(0, 4, (h, w, 1)), 0, 255).astype(np.uint8)
    _distractor_limbs(rng, img, int(rng.integers(0, 6)), person_scale)
    return np.ascontiguousarray(img)
