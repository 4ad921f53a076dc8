"""Submit -> progress -> result over real HTTP, with SimulatedWorker standing in for the worker."""

from __future__ import annotations

import json
import time

import httpx

from model.keypoints import COCO_KEYPOINTS, COCO_SKELETON, POSETRACK18_KEYPOINTS
from service import contract


def submit(client: httpx.Client, clip, options=None, headers=None, path="/estimate", name=None,
           ctype="video/mp4"):
    with open(clip, "rb") as f:
        data = {"options": json.dumps(options)} if options is not None else None
        return client.post(path, files={"video": (name or clip.name, f, ctype)}, data=data, headers=headers)


def wait_for(client: httpx.Client, job_id: str, statuses=("succeeded", "failed", "cancelled"), timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.02)


def test_submit_progress_and_result(api, simulated_worker, clips):
    with api.client() as c:
        r = submit(c, clips["soccer"])
        assert r.status_code == 202, r.text
        body = r.json()
        job_id = body["job_id"]
        assert body == {"job_id": job_id, "status": "queued", "status_url": f"/jobs/{job_id}",
                        "result_url": f"/jobs/{job_id}/result"}
        assert r.headers["location"] == f"/jobs/{job_id}" and len(job_id) >= 22
        queued = c.get(f"/jobs/{job_id}").json()
        assert queued["status"] == "queued" and queued["progress"] == 0 and queued["frames_total"] == 5
        assert queued["frames_detected"] == 0
        assert c.get(f"/jobs/{job_id}/result").status_code == 409  # not finished
        [blob] = api.blobs()
        assert blob.suffix == ".mp4" and blob.stat().st_size == clips["soccer"].stat().st_size

        simulated_worker(api, frame_delay_s=0.05)
        running = wait_for(c, job_id, ("running",))
        assert running["started_at"] >= running["created_at"]
        done = wait_for(c, job_id)
        assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["frames_done"] == 5
        assert done["frames_detected"] == 5  # the simulated worker writes none: a success counts all
        assert done["model"] == {"name": "test-model", "version": "sim-1"} and done["error"] is None
        assert done["finished_at"] >= done["started_at"]

        res = c.get(f"/jobs/{job_id}/result").json()
        assert res["video"] == {"width": 1280, "height": 720, "fps": 30.0, "frames": 5}
        assert res["keypoint_names"] == list(COCO_KEYPOINTS)
        assert res["skeleton"] == [list(p) for p in COCO_SKELETON]
        assert [f["frame_index"] for f in res["frames"]] == [0, 1, 2, 3, 4]
        assert res["next_start_frame"] is None and res["model"]["name"] == "test-model"
        inst = res["frames"][3]["instances"][0]
        assert inst["bbox"] == [0, 0, 1280, 720] and len(inst["keypoints"]) == 17
        assert abs(res["frames"][3]["timestamp_s"] - 0.1) < 1e-9


def test_result_paging_and_formats(api_factory, simulated_worker, clips):
    api = api_factory(result_page_limit=2)
    simulated_worker(api)
    with api.client() as c:
        job_id = submit(c, clips["street"]).json()["job_id"]
        assert wait_for(c, job_id)["status"] == "succeeded"
        url = f"/jobs/{job_id}/result"
        p0 = c.get(url).json()
        assert [f["frame_index"] for f in p0["frames"]] == [0, 1] and p0["next_start_frame"] == 2
        p1 = c.get(url, params={"start_frame": 2, "limit": 100}).json()  # limit capped at 2
        assert [f["frame_index"] for f in p1["frames"]] == [2, 3] and p1["next_start_frame"] == 4
        p2 = c.get(url, params={"start_frame": 4, "limit": 1}).json()
        assert [f["frame_index"] for f in p2["frames"]] == [4] and p2["next_start_frame"] is None
        assert c.get(url, params={"start_frame": 9}).json()["frames"] == []
        assert c.get(url, params={"start_frame": -1}).status_code == 422
        assert c.get(url, params={"format": "xml"}).json()["error"]["code"] == "invalid_request"

        pt = c.get(url, params={"format": "posetrack"})
        assert pt.headers["x-next-start-frame"] == "2" and 'rel="next"' in pt.headers["link"]
        pt = pt.json()
        assert [im["frame_id"] for im in pt["images"]] == [0, 1]
        assert pt["images"][0]["width"] == 960
        assert pt["categories"][0]["keypoints"] == list(POSETRACK18_KEYPOINTS)  # PoseTrack's own slots
        ann = pt["annotations"][0]
        assert ann["track_id"] == 0 and ann["image_id"] == 0 and len(ann["keypoints"]) == 51
        nose = p0["frames"][0]["instances"][0]["keypoints"][0]
        assert ann["keypoints"][:3] == [*nose[:2], 1] and ann["scores"][0] == nose[2]  # visibility 1, scores
        assert ann["keypoints"][9:15] == [0] * 6  # the ears: unlabelled in PoseTrack18
        assert p0["keypoint_names"] == list(COCO_KEYPOINTS)
        assert p0["schema_version"] == contract.SCHEMA_VERSION
        last = c.get(url, params={"format": "coco", "start_frame": 4})
        assert "x-next-start-frame" not in last.headers
        coco = last.json()
        assert [(d["image_id"], d["category_id"]) for d in coco] == [(4, 1)]
        kps = p2["frames"][0]["instances"][0]["keypoints"]
        assert len(coco[0]["keypoints"]) == 51 and coco[0]["score"] == sum(k[2] for k in kps) / 17

        # Same routes under /v1
        assert c.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
        assert c.get(f"/v1/jobs/{job_id}/result").json()["frames"] == p0["frames"]


