// The studio's page: a client of the JSON API under api/ (docs/studio.md), nothing more.
// Every URL is relative, so the page works behind an SSH tunnel or a reverse proxy's prefix.
"use strict";

const FORMATS = ["davis", "youtube-vos", "overlay", "matte", "prores", "y4m", "summary"];
const ALWAYS = ["davis", "summary"]; // every propagation writes these

const params = new URLSearchParams(location.search);
const token = params.get("token") || sessionStorage.getItem("seggpt-studio-token") || "";
if (params.get("token")) {
  sessionStorage.setItem("seggpt-studio-token", token);
  history.replaceState(null, "", location.pathname); // the token leaves the address bar
}

const $ = (id) => document.getElementById(id);
const view = $("view");
const ctx = view.getContext("2d");

const state = {
  session: null,
  video: null,
  objects: [],
  selected: null,
  annotations: new Set(),
  staleFrom: null,
  areas: {}, // object id -> [pixels or null per frame]
  frame: 0, // the frame asked for
  shown: -1, // the frame on the canvas
  image: null,
  overlay: null,
  loading: false,
  playing: false,
  running: false,
  stroke: null, // the edit being drawn: {tool, points} or {tool, box}
  lastEvent: 0,
};

// --- the API ---------------------------------------------------------------------------------

