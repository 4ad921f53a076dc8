// vidpose web page, per-person view: pick a track of the result, see each joint's confidence over time
// as a small plot, and see that person highlighted on the overlay video (a canvas over the <video>,
// drawn from the result JSON, so no second render on the server). Plain JS, no dependencies.
"use strict";

window.VidposePeople = (() => {
  const $ = (id) => document.getElementById(id);
  const LABEL_W = 112;  // plot: joint names column, pixels
  const AXIS_H = 18;    // plot: frame axis row
  let view, select, summary, plot, video, canvas;
  let doc = null;
  let tracks = new Map();  // track_id -> {id, frames: Map(frame_index -> instance)}
  let current = null;
  let names = [];

  function init() {
    view = $("person-view");
    select = $("track-select");
    summary = $("track-summary");
    plot = $("track-plot");
    video = $("overlay-video");
    canvas = $("highlight-canvas");
    select.addEventListener("change", () => choose(select.value));
    for (const type of ["timeupdate", "seeked", "loadeddata", "pause", "emptied"]) {
      video.addEventListener(type, redraw);
    }
    video.addEventListener("play", followPlayback);
    window.addEventListener("resize", drawHighlight);
    plot.addEventListener("click", (e) => {
      if (!doc || !video.duration) return;
      const rect = plot.getBoundingClientRect();
      const x = (e.clientX - rect.left) * (plot.width / rect.width);
      if (x < LABEL_W) return;
      const n = doc.video.frames;
      const frame = Math.min(n - 1, Math.floor(((x - LABEL_W) / (plot.width - LABEL_W)) * n));
      video.currentTime = (frame + 0.5) / fps();
    });
  }

  function fps() { return doc && doc.video.fps > 0 ? doc.video.fps : 30; }

  // The result frame shown at video time t (frame i is on screen from i/fps to (i+1)/fps).
  function frameAt(t) {
    const n = doc.video.frames;
    return Math.max(0, Math.min(n - 1, Math.floor(t * fps() + 1e-3)));
  }

  function reset() {
    doc = null;
    tracks = new Map();
    current = null;
    view.hidden = true;
    select.replaceChildren(new Option("everyone (no highlight)", ""));
    summary.textContent = "";
    delete plot.dataset.track;
    plot.getContext("2d").clearRect(0, 0, plot.width, plot.height);
    drawHighlight();
  }

  function mean(values) { return values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0; }

  function show(result) {
    doc = result;
    names = result.keypoint_names || [];
    tracks = new Map();
    for (const f of result.frames) {
      for (const inst of f.instances) {
        if (!tracks.has(inst.track_id)) tracks.set(inst.track_id, { id: inst.track_id, frames: new Map() });
        tracks.get(inst.track_id).frames.set(f.frame_index, inst);
      }
    }
    select.replaceChildren(new Option("everyone (no highlight)", ""));
    const ids = [...tracks.keys()].sort((a, b) => a - b);
    for (const id of ids) {
      const t = tracks.get(id);
      const score = mean([...t.frames.values()].map((i) => i.score));
      select.append(new Option(`track ${id}: ${t.frames.size} frame${t.frames.size === 1 ? "" : "s"}, `
        + `score ${score.toFixed(2)}`, String(id)));
    }
    view.hidden = ids.length === 0;
    // Start on the person seen longest (ties: the lower id), so the view shows something at once.
    const longest = ids.reduce((best, id) => (best === null
      || tracks.get(id).frames.size > tracks.get(best).frames.size ? id : best), null);
    choose(longest === null ? "" : String(longest));
  }

  function choose(value) {
    current = value === "" || !tracks.has(Number(value)) ? null : tracks.get(Number(value));
    select.value = current ? String(current.id) : "";
    describe();
    redraw();
  }

  function describe() {
    if (!current) {
      summary.textContent = `${tracks.size} tracked ${tracks.size === 1 ? "person" : "people"}`;
      return;
    }
    const frames = [...current.frames.keys()].sort((a, b) => a - b);
    const perJoint = names.map((_, j) => mean([...current.frames.values()].map((i) => i.keypoints[j][2])));
    const weakest = perJoint.indexOf(Math.min(...perJoint));
    summary.textContent = `frames ${frames[0]}–${frames[frames.length - 1]} (${frames.length} of `
      + `${doc.video.frames}), mean keypoint confidence ${mean(perJoint).toFixed(2)}`
      + (weakest >= 0 ? `, weakest ${names[weakest]} ${perJoint[weakest].toFixed(2)}` : "")
      + uncertainty();
  }

  // keypoint_std (the diffusion hypotheses' spread, pixels) when the job asked for it.
  function uncertainty() {
    const withStd = [...current.frames.values()].filter((i) => Array.isArray(i.keypoint_std));
    if (!withStd.length) return "";
    const perJoint = names.map((_, j) => mean(withStd.map((i) => i.keypoint_std[j])));
    const most = perJoint.indexOf(Math.max(...perJoint));
    return `; uncertainty (hypotheses' spread) ${mean(perJoint).toFixed(1)} px on average, `
      + `most on ${names[most]} ${perJoint[most].toFixed(1)} px`;
  }

  function redraw() {
    drawPlot();
    drawHighlight();
  }

  // Rows: joints; columns: frames; colour: that joint's confidence in that frame (grey: not in it).
  function drawPlot() {
    const ctx = plot.getContext("2d");
    const W = plot.width;
    const H = plot.height;
    ctx.clearRect(0, 0, W, H);
    if (!doc || !current) {
      delete plot.dataset.track;
      return;
    }
    plot.dataset.track = String(current.id);
    const n = Math.max(1, doc.video.frames);
    const rows = Math.max(1, names.length);
    const rowH = (H - AXIS_H) / rows;
    const colW = (W - LABEL_W) / n;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(LABEL_W, 0, W - LABEL_W, H - AXIS_H);
    for (let f = 0; f < n; f++) {
      const inst = current.frames.get(f);
      const x = LABEL_W + f * colW;
      if (!inst) {
        ctx.fillStyle = "#c9ced6";
        ctx.fillRect(x, 0, Math.ceil(colW), H - AXIS_H);
        continue;
      }
      for (let j = 0; j < rows; j++) {
        const s = Math.max(0, Math.min(1, inst.keypoints[j][2]));
        ctx.fillStyle = `rgba(37, 99, 235, ${s.toFixed(3)})`;
        ctx.fillRect(x, j * rowH, Math.ceil(colW), Math.ceil(rowH));
      }
    }
    ctx.fillStyle = getComputedStyle(plot).color || "#1d2330";
    ctx.font = `${Math.min(12, rowH - 1)}px system-ui, sans-serif`;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    names.forEach((name, j) => ctx.fillText(name, LABEL_W - 6, (j + 0.5) * rowH));
    ctx.textAlign = "left";
    ctx.fillText("frame 0", LABEL_W, H - AXIS_H / 2);
    ctx.textAlign = "right";
    ctx.fillText(`${n - 1}`, W - 2, H - AXIS_H / 2);
    if (video.readyState >= 1) {  // where the video is
      const x = LABEL_W + (frameAt(video.currentTime) + 0.5) * colW;
      ctx.strokeStyle = "#e5484d";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x, 0);
      ctx.lineTo(x, H - AXIS_H);
      ctx.stroke();
    }
  }

  // Dim the frame except the chosen person's box, outline it, and name it.
  function drawHighlight() {
    const cw = video.clientWidth;
    const ch = video.clientHeight;
    canvas.width = cw;
    canvas.height = ch;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, cw, ch);
    delete canvas.dataset.box;
    if (!doc || !current || !video.videoWidth || !cw) {
      canvas.dataset.frame = "";
      canvas.dataset.track = "";
      return;
    }
    const frame = frameAt(video.currentTime);
    canvas.dataset.frame = String(frame);
    canvas.dataset.track = String(current.id);
    const inst = current.frames.get(frame);
    canvas.dataset.visible = inst ? "1" : "0";
    const s = Math.min(cw / video.videoWidth, ch / video.videoHeight);  // the picture inside the element
    const ox = (cw - video.videoWidth * s) / 2;
    const oy = (ch - video.videoHeight * s) / 2;
    ctx.fillStyle = "rgba(0, 0, 0, 0.5)";
    ctx.fillRect(ox, oy, video.videoWidth * s, video.videoHeight * s);
    ctx.font = "bold 14px system-ui, sans-serif";
    ctx.textBaseline = "bottom";
    if (!inst) {
      ctx.fillStyle = "#ffd400";
      ctx.fillText(`track ${current.id} is not in frame ${frame}`, ox + 8, oy + 24);
      return;
    }
    const [x, y, w, h] = inst.bbox;
    const bx = ox + x * s;
    const by = oy + y * s;
    ctx.clearRect(bx, by, w * s, h * s);
    ctx.strokeStyle = "#ffd400";
    ctx.lineWidth = 3;
    ctx.strokeRect(bx, by, w * s, h * s);
    ctx.fillStyle = "#ffd400";
    ctx.fillText(`track ${current.id}`, bx, Math.max(oy + 16, by - 3));
    canvas.dataset.box = [bx, by, w * s, h * s].map((v) => v.toFixed(1)).join(",");
  }

  // While playing, follow each presented frame (requestVideoFrameCallback where there is one).
  function followPlayback() {
    const step = () => {
      if (video.paused || video.ended) return;
      redraw();
      if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(step);
      else requestAnimationFrame(step);
    };
    step();
  }

  return { init, reset, show };
})();
