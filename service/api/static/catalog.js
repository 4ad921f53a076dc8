// vidpose web page, the model and detector pickers: models from GET /models with the chosen model's
// card in short (what it is, what it was trained on, what it measured), detectors from GET /detectors
// (only those the live workers can run).
"use strict";

window.VidposeCatalog = (() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    model: $("model-select"), modelInfo: $("model-info"), modelCard: $("model-card"),
    detector: $("detector-select"), detectorInfo: $("detector-info"),
  };
  let api = null;
  let models = null;  // the last GET /models answer

  function init(options) {
    api = options.api;
    el.model.addEventListener("change", showModelCard);
  }

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

  return { init, loadModels, loadDetectors };
})();
