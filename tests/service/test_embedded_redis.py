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


def test_redis_server_dies_with_its_parent(tmp_path):
    """`vidpose serve` killed with SIGKILL must not leave an orphaned redis-server behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = ("import sys, time; from service.embedded_redis import RedisServer; "
            "s = RedisServer().start(); print(s.proc.pid, s.port, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid, port = (int(v) for v in parent.stdout.readline().split())

    def up() -> bool:
        try:
            return redis.Redis(port=port, socket_timeout=0.5).ping()
        except redis.ConnectionError:
            return False

    assert up()
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and up():
        time.sleep(0.1)
    assert not up()
    try:  # reap it if it is our grandchild zombie; either way it no longer serves
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def test_data_dir_with_aof_survives_a_restart(tmp_path):
    """What `vidpose serve` does: AOF (fsync each second) in a kept folder; stopped and started again on
    that folder, the server finds its keys (jobs survive a restart)."""
    data = tmp_path / "var" / "redis"
    with RedisServer(data_dir=str(data), appendonly=True) as srv:
        r = redis.Redis.from_url(srv.url)
        assert r.config_get("appendfsync")["appendfsync"] == "everysec"
        r.hset("vidpose:job:abc", mapping={"status": "queued"})
        r.xadd("vidpose:jobs:m", {"job_id": "abc"})
        r.close()
    assert data.is_dir() and any(data.iterdir())  # kept on stop
    with RedisServer(data_dir=str(data), appendonly=True) as srv:  # another port, same folder
        r = redis.Redis.from_url(srv.url)
        assert r.hget("vidpose:job:abc", "status") == b"queued"
        assert r.xlen("vidpose:jobs:m") == 1
        r.close()


def test_temporary_data_dir_is_removed():
    with RedisServer() as srv:
        data = srv.data_dir
    import os

    assert not os.path.exists(data)
