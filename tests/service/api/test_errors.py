"""Every rejection answers {"error": {"code", "message"}} with the right status and leaves no blob behind."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np


def post(client, name: str, content: bytes, ctype="video/mp4", options=None, headers=None, path="/estimate"):
    data = {"options": options} if options is not None else None
    return client.post(path, files={"video": (name, content, ctype)}, data=data, headers=headers)


def error_of(r, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"code", "message"} and err["message"]
    return err


def test_unsupported_media(api, clips):
    video = clips["soccer"].read_bytes()
    with api.client() as c:
        assert error_of(post(c, "notes.txt", video, "text/plain"), 415)["code"] == "unsupported_media_type"
        assert "mp4" in error_of(post(c, "clip.gif", video), 415)["message"]
        assert error_of(post(c, "clip.mp4", video, "image/png"), 415)["code"] == "unsupported_media_type"
        r = c.post("/estimate", content=video, headers={"content-type": "video/mp4"})
        assert "multipart/form-data" in error_of(r, 415)["message"]
        # generic content types that clients send are fine
        assert post(c, "clip.MP4", video, "application/octet-stream").status_code == 202
    assert len(api.blobs()) == 1


def test_bad_options(api, clips):
    video = clips["soccer"].read_bytes()
    with api.client() as c:
        err = error_of(post(c, "a.mp4", video, options="{not json"), 400)
        assert err["code"] == "invalid_options" and "not valid JSON" in err["message"]
        assert error_of(post(c, "a.mp4", video, options="[1, 2]"), 400)["code"] == "invalid_options"
        for opts, needle in [({"window": 4}, "odd"), ({"windw": 5}, "windw"),
                             ({"hypotheses": 0}, "hypotheses"),
                             ({"boxes": [[[0, 0, -5, 10]]]}, "w, h > 0"),
                             ({"boxes": {"x": []}}, "not an integer"),
                             ({"boxes": [[{"bbox": [0, 0, 5, 5], "track_id": 1},
                                          {"bbox": [1, 1, 5, 5], "track_id": 1}]]}, "repeat"),
                             ({"model": "../../etc"}, "model"),
                             ({"detector": "yolo"},
                              "expected one of provided, nanodet, hog, onnx, full-frame"),
                             ({"detector": "provided"}, "needs `boxes`"),
                             ({"detector": "hog", "boxes": [[[0, 0, 5, 5]]]}, "only used with detector")]:
            err = error_of(post(c, "a.mp4", video, options=json.dumps(opts)), 422)
            assert err["code"] == "invalid_options" and needle in err["message"], (opts, err)
        err = error_of(post(c, "a.mp4", video, options=json.dumps({"model": "nope"})), 422)
        assert err["code"] == "unknown_model"
        r = c.post("/estimate", files={"options": (None, "{}")})
        assert error_of(r, 400)["code"] == "missing_video"
        r = c.post("/estimate", files={"video": ("a.mp4", video, "video/mp4"), "extra": (None, "x")})
        assert error_of(r, 400)["code"] == "invalid_multipart"
    assert api.blobs() == []


def test_invalid_videos(api, tmp_path):
    zero = tmp_path / "zero.avi"  # a valid AVI container with a video stream and no frames
    writer = cv2.VideoWriter(str(zero), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    writer.release()
    assert zero.stat().st_size > 0
    with api.client() as c:
        err = error_of(post(c, "garbage.mp4", os.urandom(20000)), 422)
        assert err["code"] == "invalid_video" and "garbage.mp4" in err["message"]
        err = error_of(post(c, "zero.avi", zero.read_bytes(), "video/x-msvideo"), 422)
        assert err["code"] == "invalid_video" and "no decodable frames" in err["message"]
        err = error_of(post(c, "empty.mp4", b""), 422)
        assert err["code"] == "invalid_video"
    assert api.blobs() == []


def test_frame_limit(api_factory, tmp_path):
    clip = tmp_path / "eight.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(8):
        writer.write(np.full((48, 64, 3), i * 30, np.uint8))
    writer.release()
    api = api_factory(max_frames=6)
    with api.client() as c:
        err = error_of(post(c, "eight.avi", clip.read_bytes(), "video/x-msvideo"), 422)
        assert err["code"] == "too_many_frames" and "max_frames" in err["message"]
        r = post(c, "eight.avi", clip.read_bytes(), "video/x-msvideo", options=json.dumps({"max_frames": 6}))
        assert r.status_code == 202
        job = c.get(r.headers["location"]).json()
        assert job["frames_total"] == 6
        stored = api.queue.get_job(job["job_id"])["video"]
        assert stored == {"width": 64, "height": 48, "fps": 10.0, "frames": 6}


def test_upload_too_large(api_factory, clips):
    video = clips["soccer"].read_bytes()  # ~155 KiB
    api = api_factory(max_upload_bytes=64 * 1024)
    with api.client() as c:
        err = error_of(post(c, "a.mp4", video), 413)  # refused streaming past the limit
        assert err["code"] == "upload_too_large" and str(64 * 1024) in err["message"]

        boundary = "vidposeboundary"

        def chunked_body():  # no Content-Length: only the running byte count can stop it
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\n"
                   "Content-Type: video/mp4\r\n\r\n").encode()
            for i in range(0, len(video), 16384):
                yield video[i:i + 16384]
            yield f"\r\n--{boundary}--\r\n".encode()

        r = c.post("/estimate", content=chunked_body(),
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert error_of(r, 413)["code"] == "upload_too_large"
        assert api.blobs() == []  # partial file deleted

    big = api_factory(max_upload_bytes=1024, max_options_bytes=1024)
    with big.client() as c:  # Content-Length alone already says too big: refused before reading
        assert error_of(post(c, "a.mp4", video), 413)["code"] == "upload_too_large"
    small_options = api_factory(max_options_bytes=100)
    with small_options.client() as c:
        opts = json.dumps({"boxes": [[[0, 0, 10, 10]]] * 20})
        assert error_of(post(c, "a.mp4", video, options=opts), 413)["code"] == "options_too_large"
    assert small_options.blobs() == []


def test_backpressure(api_factory, clips):
    api = api_factory(max_queued_frames=5, retry_after_s=7)
    with api.client() as c:
        assert post(c, "a.mp4", clips["soccer"].read_bytes()).status_code == 202  # empty queue: accepted
        r = post(c, "b.mp4", clips["street"].read_bytes())
        assert error_of(r, 429)["code"] == "too_many_requests" and r.headers["retry-after"] == "7"
        assert len(api.blobs()) == 1
        keys = api.queue.r.keys(f"{api.settings.key_prefix}:job:*")
        [job_id] = [k.decode().rsplit(":", 1)[1] for k in keys]
        assert c.delete(f"/jobs/{job_id}").status_code == 200  # frees the backlog
        assert post(c, "b.mp4", clips["street"].read_bytes()).status_code == 202


def test_detectors_endpoint(api):
    """GET /detectors is the registry, with what the live workers can run; the page's picker reads it."""
    model = api.settings.default_model
    with api.client() as c:
        api.queue.heartbeat("w-1", {"models": [model],
                                    "detectors": ["provided", "nanodet", "hog", "full-frame"],
                                    "default_detector": "nanodet"})
        body = c.get("/detectors").json()
    assert body["default_detector"] == "nanodet"
    rows = {d["name"]: d for d in body["detectors"]}
    assert list(rows) == ["nanodet", "hog", "onnx", "full-frame"]
    assert rows["nanodet"]["available"] and rows["nanodet"]["track_score"] == 0.33
    assert not rows["onnx"]["available"] and rows["full-frame"]["track_score"] is None


