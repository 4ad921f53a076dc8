"""target_agreement: the natural-occlusion target's own ceiling, on hand-made teacher labels."""

import json

import numpy as np

from training.evaluate.natural_occlusion import target_agreement


def _cache(tmp_path, keypoints_at, frames=10, scores=None):
    """A cache folder whose labels are one track with keypoints_at(f) (K, 2) in image pixels."""
    inst = []
    for f in range(frames):
        kps = keypoints_at(f)
        s = np.full(len(kps), 0.9) if scores is None else scores(f)
        inst.append({"frame_index": f, "instances": [{
            "track_id": 0, "bbox": [0.0, 0.0, 100.0, 200.0],
            "keypoints": [[float(x), float(y), float(c)] for (x, y), c in zip(kps, s)]}]})
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"video": {"width": 640, "height": 480, "fps": 10, "frames": frames},
                                  "keypoint_names": [f"j{i}" for i in range(17)], "frames": inst}))
    meta = {"labels": str(labels), "split": "all", "val_fraction": 0.2, "min_score": 0.3, "min_joints": 8}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return tmp_path


def test_linear_motion_is_its_own_midpoint(tmp_path):
    base = np.random.default_rng(0).uniform(0, 100, (17, 2))
    cache = _cache(tmp_path, lambda f: base + [5.0 * f, 0.0])
    result = target_agreement(cache, drop=0.8)
    assert result["frames"] == 6 and result["n_joints"] == 6 * 17  # frames 2..7 have f-2 and f+2
    assert result["pck"] == 100.0


def test_a_joint_that_swings_away_from_the_midpoint_is_missed(tmp_path):
    base = np.random.default_rng(0).uniform(0, 100, (17, 2))

    def at(f):  # joint 0 is 40 px (> 0.1 x 200 px) off its place on frames 2, 6, ...
        k = base.copy()
        k[0, 0] += 40.0 * (f % 4 == 2)
        return k

    result = target_agreement(_cache(tmp_path, at), drop=0.8)
    # odd f: joint 0 never moves around it; even f (2, 4, 6): t and its t-2, t+2 disagree by 40 px
    assert result["n_joints"] == 6 * 17
    assert result["pck"] == round(100.0 * (6 * 17 - 3) / (6 * 17), 2)


def test_drop_frames_and_unsure_neighbours_are_left_out(tmp_path):
    base = np.random.default_rng(0).uniform(0, 100, (17, 2))

    def scores(f):  # frame 4's teacher is unsure: a drop, and an unsure neighbour of frames 2 and 6
        return np.full(17, 0.2 if f == 4 else 0.9)

    result = target_agreement(_cache(tmp_path, lambda f: base, scores=scores), drop=0.8)
    assert result["frames"] == 3  # 3, 5, 7 (2 and 6 lean on frame 4, and frame 4 is the drop)