def test_v1_submit_with_client_boxes(api, simulated_worker, clips):
    boxes = [[[10, 20, 100, 200], {"bbox": [300, 40, 80, 160], "track_id": 7, "score": 0.8}], [],
             [{"box": [12, 22, 100, 200], "track_id": 3}]]
    simulated_worker(api)
    with api.client() as c:
        r = submit(c, clips["street"], {"boxes": boxes, "window": 5, "max_frames": 3}, path="/v1/estimate")
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert r.json()["status_url"] == f"/v1/jobs/{job_id}"
        stored = api.queue.get_job(job_id)["options"]
        assert stored["boxes"] == {"0": [{"bbox": [10.0, 20.0, 100.0, 200.0]},
                                         {"bbox": [300.0, 40.0, 80.0, 160.0], "track_id": 7, "score": 0.8}],
                                   "2": [{"bbox": [12.0, 22.0, 100.0, 200.0], "track_id": 3}]}
        assert stored["window"] == 5 and stored["max_frames"] == 3
        job = wait_for(c, job_id)
        assert job["frames_total"] == 3 and job["status"] == "succeeded"
        frames = c.get(f"/v1/jobs/{job_id}/result").json()["frames"]
        assert [[i["track_id"] for i in f["instances"]] for f in frames] == [[0, 7], [], [3]]


def test_cancel_queued_and_running(api_factory, simulated_worker, clips):
    api = api_factory()
    with api.client() as c:
        queued_id = submit(c, clips["soccer"]).json()["job_id"]
        r = c.delete(f"/jobs/{queued_id}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert r.json()["error"]["code"] == "cancelled"
        assert c.delete(f"/jobs/{queued_id}").json()["error"]["code"] == "job_finished"
        res = c.get(f"/jobs/{queued_id}/result")
        assert res.status_code == 409 and res.json()["error"]["code"] == "job_cancelled"
        assert api.queue.backlog_frames() == 0

        worker = simulated_worker(api, frame_delay_s=0.3)
        running_id = submit(c, clips["street"]).json()["job_id"]
        wait_for(c, running_id, ("running",))
        assert c.delete(f"/jobs/{running_id}").json()["status"] == "cancelled"
        time.sleep(0.5)
        job = c.get(f"/jobs/{running_id}").json()
        assert job["status"] == "cancelled" and job["frames_done"] < 5
        assert running_id not in worker.jobs_done
        assert api.queue.backlog_frames() == 0

        worker_done = submit(c, clips["street"]).json()["job_id"]
        assert wait_for(c, worker_done)["status"] == "succeeded"
        r = c.delete(f"/jobs/{worker_done}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "job_finished"


def test_failed_job_reports_error(api, simulated_worker, clips):
    simulated_worker(api, fail_with=("invalid_video", "decoder gave up at frame 2"))
    with api.client() as c:
        job_id = submit(c, clips["soccer"]).json()["job_id"]
        job = wait_for(c, job_id)
        assert job["status"] == "failed"
        assert job["error"] == {"code": "invalid_video", "message": "decoder gave up at frame 2"}
        r = c.get(f"/jobs/{job_id}/result")
        assert r.status_code == 409 and r.json()["error"]["code"] == "job_failed"
        assert "decoder gave up" in r.json()["error"]["message"]


def test_idempotency_key(api_factory, clips):
    api = api_factory(api_keys=["alice", "bob"])
    with api.client("alice") as alice, api.client("bob") as bob:
        first = submit(alice, clips["soccer"], headers={"Idempotency-Key": "req-1"})
        again = submit(alice, clips["soccer"], headers={"Idempotency-Key": "req-1"})
        assert first.status_code == again.status_code == 202
        assert first.json()["job_id"] == again.json()["job_id"]
        assert again.headers["idempotent-replayed"] == "true"
        other = submit(bob, clips["soccer"], headers={"Idempotency-Key": "req-1"})
        assert other.status_code == 202 and other.json()["job_id"] != first.json()["job_id"]
        fresh = submit(alice, clips["soccer"], headers={"Idempotency-Key": "req-2"})
        assert fresh.json()["job_id"] not in (first.json()["job_id"], other.json()["job_id"])
        assert len(api.blobs()) == 3  # the replay stored nothing
        assert api.queue.backlog_frames() == 15
        bad = submit(alice, clips["soccer"], headers={"Idempotency-Key": "has space"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_idempotency_key"


def test_upload_streams_to_a_temp_file_then_renames(api, clips):
    """The server writes chunks as they arrive (a growing hidden .part file), not after the body ends."""
    video = clips["street"].read_bytes()
    boundary = "vidposeboundary"
    seen_sizes = []

    def slow_body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"w.mp4\"\r\n"
               "Content-Type: video/mp4\r\n\r\n").encode()
        for i in range(0, len(video), 50_000):
            yield video[i:i + 50_000]
            deadline = time.monotonic() + 5
            while True:  # wait until the server has written what we sent so far
                parts = [p for p in api.blob_dir.iterdir() if p.name.endswith(".part")]
                if parts and parts[0].stat().st_size >= min(i + 50_000, len(video)):
                    seen_sizes.append(parts[0].stat().st_size)
                    break
                assert time.monotonic() < deadline, "upload not written incrementally"
                time.sleep(0.005)
        yield f"\r\n--{boundary}--\r\n".encode()

    with api.client() as c:
        r = c.post("/estimate", content=slow_body(),
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 202, r.text
    assert len(seen_sizes) == 5 and seen_sizes == sorted(seen_sizes)
    [blob] = api.blobs()
    assert blob.read_bytes() == video and not blob.name.startswith(".")
