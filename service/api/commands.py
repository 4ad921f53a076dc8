"""`vidpose` subcommands of the API side: api, estimate."""

from __future__ import annotations

import argparse
import sys

DEFAULT_TIMEOUT_S = 3600.0  # `vidpose estimate` never waits forever unless asked (--timeout 0)


def register(sub) -> None:
    p = sub.add_parser("api", help="run the HTTP API (uvicorn); needs VIDPOSE_REDIS_URL",
                       description="Run the vidpose HTTP API. All settings come from VIDPOSE_* env vars.")
    p.add_argument("--host", default=None, help="bind address (default: VIDPOSE_API_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: VIDPOSE_API_PORT or 8000)")
    p.set_defaults(func=run_api)

    e = sub.add_parser("estimate", help="submit a clip to a vidpose server, wait, save the poses",
                       description="Submit CLIP, show progress, download every result page, write a file. "
                       "Exit status: 0 success, 1 job failed/cancelled or server error, 2 bad arguments.")
    e.add_argument("clip", help="video file (.mp4 .avi .mov .webm .mkv)")
    e.add_argument("--server", default=None,
                   help="API base URL (default: $VIDPOSE_SERVER or http://VIDPOSE_API_HOST:VIDPOSE_API_PORT)")
    e.add_argument("--api-key", default=None, help="API key (default: $VIDPOSE_API_KEY)")
    e.add_argument("--options", default=None,
                   help="options JSON (boxes, model, window, diffusion_steps, hypotheses, max_frames), "
                   "or @path to a JSON file")
    e.add_argument("--out", default=None, help="output file (default: <clip name>.poses.json)")
    e.add_argument("--format", choices=("json", "posetrack", "coco"), default="json",
                   help="json (the API's result), posetrack (PoseTrack18) or coco (COCO results list)")
    e.add_argument("--poll", type=float, default=0.5, help="seconds between status polls")
    e.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"give up waiting after this many seconds (default {DEFAULT_TIMEOUT_S:.0f}; "
                   "0 waits forever); the job keeps running on the server")
    e.set_defaults(func=run_estimate)


def run_api(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from service.api.app import create_app
    from service.settings import get_settings

    settings = get_settings()
    if not settings.redis_url:
        print("error: VIDPOSE_REDIS_URL is not set; `vidpose api` needs a Redis server "
              "(`vidpose serve` starts one for you)", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = args.host or settings.api_host
    port = settings.api_port if args.port is None else args.port
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=10, timeout_keep_alive=settings.api_keep_alive_s)
    return 0


def _load_options(text: str | None) -> dict | None:
    import json
    from pathlib import Path

    if not text:
        return None
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("options must be a JSON object")
    return data


def run_estimate(args: argparse.Namespace) -> int:
    import json
    import os
    from pathlib import Path

    import httpx
    from tqdm import tqdm

    from service.api.client import ApiError, JobTimeout, VidposeClient
    from service.api.formats import FormatError, to_coco, to_posetrack
    from service.settings import get_settings

    def fail(msg: str, code: int = 1) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return code

    clip = Path(args.clip)
    if not clip.is_file():
        return fail(f"{clip}: no such file", 2)
    try:
        options = _load_options(args.options)
    except (OSError, ValueError) as e:
        return fail(f"--options: {e}", 2)
    settings = get_settings()
    server = args.server or os.environ.get("VIDPOSE_SERVER") or f"http://{settings.api_host}:{settings.api_port}"
    api_key = args.api_key or os.environ.get("VIDPOSE_API_KEY")
    out = Path(args.out) if args.out else Path(f"{clip.stem}.poses.json")

    job_id = None
    try:
        with VidposeClient(server, api_key) as client:
            job_id = client.submit(clip, options)["job_id"]
            print(f"submitted {clip.name}: job {job_id}", file=sys.stderr)
            with tqdm(total=0, unit="frame", desc=clip.name, file=sys.stderr, dynamic_ncols=True) as bar:
                def show(job: dict) -> None:  # the bar counts poses; detection runs ahead of it
                    bar.total = job["frames_total"]
                    bar.n = job["frames_done"]
                    detected = job.get("frames_detected", job["frames_done"])
                    people = (f", people found in {detected}/{job['frames_total']}"
                              if job["status"] == "running" and detected < job["frames_total"] else "")
                    bar.set_postfix_str(job["status"] + people, refresh=False)
                    bar.refresh()

                job = client.wait(job_id, poll_s=args.poll, timeout_s=args.timeout or None,
                                  on_update=show)
            if job["status"] != "succeeded":
                err = job.get("error") or {}
                return fail(f"job {job_id} {job['status']}: {err.get('code', '?')}: {err.get('message', '')}")
            result = client.result(job_id)
    except ApiError as e:
        return fail(f"{server} answered {e.status} {e.code}: {e.message}")
    except JobTimeout as e:
        return fail(f"gave up waiting: {e} (--timeout {args.timeout:g}); it keeps running on the server: "
                    f"GET {server}/jobs/{job_id}, or DELETE it to cancel")
    except httpx.HTTPError as e:
        return fail(f"cannot talk to the vidpose server at {server}: {type(e).__name__}: {e}")
    except KeyboardInterrupt:
        if job_id:
            print(f"\ninterrupted; job {job_id} keeps running (DELETE /jobs/{job_id} cancels it)",
                  file=sys.stderr)
        return 130

    try:
        if args.format == "posetrack":
            data = to_posetrack(result, video_name=clip.stem)
        elif args.format == "coco":
            data = to_coco(result)
        else:
            data = result
    except FormatError as e:
        return fail(f"{e}; job {job_id} succeeded, its result is at {server}/jobs/{job_id}/result")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, out)
    people = sum(len(f["instances"]) for f in result["frames"])
    print(f"wrote {out} ({args.format}: {len(result['frames'])} frames, {people} poses)", file=sys.stderr)
    return 0
