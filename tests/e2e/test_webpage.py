"""The web page at `/` in a real headless Chromium against the real service (uvicorn API, worker, Redis).

The browser is Debian's Chromium driven by Playwright through `executable_path` (no browser download):
VIDPOSE_CHROMIUM, else `chromium` on PATH. Without one the tests fail in CI and are skipped elsewhere.
(docs/img/webpage.png is taken against the real default model by tools/webpage_screenshot.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.api.formats import to_posetrack

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
    "--disable-extensions", "--disable-sync", "--no-first-run", "--mute-audio",
]
API_KEY = "web-test-key"
TIMEOUT_MS = 90_000


# ---------------------------------------------------------------- browser, service
def chromium_path() -> str:
    """The browser's path; without a browser (or playwright) fail in CI, skip elsewhere."""
    path = os.environ.get("VIDPOSE_CHROMIUM") or shutil.which("chromium")
    problem = None
    if not path or not os.access(path, os.X_OK):
        problem = ("no Chromium for the browser test: install Debian's 'chromium' package "
                   "(`./run test` does) or set VIDPOSE_CHROMIUM")
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright (python) is not installed: install the dev extra"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return path


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


TEST_CARD = {"summary": "tiny random weights for the tests", "trained_on": "nothing (random init)",
             "accuracy": [{"data": "no data", "metric": "PoseTrack mAP", "value": 0.0}], "doc": "tests/e2e"}


@pytest.fixture(scope="module")
def stack(make_stack, e2e_model):
    # The model card GET /models shows next to the picker (read per request from beside the checkpoint).
    (e2e_model.parent / f"{e2e_model.stem}.card.json").write_text(json.dumps(TEST_CARD))
    # Pages of 2 frames: the page's downloads must follow the paging (5 frames -> 3 pages).
    return make_stack(workers=1, VIDPOSE_WORKER_HEARTBEAT_S=0.5, VIDPOSE_RESULT_PAGE_LIMIT=2)


@pytest.fixture(scope="module")
def keyed_api(stack):
    """A second API process on the same Redis prefix and workers, but requiring an API key."""
    from service.embedded_redis import free_port

    port = free_port()
    env = {**stack.env, "VIDPOSE_API_PORT": str(port), "VIDPOSE_API_KEYS": API_KEY}
    with open(stack.workdir / "keyed-api.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "api"], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (stack.workdir / "keyed-api.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the keyed API did not start in 60 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PageWatch:
    """Uncaught page errors and every URL the page requested (all must stay on the service's origin)."""

    def __init__(self, page, origin: str):
        self.origin = origin
        self.errors: list[str] = []
        self.urls: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.urls.append(r.url))

    def check(self) -> None:
        assert not self.errors, self.errors
        foreign = [u for u in self.urls if not u.startswith((self.origin + "/", "blob:", "data:"))]
        assert not foreign, f"the page reached outside its origin: {foreign}"


@pytest.fixture()
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


# ---------------------------------------------------------------- page helpers
def wait_state(page, *states: str) -> str:
    page.wait_for_function("states => states.includes(document.body.dataset.state)", arg=list(states))
    return page.evaluate("() => document.body.dataset.state")


def run_job(page, clip: Path) -> str:
    """Choose the clip, submit, wait for the end; returns the job id (asserts success)."""
    page.set_input_files("#video-input", str(clip))
    page.click("#submit-btn")
    state = wait_state(page, "succeeded", "failed", "cancelled", "error")
    assert state == "succeeded", page.inner_text("#error-box")
    return page.get_attribute("#job-id", "data-job-id")


def overlay_frame(page) -> dict:
    """Wait until the overlay video is ready (or failed); its metadata and its current frame, shrunk."""
    page.wait_for_function("() => ['ready', 'error'].includes("
                           "document.getElementById('overlay-video').dataset.state)")
    assert page.get_attribute("#overlay-video", "data-state") == "ready", page.inner_text("#overlay-status")
    return page.evaluate("""() => {
        const v = document.getElementById('overlay-video');
        const c = document.createElement('canvas');
        c.width = 96; c.height = 54;
        const ctx = c.getContext('2d');
        ctx.drawImage(v, 0, 0, c.width, c.height);
        return {duration: v.duration, width: v.videoWidth, height: v.videoHeight, readyState: v.readyState,
                currentTime: v.currentTime, src: v.currentSrc,
                rgba: Array.from(ctx.getImageData(0, 0, c.width, c.height).data)};
    }""")


