"""issue #14 item 10: 503s name no internal address, job owners are HMACs with a server-side secret that
all replicas share, and a 405 lists every method of the path in Allow."""

from __future__ import annotations

import hashlib
import hmac

from service.api.auth import owner_of


def submit(c, clips):
    r = c.post("/estimate", files={"video": ("a.mp4", clips["soccer"].read_bytes(), "video/mp4")})
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def test_503_names_no_internal_address(api_factory):
    api = api_factory(redis_url="redis://10.255.255.1:6399/0")  # unreachable (connect timeout 3 s)
    with api.client() as c:
        for r in (c.get("/jobs/" + "A" * 32), c.get("/readyz")):
            assert r.status_code == 503 and r.json()["error"]["code"] == "redis_unavailable"
            assert "10.255" not in r.text and "6399" not in r.text, r.text


def test_owner_is_an_hmac_shared_by_replicas(api_factory, clips):
    one = api_factory(api_keys=["alice", "bob"])
    two = api_factory(api_keys=["alice", "bob"], key_prefix=one.settings.key_prefix)  # a second replica
    with one.client("alice") as alice:
        job_id = submit(alice, clips)
    secret = one.queue.r.get(f"{one.settings.key_prefix}:owner_secret")
    assert secret and len(secret) == 64
    owner = one.queue.get_job(job_id)["owner"]
    assert owner == hmac.new(secret, b"alice", hashlib.sha256).hexdigest() == owner_of("alice", secret)
    assert owner != hashlib.sha256(b"alice").hexdigest()
    with two.client("alice") as alice, two.client("bob") as bob:
        assert alice.get(f"/jobs/{job_id}").status_code == 200  # the other replica agrees on the owner
        assert bob.get(f"/jobs/{job_id}").status_code == 404


def test_owner_secret_setting(api_factory, clips):
    api = api_factory(api_keys=["alice"], owner_secret="s3cret")
    with api.client("alice") as alice:
        job_id = submit(alice, clips)
    assert api.queue.get_job(job_id)["owner"] == owner_of("alice", b"s3cret")
    assert api.queue.r.get(f"{api.settings.key_prefix}:owner_secret") is None  # nothing generated


def test_405_allow_lists_every_method(api):
    with api.client() as c:
        r = c.request("OPTIONS", "/jobs/" + "A" * 32)
        assert r.status_code == 405
        assert set(r.headers["allow"].split(", ")) == {"GET", "DELETE"}
        assert r.json()["error"]["code"] == "method_not_allowed" and "DELETE" in r.json()["error"]["message"]
        r = c.put("/v1/jobs/" + "A" * 32)
        assert set(r.headers["allow"].split(", ")) == {"GET", "DELETE"}
        assert c.get("/estimate").headers["allow"] == "POST"
