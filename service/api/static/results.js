// vidpose web page, the result: every page of the native JSON or PoseTrack result merged into one
// document, the summary next to the video, and saving a document as a download.
"use strict";

window.VidposeResults = (() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    sumFrames: $("sum-frames"), sumVideo: $("sum-video"), sumTracks: $("sum-tracks"),
    sumPerFrame: $("sum-per-frame"), sumModel: $("sum-model"),
  };
  let api = null;
  let makeError = null;

  function init(options) {
    api = options.api;
    makeError = options.error;
  }

  // Every page of the native JSON result, frames concatenated (pages follow next_start_frame).
  async function fetchResult(id) {
    let start = 0;
    let merged = null;
    while (start !== null && start !== undefined) {
      const page = await (await api(`jobs/${encodeURIComponent(id)}/result?start_frame=${start}`)).json();
      if (merged === null) merged = { ...page, frames: [] };
      merged.frames.push(...page.frames);
      if (page.next_start_frame !== null && page.next_start_frame <= start) throw makeError("bad_paging", "result paging went backwards");
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
      if (nextStart !== null && !(nextStart > start)) throw makeError("bad_paging", "result paging went backwards");
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

  function clear() {
    for (const dd of Object.values(el)) dd.textContent = "";
    delete el.sumTracks.dataset.count;
  }

  return { init, clear, fetchResult, fetchPosetrack, summarize, saveJson };
})();
