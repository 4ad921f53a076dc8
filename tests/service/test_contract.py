"""The job contract (service/contract.py) and the exports derived from it (service/api/formats.py):
round trips, bounded scores, the model's own skeleton in results, COCO output scored by pycocotools
like the in-house COCO AP, PoseTrack output read by the project's poseval-exact evaluator."""

from __future__ import annotations

import contextlib
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest

from model.keypoints import COCO_KEYPOINTS, COCO_SKELETON, POSETRACK18_KEYPOINTS
from service import contract
from service.api.formats import FormatError, to_coco, to_posetrack
from service.api.routes import result_document


def _page(frames: list[dict], names=COCO_KEYPOINTS, skeleton=()) -> dict:
    info = contract.ModelInfo(name="m", version="1", keypoint_names=list(names),
                              skeleton=[list(p) for p in skeleton])
    video = contract.VideoInfo(width=1920, height=1080, fps=25.0, frames=len(frames))
    return contract.result_page("job", contract.ModelRef(name="m", version="1"), video, info, frames, None)


# ------------------------------------------------------------------------------------------ round trips
def test_job_options_round_trip():
    raw = {"boxes": [[[10, 20, 100, 200], {"bbox": [300, 40, 80, 160], "track_id": 7, "score": 0.8}], [],
                     [{"box": [12, 22, 100, 200], "track_id": 3}]], "window": 5, "max_frames": 3}
    stored = contract.JobOptions.model_validate(raw).stored()
    assert stored["boxes"] == {"0": [{"bbox": [10.0, 20.0, 100.0, 200.0]},
                                     {"bbox": [300.0, 40.0, 80.0, 160.0], "track_id": 7, "score": 0.8}],
                               "2": [{"bbox": [12.0, 22.0, 100.0, 200.0], "track_id": 3}]}
    again = contract.JobOptions.model_validate(json.loads(json.dumps(stored)))  # what the worker loads
    assert again.stored() == stored and again.detector is None and again.window == 5


def test_result_page_round_trip():
    inst = contract.instance(2, [1, 2, 30, 40], [[5.123, 6.0, 0.5]] * 17, box_score=0.5)
    frame = contract.result_frame(3, 0.12, [inst, contract.instance(0, [0, 0, 9, 9], [[1, 1, 1.0]] * 17)])
    assert [i["track_id"] for i in frame["instances"]] == [0, 2]
    page = _page([frame])
    parsed = contract.ResultPage.model_validate(json.loads(json.dumps(page)))
    assert parsed.model_dump() == page and parsed.schema_version == contract.SCHEMA_VERSION
    assert page["frames"][0]["instances"][1]["score"] == 0.25  # mean keypoint score x box score


def test_model_info_round_trip_and_older_shapes():
    info = contract.ModelInfo(name="m", version="v", input_size=[256, 192],
                              keypoint_names=list(COCO_KEYPOINTS), skeleton=[[0, 1]], window=5,
                              detectors=["nanodet"], device="cpu")
    assert contract.ModelInfo.model_validate(json.loads(info.model_dump_json())) == info
    old = contract.ModelInfo.model_validate({"name": "m", "config": {"window": 3}, "keypoints": ["a", "b"]})
    assert old.window == 3 and old.keypoint_names == ["a", "b"] and old.limbs() == []
    assert contract.ModelInfo(name="m").names() == list(COCO_KEYPOINTS)
    assert contract.ModelInfo(name="m").limbs() == [list(p) for p in COCO_SKELETON]


# ------------------------------------------------------------------------------------------ scores
def test_scores_are_bounded():
    raw = [[1, 2, 1.17], [3, 4, float("nan")], [5, 6, -0.2]]  # a ViT peak above 1, a NaN, a negative
    inst = contract.instance(0, [0, 0, 10, 10], raw, box_score=3.0)
    assert [kp[2] for kp in inst["keypoints"]] == [1.0, 0.0, 0.0]
    assert 0.0 <= inst["score"] <= 1.0 and inst["score"] == round(1 / 3, 4)
    with pytest.raises(ValueError):
        contract.Instance.model_validate({**inst, "keypoints": [[1, 2, 1.17]]})
    with pytest.raises(ValueError):
        contract.instance(0, [0, 0, 1, 1], [[float("inf"), 0, 0.5]])


# ------------------------------------------------------------------------------------------ skeleton
class _Queue:
    def __init__(self, info: dict, frames: list[dict]):
        self.info, self.frames = info, frames

    def get_frames(self, job_id, start, limit):
        return self.frames[start:start + limit]

    def list_models(self):
        return {"m": self.info}


def test_the_models_skeleton_reaches_the_result():
    skeleton = [[0, 5], [5, 7]]
    frames = [contract.result_frame(0, 0.0, [])]
    job = {"job_id": "j", "model": "m", "video": {"width": 4, "height": 3, "fps": 1.0, "frames": 1},
           "frames_total": 1}
    info = contract.ModelInfo(name="m", version="v", keypoint_names=list(POSETRACK18_KEYPOINTS),
                              skeleton=skeleton).model_dump()
    page = result_document(_Queue(info, frames), job, 0, 10)
    assert page["skeleton"] == skeleton and page["keypoint_names"] == list(POSETRACK18_KEYPOINTS)
    assert to_posetrack(page)["categories"][0]["keypoints"] == list(POSETRACK18_KEYPOINTS)
    with pytest.raises(FormatError, match="COCO-17"):
        to_coco(page)  # PoseTrack slots are not COCO's: refused, not mislabelled


