"""Key-frame corruptions for training the temporal path (issue: temporal encoder on real video).

A window's key frame is corrupted while its neighbours stay clean, so the only way back to the
clean-frame target is through the other frames. Each corruption acts on the whole RGB frame (uint8,
H x W x 3) around the person's box (COCO xywh), exactly where the key crop will be cut:

    occlude_person  another person's image patch pasted over 30-60 % of the box (people crossing)
    occlude_box     a flat or noise-textured rectangle over 30-60 % of the box (lamp posts, signs)
    blur            motion blur along a random direction, length 10-25 % of the box height
    drop            the frame is lost: uniform grey (a decoder dropping a frame)
    repeat          the previous (or next) frame shown again (a stuttering stream); the box stays the key's
    dark            low light: brightness x 0.1-0.3 and sensor noise

Not in the default set (`EXTRA_KINDS`, chosen with `vidpose cache-features --kinds`):

    cross           another person of the same frame walks past in front: their patch at 0.9-1.3x the
                    box height, aspect kept, feet at or below the box's, anywhere across the box, with
                    soft edges -- a partial occlusion like vtest.avi's, not a hard rectangle

Every draw comes from the caller's numpy Generator, so a (seed, sample) pair always gives the same
corrupted frame.
"""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("occlude_person", "occlude_box", "blur", "drop", "repeat", "dark")
EXTRA_KINDS = ("cross",)


def _clip_box(box, shape) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x, y, bw, bh = (float(v) for v in box)
    x0, y0 = int(np.clip(np.floor(x), 0, w - 1)), int(np.clip(np.floor(y), 0, h - 1))
    x1, y1 = int(np.clip(np.ceil(x + bw), x0 + 1, w)), int(np.clip(np.ceil(y + bh), y0 + 1, h))
    return x0, y0, x1, y1


def _occluder_rect(box, shape, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A rectangle covering 30-60 % of the box's area, placed inside the box (clipped to the frame)."""
    x0, y0, x1, y1 = _clip_box(box, shape)
    bw, bh = x1 - x0, y1 - y0
    area = rng.uniform(0.3, 0.6)
    aspect = rng.uniform(0.4, 2.5)  # occluder w/h relative to the box's own w/h
    ow = int(np.clip(round(bw * np.sqrt(area * aspect)), 1, bw))
    oh = int(np.clip(round(bh * area * bw / max(ow, 1)), 1, bh))
    ox = x0 + int(rng.integers(0, bw - ow + 1))
    oy = y0 + int(rng.integers(0, bh - oh + 1))
    return ox, oy, ox + ow, oy + oh


def occlude_person(image: np.ndarray, box, donor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paste `donor` (another person's RGB patch) resized onto a rectangle over the box."""
    out = image.copy()
    ox0, oy0, ox1, oy1 = _occluder_rect(box, image.shape, rng)
    patch = cv2.resize(donor, (ox1 - ox0, oy1 - oy0), interpolation=cv2.INTER_LINEAR)
    out[oy0:oy1, ox0:ox1] = patch
    return out


def cross_in_front(image: np.ndarray, box, donor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paste `donor` (a person's RGB patch) as someone passing in front of the box: scaled to 0.9-1.3x
    the box height (nearer the camera), its bottom 0-10 % of the box height below the box's, its centre
    anywhere across the box; alpha-blended with edges feathered over ~10 % of its width."""
    x0, y0, x1, y1 = _clip_box(box, image.shape)
    fh, fw = image.shape[:2]
    bh = y1 - y0
    dh0, dw0 = donor.shape[:2]
    scale = rng.uniform(0.9, 1.3) * bh / max(dh0, 1)
    dw, dh = max(2, int(round(dw0 * scale))), max(2, int(round(dh0 * scale)))
    cx = rng.uniform(x0, x1)
    bottom = y1 + rng.uniform(0.0, 0.1) * bh
    px0, py0 = int(round(cx - dw / 2)), int(round(bottom - dh))
    patch = cv2.resize(donor, (dw, dh), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    alpha = np.zeros((dh, dw), np.float32)
    m = max(1, int(round(0.1 * dw)))
    alpha[m // 2:dh - m // 2, m // 2:dw - m // 2] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=m / 2.0, sigmaY=m / 2.0)[..., None]
    # The part of the patch inside the frame.
    ix0, iy0, ix1, iy1 = max(px0, 0), max(py0, 0), min(px0 + dw, fw), min(py0 + dh, fh)
    out = image.copy()
    if ix1 <= ix0 or iy1 <= iy0:
        return out
    sub = (slice(iy0 - py0, iy1 - py0), slice(ix0 - px0, ix1 - px0))
    region = out[iy0:iy1, ix0:ix1].astype(np.float32)
    a = alpha[sub]
    out[iy0:iy1, ix0:ix1] = np.clip(a * patch[sub] + (1 - a) * region, 0, 255).astype(np.uint8)
    return out


def occlude_box(image: np.ndarray, box, rng: np.random.Generator) -> np.ndarray:
    out = image.copy()
    ox0, oy0, ox1, oy1 = _occluder_rect(box, image.shape, rng)
    shape = (oy1 - oy0, ox1 - ox0, 3)
    colour = rng.integers(0, 256, size=3)
    if rng.random() < 0.5:
        fill = np.broadcast_to(colour, shape)
    else:  # textured: coloured noise around a base colour
        fill = np.clip(colour + rng.normal(0, 40, size=shape), 0, 255)
    out[oy0:oy1, ox0:ox1] = fill.astype(np.uint8)
    return out


def motion_blur(image: np.ndarray, box, rng: np.random.Generator) -> np.ndarray:
    length = max(3, int(round(float(box[3]) * rng.uniform(0.10, 0.25))))
    angle = rng.uniform(0, 180)
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    kernel /= max(kernel.sum(), 1e-6)
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


def drop_frame(image: np.ndarray) -> np.ndarray:
    return np.full_like(image, 128)


def low_light(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gain = rng.uniform(0.1, 0.3)
    noise = rng.normal(0, rng.uniform(3, 8), size=image.shape)
    return np.clip(image.astype(np.float32) * gain + noise, 0, 255).astype(np.uint8)


def corrupt(kind: str, image: np.ndarray, box, rng: np.random.Generator,
            donor: np.ndarray | None = None, neighbour: np.ndarray | None = None) -> np.ndarray:
    """The key frame `image` under corruption `kind` (one of KINDS + EXTRA_KINDS).

    donor: another person's RGB patch (occlude_person, cross); neighbour: the frame shown again (repeat).
    """
    pasters = {"occlude_person": occlude_person, "cross": cross_in_front}
    if kind in pasters:
        if donor is None:
            raise ValueError(f"{kind} needs a donor patch")
        return pasters[kind](image, box, donor, rng)
    if kind == "occlude_box":
        return occlude_box(image, box, rng)
    if kind == "blur":
        return motion_blur(image, box, rng)
    if kind == "drop":
        return drop_frame(image)
    if kind == "repeat":
        if neighbour is None:
            raise ValueError("repeat needs the neighbouring frame")
        return neighbour.copy()
    if kind == "dark":
        return low_light(image, rng)
    raise ValueError(f"unknown corruption {kind!r}; choose one of {KINDS + EXTRA_KINDS}")
