"""Does one large `options` part stall the API? (issue #14, item 4)

    python bench/api_stall_bench.py --boxes 700000 --frames-with-boxes 1

Starts an embedded redis-server and `vidpose api` (a real uvicorn process, no worker), then POSTs the
sample clip soccer.mp4 with an `options` part holding N boxes while another thread polls `/healthz`
every 20 ms. Prints the options size, the POST's status and time, the worst and median `/healthz`
latency during the POST, and (when the job was accepted) the time of `GET /jobs/{id}`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("VIDPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, default=700_000, help="boxes in the options part")
    ap.add_argument("--frames-with-boxes", type=int, default=1, help="spread the boxes over this many frames")
    ap.add_argument("--env", action="append", default=[], help="extra VIDPOSE_X=Y for the API")
    args = ap.parse_args()

    import httpx

    from service.embedded_redis import RedisServer, free_port

    clip = SHARED / "videos" / "soccer.mp4"
    per = max(1, args.boxes // args.frames_with_boxes)
    boxes = {str(f): [[i % 1200, (i // 1200) % 700, 10, 10] for i in range(per)]
             for f in range(args.frames_with_boxes)}
    options = json.dumps({"boxes": boxes}, separators=(",", ":"))
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer().start()
        port = free_port()
        env = {**os.environ, "VIDPOSE_REDIS_URL": redis.url, "VIDPOSE_BLOB_DIR": f"{tmp}/blobs",
               "VIDPOSE_API_PORT": str(port), "PYTHONPATH": str(REPO)}
        env.update(kv.split("=", 1) for kv in args.env)
        api = subprocess.Popen([sys.executable, "-m", "service.cli", "api"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the API did not start") from None
                    time.sleep(0.2)
            latencies: list[float] = []
            done = threading.Event()

            def poll() -> None:
                with httpx.Client(base_url=base, timeout=60) as c:
                    while not done.is_set():
                        t = time.perf_counter()
                        c.get("/healthz")
                        latencies.append(time.perf_counter() - t)
                        time.sleep(0.02)

            poller = threading.Thread(target=poll)
            poller.start()
            t0 = time.perf_counter()
            with httpx.Client(base_url=base, timeout=120) as c:
                r = c.post("/estimate", files={"video": (clip.name, clip.read_bytes(), "video/mp4")},
                           data={"options": options})
                post_s = time.perf_counter() - t0
                done.set()
                poller.join()
                print(f"options {len(options) / 1e6:.1f} MB ({args.boxes} boxes): POST -> {r.status_code} "
                      f"in {post_s:.2f} s; {r.text[:160]}")
                worst = max(latencies) * 1000
                print(f"/healthz during the POST: {len(latencies)} polls, worst {worst:.0f} ms, "
                      f"median {statistics.median(latencies) * 1000:.1f} ms")
                if r.status_code == 202:
                    job = r.json()["job_id"]
                    times = []
                    for _ in range(3):
                        t = time.perf_counter()
                        c.get(f"/jobs/{job}").raise_for_status()
                        times.append(time.perf_counter() - t)
                    print(f"GET /jobs/{{id}}: {', '.join(f'{s * 1000:.0f} ms' for s in times)}")
        finally:
            api.terminate()
            api.wait(10)
            redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
