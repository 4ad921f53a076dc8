// vidpose web page: upload a clip to the JSON API (v1/ relative to this page), follow the job, show the
// overlay video and a summary, and offer the result as JSON or PoseTrack. The job id is kept in the URL
// (?job=ID: reload-safe, shareable); the job list is jobs.js, the per-person view people.js.
// Plain JS, no dependencies.
"use strict";

(() => {
  const API = new URL("v1/", document.baseURI);
  const KEY_STORAGE = "vidpose.apiKey";
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const POLL_MS = 400;          // short jobs finish in seconds: poll briskly at first...
  const POLL_SLOW_MS = 1500;    // ...then back off for long ones
  const POLL_SLOW_AFTER_MS = 30000;
  const POLL_RETRIES = 5;       // consecutive network failures tolerated while polling

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("submit-form"), input: $("video-input"), drop: $("drop-zone"), fileName: $("file-name"),
    model: $("model-select"), modelInfo: $("model-info"), modelCard: $("model-card"),
    detector: $("detector-select"), detectorInfo: $("detector-info"), jobStage: $("job-stage"),
    maxFrames: $("max-frames"), apiKey: $("api-key"), submit: $("submit-btn"), cancel: $("cancel-btn"),
    errorBox: $("error-box"), errorTitle: $("error-title"), errorMessage: $("error-message"),
    progressCard: $("progress-card"), uploadBar: $("upload-progress"), uploadText: $("upload-text"),
    jobBar: $("job-progress"), jobText: $("job-text"), jobStatus: $("job-status"), jobId: $("job-id"),
    resultCard: $("result-card"), video: $("overlay-video"), overlayStatus: $("overlay-status"),
    sumFrames: $("sum-frames"), sumVideo: $("sum-video"), sumTracks: $("sum-tracks"),
    sumPerFrame: $("sum-per-frame"), sumModel: $("sum-model"),
    downloadJson: $("download-json"), downloadPosetrack: $("download-posetrack"),
  };

  // One submission at a time; `run` identifies it so late answers of an older one are ignored.
  let file = null;
  let run = 0;
  let xhr = null;
  let jobId = null;
  let jobFileName = null;  // the clip's name when this page submitted the job (download names)
  let models = null;       // the last GET /models answer (model cards)
  let result = null;
  let overlayBlobUrl = null;

  // ------------------------------------------------------------------ API helpers
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function apiKey() { return el.apiKey.value.trim(); }

  function authHeaders() {
    const key = apiKey();
    return key ? { Authorization: "Bearer " + key } : {};
  }

  // The API's `{"error": {"code", "message"}}` body, or whatever else came back.
  function parseError(status, statusText, bodyText) {
    try {
      const body = JSON.parse(bodyText);
      if (body && body.error && body.error.message) {
        return new ApiError(status, body.error.code || "error", body.error.message);
      }
    } catch (_) { /* not JSON: fall through */ }
    const snippet = (bodyText || "").trim().slice(0, 300);
    return new ApiError(status, "http_" + status, snippet || statusText || "request failed");
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(new URL(path, API), { ...options, headers: { ...authHeaders(), ...options.headers } });
    } catch (e) {
      throw new ApiError(0, "network_error", "the server did not answer (" + e.message + ")");
    }
    if (!response.ok) throw parseError(response.status, response.statusText, await response.text());
    return response;
  }

  // ------------------------------------------------------------------ UI state
  function setState(state) {
    document.body.dataset.state = state;
    const busy = state === "uploading" || state === "queued" || state === "running";
    el.submit.disabled = busy || !file;
    el.cancel.hidden = !busy;
    el.cancel.disabled = false;
    el.input.disabled = busy;
  }

  function showError(err, title) {
    const what = err.status ? `HTTP ${err.status} (${err.code})` : `(${err.code || "error"})`;
    el.errorTitle.textContent = `${title || "Error"}: ${what}`;
    el.errorMessage.textContent = err.message;
    el.errorBox.dataset.code = err.code || "";
    el.errorBox.hidden = false;
  }

  function clearError() {
    el.errorBox.hidden = true;
    el.errorTitle.textContent = "";
    el.errorMessage.textContent = "";
    delete el.errorBox.dataset.code;
  }

  function formatBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / (1024 * 1024)).toFixed(1) + " MiB";
  }

  // ------------------------------------------------------------------ clip choice
  function setFile(f) {
    if (f && f !== file) clearError();  // a new clip: the last one's error no longer applies
    file = f || null;
    el.fileName.textContent = file ? `${file.name} (${formatBytes(file.size)})` : "";
    el.drop.classList.toggle("has-file", !!file);
    el.submit.disabled = !file || ["uploading", "queued", "running"].includes(document.body.dataset.state);
  }

  el.input.addEventListener("change", () => setFile(el.input.files[0]));

  // Dropping anywhere on the page must not navigate away to the file.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (e) => e.preventDefault());
  }
  el.drop.addEventListener("dragenter", (e) => { e.preventDefault(); el.drop.classList.add("dragging"); });
  el.drop.addEventListener("dragover", (e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; });
  el.drop.addEventListener("dragleave", () => el.drop.classList.remove("dragging"));
  el.drop.addEventListener("drop", (e) => {
    e.preventDefault();
    el.drop.classList.remove("dragging");
    if (el.input.disabled) return;
    const dropped = e.dataTransfer.files;
    if (dropped && dropped.length) {
      el.input.files = dropped;  // keep the input in sync with what will be sent
      setFile(dropped[0]);
    }
  });

  // ------------------------------------------------------------------ API key and models
  el.apiKey.value = localStorage.getItem(KEY_STORAGE) || "";
  el.apiKey.addEventListener("change", () => {
    const key = apiKey();
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
    loadModels();
    loadDetectors();
    VidposeJobs.load(0);
  });

  async function loadModels() {
    const previous = el.model.value;
    el.modelInfo.textContent = "loading models…";
    try {
      const list = await (await api("models")).json();
      models = list;
      el.model.replaceChildren();
      const byDefault = document.createElement("option");
      byDefault.value = "";
      byDefault.textContent = `server default (${list.default_model})`;
      el.model.append(byDefault);
      for (const m of list.models) {
        const opt = document.createElement("option");
        opt.value = m.name;
        const tags = [m.version, m.loaded ? `${m.workers} worker${m.workers === 1 ? "" : "s"}` : "no live worker"];
        opt.textContent = `${m.name} (${tags.filter(Boolean).join(", ")})`;
        el.model.append(opt);
      }
      el.model.value = [...el.model.options].some((o) => o.value === previous) ? previous : "";
      const loaded = list.models.filter((m) => m.loaded).length;
      el.modelInfo.textContent = `${list.models.length} model(s), ${loaded} served now`;
      delete el.modelInfo.dataset.error;
    } catch (err) {
      models = null;
      el.modelInfo.textContent = `models unavailable: ${err.message}`;
      el.modelInfo.dataset.error = err.code;
    }
    showModelCard();
  }

  // The chosen model's card in short (GET /models `card`): what it is, what it was trained on, and
  // what it measured.
  function showModelCard() {
    const name = el.model.value || (models && models.default_model);
    const entry = models && models.models.find((m) => m.name === name);
    el.modelCard.replaceChildren();
    el.modelCard.hidden = !entry;
    if (!entry) return;
    el.modelCard.dataset.model = entry.name;
    const card = entry.card || {};
    const line = (label, text) => {
      const p = document.createElement("p");
      const b = document.createElement("b");
      b.textContent = label + ": ";
      p.append(b, text);
      el.modelCard.append(p);
    };
    const cfg = entry.config || {};
    const size = cfg.input_size ? `, ${cfg.input_size.join("×")} crops` : "";
    line(entry.name, card.summary || `${cfg.backbone || "vit"} backbone${size}`
      + `${cfg.temporal ? ", temporal" : ", single-frame"}` + " (no model card)");
    if (card.trained_on) line("Trained on", card.trained_on);
    if (card.accuracy && card.accuracy.length) {
      line("Measured", card.accuracy.map((a) => `${a.value} ${a.metric} (${a.data})`).join("; "));
    }
    if (card.doc) line("Details", card.doc);
  }

  el.model.addEventListener("change", showModelCard);

  // The detector picker comes from GET /detectors (the server's registry); the static options in
  // index.html stay when the server cannot be asked.
  async function loadDetectors() {
    try {
      const list = await (await api("detectors")).json();
      const previous = el.detector.value;  // read after the request: the user may have picked meanwhile
      el.detector.replaceChildren();
      const byDefault = document.createElement("option");
      byDefault.value = "default";
      byDefault.textContent = `server default (${list.default_detector})`;
      el.detector.append(byDefault);
      // Only what the live workers can run (with no live worker: what this server's settings allow).
      for (const d of list.detectors.filter((x) => x.available)) {
        const opt = document.createElement("option");
        opt.value = d.name;
        opt.textContent = `${d.name} (${d.summary})`;
        el.detector.append(opt);
      }
      const missing = list.detectors.filter((x) => !x.available).map((x) => x.name);
      el.detectorInfo.textContent = missing.length ? `not on the live workers: ${missing.join(", ")}` : "";
      const ok = [...el.detector.options].some((o) => o.value === previous);
      el.detector.value = ok ? previous : "default";
    } catch (_) { /* keep the static list */ }
  }

  function buildOptions() {
    const options = {};
    if (el.model.value) options.model = el.model.value;
    if (el.detector.value !== "default") options.detector = el.detector.value;
    const maxFrames = el.maxFrames.value.trim();
    if (maxFrames) {
      const n = Number(maxFrames);
      if (!Number.isInteger(n) || n < 1) throw new ApiError(0, "invalid_max_frames", "Max frames must be a whole number ≥ 1");
      options.max_frames = n;
    }
    return options;
  }

  // ------------------------------------------------------------------ submit, upload progress
  el.form.addEventListener("submit", (e) => {
    e.preventDefault();
    startJob();
  });

  function resetResult() {
    result = null;
    el.resultCard.hidden = true;
    el.downloadJson.disabled = true;
    el.downloadPosetrack.disabled = true;
    for (const dd of [el.sumFrames, el.sumVideo, el.sumTracks, el.sumPerFrame, el.sumModel]) dd.textContent = "";
    el.video.removeAttribute("src");
    el.video.load();
    delete el.video.dataset.state;
    el.overlayStatus.textContent = "";
    el.overlayStatus.classList.remove("error-text");
    if (overlayBlobUrl) URL.revokeObjectURL(overlayBlobUrl);
    overlayBlobUrl = null;
    VidposePeople.reset();
  }

  // ?job=ID in the address bar: a reload reopens the job, and the link can be shared (with the key).
  function setUrlJob(id) {
    const url = new URL(location.href);
    if (id) url.searchParams.set("job", id); else url.searchParams.delete("job");
    history.replaceState(null, "", url);
  }

  function beginRun(id) {
    const myRun = ++run;
    jobId = id;
    resetResult();
    el.progressCard.hidden = false;
    el.uploadBar.value = 0;
    el.uploadText.textContent = "";
    el.jobBar.value = 0;
    el.jobText.textContent = "";
    el.jobStage.textContent = "";
    el.jobId.textContent = id ? `job ${id}` : "";
    if (id) el.jobId.dataset.jobId = id; else delete el.jobId.dataset.jobId;
    VidposeJobs.mark(id);
    return myRun;
  }

  // Follow a job this page did not just submit (from the URL or the job list).
  function openJob(id) {
    if (xhr) return;  // an upload is in progress: finish or cancel it first
    clearError();
    jobFileName = null;
    const myRun = beginRun(id);
    setUrlJob(id);
    el.uploadBar.value = 1;
    el.uploadText.textContent = "(submitted earlier)";
    el.jobStatus.textContent = "loading";
    setState("queued");
    poll(myRun, id, Date.now(), 0);
  }

  function startJob() {
    clearError();
    if (!file) {
      showError(new ApiError(0, "no_file", "choose a video file first"));
      return;
    }
    let options;
    try {
      options = buildOptions();
    } catch (err) {
      showError(err);
      return;
    }
    const myRun = beginRun(null);
    jobFileName = file.name;
    el.jobStatus.textContent = "uploading";
    setState("uploading");

    const form = new FormData();
    form.append("video", file, file.name);
    if (Object.keys(options).length) form.append("options", JSON.stringify(options));

    xhr = new XMLHttpRequest();
    xhr.open("POST", new URL("estimate", API));
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener("progress", (e) => {
      if (myRun !== run || !e.lengthComputable) return;
      el.uploadBar.value = e.loaded / e.total;
      el.uploadText.textContent = `${formatBytes(e.loaded)} / ${formatBytes(e.total)}`;
    });
    xhr.upload.addEventListener("load", () => {
      if (myRun !== run) return;
      el.uploadBar.value = 1;
      el.jobStatus.textContent = "uploaded, server is checking the clip";
    });
    xhr.addEventListener("load", () => {
      if (myRun !== run) return;
      const status = xhr.status;
      const text = xhr.responseText;
      xhr = null;
      if (status !== 202 && status !== 200) {
        failed(parseError(status, "", text), "Upload refused");
        return;
      }
      const accepted = JSON.parse(text);
      jobId = accepted.job_id;
      el.uploadBar.value = 1;
      el.jobId.textContent = `job ${jobId}`;
      el.jobId.dataset.jobId = jobId;
      setUrlJob(jobId);
      VidposeJobs.mark(jobId);
      VidposeJobs.load(0);
      el.jobStatus.textContent = accepted.status;
      setState(accepted.status === "running" ? "running" : "queued");
      poll(myRun, jobId, Date.now(), 0);
    });
    xhr.addEventListener("error", () => {
      if (myRun !== run) return;
      xhr = null;
      failed(new ApiError(0, "network_error", "the upload failed: the server closed the connection or is unreachable"));
    });
    xhr.addEventListener("abort", () => {
      if (myRun !== run) return;
      xhr = null;
      el.jobStatus.textContent = "upload cancelled";
      setState("cancelled");
    });
    xhr.send(form);
  }

  function failed(err, title) {
    el.jobStatus.textContent = "error";
    showError(err, title);
    setState("error");
  }

  // ------------------------------------------------------------------ job progress
  // Frames count once they went through the whole pipeline: decoded, people detected and tracked
  // (a batch of frames per detector call), poses estimated and stored. Before the first batch is
  // stored the bar is indeterminate, so a running job never looks stuck at 0.
  function showJob(job) {
    el.jobStatus.textContent = job.status;
    const starting = job.status === "running" && job.frames_done === 0;
    if (starting) el.jobBar.removeAttribute("value"); else el.jobBar.value = job.progress;
    el.jobText.textContent = `${job.frames_done} / ${job.frames_total} frames`;
    el.jobStage.textContent = {
      queued: "— waiting for a worker",
      running: starting ? "— decoding and detecting people…" : "— detecting, tracking and estimating poses",
    }[job.status] || "";
  }

  async function poll(myRun, id, since, failures) {
    if (myRun !== run) return;
    let job;
    try {
      job = await (await api(`jobs/${encodeURIComponent(id)}`)).json();
    } catch (err) {
      if (myRun !== run) return;
      if (err.status === 0 && failures < POLL_RETRIES) {  // network hiccup: try again
        setTimeout(() => poll(myRun, id, since, failures + 1), POLL_SLOW_MS);
        return;
      }
      failed(err, "Could not follow the job");
      return;
    }
    if (myRun !== run) return;
    showJob(job);
    if (!TERMINAL.has(job.status)) {
      setState(job.status);
      const wait = Date.now() - since > POLL_SLOW_AFTER_MS ? POLL_SLOW_MS : POLL_MS;
      setTimeout(() => poll(myRun, id, since, 0), wait);
      return;
    }
    VidposeJobs.reload();
    if (job.status === "succeeded") {
      await showResult(myRun, id);
    } else {
      if (job.error) showError(new ApiError(0, job.error.code, job.error.message), `Job ${job.status}`);
      setState(job.status);
    }
  }

  el.cancel.addEventListener("click", async () => {
    el.cancel.disabled = true;
    if (xhr) {
      xhr.abort();
      return;
    }
    if (!jobId) return;
    const myRun = run;
    try {
      const job = await (await api(`jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" })).json();
      if (myRun !== run) return;
      run++;  // stop polling this job
      showJob(job);
      setState(job.status);
      VidposeJobs.reload();
    } catch (err) {
      if (myRun !== run) return;
      showError(err, "Cancel failed");  // e.g. 409: it finished meanwhile; polling goes on
      el.cancel.disabled = false;
    }
  });

  // ------------------------------------------------------------------ result
  // Every page of the native JSON result, frames concatenated (pages follow next_start_frame).
  async function fetchResult(id) {
    let start = 0;
    let merged = null;
    while (start !== null && start !== undefined) {
      const page = await (await api(`jobs/${encodeURIComponent(id)}/result?start_frame=${start}`)).json();
      if (merged === null) merged = { ...page, frames: [] };
      merged.frames.push(...page.frames);
      if (page.next_start_frame !== null && page.next_start_frame <= start) throw new ApiError(0, "bad_paging", "result paging went backwards");
      start = page.next_start_frame;
    }
    merged.next_start_frame = null;
    return merged;
  }

  // PoseTrack18 pages (X-Next-Start-Frame announces the next one) merged into one document.
  async function fetchPosetrack(id) {
    let start = 0;
    let merged = null;
    while (start !== null) {
      const response = await api(`jobs/${encodeURIComponent(id)}/result?format=posetrack&start_frame=${start}`);
      const page = await response.json();
      if (merged === null) merged = { images: [], annotations: [], categories: page.categories };
      merged.images.push(...page.images);
      for (const ann of page.annotations) merged.annotations.push({ ...ann, id: merged.annotations.length });
      const next = response.headers.get("X-Next-Start-Frame");
      const nextStart = next === null ? null : Number(next);
      if (nextStart !== null && !(nextStart > start)) throw new ApiError(0, "bad_paging", "result paging went backwards");
      start = nextStart;
    }
    return merged;
  }

  function summarize(doc) {
    const tracks = new Set();
    let people = 0;
    let most = 0;
    for (const f of doc.frames) {
      for (const inst of f.instances) tracks.add(inst.track_id);
      people += f.instances.length;
      most = Math.max(most, f.instances.length);
    }
    const n = doc.frames.length;
    el.sumFrames.textContent = `${n} of ${doc.video.frames}`;
    el.sumVideo.textContent = `${doc.video.width}×${doc.video.height}, ${doc.video.fps ? doc.video.fps.toFixed(2) + " fps" : "fps unknown"}`;
    const ids = [...tracks].sort((a, b) => a - b);
    const shown = ids.length > 12 ? ids.slice(0, 12).join(", ") + ", …" : ids.join(", ");
    el.sumTracks.textContent = `${ids.length}` + (ids.length ? ` (ids ${shown})` : "");
    el.sumTracks.dataset.count = String(ids.length);
    el.sumPerFrame.textContent = n ? `${(people / n).toFixed(1)} on average, at most ${most}` : "no frames";
    el.sumModel.textContent = doc.model.name + (doc.model.version ? ` (${doc.model.version})` : "");
  }

  async function showResult(myRun, id) {
    setState("fetching");
    el.resultCard.hidden = false;
    loadOverlay(myRun, id);
    try {
      const doc = await fetchResult(id);
      if (myRun !== run) return;
      result = doc;
      summarize(doc);
      VidposePeople.show(doc);
      el.downloadJson.disabled = false;
      el.downloadPosetrack.disabled = false;
      setState("succeeded");
    } catch (err) {
      if (myRun !== run) return;
      failed(err, "Could not fetch the result");
    }
  }

  function overlayError(err) {
    el.video.dataset.state = "error";
    el.overlayStatus.classList.add("error-text");
    el.overlayStatus.textContent = `Overlay unavailable: ${err.status ? "HTTP " + err.status + " " : ""}${err.code}: ${err.message}`;
  }

  // The overlay renders on the server when first asked for, so it may take a moment.
  async function loadOverlay(myRun, id) {
    const path = `jobs/${encodeURIComponent(id)}/overlay.mp4`;
    el.video.dataset.state = "loading";
    el.overlayStatus.classList.remove("error-text");
    el.overlayStatus.textContent = "rendering the overlay video…";
    el.video.onloadeddata = () => {
      if (myRun !== run) return;
      el.video.dataset.state = "ready";
      el.overlayStatus.textContent = `${el.video.videoWidth}×${el.video.videoHeight}, ${el.video.duration.toFixed(2)} s`;
    };
    if (apiKey()) {  // <video src> cannot send the Authorization header: fetch it as a blob
      try {
        const blob = await (await api(path)).blob();
        if (myRun !== run) return;
        overlayBlobUrl = URL.createObjectURL(blob);
        el.video.onerror = () => overlayError(new ApiError(0, "undecodable", "the browser could not decode the video"));
        el.video.src = overlayBlobUrl;
      } catch (err) {
        if (myRun === run) overlayError(err);
      }
      return;
    }
    el.video.onerror = async () => {  // the element hides the HTTP answer: ask again to show the API's error
      if (myRun !== run) return;
      try {
        await api(path, { method: "GET" });
        overlayError(new ApiError(0, "undecodable", "the browser could not decode the video"));
      } catch (err) {
        if (myRun === run) overlayError(err);
      }
    };
    el.video.src = new URL(path, API).href;
  }

  function saveJson(obj, name) {
    const url = URL.createObjectURL(new Blob([JSON.stringify(obj)], { type: "application/json" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function baseName() {
    const stem = jobFileName ? jobFileName.replace(/\.[^.]*$/, "") : "job";
    return `${stem}.${jobId}`;
  }

  el.downloadJson.addEventListener("click", () => {
    if (result) saveJson(result, `${baseName()}.json`);
  });

  el.downloadPosetrack.addEventListener("click", async () => {
    if (!jobId) return;
    const id = jobId;
    el.downloadPosetrack.disabled = true;
    try {
      saveJson(await fetchPosetrack(id), `${baseName()}.posetrack.json`);
    } catch (err) {
      showError(err, "PoseTrack download failed");
    } finally {
      el.downloadPosetrack.disabled = false;
    }
  });

  VidposePeople.init();
  VidposeJobs.init({ api, open: openJob });
  setState("idle");
  setFile(el.input.files[0]);  // a browser may keep the choice across reloads
  loadModels();
  loadDetectors();
  VidposeJobs.load(0);
  const fromUrl = new URL(location.href).searchParams.get("job");
  if (fromUrl) openJob(fromUrl);
})();
