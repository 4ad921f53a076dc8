// vidpose web page: upload a clip to the JSON API (v1/ relative to this page), follow the job, show the
// overlay video and a summary, and offer the result as JSON or PoseTrack. The job id is kept in the URL
// (?job=ID: reload-safe, shareable); the model and detector pickers are catalog.js, the job list
// jobs.js, the per-person view people.js.
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
    model: $("model-select"), detector: $("detector-select"), jobStage: $("job-stage"),
    maxFrames: $("max-frames"), uncertainty: $("uncertainty"), apiKey: $("api-key"), submit: $("submit-btn"), cancel: $("cancel-btn"),
    errorBox: $("error-box"), errorTitle: $("error-title"), errorMessage: $("error-message"),
    progressCard: $("progress-card"), uploadBar: $("upload-progress"), uploadText: $("upload-text"),
    jobBar: $("job-progress"), jobText: $("job-text"), jobStatus: $("job-status"), jobId: $("job-id"),
    detectBar: $("detect-progress"), detectText: $("detect-text"),
    resultCard: $("result-card"), video: $("overlay-video"), overlayStatus: $("overlay-status"),
    downloadJson: $("download-json"), downloadPosetrack: $("download-posetrack"),
  };

  // One submission at a time; `run` identifies it so late answers of an older one are ignored.
  let file = null;
  let run = 0;
  let xhr = null;
  let jobId = null;
  let jobFileName = null;  // the clip's name when this page submitted the job (download names)
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

  // ------------------------------------------------------------------ API key
  el.apiKey.value = localStorage.getItem(KEY_STORAGE) || "";
  el.apiKey.addEventListener("change", () => {
    const key = apiKey();
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
    VidposeCatalog.loadModels();
    VidposeCatalog.loadDetectors();
    VidposeJobs.load(0);
  });


  function buildOptions() {
    const options = {};
    if (el.model.value) options.model = el.model.value;
    if (el.detector.value !== "default") options.detector = el.detector.value;
    if (el.uncertainty.checked) Object.assign(options, { diffusion_steps: 2, hypotheses: 5 });
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
    VidposeResults.clear();
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
    el.detectBar.value = 0;
    el.detectText.textContent = "";
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
  // Two stages (progress.js): people found (frames decoded, people detected and tracked, a detector
  // batch at a time) and poses stored; the first runs ahead, so a starting job never sits at 0.
  function showJob(job) {
    el.jobStatus.textContent = job.status;
    VidposeProgress.show(job, el);
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
  async function showResult(myRun, id) {
    setState("fetching");
    el.resultCard.hidden = false;
    loadOverlay(myRun, id);
    try {
      const doc = await VidposeResults.fetchResult(id);
      if (myRun !== run) return;
      result = doc;
      VidposeResults.summarize(doc);
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

  function baseName() {
    const stem = jobFileName ? jobFileName.replace(/\.[^.]*$/, "") : "job";
    return `${stem}.${jobId}`;
  }

  el.downloadJson.addEventListener("click", () => {
    if (result) VidposeResults.saveJson(result, `${baseName()}.json`);
  });

  el.downloadPosetrack.addEventListener("click", async () => {
    if (!jobId) return;
    const id = jobId;
    el.downloadPosetrack.disabled = true;
    try {
      VidposeResults.saveJson(await VidposeResults.fetchPosetrack(id), `${baseName()}.posetrack.json`);
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
  VidposeCatalog.init({ api });
  VidposeResults.init({ api, error: (code, message) => new ApiError(0, code, message) });
  VidposeCatalog.loadModels();
  VidposeCatalog.loadDetectors();
  VidposeJobs.load(0);
  const fromUrl = new URL(location.href).searchParams.get("job");
  if (fromUrl) openJob(fromUrl);
})();
