// prefrestore page: plain JS, no build step, no third-party code. Talks only to this server's /v1 API.
// The option controls are built from the JSON Schema of a request's options that GET /v1/options serves ("schema",
// generated from the one declaration of the settings, prefrestore.restore.options; the properties with x-ui: true), so a
// new setting appears here without touching this file; each control's tooltip is the setting's help.
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

// The server's one-line errors name the file and the fix in an engineer's words; these say it for a person
// (the server's own line stays in the error's tooltip).
const PLAIN_ERRORS = [
  [/not an image PIL can read/i, "is not a photo this page can open (a JPEG, PNG, WebP, BMP, TIFF or GIF is)"],
  [/empty file/i, "is empty (0 bytes); choose the photo again"],
  [/truncated|cut short/i, "is incomplete (cut short, perhaps by an interrupted download); get the file again"],
  [/pixel limit|megapixels|too many pixels/i, "is too large for this server; make it smaller and try again"],
  [/(GiB|MiB) of memory/i, "needs more memory than this server allows; choose a smaller enlargement"],
];

function plainError(message) {
  for (const [pattern, words] of PLAIN_ERRORS) {
    if (pattern.test(message)) {
      const name = /^([^:]+):/.exec(message);
      return (name ? name[1] + " " : "This file ") + words + ".";
    }
  }
  return message;
}

