"""Screenshot of the web page after a real job, for docs/img/webpage.png.

    ./run serve &                                    # the default model and detector
    .venv/bin/python tools/webpage_screenshot.py http://127.0.0.1:8000 ../shared/data/videos/street_walk.mp4 \
        docs/img/webpage.png [--seek 0.4] [--track ID] [--uncertainty]

Drives Debian's Chromium (VIDPOSE_CHROMIUM or /usr/bin/chromium) with Playwright, as the browser test
does: choose the clip, upload, wait for the job and the overlay video, pick a person in the per-person
view (--track; default: the page's choice, the longest track), seek the overlay to --seek seconds, and
take a full-page screenshot.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--mute-audio"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("clip", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seek", type=float, default=0.4, help="overlay time shown, seconds")
    ap.add_argument("--track", default=None, help="track id to highlight (default: the longest track)")
    ap.add_argument("--uncertainty", action="store_true", help="tick 'per-joint uncertainty' (keypoint_std)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("VIDPOSE_CHROMIUM", "/usr/bin/chromium"),
                                     headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(300_000)
        page.goto(args.url.rstrip("/") + "/")
        page.wait_for_function("() => document.getElementById('model-select').options.length > 1")
        page.set_input_files("#video-input", str(args.clip))
        if args.uncertainty:
            page.check("#uncertainty")
        page.click("#submit-btn")
        page.wait_for_function("() => ['succeeded', 'failed', 'cancelled', 'error']"
                               ".includes(document.body.dataset.state)")
        state = page.evaluate("() => document.body.dataset.state")
        if state != "succeeded":
            print(f"job ended {state}: {page.inner_text('#error-box')}", file=sys.stderr)
            return 1
        page.wait_for_function("() => document.getElementById('overlay-video').dataset.state === 'ready'")
        if args.track is not None:
            page.select_option("#track-select", args.track)
        page.evaluate("t => { document.getElementById('overlay-video').currentTime = t; }", args.seek)
        page.wait_for_function("() => { const v = document.getElementById('overlay-video'); "
                               "return !v.seeking && v.readyState >= 2; }")
        page.wait_for_timeout(1500)  # the player's controls fade in/out
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
