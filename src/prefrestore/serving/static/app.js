// prefrestore page: plain JS, no build step, no third-party code. Talks only to this server's /v1 API.
// The option controls are built from GET /v1/options (options with ui: true: the server's photo settings and the
// control options of prefrestore.options the server lists for the page), so a new option appears here without
// touching this file; each control's tooltip is the option's help.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const state = { options: [], jobs: new Map(), token: sessionStorage.getItem("prefrestore-token") || "" };

function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { ...headers(), ...(init.headers || {}) } });
  if (res.status === 401) {
    $("#token-box").hidden = false;
    throw new Error("this server needs an API token: enter it at the top right, then try again");
  }
  return res;
}

async function errorText(res) {
  try { const body = await res.json(); return body.detail || JSON.stringify(body); }
  catch (e) { return res.status + " " + res.statusText; }
}

// Images of the API go through fetch (so the token header is sent) and become blob: URLs.
async function blobURL(path) {
  const res = await api(path);
  if (!res.ok) throw new Error(await errorText(res));
  return URL.createObjectURL(await res.blob());
}

// ---------------------------------------------------------------------------------------------------------------
// Options

function buildOptions(list) {
  const form = $("#options");
  form.textContent = "";
  for (const opt of list.filter((o) => o.ui)) {
    const label = document.createElement("label");
    label.title = opt.help;
    label.append(opt.name.replace(/_/g, " ") + " ");
    let input;
    if (opt.kind === "choice") {
      input = document.createElement("select");
      for (const c of opt.choices) input.append(new Option(c, c, c === opt.default, c === opt.default));
    } else if (opt.kind === "bool") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = !!opt.default;
    } else {
      input = document.createElement("input");
      input.type = "number";
      if (opt.minimum !== null) input.min = opt.minimum;
      if (opt.maximum !== null) input.max = opt.maximum;
      input.step = opt.step || (opt.kind === "int" ? 1 : "any");
      input.value = opt.default ?? "";
      if (opt.nullable) input.placeholder = "model default";
    }
    input.name = opt.name;
    input.dataset.kind = opt.kind;
    input.dataset.nullable = opt.nullable ? "1" : "";
    label.append(input);
    form.append(label);
  }
}

function chosenOptions() {
  const out = {};
  for (const input of $("#options").elements) {
    const k = input.dataset.kind;
    if (k === "bool") out[input.name] = input.checked;
    else if (k === "float" || k === "int") {
      out[input.name] = input.value === "" && input.dataset.nullable ? null : Number(input.value);
    }
    else out[input.name] = input.value;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Before/after slider: the "after" image below, the "before" image above it clipped to the slider's left part.

function compare(container, beforeSrc, afterSrc) {
  container.textContent = "";
  const after = new Image();
  after.className = "after";
  after.alt = "restored";
  after.src = afterSrc;
  const before = new Image();
  before.className = "before";
  before.alt = "original";
  before.src = beforeSrc;
  const bar = document.createElement("div");
  bar.className = "bar";
  const slider = document.createElement("input");
  slider.type = "range";
  slider.min = 0;
  slider.max = 100;
  slider.value = 50;
  slider.setAttribute("aria-label", "before / after");
  const tags = ["l:before", "r:after"].map((t) => {
    const s = document.createElement("span");
    s.className = "tag " + t[0];
    s.textContent = t.slice(2);
    return s;
  });
  const place = () => {
    before.style.clipPath = `inset(0 ${100 - slider.value}% 0 0)`;
    bar.style.left = slider.value + "%";
  };
  slider.addEventListener("input", place);
  place();
  container.append(after, before, bar, ...tags, slider);
  return slider;
}

// ---------------------------------------------------------------------------------------------------------------
// Jobs

async function submit(file, options, card) {
  const body = new FormData();
  body.append("file", file, file.name);
  body.append("options", JSON.stringify(options));
  setStatus(card, "uploading", 0);
  let res;
  try {
    res = await api("/v1/jobs", { method: "POST", body });
  } catch (err) { return fail(card, err.message); }
  if (res.status === 429) {
    const wait = Number(res.headers.get("Retry-After") || 2);
    setStatus(card, `server busy, retrying in ${wait} s`, 0);
    setTimeout(() => submit(file, options, card), wait * 1000);
    return;
  }
  if (!res.ok) return fail(card, await errorText(res));
  const job = await res.json();
  card.dataset.job = job.id;
  state.jobs.set(job.id, { file, card, options });
  setStatus(card, job.queue_position ? `queued (position ${job.queue_position})` : job.stage, job.progress);
  follow(job, card, file);
}

// Server-sent events read with fetch (EventSource cannot send the token header).
async function follow(job, card, file) {
  let res;
  try { res = await api(job.urls.events); } catch (err) { return fail(card, err.message); }
  if (!res.ok) return fail(card, await errorText(res));
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = /^event: (.*)$/m.exec(chunk);
      const data = /^data: (.*)$/m.exec(chunk);
      if (!event || !data) continue;
      const info = JSON.parse(data[1]);
      if (event[1] === "progress") {
        const where = info.state === "queued" ? `queued (position ${info.queue_position})` : info.stage;
        setStatus(card, where, info.progress);
      } else if (event[1] === "done") {
        return show(info, card, file);
      } else {
        return fail(card, info.error || info.state);
      }
    }
  }
  fail(card, "the progress stream ended early; reload the page and try again");
}

