"""`vidpose render RESULT.json CLIP OUT.mp4` as a subprocess: output, warnings, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[3]


def vidpose(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def result_doc(frame_indices, next_start=None) -> dict:
    frames = [{"frame_index": i, "timestamp_s": i / 5, "instances": [
        {"track_id": 3, "bbox": [100.0, 100.0, 100.0, 300.0], "score": 0.9,
         "keypoints": [[150.0, 110.0 + 15 * k, 0.8] for k in range(17)]}]} for i in frame_indices]
    return {"job_id": "j", "model": {"name": "m", "version": None},
            "video": {"width": 960, "height": 540, "fps": 5.0, "frames": 5},
            "keypoint_names": [], "skeleton": [[0, 1], [1, 2]], "frames": frames,
            "next_start_frame": next_start}


def test_render_writes_an_h264_overlay(shared_data, tmp_path):
    res = tmp_path / "r.json"
    res.write_text(json.dumps(result_doc(range(5))))
    out = tmp_path / "o.mp4"
    clip = shared_data / "videos" / "street_walk.mp4"
    run = vidpose("render", str(res), str(clip), str(out), "--min-score", "0.5")
    assert run.returncode == 0, run.stderr
    assert f"wrote {out} (5 frames)" in run.stdout and run.stderr == ""
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in c.decode(video=0)) == 5


def test_render_warns_about_a_partial_page(shared_data, tmp_path):
    res = tmp_path / "page.json"
    res.write_text(json.dumps(result_doc([0, 1], next_start=2)))
    out = tmp_path / "o.mp4"
    run = vidpose("render", str(res), str(shared_data / "videos" / "street_walk.mp4"), str(out))
    assert run.returncode == 0, run.stderr
    assert "no poses for 3 of 5 frames" in run.stderr and "next_start_frame=2" in run.stderr
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5  # every clip frame still written


def test_render_bad_input_exits_2(shared_data, tmp_path):
    clip = str(shared_data / "videos" / "street_walk.mp4")
    out = tmp_path / "o.mp4"
    good = tmp_path / "r.json"
    good.write_text(json.dumps(result_doc(range(5))))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps([{"image_id": 0, "keypoints": []}]))
    cases = [
        ((str(tmp_path / "missing.json"), clip, str(out)), "result file not found"),
        ((str(bad_json), clip, str(out)), "not valid JSON"),
        ((str(coco), clip, str(out)), "expected a JSON object"),
        ((str(good), str(tmp_path / "missing.mp4"), str(out)), "clip not found"),
        ((str(good), clip, str(tmp_path / "no" / "dir" / "o.mp4")), "output folder does not exist"),
        ((str(good), clip, str(out), "--min-score", "2"), "--min-score must be in [0, 1]"),
    ]
    for args, message in cases:
        run = vidpose("render", *args)
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)
        assert "Traceback" not in run.stderr
    assert not out.exists()
