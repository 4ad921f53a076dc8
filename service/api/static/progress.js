// vidpose web page, a job's progress in two stages (GET /jobs/{id}):
//   people -- frames_detected: frames decoded with their people detected and tracked (a detector batch
//             at a time), the stage that runs first;
//   poses  -- frames_done: frames whose poses are estimated and stored (the result so far).
// `view(job)` is pure (the browser test calls it with status objects); `show(job, el)` renders it.
"use strict";

window.VidposeProgress = (() => {
  const frac = (n, total) => (total > 0 ? Math.min(1, n / total) : 0);

  function view(job) {
    const total = job.frames_total || 0;
    const done = job.frames_done || 0;
    // Older servers send no frames_detected: poses stored imply their people were found.
    const detected = job.frames_detected ?? done;
    const running = job.status === "running";
    let stage = "";
    if (job.status === "queued") stage = "— waiting for a worker";
    else if (running && detected === 0 && done === 0) stage = "— decoding the video and finding people…";
    else if (running && detected < total) {
      stage = `— people found in ${detected}/${total} frames · poses ${done}/${total}`;
    } else if (running) stage = `— people found in all frames · estimating poses ${done}/${total}`;
    return {
      detectValue: job.status === "succeeded" ? 1 : frac(detected, total),
      detectText: `${detected} / ${total} frames`,
      posesValue: job.progress ?? frac(done, total),
      posesText: `${done} / ${total} frames`,
      stage,
    };
  }

  function show(job, el) {
    const v = view(job);
    el.detectBar.value = v.detectValue;
    el.detectText.textContent = v.detectText;
    el.jobBar.value = v.posesValue;
    el.jobText.textContent = v.posesText;
    el.jobStage.textContent = v.stage;
  }

  return { view, show };
})();