def test_not_found_and_routes(api):
    with api.client() as c:
        assert error_of(c.get("/jobs/" + "A" * 32), 404)["code"] == "job_not_found"
        assert error_of(c.get("/jobs/bad id!"), 404)["code"] == "job_not_found"
        assert error_of(c.get("/v1/jobs/" + "B" * 32 + "/result"), 404)["code"] == "job_not_found"
        assert error_of(c.delete("/jobs/" + "C" * 32), 404)["code"] == "job_not_found"
        assert error_of(c.get("/nope"), 404)["code"] == "not_found"
        assert error_of(c.put("/estimate"), 405)["code"] == "method_not_allowed"
        assert c.get("/healthz").json() == {"status": "ok"}
        assert "/v1/estimate" in c.get("/openapi.json").json()["paths"]
        assert c.get("/docs").status_code == 200


def test_docs_page_is_offline(api):
    """/docs loads Swagger UI from the API's own routes (the swagger-ui-bundle package), never a CDN."""
    import re

    with api.client() as c:
        page = c.get("/docs")
        assert page.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
        assert urls, page.text
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), f"/docs loads {url} from elsewhere"
        assert "cdn" not in page.text.lower()
        assets = [u for u in urls if u.endswith((".js", ".css"))]
        assert {u.rsplit(".", 1)[1] for u in assets} == {"js", "css"}
        for url in assets + ["/openapi.json"]:
            r = c.get(url)
            assert r.status_code == 200 and len(r.content) > 1000, url
        assert "SwaggerUIBundle" in c.get(next(u for u in assets if u.endswith(".js"))).text
        assert c.get("/docs/oauth2-redirect").status_code == 200


