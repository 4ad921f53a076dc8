import redis

from service.embedded_redis import RedisServer, find_redis_server


def test_fixture_is_a_real_redis_with_streams(redis_client):
    info = redis_client.info("server")
    assert int(str(info["redis_version"]).split(".")[0]) >= 6
    redis_client.xgroup_create("s", "g", id="0", mkstream=True)
    entry = redis_client.xadd("s", {"k": "v"})
    got = redis_client.xreadgroup("g", "c1", {"s": ">"}, count=1)
    assert got[0][1][0][0] == entry
    # XAUTOCLAIM (Redis >= 6.2) is what workers use to reclaim a dead worker's jobs.
    claimed = redis_client.xautoclaim("s", "g", "c2", min_idle_time=0, start_id="0-0")
    assert claimed[1][0][0] == entry


def test_server_stops_and_frees_port():
    assert find_redis_server()
    with RedisServer() as srv:
        assert srv.ping()
        r = redis.Redis.from_url(srv.url)
        assert r.ping()
        r.close()
    assert not srv.ping()
