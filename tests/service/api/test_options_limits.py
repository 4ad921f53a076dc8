"""issue #14 items 4 and 7: the options part is parsed off the event loop and stored compact, status reads
do not fetch it, each cost cap answers 422 options_over_limit, and boxes the clip cannot have (frames
past its end, wholly outside the frame) answer 422 boxes_outside_clip naming them."""

from __future__ import annotations

import asyncio
import json

import pytest

from service.api import options as opts_mod
from service.api.errors import ApiError
from service.api.options import OptionLimits, parse_options, parse_options_async

LIMITS = OptionLimits(boxes_per_frame=64, boxes_total=50000, diffusion_steps=10, hypotheses=8)


def post(c, video: bytes, options: dict | None = None, headers=None):
    data = {"options": json.dumps(options)} if options is not None else None
    return c.post("/estimate", files={"video": ("clip.mp4", video, "video/mp4")}, data=data, headers=headers)


def error(r, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    return body["message"]


def test_caps_are_settings_and_answer_422(api_factory, clips):
    api = api_factory(max_boxes_per_frame=2, max_boxes_total=3, max_diffusion_steps=4, max_hypotheses=2)
    video = clips["soccer"].read_bytes()
    box = [10, 10, 50, 80]
    with api.client() as c:
        msg = error(post(c, video, {"boxes": [[box, box, box]]}), 422, "options_over_limit")
        assert "boxes[0] has 3" in msg and "VIDPOSE_MAX_BOXES_PER_FRAME" in msg
        msg = error(post(c, video, {"boxes": {"0": [box, box], "1": [box, box]}}), 422, "options_over_limit")
        assert "4 boxes" in msg and "VIDPOSE_MAX_BOXES_TOTAL" in msg
        msg = error(post(c, video, {"diffusion_steps": 5}), 422, "options_over_limit")
        assert "diffusion_steps=5" in msg and "at most 4" in msg
        msg = error(post(c, video, {"hypotheses": 3}), 422, "options_over_limit")
        assert "hypotheses=3" in msg and "VIDPOSE_MAX_HYPOTHESES" in msg
        ok = post(c, video, {"boxes": {"0": [box, box], "4": [box]}, "diffusion_steps": 4, "hypotheses": 2})
        assert ok.status_code == 202, ok.text
    assert len(api.blobs()) == 1  # the refused uploads left nothing behind


def test_boxes_must_fit_the_clip(api, clips):
    video = clips["soccer"].read_bytes()  # 5 frames, 1280x720
    with api.client() as c:
        beyond = {"0": [[0, 0, 9, 9]], "7": [[0, 0, 9, 9]], "9": [[1, 1, 5, 5]]}
        msg = error(post(c, video, {"boxes": beyond}), 422, "boxes_outside_clip")
        assert "7, 9" in msg and "5 frames" in msg
        outside = [[10, 10, 50, 80], [1300, 10, 20, 20], [-40, 10, 30, 30], [5, 720, 10, 10]]
        msg = error(post(c, video, {"boxes": [outside]}), 422, "boxes_outside_clip")
        assert "3 box(es)" in msg and "1280x720" in msg
        assert "boxes[0][1] [1300, 10, 20, 20]" in msg and "boxes[0][2]" in msg and "boxes[0][3]" in msg
        assert "boxes[0][0]" not in msg
        # a box that only overlaps the frame is fine (the crop is clipped)
        r = post(c, video, {"boxes": [[[-20, -20, 60, 60], [1270, 700, 50, 50]]]})
        assert r.status_code == 202, r.text


def test_options_stored_compact_and_status_reads_skip_them(api, clips):
    video = clips["soccer"].read_bytes()
    with api.client() as c:
        r = post(c, video, {"boxes": [[[10, 10, 50, 80]]], "max_frames": 3})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        stored = api.queue.r.hget(api.queue.job_key(job_id), "options").decode()
        assert json.loads(stored) == {"boxes": {"0": [{"bbox": [10.0, 10.0, 50.0, 80.0]}]}, "max_frames": 3}
        assert ", " not in stored and ": " not in stored
        assert api.queue.get_job(job_id, with_options=False)["options"] == {}
        assert api.queue.get_job(job_id)["options"]["max_frames"] == 3  # what the worker reads
        assert c.get(f"/jobs/{job_id}").json()["status"] == "queued"


def test_large_options_parse_in_a_process(monkeypatch):
    """Over INLINE_BYTES the part goes to the process pool; the result is the same as in-thread."""
    monkeypatch.setattr(opts_mod, "INLINE_BYTES", 1000)
    boxes = {str(f): [[f, i, 10, 10] for i in range(40)] for f in range(20)}
    raw = json.dumps({"boxes": boxes, "hypotheses": 2})
    assert len(raw) > 1000
    inline = parse_options(raw, LIMITS)
    pooled = asyncio.run(parse_options_async(raw, LIMITS))
    assert opts_mod._pool is not None  # the pool ran it
    assert pooled.stored == inline.stored and (pooled.boxes == inline.boxes).all()
    assert pooled.options == inline.options and pooled.options.hypotheses == 2
    assert pooled.boxes.shape == (800, 6)
    with pytest.raises(ApiError) as e:  # errors come back from the child as ApiError
        asyncio.run(parse_options_async(raw.replace('"hypotheses": 2', '"hypotheses": 9'), LIMITS))
    assert (e.value.status, e.value.code) == (422, "options_over_limit")