def test_redis_down_is_503(api_factory):
    api = api_factory(redis_url="redis://127.0.0.1:1/0")
    with api.client() as c:
        err = error_of(c.get("/jobs/" + "A" * 32), 503)
        assert err["code"] == "redis_unavailable"
        assert error_of(c.get("/readyz"), 503)["code"] == "redis_unavailable"
        assert c.get("/healthz").status_code == 200
        assert c.get("/metrics").status_code == 200


def test_window_must_match_the_served_model(api, clips):
    """A model trained on T-frame windows cannot serve another T: refused up front, nothing stored."""
    api.queue.register_model(api.settings.default_model, {"name": api.settings.default_model, "window": 5})
    video = clips["soccer"].read_bytes()
    with api.client() as c:
        err = error_of(post(c, "a.mp4", video, options=json.dumps({"window": 3})), 422)
        assert err["code"] == "invalid_options" and "window 5" in err["message"]
        assert post(c, "a.mp4", video, options=json.dumps({"window": 5})).status_code == 202
    assert len(api.blobs()) == 1


def test_detector_the_workers_cannot_run(api, clips):
    """onnx needs a detector file on the workers: when the live workers say they have none, 422 up front."""
    model = api.settings.default_model
    api.queue.heartbeat("w-no-onnx", {"models": [model], "detectors": ["provided", "full-frame", "hog"]})
    video = clips["soccer"].read_bytes()
    with api.client() as c:
        err = error_of(post(c, "a.mp4", video, options=json.dumps({"detector": "onnx"})), 422)
        assert err["code"] == "detector_unavailable" and "VIDPOSE_DETECTOR_MODEL" in err["message"]
        assert api.blobs() == []
        assert post(c, "a.mp4", video, options=json.dumps({"detector": "hog"})).status_code == 202
        api.queue.heartbeat("w-onnx", {"models": [model], "detectors": ["hog", "onnx"]})
        assert post(c, "a.mp4", video, options=json.dumps({"detector": "onnx"})).status_code == 202
    assert len(api.blobs()) == 2


def test_model_no_live_worker_serves(api_factory, clips):
    """A known model that live workers do not serve: 422 model_not_served naming the served ones, nothing
    stored. With no live worker at all the job is queued as before (a worker may be starting)."""
    api = api_factory(models=["test-model", "other-model"])
    served = api.settings.default_model
    assert served != "other-model"
    video = clips["soccer"].read_bytes()
    with api.client() as c:
        assert post(c, "a.mp4", video, options=json.dumps({"model": "other-model"})).status_code == 202
        api.queue.heartbeat("w-1", {"models": [served], "device": "cpu"})
        err = error_of(post(c, "a.mp4", video, options=json.dumps({"model": "other-model"})), 422)
        assert err["code"] == "model_not_served"
        assert "'other-model'" in err["message"] and served in err["message"]
        assert len(api.blobs()) == 1
        assert post(c, "a.mp4", video).status_code == 202
        api.queue.heartbeat("w-2", {"model": "other-model", "device": "cpu"})
        assert post(c, "a.mp4", video, options=json.dumps({"model": "other-model"})).status_code == 202
    assert len(api.blobs()) == 3