def check_overlay(info: dict, clip: Path, result: dict) -> None:
    """Right size and duration, decoded, and showing the clip's first frame (skeletons drawn on top)."""
    import cv2

    video = result["video"]
    assert info["readyState"] >= 2 and info["width"] > 0
    assert (info["width"], info["height"]) == (video["width"], video["height"])
    frame_s = 1.0 / video["fps"]
    assert abs(info["duration"] - video["frames"] * frame_s) <= 1.5 * frame_s, (info["duration"], video)
    shown = np.array(info["rgba"], dtype=np.float32).reshape(54, 96, 4)[..., :3]
    cap = cv2.VideoCapture(str(clip))
    ok, first = cap.read()
    cap.release()
    assert ok
    first = cv2.resize(cv2.cvtColor(first, cv2.COLOR_BGR2RGB), (96, 54), interpolation=cv2.INTER_AREA)
    diff = np.abs(shown - first.astype(np.float32)).mean()
    flat = np.abs(shown - shown.mean()).mean()
    assert shown.std() > 10, "the overlay frame is blank"
    assert diff < 25 and diff < flat, f"the overlay frame does not look like the clip (diff {diff:.1f})"


def drop_file(page, path: Path) -> None:
    """Drag and drop `path` onto the drop zone (a DataTransfer holding the file's bytes)."""
    data = page.evaluate_handle("""([name, bytes]) => {
        const dt = new DataTransfer();
        const type = name.endsWith('.mp4') ? 'video/mp4' : '';
        dt.items.add(new File([new Uint8Array(bytes)], name, {type}));
        return dt;
    }""", [path.name, list(path.read_bytes())])
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event("#drop-zone", event, {"dataTransfer": data})


def download(page, button: str) -> tuple[str, dict]:
    with page.expect_download() as dl:
        page.click(button)
    d = dl.value
    return d.suggested_filename, json.loads(Path(d.path()).read_text())


