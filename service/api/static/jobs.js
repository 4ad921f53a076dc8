// vidpose web page, the job list: the current API key's jobs (GET /jobs: only that key's, newest
// first, paged); a row opens its job on this page (and puts its id in the URL).
"use strict";

window.VidposeJobs = (() => {
  const PAGE = 10;
  const $ = (id) => document.getElementById(id);
  let api = null;
  let open = null;
  let offset = 0;
  let total = 0;
  let selected = null;
  let body, info, newer, older;

  // Poses stored / total; a running job also shows how far detection got (frames with people found).
  function frames(job) {
    const poses = `${job.frames_done} / ${job.frames_total}`;
    return job.status === "running" ? `${poses} (people: ${job.frames_detected ?? job.frames_done})` : poses;
  }

  function init(options) {
    api = options.api;
    open = options.open;
    body = $("jobs-table").tBodies[0];
    info = $("jobs-info");
    newer = $("jobs-newer");
    older = $("jobs-older");
    newer.addEventListener("click", () => load(Math.max(0, offset - PAGE)));
    older.addEventListener("click", () => load(offset + PAGE));
    $("jobs-refresh").addEventListener("click", () => load(offset));
  }

  function when(unix) {
    if (!unix) return "";
    const d = new Date(unix * 1000);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  async function load(from = offset) {
    let page;
    try {
      page = await (await api(`jobs?offset=${from}&limit=${PAGE}`)).json();
    } catch (err) {
      info.textContent = `job list unavailable: ${err.message}`;
      info.dataset.error = err.code;
      body.replaceChildren();
      newer.disabled = older.disabled = true;
      return;
    }
    delete info.dataset.error;
    offset = page.offset;
    total = page.total;
    body.replaceChildren();
    for (const job of page.jobs) {
      const tr = document.createElement("tr");
      tr.dataset.jobId = job.job_id;
      tr.tabIndex = 0;
      const v = job.video || {};
      tr.append(cell(when(job.created_at)), cell(job.status, `status status-${job.status}`),
        cell(frames(job)), cell(v.width ? `${v.width}×${v.height}` : ""),
        cell(job.model.name), cell(job.job_id, "mono"));
      tr.addEventListener("click", () => open(job.job_id));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(job.job_id); });
      body.append(tr);
    }
    mark(selected);
    const last = offset + page.jobs.length;
    info.textContent = total ? `jobs ${page.jobs.length ? offset + 1 : 0}–${last} of ${total} `
      + "(kept until they expire; only this API key's jobs)" : "no jobs yet for this API key";
    newer.disabled = offset === 0;
    older.disabled = page.next_offset === null;
  }

  function mark(jobId) {
    selected = jobId;
    for (const tr of body.rows) tr.classList.toggle("selected", tr.dataset.jobId === jobId);
  }

  return { init, load, mark, reload: () => load(offset) };
})();
