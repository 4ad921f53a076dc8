"""issue #14 item 5: an Idempotency-Key reused with a different body (another video, other options) answers
422 idempotency_key_reused; the same body again is a replay, whatever its multipart boundary or file name."""

from __future__ import annotations

import json


def post(c, video: bytes, name="clip.mp4", options=None, key="k-1"):
    data = {"options": json.dumps(options)} if options is not None else None
    return c.post("/estimate", files={"video": (name, video, "video/mp4")}, data=data,
                  headers={"Idempotency-Key": key})


def test_key_reused_with_another_body_is_422(api, clips):
    soccer, street = clips["soccer"].read_bytes(), clips["street"].read_bytes()
    with api.client() as c:
        first = post(c, soccer, options={"max_frames": 2})
        assert first.status_code == 202, first.text
        job = first.json()["job_id"]
        again = post(c, soccer, name="renamed.mp4", options={"max_frames": 2})  # same bytes: replay
        assert again.status_code == 202 and again.json()["job_id"] == job
        assert again.headers["idempotent-replayed"] == "true"
        for other in (post(c, street, options={"max_frames": 2}),  # another video
                      post(c, soccer, options={"max_frames": 3}),  # other options
                      post(c, soccer)):  # no options
            assert other.status_code == 422, other.text
            err = other.json()["error"]
            assert err["code"] == "idempotency_key_reused"
            assert "k-1" in err["message"] and job in err["message"]
        assert post(c, soccer, options={"max_frames": 3}, key="k-2").status_code == 202  # a new key is fine
    assert len(api.blobs()) == 2  # neither the replay nor the refusals stored a clip