async function api(method, path, body, type) {
  const headers = { "X-Studio-Token": token };
  let data = body;
  if (body !== undefined && !(body instanceof ArrayBuffer)) {
    headers["Content-Type"] = "application/json";
    data = JSON.stringify(body);
  } else if (body instanceof ArrayBuffer) {
    headers["Content-Type"] = type || "application/octet-stream";
  }
  const answer = await fetch(path, { method, headers, body: data, cache: "no-store" });
  if (!answer.ok) {
    let message = `${answer.status} ${answer.statusText}`;
    try { message = (await answer.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  const kind = answer.headers.get("content-type") || "";
  return kind.includes("json") ? answer.json() : answer;
}

async function image(path) {
  const answer = await fetch(path, { headers: { "X-Studio-Token": token }, cache: "no-store" });
  if (answer.status === 204) return null;
  if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
  return createImageBitmap(await answer.blob());
}

function say(text, ok) {
  $("message").textContent = text || "";
  $("message").className = ok ? "ok" : "";
}

function guarded(action) {
  return async (...args) => {
    try { await action(...args); } catch (error) { say(error.message); }
  };
}

// --- the session -----------------------------------------------------------------------------

async function loadSession() {
  const session = await api("GET", "api/session");
  state.session = session;
  state.video = session.video;
  state.objects = session.objects;
  state.annotations = new Set(session.annotations);
  state.staleFrom = session.stale_from;
  state.running = session.status.running;
  if (state.selected === null || !state.objects.some((o) => o.id === state.selected)) {
    state.selected = state.objects.length ? state.objects[0].id : null;
  }
  $("video-name").textContent =
    `${session.video.name} · ${session.video.width}×${session.video.height}` +
    (session.video.fps ? ` · ${session.video.fps.toFixed(3).replace(/\.?0+$/, "")} fps` : "");
  $("command").textContent = session.command;
  const count = session.video.num_frames;
  $("slider").max = count ? count - 1 : 0;
  $("frame-number").max = count ? count - 1 : 0;
  $("frame-total").textContent = count ? `/ ${count - 1}` : "/ counting frames…";
  for (const box of document.querySelectorAll("#formats input")) {
    box.checked = ALWAYS.includes(box.value) || session.formats.includes(box.value);
  }
  renderObjects();
  setRunning(state.running, session.status.outcome);
  if (session.video.error) say(session.video.error);
  else if (session.video.warnings.length) say(session.video.warnings.join("; "));
  if (!session.video.ready) setTimeout(guarded(loadSession), 500);
  else await loadAreas();
  return session;
}

async function loadAreas() {
  const table = await api("GET", "api/areas");
  state.areas = table.area_pixels;
  renderTimelines();
}

function applyAnswer(answer) {
  state.annotations = new Set(answer.annotations);
  state.objects = answer.objects;
  state.staleFrom = answer.stale_from;
  $("command").textContent = answer.command;
  renderObjects();
  renderTimelines();
  refreshOverlay();
}

// --- frames ----------------------------------------------------------------------------------

function displayWidth() {
  const box = $("view-box").clientWidth || 960;
  const width = Math.min(state.video.width, box);
  return Math.round(width * (window.devicePixelRatio || 1));
}

function sizeCanvas() {
  const width = displayWidth();
  const height = Math.round((width * state.video.height) / state.video.width);
  if (view.width !== width || view.height !== height) {
    view.width = width;
    view.height = height;
    view.style.width = `${width / (window.devicePixelRatio || 1)}px`;
  }
}

function lastFrame() {
  return state.video.num_frames ? state.video.num_frames - 1 : 0;
}

function showFrame(index) {
  index = Math.max(0, Math.min(lastFrame(), index | 0));
  state.frame = index;
  $("slider").value = index;
  $("frame-number").value = index;
  loadFrames();
}

// One request at a time; while one is out the latest wish wins (scrubbing stays responsive).
async function loadFrames() {
  if (state.loading) return;
  state.loading = true;
  try {
    while (state.shown !== state.frame) {
      const index = state.frame;
      const width = displayWidth();
      const [frame, overlay] = await Promise.all([
        image(`api/frames/${index}.jpg?width=${width}`),
        image(`api/overlay/${index}.png?width=${width}`),
      ]);
      state.image = frame;
      state.overlay = overlay;
      state.shown = index;
      draw();
    }
  } catch (error) {
    say(error.message);
  } finally {
    state.loading = false;
  }
}

async function refreshOverlay() {
  const index = state.shown;
  if (index < 0) return;
  const overlay = await image(`api/overlay/${index}.png?width=${displayWidth()}`);
  if (state.shown === index) {
    state.overlay = overlay;
    draw();
  }
}

function frameKind(index) {
  if (state.annotations.has(index)) return "annotated";
  const areas = Object.values(state.areas);
  const done = areas.length && areas[0][index] !== null && areas[0][index] !== undefined;
  if (!done) return "";
  return state.staleFrom !== null && index >= state.staleFrom ? "propagated (stale)" : "propagated";
}

function draw() {
  sizeCanvas();
  ctx.clearRect(0, 0, view.width, view.height);
  if (state.image) ctx.drawImage(state.image, 0, 0, view.width, view.height);
  if (state.overlay) {
    ctx.globalAlpha = $("opacity").value / 100;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(state.overlay, 0, 0, view.width, view.height);
    ctx.imageSmoothingEnabled = true;
    ctx.globalAlpha = 1;
  }
  drawStroke();
  $("frame-kind").textContent = frameKind(state.shown);
  renderTimelineCursor();
}

// --- drawing ---------------------------------------------------------------------------------

function tool() {
  return document.querySelector("input[name=tool]:checked").value;
}

function videoPoint(event) {
  const rect = view.getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * state.video.width;
  const y = ((event.clientY - rect.top) / rect.height) * state.video.height;
  return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
}

function objectColour(id) {
  const found = state.objects.find((o) => o.id === id);
  return found ? found.colour : "#ffffff";
}

function drawStroke() {
  const stroke = state.stroke;
  if (!stroke) return;
  const scale = view.width / state.video.width;
  ctx.save();
  ctx.strokeStyle = stroke.tool === "eraser" ? "#ffffff" : objectColour(stroke.object);
  if (stroke.tool === "box") {
    const [x0, y0] = stroke.start;
    const [x1, y1] = stroke.end;
    ctx.lineWidth = 2;
    ctx.setLineDash([6, 4]);
    ctx.strokeRect(x0 * scale, y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale);
  } else {
    ctx.lineWidth = Math.max(1, stroke.size * scale);
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.globalAlpha = stroke.tool === "eraser" ? 0.6 : 0.8;
    ctx.beginPath();
    stroke.points.forEach(([x, y], i) => (i ? ctx.lineTo(x * scale, y * scale) : ctx.moveTo(x * scale, y * scale)));
    if (stroke.points.length === 1) ctx.lineTo(stroke.points[0][0] * scale + 0.01, stroke.points[0][1] * scale);
    ctx.stroke();
  }
  ctx.restore();
}

view.addEventListener("pointerdown", (event) => {
  if (!state.video || event.button !== 0) return;
  const kind = tool();
  if (kind !== "eraser" && state.selected === null) {
    say("add an object first (+ add object), then draw it");
    return;
  }
  view.setPointerCapture(event.pointerId);
  const point = videoPoint(event);
  const size = Number($("size").value);
  state.stroke = kind === "box"
    ? { tool: kind, object: state.selected, start: point, end: point }
    : { tool: kind, object: state.selected, size, points: [point] };
  draw();
});

view.addEventListener("pointermove", (event) => {
  if (!state.stroke) return;
  const point = videoPoint(event);
  if (state.stroke.tool === "box") state.stroke.end = point;
  else state.stroke.points.push(point);
  draw();
});

view.addEventListener("pointerup", guarded(async () => {
  const stroke = state.stroke;
  if (!stroke) return;
  let operation;
  if (stroke.tool === "box") {
    const [x0, y0] = stroke.start;
    const [x1, y1] = stroke.end;
    if (Math.abs(x1 - x0) < 2 || Math.abs(y1 - y0) < 2) {
      state.stroke = null;
      draw();
      return;
    }
    operation = { tool: "box", object: stroke.object, box: [x0, y0, x1, y1] };
    say("GrabCut…", true);
  } else {
    operation = { tool: stroke.tool, size: stroke.size, points: stroke.points };
    if (stroke.tool === "brush") operation.object = stroke.object;
  }
  try {
    const answer = await api("POST", `api/annotations/${state.shown}/edit`, { operations: [operation] });
    say("");
    applyAnswer(answer);
  } finally {
    state.stroke = null;
    draw();
  }
}));

$("size").addEventListener("input", () => { $("size-value").textContent = $("size").value; });

$("undo").addEventListener("click", guarded(async () => {
  applyAnswer(await api("POST", `api/annotations/${state.shown}/undo`));
}));

$("clear-annotation").addEventListener("click", guarded(async () => {
  applyAnswer(await api("DELETE", `api/annotations/${state.shown}.png`));
}));

$("import").addEventListener("change", guarded(async (event) => {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  const answer = await api("PUT", `api/annotations/${state.shown}.png`, await file.arrayBuffer(), "image/png");
  applyAnswer(answer);
  say(`${file.name}: imported as frame ${state.shown}'s annotation`, true);
}));

// --- objects ---------------------------------------------------------------------------------

function renderObjects() {
  const list = $("objects");
  list.replaceChildren();
  const shown = state.shown;
  for (const obj of state.objects) {
    const item = document.createElement("li");
    item.dataset.id = obj.id;
    item.className = obj.id === state.selected ? "selected" : "";
    const pick = document.createElement("input");
    pick.type = "radio";
    pick.name = "object";
    pick.checked = obj.id === state.selected;
    pick.title = "draw this object";
    pick.addEventListener("change", () => { state.selected = obj.id; renderObjects(); });
    const colour = document.createElement("input");
    colour.type = "color";
    colour.value = obj.colour;
    colour.addEventListener("change", guarded(async () => {
      await api("PATCH", `api/objects/${obj.id}`, { colour: colour.value });
      obj.colour = colour.value;
      renderTimelines();
      refreshOverlay();
    }));
    const name = document.createElement("input");
    name.type = "text";
    name.value = obj.name;
    name.addEventListener("focus", () => { state.selected = obj.id; });
    name.addEventListener("change", guarded(async () => {
      const saved = await api("PATCH", `api/objects/${obj.id}`, { name: name.value });
      obj.name = saved.name;
      renderTimelines();
    }));
    const area = document.createElement("span");
    area.className = "area";
    const column = state.areas[String(obj.id)];
    area.textContent = column && column[shown] ? `${column[shown]} px` : "";
    const remove = document.createElement("button");
    remove.textContent = "✕";
    remove.title = "remove the object (from every annotation)";
    remove.addEventListener("click", guarded(async () => {
      if (!confirm(`Remove ${obj.name} from every annotation?`)) return;
      await api("DELETE", `api/objects/${obj.id}`);
      await loadSession();
      refreshOverlay();
    }));
    item.append(pick, colour, name, area, remove);
    list.append(item);
  }
}

$("add-object").addEventListener("click", guarded(async () => {
  const obj = await api("POST", "api/objects", {});
  state.objects.push(obj);
  state.selected = obj.id;
  renderObjects();
  renderTimelines();
}));

// --- timelines: each object's area per frame -------------------------------------------------

function renderTimelines() {
  const box = $("timelines");
  box.replaceChildren();
  for (const obj of state.objects) {
    const row = document.createElement("div");
    row.className = "timeline";
    const label = document.createElement("span");
    label.textContent = obj.name;
    label.style.color = obj.colour;
    const canvas = document.createElement("canvas");
    canvas.dataset.id = obj.id;
    canvas.addEventListener("click", (event) => {
      const rect = canvas.getBoundingClientRect();
      showFrame(Math.floor(((event.clientX - rect.left) / rect.width) * (lastFrame() + 1)));
    });
    row.append(label, canvas);
    box.append(row);
  }
  renderTimelineCursor();
}

function renderTimelineCursor() {
  const count = lastFrame() + 1;
  for (const canvas of document.querySelectorAll("#timelines canvas")) {
    const id = canvas.dataset.id;
    const width = Math.max(1, canvas.clientWidth);
    const height = canvas.clientHeight || 34;
    if (canvas.width !== width) canvas.width = width;
    canvas.height = height;
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, width, height);
    const column = state.areas[id] || [];
    const most = Math.max(1, ...column.filter((v) => v !== null));
    const step = width / count;
    if (state.staleFrom !== null) {
      g.fillStyle = "#3a2f1a";
      g.fillRect(state.staleFrom * step, 0, width, height);
    }
    g.fillStyle = objectColour(Number(id));
    column.forEach((value, frame) => {
      if (value === null) return;
      const bar = Math.max(value ? 1 : 0, (value / most) * (height - 6));
      g.fillRect(frame * step, height - bar, Math.max(1, step - (step > 3 ? 1 : 0)), bar);
    });
    g.fillStyle = "#ffd479";
    for (const frame of state.annotations) g.fillRect(frame * step, 0, Math.max(2, step), 4);
    g.fillStyle = "#ffffff";
    g.fillRect((state.shown + 0.5) * step - 1, 0, 2, height);
  }
  for (const item of document.querySelectorAll("#objects li")) {
    const column = state.areas[item.dataset.id];
    item.querySelector(".area").textContent = column && column[state.shown] ? `${column[state.shown]} px` : "";
  }
}

// --- propagation, export ---------------------------------------------------------------------

function setRunning(running, outcome) {
  state.running = running;
  $("propagate").disabled = running;
  $("export").disabled = running;
  $("cancel").disabled = !running;
  // after a run the page keeps saying how it ended (finished, cancelled, failed)
  $("status").textContent = running ? "propagating…" : outcome || "ready";
}

// The page is running from the click on: a short job's "finished" event can arrive before its
// POST returns, and marking it running after the POST would then leave it "propagating…" for good.
async function startRun(path, body) {
  const before = $("status").textContent; // a refused run leaves how the last one ended
  setRunning(true);
  say("");
  try {
    await api("POST", path, body);
  } catch (error) {
    setRunning(false, before);
    throw error;
  }
}

$("propagate").addEventListener("click", guarded(() => startRun("api/propagate", {})));

$("cancel").addEventListener("click", guarded(async () => { await api("POST", "api/cancel", {}); }));

$("export").addEventListener("click", guarded(async () => {
  const formats = [...document.querySelectorAll("#formats input:checked")].map((b) => b.value);
  await startRun("api/export", { formats });
}));

$("copy-command").addEventListener("click", () => {
  navigator.clipboard.writeText($("command").textContent).then(
    () => say("command copied", true),
    () => say("select the command and copy it"),
  );
});

// A followed run is shown at most 4 frames a second: every frame shown is a JPEG and an overlay
// the server makes beside the model (docs/studio.md: +9.3 % on a run shown at every frame, +7.2 %).
const FOLLOW_EVERY_MS = 250;
let followTimer = null;
let followIndex = 0;
let lastFollowed = 0;
function follow(index) {
  followIndex = index;
  if (followTimer !== null) return;
  const wait = Math.max(0, lastFollowed + FOLLOW_EVERY_MS - performance.now());
  followTimer = setTimeout(() => {
    followTimer = null;
    lastFollowed = performance.now();
    if ($("follow").checked && !state.playing) { showFrame(followIndex); renderTimelineCursor(); }
  }, wait);
}
function onEvent(event) {
  if (event.type === "start") {
    setRunning(true);
    $("progress").max = event.total || 1;
    $("progress").value = 0;
    for (const column of Object.values(state.areas)) column.fill(null, event.restart_from || 0);
  } else if (event.type === "frame") {
    $("progress").max = event.total || 1;
    $("progress").value = event.done;
    $("progress-text").textContent = `${event.done} / ${event.total} frames` + (event.recalled ? " (read back)" : "");
    for (const obj of state.objects) {
      const id = String(obj.id);
      if (!state.areas[id]) state.areas[id] = new Array(lastFrame() + 1).fill(null);
      state.areas[id][event.index] = event.areas[id] || 0;
    }
    if ($("follow").checked && !state.playing) {
      follow(event.index);
    } else if (event.index === state.shown) {
      refreshOverlay();
    }
  } else if (["finished", "cancelled", "failed"].includes(event.type)) {
    setRunning(false, event.type);
    const speed = event.frames_per_second ? `, ${event.frames_per_second.toFixed(2)} frames/s computed` : "";
    $("progress-text").textContent = event.type === "finished"
      ? `done: ${event.frames} frames${event.resumed ? `, ${event.resumed} read back` : ""}${speed}`
      : event.message;
    if (event.type === "failed") say(event.message);
    guarded(async () => { await loadSession(); state.shown = -1; showFrame(state.frame); })();
  }
}

function listen(after) {
  const source = new EventSource(`api/events?after=${after}&token=${encodeURIComponent(token)}`);
  source.onmessage = (message) => onEvent(JSON.parse(message.data));
}

// --- keys, playing ---------------------------------------------------------------------------

function play(on) {
  state.playing = on;
  $("play").textContent = on ? "❚❚" : "▶";
  if (on) tick();
}

function tick() {
  if (!state.playing) return;
  if (state.frame >= lastFrame()) { play(false); return; }
  if (!state.loading && state.shown === state.frame) showFrame(state.frame + 1);
  setTimeout(tick, 1000 / (state.video.fps || 24));
}

document.addEventListener("keydown", (event) => {
  if (event.target.matches("input[type=text], input[type=number]")) return;
  if (event.key === "ArrowLeft") showFrame(state.frame - 1);
  else if (event.key === "ArrowRight") showFrame(state.frame + 1);
  else if (event.key === " ") play(!state.playing);
  else if (event.key === "z" && (event.ctrlKey || event.metaKey)) $("undo").click();
  else return;
  event.preventDefault();
});

$("prev").addEventListener("click", () => showFrame(state.frame - 1));
$("next").addEventListener("click", () => showFrame(state.frame + 1));
$("play").addEventListener("click", () => play(!state.playing));
$("slider").addEventListener("input", () => showFrame(Number($("slider").value)));
$("frame-number").addEventListener("change", () => showFrame(Number($("frame-number").value)));
$("opacity").addEventListener("input", draw);
window.addEventListener("resize", () => { state.shown = -1; showFrame(state.frame); renderTimelineCursor(); });

// --- start -----------------------------------------------------------------------------------

for (const name of FORMATS) {
  const label = document.createElement("label");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.value = name;
  box.checked = ALWAYS.includes(name);
  box.disabled = ALWAYS.includes(name);
  label.append(box, ` ${name}`);
  $("formats").append(label);
}

guarded(async () => {
  const session = await loadSession();
  listen(session.events);
  showFrame(0);
})();