# ---------------------------------------------------------------- tests
def test_upload_progress_overlay_summary_downloads(context, stack, shared_data, tmp_path):
    clip = shared_data / "videos" / "street_walk.mp4"
    page = context.new_page()
    watch = PageWatch(page, stack.url)
    response = page.goto(stack.url + "/")
    assert response.status == 200 and "default-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_function("() => document.getElementById('model-select').options.length > 1")
    assert "test-model" in page.inner_text("#model-select")
    card = page.inner_text("#model-card")  # the default model's card, next to the picker
    assert TEST_CARD["summary"] in card and "Trained on: nothing (random init)" in card
    assert "0 PoseTrack mAP (no data)" in card
    page.wait_for_function("() => document.getElementById('detector-select').options.length > 1")
    detectors = page.eval_on_selector_all("#detector-select option", "os => os.map(o => o.value)")
    assert "full-frame" in detectors and "onnx" not in detectors  # only what the live worker can run
    assert "onnx" in page.inner_text("#detector-info")
    icon = page.get_attribute("link[rel=icon]", "href")
    for path in ("/" + icon, "/favicon.ico"):
        r = httpx.get(stack.url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")

    job_id = run_job(page, clip)
    api_job = stack.job(job_id)
    assert api_job["status"] == "succeeded"
    assert page.inner_text("#job-status") == "succeeded"
    assert page.inner_text("#job-text") == f"{api_job['frames_done']} / {api_job['frames_total']} frames"
    assert page.evaluate("() => document.getElementById('upload-progress').value") == 1
    assert page.evaluate("() => document.getElementById('job-progress').value") == 1
    assert page.is_hidden("#error-box") and page.is_hidden("#cancel-btn")

    result = stack.result(job_id)
    info = overlay_frame(page)
    assert info["src"].startswith(stack.url + "/v1/jobs/")  # no key: the element streams it itself
    check_overlay(info, clip, result)

    tracks = {i["track_id"] for f in result["frames"] for i in f["instances"]}
    assert len(tracks) >= 1, "the default pipeline found nobody on street_walk"
    assert page.get_attribute("#sum-tracks", "data-count") == str(len(tracks))
    assert page.inner_text("#sum-frames") == f"{len(result['frames'])} of {result['video']['frames']}"
    assert "960×540" in page.inner_text("#sum-video")

    name, doc = download(page, "#download-json")
    assert name == f"street_walk.{job_id}.json"
    assert doc["frames"] == result["frames"] and doc["video"] == result["video"]
    assert [f["frame_index"] for f in doc["frames"]] == list(range(result["video"]["frames"]))

    # Fully buffered, and the player's loading spinner has faded (it ends its animation cycle): a clean shot.
    page.wait_for_function("() => { const v = document.getElementById('overlay-video'); "
                           "return v.readyState === 4 && v.networkState === HTMLMediaElement.NETWORK_IDLE; }")
    page.wait_for_timeout(1500)
    shot = tmp_path / "webpage.png"
    page.screenshot(path=str(shot), full_page=True)
    check_screenshot(shot)
    if os.environ.get("VIDPOSE_TEST_SHOTS"):  # to look at them
        shutil.copy(shot, Path(os.environ["VIDPOSE_TEST_SHOTS"]) / "webpage-test.png")

    # The job id is in the URL and in the job list; a reload shows the same job and result again.
    assert page.url == f"{stack.url}/?job={job_id}"
    page.wait_for_selector(f"#jobs-table tr.selected[data-job-id='{job_id}']")
    page.reload()
    assert wait_state(page, "succeeded", "failed", "error") == "succeeded"
    assert page.get_attribute("#job-id", "data-job-id") == job_id
    assert page.get_attribute("#sum-tracks", "data-count") == str(len(tracks))
    check_overlay(overlay_frame(page), clip, result)
    check_person_view(page, result, tmp_path)
    watch.check()


def check_person_view(page, result: dict, tmp_path: Path) -> None:
    """The longest track is picked; its confidence plot is drawn; the video highlights its box."""
    frames = {f["frame_index"]: {i["track_id"]: i for i in f["instances"]} for f in result["frames"]}
    sizes: dict[int, int] = {}
    for people in frames.values():
        for tid in people:
            sizes[tid] = sizes.get(tid, 0) + 1
    longest = min(sizes, key=lambda t: (-sizes[t], t))
    assert page.is_visible("#person-view")
    options = page.eval_on_selector_all("#track-select option", "os => os.map(o => o.value)")
    assert options == [""] + [str(t) for t in sorted(sizes)]
    assert page.input_value("#track-select") == str(longest)
    assert page.get_attribute("#track-plot", "data-track") == str(longest)
    assert f"({sizes[longest]} of {result['video']['frames']})" in page.inner_text("#track-summary")
    # Each cell is the joint's confidence: blue at that alpha over white (red channel 255 - 218 * score).
    plotted = [f for f in sorted(frames) if longest in frames[f]]
    n, joints = result["video"]["frames"], len(result["keypoint_names"])
    for f in plotted[:3]:
        scores = [k[2] for k in frames[f][longest]["keypoints"]]
        j = max(range(joints), key=lambda i: scores[i])
        red = page.evaluate("""([f, j, n, rows]) => { const c = document.getElementById('track-plot');
            const x = 112 + (f + 0.25) * (c.width - 112) / n, y = (j + 0.5) * (c.height - 18) / rows;
            return c.getContext('2d').getImageData(Math.round(x), Math.round(y), 1, 1).data[0]; }""",
                            [f, j, n, joints])
        assert abs(red - (255 - 218 * scores[j])) <= 3, (f, j, red, scores[j])

    fps = result["video"]["fps"]
    frame = max(f for f, people in frames.items() if longest in people)
    page.evaluate("t => { document.getElementById('overlay-video').currentTime = t; }", (frame + 0.5) / fps)
    page.wait_for_function("f => document.getElementById('highlight-canvas').dataset.frame === String(f)",
                           arg=frame)
    box = [float(v) for v in page.get_attribute("#highlight-canvas", "data-box").split(",")]
    width = page.evaluate("() => document.getElementById('overlay-video').clientWidth")
    scale = width / result["video"]["width"]
    x, y, w, h = frames[frame][longest]["bbox"]
    assert box == pytest.approx([x * scale, y * scale, w * scale, h * scale], abs=1.5)
    inside, outside = page.evaluate("""([bx, by, bw, bh]) => {
        const c = document.getElementById('highlight-canvas').getContext('2d');
        const a = (x, y) => c.getImageData(Math.round(x), Math.round(y), 1, 1).data[3];
        return [a(bx + bw / 2, by + bh / 2), a(2, 2)]; }""", box)
    assert inside == 0 and outside > 100  # the person shows through, the rest is dimmed
    page.screenshot(path=str(tmp_path / "person-view.png"), full_page=True)
    if os.environ.get("VIDPOSE_TEST_SHOTS"):
        shutil.copy(tmp_path / "person-view.png", Path(os.environ["VIDPOSE_TEST_SHOTS"]) / "person-view.png")
    page.select_option("#track-select", "")  # everyone: no highlight
    assert page.get_attribute("#highlight-canvas", "data-track") == ""


def check_screenshot(path: Path) -> None:
    import cv2

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    img = cv2.imread(str(path))
    assert img is not None and img.shape[1] == 1280 and img.shape[0] >= 1000
    assert img.std() > 20  # a page with a video frame on it, not an empty canvas


def test_api_key_model_choice_and_posetrack(context, stack, keyed_api, shared_data):
    clip = shared_data / "videos" / "street_walk.mp4"
    page = context.new_page()
    watch = PageWatch(page, keyed_api)
    page.goto(keyed_api + "/")
    page.wait_for_selector("#model-info[data-error='unauthorized']")
    assert "missing API key" in page.inner_text("#model-info")

    page.fill("#api-key", API_KEY)
    page.locator("#api-key").press("Tab")  # change event: stored, models reloaded with the key
    page.wait_for_function("() => document.getElementById('model-select').options.length > 1")
    page.reload()  # the key survives a reload (localStorage)
    assert page.input_value("#api-key") == API_KEY
    page.wait_for_function("() => document.getElementById('model-select').options.length > 1")
    page.select_option("#model-select", "test-model")
    page.select_option("#detector-select", "full-frame")
    page.fill("#max-frames", "3")
    page.check("#uncertainty")  # the diffusion head's K hypotheses: keypoint_std per joint

    job_id = run_job(page, clip)
    keyed = httpx.Client(base_url=keyed_api, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    job = keyed.get(f"/v1/jobs/{job_id}").json()
    assert job["frames_total"] == 3 and job["model"]["name"] == "test-model"
    first_page = keyed.get(f"/v1/jobs/{job_id}/result", params={"limit": 3}).json()
    frames = first_page["frames"]  # capped at 2
    frames += keyed.get(f"/v1/jobs/{job_id}/result", params={"start_frame": 2}).json()["frames"]
    assert [[i["track_id"] for i in f["instances"]] for f in frames] == [[0]] * 3  # full-frame: one box
    # asked for (2 steps, K=5): a spread per joint, summed up in the person view
    assert all(len(i["keypoint_std"]) == 17 for f in frames for i in f["instances"])
    std = [sum(s) / 17 for s in (frames[f]["instances"][0]["keypoint_std"] for f in range(3))]
    summary = page.inner_text("#track-summary")
    assert f"uncertainty (hypotheses' spread) {sum(std) / 3:.1f} px on average" in summary

    # The job list holds this key's jobs only (the first test's job, submitted without a key, is not there).
    listed = keyed.get("/v1/jobs").json()["jobs"]
    assert job_id in [j["job_id"] for j in listed]
    page.wait_for_selector(f"#jobs-table tr[data-job-id='{job_id}']")
    rows = page.eval_on_selector_all("#jobs-table tbody tr", "rs => rs.map(r => r.dataset.jobId)")
    assert rows == [j["job_id"] for j in listed]
    keyless = [j["job_id"] for j in httpx.get(f"{stack.url}/v1/jobs").json()["jobs"]]
    assert not set(keyless) & set(rows)

    info = overlay_frame(page)
    assert info["src"].startswith("blob:")  # fetched with the Authorization header
    assert (info["width"], info["height"]) == (960, 540)
    assert page.get_attribute("#sum-tracks", "data-count") == "1"

    name, doc = download(page, "#download-posetrack")
    first = keyed.get(f"/v1/jobs/{job_id}/result", params={"format": "posetrack"})
    assert first.headers["X-Next-Start-Frame"] == "2"
    assert name == f"street_walk.{job_id}.posetrack.json"
    assert [im["frame_id"] for im in doc["images"]] == [0, 1, 2]
    assert doc["images"][:2] == first.json()["images"] and doc["categories"] == first.json()["categories"]
    assert [a["image_id"] for a in doc["annotations"]] == [0, 1, 2]
    assert [a["id"] for a in doc["annotations"]] == [0, 1, 2]  # unique across the merged pages
    expected = to_posetrack({"frames": frames, "keypoint_names": first_page["keypoint_names"]})
    assert [a["keypoints"] for a in doc["annotations"]] == [a["keypoints"] for a in expected["annotations"]]
    # Opening the job from the list (on a fresh page) shows it again, with its id in the URL.
    other = context.new_page()
    other_watch = PageWatch(other, keyed_api)
    other.goto(keyed_api + "/")
    other.click(f"#jobs-table tr[data-job-id='{job_id}']")
    assert wait_state(other, "succeeded", "failed", "error") == "succeeded"
    assert other.url.endswith(f"/?job={job_id}") and other.get_attribute("#sum-tracks", "data-count") == "1"
    assert other.get_attribute("#track-plot", "data-track") == "0"
    keyed.close()
    watch.check()
    other_watch.check()


def test_progress_view_two_stages(context, stack):
    """The page's progress rendering for status objects of each stage (progress.js's pure view())."""
    page = context.new_page()
    page.goto(stack.url + "/")
    page.wait_for_function("() => window.VidposeProgress !== undefined")
    view = lambda job: page.evaluate("job => VidposeProgress.view(job)", job)  # noqa: E731
    base = {"frames_total": 300, "frames_done": 0, "frames_detected": 0, "progress": 0}
    assert view({**base, "status": "queued"})["stage"] == "— waiting for a worker"
    starting = view({**base, "status": "running"})
    assert starting["stage"].startswith("— decoding") and starting["detectValue"] == 0
    running = view({**base, "status": "running", "frames_detected": 120, "frames_done": 40,
                    "progress": 40 / 300})
    assert running["stage"] == "— people found in 120/300 frames · poses 40/300"
    assert running["detectText"] == "120 / 300 frames" and running["posesText"] == "40 / 300 frames"
    assert running["detectValue"] == 0.4 and abs(running["posesValue"] - 40 / 300) < 1e-9
    detected = view({**base, "status": "running", "frames_detected": 300, "frames_done": 200})
    assert "found in all frames" in detected["stage"] and detected["detectValue"] == 1
    done = view({**base, "status": "succeeded", "frames_detected": 300, "frames_done": 300, "progress": 1})
    assert done["stage"] == "" and done["detectValue"] == done["posesValue"] == 1
    # The page shows what view() says.
    page.evaluate("""() => VidposeProgress.show({status: 'running', frames_total: 300, frames_done: 40,
        frames_detected: 120, progress: 40 / 300}, {detectBar: document.getElementById('detect-progress'),
        detectText: document.getElementById('detect-text'), jobBar: document.getElementById('job-progress'),
        jobText: document.getElementById('job-text'), jobStage: document.getElementById('job-stage')})""")
    assert page.inner_text("#detect-text") == "120 / 300 frames"
    assert page.inner_text("#job-text") == "40 / 300 frames"


def test_api_errors_are_shown(context, stack, tmp_path):
    page = context.new_page()
    watch = PageWatch(page, stack.url)
    page.goto(stack.url + "/")
    cases = [(tmp_path / "notes.mp4", b"this is text, not a video\n" * 40),  # decoded by the API: 422
             (tmp_path / "notes.txt", b"plain text\n")]                      # refused by extension: 415
    for n, (path, body) in enumerate(cases):
        path.write_bytes(body)
        with open(path, "rb") as f:  # what the API itself answers for the same upload
            r = httpx.post(stack.url + "/v1/estimate", files={"video": (path.name, f, "video/mp4")},
                           timeout=30)
        assert r.status_code in (415, 422)
        error = r.json()["error"]
        drop_file(page, path)
        assert page.inner_text("#file-name").startswith(path.name)
        assert page.is_hidden("#error-box"), f"case {n}: a new file clears the last error"
        page.click("#submit-btn")
        assert wait_state(page, "succeeded", "error") == "error"
        assert page.is_visible("#error-box")
        assert page.inner_text("#error-message") == error["message"]
        assert f"{r.status_code}" in page.inner_text("#error-title")
        assert page.get_attribute("#error-box", "data-code") == error["code"]
        assert page.is_enabled("#submit-btn")  # ready for another try
    watch.check()


def test_cancel_running_job(context, stack, long_clip):
    page = context.new_page()
    watch = PageWatch(page, stack.url)
    page.goto(stack.url + "/")
    page.select_option("#detector-select", "full-frame")
    page.set_input_files("#video-input", str(long_clip))
    page.click("#submit-btn")
    # Two-stage progress: people found (detection) shows while the job runs, ahead of the poses.
    page.wait_for_function("() => document.body.dataset.state === 'running' && "
                           "!document.getElementById('detect-text').textContent.startsWith('0 /')")
    detect_text = page.inner_text("#detect-text")
    assert detect_text.endswith(" / 900 frames") and int(detect_text.split(" / ")[0]) > 0
    assert page.evaluate("() => document.getElementById('detect-progress').value") > 0
    assert "people found in" in page.inner_text("#job-stage")
    page.wait_for_function("() => !document.getElementById('job-text').textContent.startsWith('0 /')")
    job_id = page.get_attribute("#job-id", "data-job-id")
    page.click("#cancel-btn")
    assert wait_state(page, "cancelled", "succeeded", "error") == "cancelled"
    job = stack.job(job_id)
    assert job["status"] == "cancelled" and 0 < job["frames_done"] < job["frames_total"] == 900
    assert page.inner_text("#job-status") == "cancelled"
    assert page.is_hidden("#result-card")
    watch.check()