# ------------------------------------------------------------------------------------------ COCO export
def test_coco_export_scores_like_the_in_house_coco_ap(shared_data):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from training.evaluate.checkpoint_eval import coco_scores

    ann_file = shared_data / "coco" / "test_coco.json"
    gt = json.loads(ann_file.read_text())
    rng = np.random.default_rng(0)
    keypoints, meta, by_image = [], [], {}
    for i, ann in enumerate(a for a in gt["annotations"] if a["num_keypoints"] > 0):
        k = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        k[:, :2] += rng.normal(0, 4, size=(17, 2))
        k[:, 2] = rng.integers(20, 100, size=17) / 100  # distinct scores, exact at the contract's rounding
        keypoints.append(k)
        meta.append({"image_id": ann["image_id"]})
        by_image.setdefault(ann["image_id"], []).append(contract.instance(i, ann["bbox"], k))
    preds = SimpleNamespace(keypoints=keypoints, meta=meta)
    in_house = coco_scores(SimpleNamespace(ann_file=ann_file), preds)  # training's evaluation

    frames = [contract.result_frame(image_id, 0.0, by_image[image_id]) for image_id in sorted(by_image)]
    results = to_coco(_page(frames))  # image_id = frame_index: here the COCO image ids
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
        ev = COCOeval(coco, coco.loadRes(results), iouType="keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert in_house["coco_ap"]["AP"] > 0.5
    assert ev.stats[0] == pytest.approx(in_house["coco_ap"]["AP"], abs=1e-9)
    assert ev.stats[5] == pytest.approx(in_house["coco_ap"]["AR"], abs=1e-9)


# ------------------------------------------------------------------------------------------ PoseTrack export
def _coco_from_posetrack(kps: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints whose derived head_bottom / head_top (coco_to_posetrack18) are the GT's."""
    out = kps.copy()
    shoulders = (kps[5, :2] + kps[6, :2]) / 2
    ears = 2 * kps[1, :2] - shoulders  # head_bottom = (shoulders + ears) / 2
    eyes = (kps[2, :2] + 0.3 * shoulders) / 1.3  # head_top = eyes + 0.3 (eyes - shoulders)
    out[1, :2] = out[2, :2] = eyes
    out[3, :2] = out[4, :2] = ears
    out[:, 2] = np.where(kps[:, 2] > 0, 1.0, 0.0)
    out[1:5, 2] = min(kps[1, 2], kps[2, 2], kps[5, 2], kps[6, 2]) > 0
    return out


def test_posetrack_export_is_read_by_the_poseval_evaluator(shared_data):
    from training.evaluate.posetrack_map import evaluate_posetrack, load_posetrack_videos

    gt = load_posetrack_videos(shared_data / "posetrack18" / "annotations" / "val")
    pred = {}
    for stem, video in gt.items():
        instances = []
        for ann in video["annotations"]:
            kps = _coco_from_posetrack(np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3))
            instances.append(contract.instance(ann["track_id"], ann["bbox"], kps))
        frames = [contract.result_frame(0, 0.0, instances)]  # each sample video has its first frame labelled
        pred[stem] = to_posetrack(_page(frames), video_name=stem)
        ann = pred[stem]["annotations"][0]
        assert pred[stem]["images"][0]["id"] == video["images"][0]["id"]  # PoseTrack image ids
        assert ann["keypoints"][2::3].count(1) == ann["num_keypoints"] and len(ann["scores"]) == 17
    result = evaluate_posetrack(gt, pred)
    for group in ("Sho", "Elb", "Wri", "Hip", "Knee", "Ank"):
        assert result.groups[group] == pytest.approx(100.0), group
    assert result.total > 90.0, result.table()


def test_every_contract_field_is_documented_in_openapi():
    from service.api.app import create_app
    from service.settings import Settings

    spec = create_app(Settings(redis_url="redis://127.0.0.1:1")).openapi()
    schemas = spec["components"]["schemas"]
    form = spec["paths"]["/estimate"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    options = form["properties"]["options"]  # a JSON object part (encoding application/json)
    assert spec["paths"]["/estimate"]["post"]["requestBody"]["content"]["multipart/form-data"]["encoding"][
        "options"]["contentType"] == "application/json"
    frame = options["properties"]["boxes"]["anyOf"][0]["additionalProperties"]["anyOf"][0]
    boxes = frame["items"]["anyOf"][1]  # the {bbox, track_id, score} form of a box
    undocumented = [f"{name}.{field}"
                    for name, schema in [*((n, schemas[n]) for n in ("ResultPage", "ResultFrame", "Instance",
                                                                     "ModelRef", "VideoInfo")),
                                         ("JobOptions", options), ("ClientBox", boxes)]
                    for field, prop in schema["properties"].items() if not prop.get("description")]
    assert not undocumented
    assert all(f"`{k}`" in form["properties"]["options"]["description"] for k in options["properties"])
