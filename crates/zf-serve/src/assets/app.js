// The zfnet explorer's page: one state (image, layer, channel), stated in the URL, and views
// drawn from the server's JSON API. No framework, no network access beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, image: null, layer: null, channel: null, acts: null, job: null, listed: 0 };
// Each view remembers the request it is waiting for; older answers are dropped.
const latest = { acts: 0, unit: 0 };

function status(msg, ok) {
  $("status").textContent = msg || "";
  $("status").className = ok ? "ok" : "";
}

async function api(url, options) {
  const r = await fetch(url, options);
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function layerInfo(name) {
  return state.model.layers.find((l) => l.label === name || l.name === name);
}

function writeURL() {
  const q = new URLSearchParams();
  if (state.image) q.set("image", state.image);
  if (state.layer) q.set("layer", state.layer);
  if (state.channel !== null) q.set("channel", state.channel);
  const url = `${location.pathname}?${q}`;
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
}

function readURL() {
  const q = new URLSearchParams(location.search);
  const layer = q.get("layer");
  state.layer = layer && layerInfo(layer) ? layerInfo(layer).label : state.model.layers[state.model.layers.length - 1].label;
  $("layer").value = state.layer;
  const c = q.get("channel");
  state.channel = c !== null && /^\d+$/.test(c) ? Number(c) : null;
  state.image = q.get("image");
}

async function init() {
  const m = (state.model = await api("/api/model"));
  $("model").textContent = `${m.arch} · ${m.weights} · ${m.input_size}px` + (m.data ? ` · ${m.data[0]} (${m.data[1]} images)` : "");
  $("limits").textContent = `up to ${m.limits.upload_bytes >> 20} MiB and ${m.limits.upload_pixels / 1e6} megapixels`;
  for (const l of m.layers) $("layer").add(new Option(l.label === l.name ? l.label : `${l.label} (${l.name})`, l.label));
  m.classes.forEach((name, i) => $("occ-class").add(new Option(`${i}: ${name}`, i)));
  if (m.data) await listImages();
  readURL();
  if (state.image) await showImage(state.image, false);
  else status(m.data ? "choose or upload an image" : "upload an image", true);
}

async function listImages() {
  const page = await api(`/api/images?offset=${state.listed}&limit=24`);
  for (const im of page.images) {
    const img = new Image();
    img.src = `/api/images/${im.id}`;
    img.alt = img.title = `${im.name} (${im.class})`;
    img.dataset.id = im.id;
    img.onclick = () => showImage(im.id, true);
    $("gallery").append(img);
  }
  state.listed += page.images.length;
  $("more").hidden = state.listed >= page.total;
}

async function showImage(id, push) {
  state.image = id;
  for (const t of $("gallery").children) t.classList.toggle("selected", t.dataset.id === id);
  $("input").src = `/api/images/${id}`;
  $("input-name").textContent = id;
  $("occ-run").disabled = false;
  $("occ-map").hidden = true;
  $("occ-info").textContent = "";
  if (push) writeURL();
  await showLayer();
}

async function showLayer() {
  if (!state.image) return;
  const ticket = ++latest.acts;
  let a;
  try {
    a = await api(`/api/activations?image=${encodeURIComponent(state.image)}&layer=${encodeURIComponent(state.layer)}`);
  } catch (e) {
    return status(e.message);
  }
  if (ticket !== latest.acts) return;
  state.acts = a;
  $("top5").replaceChildren(
    ...a.top5.map((t) => {
      const li = document.createElement("li");
      li.textContent = `${t.name} ${(100 * t.prob).toFixed(1)}%`;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.round(120 * t.prob)}px`;
      li.append(bar);
      return li;
    })
  );
  if ($("occ-class").value === "" || !state.job) $("occ-class").value = a.top5[0].class;
  const info = layerInfo(a.layer);
  $("layer-info").textContent = `${a.channels} channels, ${info.height}×${info.width}; strongest: ${a.strongest} (outlined)`;
  const cells = [];
  for (let k = 0; k < a.channels; k++) {
    const d = document.createElement("div");
    d.className = "ch" + (k === a.strongest ? " strongest" : "");
    d.dataset.channel = k;
    d.title = `channel ${k}: peak ${a.peaks[k].toFixed(3)}`;
    d.style.backgroundImage = `url(${a.sprite})`;
    d.style.backgroundPosition = `-${(k % a.columns) * a.thumb}px -${Math.floor(k / a.columns) * a.thumb}px`;
    d.onclick = () => showChannel(k, true);
    cells.push(d);
  }
  $("channels").replaceChildren(...cells);
  if (state.channel !== null && state.channel >= a.channels) state.channel = a.channels - 1;
  if (state.channel !== null) await showChannel(state.channel, false);
  else status(`${a.layer}: click a channel`, true);
}

async function showChannel(k, push) {
  state.channel = k;
  for (const c of $("channels").children) c.classList.toggle("selected", Number(c.dataset.channel) === k);
  const cell = $("channels").children[k];
  if (cell) cell.scrollIntoView({ block: "nearest" });
  if (push) writeURL();
  const ticket = ++latest.unit;
  $("unit-title").textContent = `${state.layer} channel ${k}`;
  const q = `layer=${encodeURIComponent(state.layer)}&channel=${k}`;
  let p;
  try {
    p = await api(`/api/projection?image=${encodeURIComponent(state.image)}&${q}`);
  } catch (e) {
    return status(e.message);
  }
  if (ticket !== latest.unit) return;
  $("projection").src = p.projection;
  $("projection").dataset.unit = `${p.layer}/${p.channel}/${p.position}`;
  const [x0, y0, x1, y1] = p.receptive_field;
  const scale = $("input").clientWidth / state.model.input_size;
  Object.assign($("rf").style, { left: `${x0 * scale}px`, top: `${y0 * scale}px`, width: `${(x1 - x0) * scale}px`, height: `${(y1 - y0) * scale}px` });
  // A channel silent on this image has no strongest unit: every unit is 0 and so is the projection.
  const silent = !(p.value > 0);
  $("rf").hidden = silent;
  $("unit-info").textContent = silent
    ? "silent on this image: every unit is 0 after the ReLU, so the projection is empty"
    : `strongest unit at (${p.position}), activation ${p.value.toFixed(3)}, receptive field x ${x0}–${x1}, y ${y0}–${y1}`;
  const layer = layerInfo(state.layer);
  if (!state.model.index) {
    $("top9").replaceChildren(note("no index: start the server with --index DIR (`zfnet visualize --out DIR` writes one)"));
  } else if (!layer.indexed.includes(k)) {
    $("top9").replaceChildren(note(`the index holds ${layer.indexed.length ? "channels " + layer.indexed.join(", ") : "no channel"} of ${state.layer}`));
  } else {
    try {
      const t = await api(`/api/top?${q}`);
      if (ticket !== latest.unit) return;
      $("top9").replaceChildren(
        ...t.hits.map((h) => {
          const d = document.createElement("div");
          d.className = "hit";
          d.title = `${h.source}: ${h.value.toFixed(3)}`;
          for (const src of [h.projection, h.patch]) {
            const img = new Image();
            img.src = src || "data:,";
            d.append(img);
          }
          return d;
        })
      );
    } catch (e) {
      return status(e.message);
    }
  }
  status(`${state.layer} channel ${k}`, true);
}

function note(text) {
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = text;
  return p;
}

async function upload(file) {
  if (!file) return;
  status(`uploading ${file.name}…`, true);
  try {
    const r = await api("/api/images", { method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file });
    await showImage(r.id, true);
  } catch (e) {
    status(`${file.name}: ${e.message}`);
  }
}

async function occlude() {
  const cls = $("occ-class").value;
  $("occ-run").disabled = true;
  $("occ-cancel").hidden = false;
  $("occ-progress").hidden = false;
  $("occ-progress").value = 0;
  try {
    let j = await api(`/api/occlusion?image=${encodeURIComponent(state.image)}&class=${cls}`, { method: "POST" });
    state.job = j.id;
    while (j.state === "queued" || j.state === "running") {
      await new Promise((r) => setTimeout(r, 200));
      j = await api(`/api/jobs/${j.id}`);
      if (j.total) $("occ-progress").value = j.done / j.total;
    }
    if (j.state === "done") {
      $("occ-map").src = j.result.map;
      $("occ-map").hidden = false;
      $("occ-info").textContent = `p(${j.result.name}): ${j.result.clean_prob.toFixed(3)} unoccluded, ${j.result.min_prob.toFixed(3)} at worst (${j.result.size}px square, stride ${j.result.stride})`;
    } else {
      $("occ-info").textContent = j.state === "cancelled" ? "cancelled" : j.error;
    }
  } catch (e) {
    status(e.message);
  } finally {
    state.job = null;
    $("occ-run").disabled = false;
    $("occ-cancel").hidden = true;
    $("occ-progress").hidden = true;
  }
}

$("upload").onchange = (e) => upload(e.target.files[0]);
$("drop").ondragover = (e) => { e.preventDefault(); $("drop").classList.add("over"); };
$("drop").ondragleave = () => $("drop").classList.remove("over");
$("drop").ondrop = (e) => { e.preventDefault(); $("drop").classList.remove("over"); upload(e.dataTransfer.files[0]); };
$("more").onclick = () => listImages().catch((e) => status(e.message));
// The select gives the focus back, so that the arrow keys move between channels again.
$("layer").onchange = () => { state.layer = $("layer").value; $("layer").blur(); writeURL(); showLayer(); };
$("occ-run").onclick = occlude;
$("occ-cancel").onclick = () => state.job && api(`/api/jobs/${state.job}`, { method: "DELETE" }).catch((e) => status(e.message));
window.onpopstate = () => { readURL(); if (state.image) showImage(state.image, false); };
document.addEventListener("keydown", (e) => {
  if (["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName) || !state.acts) return;
  const layers = state.model.layers.map((l) => l.label);
  const i = layers.indexOf(state.layer);
  if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
    const n = state.acts.channels;
    const k = state.channel === null ? 0 : (state.channel + (e.key === "ArrowRight" ? 1 : n - 1)) % n;
    showChannel(k, true);
  } else if ((e.key === "ArrowDown" && i + 1 < layers.length) || (e.key === "ArrowUp" && i > 0)) {
    state.layer = layers[i + (e.key === "ArrowDown" ? 1 : -1)];
    $("layer").value = state.layer;
    writeURL();
    showLayer();
  } else return;
  e.preventDefault();
});
init().catch((e) => status(e.message));