function setStatus(card, text, progress) {
  $(".status", card).textContent = text;
  $("progress", card).value = progress || 0;
}

function fail(card, message) {
  $("progress", card).hidden = true;
  $(".status", card).textContent = "failed";
  const p = $(".error", card);
  p.textContent = message;
  p.hidden = false;
  card.classList.add("failed");
}

async function show(job, card, file) {
  const result = job.result;
  $("progress", card).value = 1;
  $(".status", card).textContent = "restored";
  card.classList.add("restored");
  const original = URL.createObjectURL(file);
  let output;
  try { output = await blobURL(job.urls.result); } catch (err) { return fail(card, err.message); }
  compare($(".compare.whole", card), original, output);
  const link = $("a.download", card);
  link.href = output;
  link.download = job.download_name;
  const n = result.faces.length;
  $(".summary", card).textContent =
    `${result.output_size[0]}×${result.output_size[1]} px · ${n} face${n === 1 ? "" : "s"} restored` +
    (result.notes.length ? " · " + result.notes.join("; ") : "");
  const faces = $(".faces", card);
  faces.textContent = "";
  for (const face of result.faces) {
    const box = document.createElement("div");
    box.className = "face";
    const cmp = document.createElement("div");
    cmp.className = "compare";
    box.append(cmp);
    const [crop, restored] = await Promise.all([blobURL(face.urls.cropped), blobURL(face.urls.restored)]);
    compare(cmp, crop, restored);
    const label = document.createElement("label");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.checked = true;
    check.dataset.index = face.index;
    const id = face.identity_similarity === undefined ? "identity: n/a" : `identity ${face.identity_similarity.toFixed(3)}`;
    // the identity guard's verdict and best-of-N, as in the CLI's report (prefrestore.control.FaceOutcome.report)
    const guard = face.identity_guard || {};
    const verdict = guard.flagged ? " · flagged by the identity guard" + (guard.action ? ` (${guard.action})` : "") : "";
    const best = face.candidates ? ` · best of ${face.candidates.length} (seed ${face.chosen_seed})` : "";
    label.append(check, `face ${face.index} · ${id}${verdict}${best}`);
    box.append(label);
    faces.append(box);
  }
  const again = $(".reselect", card);
  const sync = () => {
    const picked = [...faces.querySelectorAll("input:checked")].map((c) => Number(c.dataset.index));
    again.disabled = picked.length === 0 || picked.length === result.faces.length;
  };
  faces.addEventListener("change", sync);
  sync();
  again.onclick = () => {
    const picked = [...faces.querySelectorAll("input:checked")].map((c) => Number(c.dataset.index));
    const opts = { ...state.jobs.get(job.id).options, faces: picked };
    $(".done", card).hidden = true;
    $("progress", card).hidden = false;
    card.classList.remove("restored");
    submit(file, opts, card);
  };
  $(".done", card).hidden = false;
  $("#zip").disabled = false;
}

function addFiles(files) {
  $("#message").textContent = "";
  const options = chosenOptions();
  for (const file of files) {
    const card = $("#card-template").content.firstElementChild.cloneNode(true);
    $(".name", card).textContent = file.name;
    $("#results").prepend(card);
    submit(file, options, card);
  }
}

async function downloadZip() {
  const ids = [...document.querySelectorAll(".card.restored")].map((c) => c.dataset.job).filter(Boolean);
  if (!ids.length) return;
  try {
    const url = await blobURL("/v1/results.zip?ids=" + ids.join(","));
    const a = document.createElement("a");
    a.href = url;
    a.download = "restored.zip";
    document.body.append(a);
    a.click();
    a.remove();
  } catch (err) { $("#message").textContent = err.message; }
}

async function init() {
  let res;
  try { res = await api("/v1/options"); } catch (err) { $("#message").textContent = err.message; return; }
  if (!res.ok) { $("#message").textContent = await errorText(res); setTimeout(init, 3000); return; }
  const info = await res.json();
  buildOptions(info.options);
  $("#model").textContent = info.model ? `model ${info.model.name} (${info.model.resolution} px faces)` : "model loading…";
  if (!info.model) setTimeout(init, 3000);
  const mb = (info.limits.max_body_bytes / 1048576).toFixed(0);
  $("#limits").textContent = `up to ${mb} MB and ${(info.limits.max_pixels / 1e6).toFixed(0)} megapixels per photo; ` +
    `results are kept for ${Math.round(info.limits.result_ttl_s / 60)} min`;
}

const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); addFiles(e.dataTransfer.files); });
$("#files").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
$("#zip").addEventListener("click", downloadZip);
$("#token").value = state.token;
$("#token").addEventListener("change", (e) => {
  state.token = e.target.value.trim();
  sessionStorage.setItem("prefrestore-token", state.token);
  init();
});
init();