// Several photos can be restored in one run; the server reports each photo's own face counts (faces_found,
// faces_restored), so each card says what its photo is waiting for.
function plainStage(info) {
  if (info.state === "queued") {
    return info.queue_position ? `waiting (${info.queue_position - 1} ahead)` : "waiting";
  }
  if (info.state === "cancelling") return "stopping";
  const stage = info.stage || "";
  if (/^restor(ing|ed)\b.*faces?$/.test(stage)) {
    const mine = info.faces_found;  // this photo's counts (null before its faces are found)
    if (mine !== undefined && mine !== null) {
      const s = mine === 1 ? "" : "s";
      return info.faces_restored ? `restored ${info.faces_restored} of ${mine} face${s}`
        : `restoring ${mine} face${s}`;
    }
    const others = [...document.querySelectorAll(".card.running")].length - 1;
    return others > 0 ? `restoring its faces (with ${others} other photo${others === 1 ? "" : "s"})`
      : "restoring its faces";
  }
  return { starting: "starting", "finding faces": "finding faces", "writing results": "saving the result" }[stage]
    || stage;
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

// Plain words for the options and their choices; the technical name and the server's help are the tooltip.
// An option missing here shows its technical name, so a new one still appears.
const LABELS = {
  upscale: "Enlarge the photo by",
  output_format: "Save as",
  det_threshold: "How sure a face must be (0-1)",
  fidelity: "Stay close to the original (0-1, empty: the model's choice)",
  candidates: "Tries per face (the best is kept)",
  rerank_weights: "How the tries are compared (empty: the default)",
  identity_guard: "Check the person stays the same",
  color_fix: "Keep the original colours",
  blend: "Strength of the restoration (0-1)",
  max_faces: "At most this many faces",
  only_center_face: "Only the face nearest the centre",
  color_match: "Match the face's tone to the photo",
  jpeg_quality: "JPEG quality (1-100)",
  seed: "Variation number",
};
const CHOICES = {
  output_format: { auto: "same kind as the upload", png: "PNG", jpg: "JPEG" },
  identity_guard: { off: "no", flag: "check and mark changed faces", fallback: "check and undo changed faces" },
  color_fix: { lowfreq: "yes (overall colour)", meanstd: "yes (average colour only)", none: "no" },
  color_match: { lowfreq: "yes (overall colour)", meanstd: "yes (average colour only)", none: "no" },
};
// What "identity" means, wherever a number or a verdict of the identity guard is shown.
const IDENTITY_HELP = "Identity: how alike the restored face and the uploaded face look to a face-recognition " +
  "model (dlib), 1 = the same face. The identity guard compares every restored face with its original; a face " +
  "that seems to have become someone else is flagged and, unless the guard is set to only mark it, replaced by a " +
  "closer restoration or by the original.";

// The schema's properties -> the controls' descriptions (name, kind, bounds, choices, default, step, help).
const KINDS = { number: "float", integer: "int", indices: "int_list" };
function fromSchema(schema) {
  return Object.entries(schema.properties).map(([name, p]) => {
    const value = p.anyOf ? p.anyOf[0] : p;  // a nullable setting: [its type, null]
    return {
      name, help: p.description, default: p.default, ui: !!p["x-ui"], step: p["x-step"] ?? null,
      kind: KINDS[p["x-kind"]] || p["x-kind"], nullable: !!p.anyOf, choices: value.enum || [],
      minimum: value.minimum ?? value.exclusiveMinimum ?? null, maximum: value.maximum ?? null,
    };
  });
}

function buildOptions(list) {
  const form = $("#options");
  form.textContent = "";
  for (const opt of list.filter((o) => o.ui)) {
    const label = document.createElement("label");
    label.title = `${opt.name}: ${opt.help}`;
    label.append((LABELS[opt.name] || opt.name.replace(/_/g, " ")) + " ");
    let input;
    if (opt.kind === "choice") {
      input = document.createElement("select");
      for (const c of opt.choices) {
        const words = (CHOICES[opt.name] || {})[c];
        const o = new Option(words || c, c, c === opt.default, c === opt.default);
        if (words) o.title = c;
        input.append(o);
      }
    } else if (opt.kind === "weights") {  // name=weight pairs; empty: the server's default (which leaves out
      input = document.createElement("input");  // a reward that is not installed, with a note)
      input.type = "text";
      input.placeholder = Object.entries(opt.default || {}).map(([k, v]) => `${k}=${v}`).join(", ");
      input.value = "";
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
    else if (k === "weights") {
      if (input.value.trim() === "") continue;  // the default
      out[input.name] = Object.fromEntries(input.value.split(",").filter((p) => p.trim()).map((p) => {
        const [name, weight] = p.split("=");
        return [name.trim(), weight === undefined ? 1 : Number(weight)];
      }));
    }
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
  setStatus(card, plainStage(job), job.progress);
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
        card.classList.toggle("running", info.state === "running");
        setStatus(card, plainStage(info), info.progress);
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
  if (card.pending) {  // a reselection failed: the card goes back to what it showed, with the error below it
    const back = card.pending;
    card.pending = null;
    render(card, card.file, back);
  } else {
    $("progress", card).hidden = true;
    $(".status", card).textContent = "failed";
    card.classList.add("failed");
  }
  card.classList.remove("running");
  const p = $(".error", card);
  p.textContent = plainError(message);
  p.title = message;
  p.hidden = false;
}

// A card's result is a "view": the job, its output image and each face's crop and restoration (blob URLs, kept in
// memory so that a reselection can be undone without asking the server again).
async function show(job, card, file) {
  card.classList.remove("running");
  let view;
  try {
    const faces = await Promise.all(job.result.faces.map(async (face) => {
      const [crop, restored] = await Promise.all([blobURL(face.urls.cropped), blobURL(face.urls.restored)]);
      return { face, crop, restored };
    }));
    view = { job, output: await blobURL(job.urls.result), faces, previous: card.pending || null };
  } catch (err) { return fail(card, err.message); }
  card.pending = null;
  if (view.previous) {  // the faces left out this time: shown as they were, unticked, so they can be picked again
    const here = new Set(view.faces.map((f) => f.face.index));
    for (const f of view.previous.faces) {
      if (!here.has(f.face.index)) view.faces.push({ ...f, left: true });
    }
    view.faces.sort((x, y) => x.face.index - y.face.index);
  }
  render(card, file, view);
}

function guardWords(face) {
  const guard = face.identity_guard || {};
  if (!guard.flagged) return face.identity_similarity === undefined ? "" : "same person";
  if (!guard.action) return "may look like someone else (flagged by the identity guard)";
  return guard.action.endsWith("input") ? "looked like someone else: the original face was kept"
    : "looked like someone else: replaced by a closer restoration";
}

function render(card, file, view) {
  const { job, faces } = view;
  const result = job.result;
  card.view = view;
  $("progress", card).hidden = false;
  $("progress", card).value = 1;
  $(".status", card).textContent = view.previous ? "restored (selected faces)" : "restored";
  $(".error", card).hidden = true;
  card.classList.remove("failed");
  card.classList.add("restored");
  card.dataset.job = job.id;
  compare($(".compare.whole", card), URL.createObjectURL(file), view.output);
  const link = $("a.download", card);
  link.href = view.output;
  link.download = job.download_name;
  const n = result.faces.length;
  const flagged = result.faces.filter((f) => (f.identity_guard || {}).flagged);
  const replaced = flagged.filter((f) => f.identity_guard.action).length;
  const checked = result.faces.some((f) => f.identity_guard && f.identity_similarity !== undefined);
  const verdict = flagged.length === 0 ? (checked ? " · identity guard: every face stayed the same person" : "")
    : ` · identity guard: ${flagged.length} face${flagged.length === 1 ? "" : "s"} looked like someone else` +
      (replaced ? `, ${replaced} replaced` : ", marked only");
  const summary = $(".summary", card);
  summary.textContent =
    `${result.output_size[0]}×${result.output_size[1]} px · ${n} face${n === 1 ? "" : "s"} restored${verdict}` +
    (result.notes.length ? " · " + result.notes.join("; ") : "");
  summary.title = verdict ? IDENTITY_HELP : "";
  const box = $(".faces", card);
  box.textContent = "";
  for (const f of faces) {
    const { face } = f;
    const div = document.createElement("div");
    div.className = "face" + (f.left ? " left-out" : "");
    const cmp = document.createElement("div");
    cmp.className = "compare";
    div.append(cmp);
    if (f.left) {  // not restored this time: the photo keeps its original face
      const img = new Image();
      img.src = f.crop;
      img.alt = "original";
      cmp.append(img);
    } else {
      compare(cmp, f.crop, f.restored);
    }
    const label = document.createElement("label");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.checked = !f.left;
    check.dataset.index = face.index;
    label.append(check, `face ${face.index}`);
    if (f.left) {
      label.append(" · left as it was");
    } else {
      if (face.identity_similarity !== undefined) {
        const id = document.createElement("span");
        id.className = "identity";
        id.title = IDENTITY_HELP + ` (identity similarity ${face.identity_similarity.toFixed(3)})`;
        id.textContent = ` · likeness ${Math.round(face.identity_similarity * 100)}%`;
        label.append(id);
      }
      const words = guardWords(face);
      if (words) {
        const g = document.createElement("span");
        g.className = "guard" + ((face.identity_guard || {}).flagged ? " flagged" : "");
        g.title = IDENTITY_HELP;
        g.textContent = " · " + words;
        label.append(g);
      }
      if (face.candidates) label.append(` · best of ${face.candidates.length} tries`);
    }
    div.append(label);
    box.append(div);
  }
  const again = $(".reselect", card);
  const picked = () => [...box.querySelectorAll("input:checked")].map((c) => Number(c.dataset.index));
  const restoredNow = faces.filter((f) => !f.left).map((f) => f.face.index);
  const sync = () => {
    const p = picked();
    again.disabled = p.length === 0 || (p.length === restoredNow.length && p.every((i) => restoredNow.includes(i)));
  };
  box.onchange = sync;
  sync();
  again.onclick = () => {
    const opts = { ...state.jobs.get(job.id).options, faces: picked() };
    card.pending = view;
    $(".done", card).hidden = true;
    $("progress", card).hidden = false;
    card.classList.remove("restored");
    submit(file, opts, card);
  };
  const undo = $(".undo", card);
  undo.hidden = !view.previous;
  undo.onclick = () => render(card, file, view.previous);
  $(".done", card).hidden = false;
  $("#zip").disabled = false;
}

function addFiles(files) {
  $("#message").textContent = "";
  const options = chosenOptions();
  for (const file of files) {
    const card = $("#card-template").content.firstElementChild.cloneNode(true);
    $(".name", card).textContent = file.name;
    card.file = file;
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
  buildOptions(fromSchema(info.schema));
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
