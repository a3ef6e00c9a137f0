// The layer view: photo, tile grid and overlays, zoom and pan, probabilities under the pointer,
// and labelling by click and keyboard. Every label is sent at once; the server stores it.
"use strict";
const ROOT = document.getElementById("layer");
const SET = ROOT.dataset.set;
const COUNT = Number(ROOT.dataset.count);
const viewer = document.getElementById("viewer");
const stage = document.getElementById("stage");
const photo = document.getElementById("photo");
const canvas = document.getElementById("overlay");
const igImage = document.getElementById("ig");
const NAMES = SLMCNN.classes;
const RGB = NAMES.map((n) => SLMCNN.colours[n]);

let L = null;            // the layer's JSON
let index = Number(ROOT.dataset.index);
const asked = new URLSearchParams(location.search).get("tile");  // "row,col": a tile proposed for labelling
let sel = asked ? asked.split(",").map(Number) : [0, 0];
let view = { s: 1, x: 0, y: 0 };
let undoStack = [];
let queue = Promise.resolve();
let explained = null;    // [row, col] of the IG shown

const overlayKind = () => document.querySelector('input[name="overlay"]:checked').value;
const shownClass = (r, c) => (L.labels[r][c] ?? L.classes[r][c]);
const cellX = (c) => [L.xs[c], c + 1 < L.cols ? L.xs[c + 1] : L.width];
const cellY = (r) => [L.ys[r], r + 1 < L.rows ? L.ys[r + 1] : L.height];

function hexToRgba(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

function draw() {
  if (!L) return;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const kind = overlayKind();
  const line = Math.max(1, L.width / 400);
  for (let r = 0; r < L.rows; r++) {
    for (let c = 0; c < L.cols; c++) {
      const [x0, x1] = cellX(c), [y0, y1] = cellY(r);
      const cls = shownClass(r, c), labelled = L.labels[r][c] !== null;
      if (kind === "classes" && cls >= 0) {
        ctx.fillStyle = hexToRgba(RGB[cls], labelled ? 0.42 : 0.22);
        ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
      } else if (kind === "anomaly" && L.anomaly) {
        const a = L.anomaly[r][c];
        ctx.fillStyle = `rgba(255, ${a > 1 ? 40 : 170}, 0, ${Math.min(0.75, a / 2)})`;
        ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
        ctx.fillStyle = "#fff";
        ctx.font = `${Math.round(L.patch / 6)}px sans-serif`;
        ctx.fillText(a.toFixed(2), x0 + 6, y1 - 8);
      }
      ctx.strokeStyle = "rgba(255,255,255,0.45)";
      ctx.lineWidth = line;
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      if (L.checked[r][c]) {
        ctx.fillStyle = "#19c37d";
        ctx.font = `bold ${Math.round(L.patch / 5)}px sans-serif`;
        ctx.fillText("✓", x1 - L.patch / 4, y0 + L.patch / 5);
      }
    }
  }
  if (kind !== "none") drawDefects(ctx, line);
  const [r, c] = sel, [x0, x1] = cellX(c), [y0, y1] = cellY(r);
  ctx.strokeStyle = "#ffd000";
  ctx.lineWidth = 3 * line;
  ctx.strokeRect(x0 + line, y0 + line, x1 - x0 - 2 * line, y1 - y0 - 2 * line);
  const done = L.checked.flat().filter(Boolean).length;
  document.getElementById("progress").textContent = `${done} of ${L.rows * L.cols} tiles checked`;
  describe(document.getElementById("selected"), r, c);
}

function describe(box, r, c) {
  const p = L.probabilities[r][c];
  const lab = L.labels[r][c];
  const rows = NAMES.map((n, k) => el("div", {}, el("span", { style: "width:50px" }, n),
    el("span", { class: "bar", style: `width:${Math.round(p[k] * 120)}px;background:${k === 0 ? "#aab" : RGB[k]}` }),
    (100 * p[k]).toFixed(1) + "%"));
  const extra = [`tile row ${r}, col ${c}`, `label: ${lab === null ? "none (shows the prediction)" : NAMES[lab]}`];
  if (L.anomaly) extra.push(`anomaly ${L.anomaly[r][c].toFixed(2)} (above 1: unlike this camera's good layers)`);
  box.replaceChildren(el("div", { class: "probs" }, ...rows), ...extra.map((t) => el("div", {}, t)));
}

function applyView() {
  stage.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.s})`;
}

function fit() {
  const s = Math.min(viewer.clientWidth / L.width, viewer.clientHeight / L.height);
  view = { s, x: (viewer.clientWidth - s * L.width) / 2, y: (viewer.clientHeight - s * L.height) / 2 };
  applyView();
}

function defects() {
  return L.regions.filter((r) => r.type && r.box);  // the fine map's defects; the others are tile regions
}

function drawDefects(ctx, line) {
  // the defects the grading named, boxed in the photo's pixels, their number beside each box
  ctx.strokeStyle = "#ff2bd6";
  ctx.fillStyle = "#ff2bd6";
  ctx.lineWidth = 2 * line;
  ctx.font = `bold ${Math.round(L.patch / 5)}px sans-serif`;
  defects().forEach((d, i) => {
    const [x0, y0, x1, y1] = d.box;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.fillText(String(i + 1), x0 + 2 * line, y0 - 3 * line < 12 ? y1 + L.patch / 5 : y0 - 3 * line);
  });
}

function showJudgement() {
  // the grade the monitor gave this layer and why, and its defects by type, size and place
  const box = document.getElementById("judgement");
  if (!L.grade) {
    box.replaceChildren("not graded");
  } else {
    box.replaceChildren(el("span", { class: `badge g-${L.grade}`, id: "grade" }, L.grade), " ", el("small", {}, L.why || ""));
  }
  const tileRegions = L.regions.filter((r) => !r.type && r.rows);
  document.getElementById("defects").replaceChildren(
    ...defects().map((d, i) => el("li", { class: "defect", "data-type": d.type }, `${i + 1}: ${d.text || d.type}`)),
    ...(defects().length ? [] : tileRegions.map((r) => el("li", { class: "tile-region" }, `Error tiles rows ${r.rows[0]}-${r.rows[1]}, cols ${r.cols[0]}-${r.cols[1]} (${r.tiles})`))));
}

async function load(i, keepTile) {
  const t0 = performance.now();
  index = i;
  const imageReady = new Promise((resolve) => { photo.onload = resolve; photo.onerror = resolve; });
  photo.src = `/api/sets/${SET}/layers/${i}/image`;
  const next = await api("GET", `/api/sets/${SET}/layers/${i}`);
  await imageReady;
  const resized = !L || L.width !== next.width || L.height !== next.height;
  L = next;
  canvas.width = L.width;
  canvas.height = L.height;
  if (!keepTile) sel = [0, 0];
  sel = [Math.min(sel[0], L.rows - 1), Math.min(sel[1], L.cols - 1)];
  igImage.hidden = true;
  explained = null;
  if (resized) fit();
  document.getElementById("overlay-anomaly").disabled = !L.anomaly;
  document.getElementById("layer-title").textContent = `layer ${L.number} (${L.file})${L.straightened ? ", straightened" : ""}`;
  showJudgement();
  if (L.photo_changed) toast("this file now holds another photo: shown is what the monitor kept; labels and explanations are off");
  history.replaceState(null, "", `/sets/${SET}/layers/${i}`);
  draw();
  window.layerShownMs = performance.now() - t0;  // this layer's data, photo and overlay
  window.layerOpenedMs ??= performance.now();  // from navigation start: the whole page
  document.body.dataset.ready = String(i);
}

function post(entries) {
  const at = index;
  queue = queue.then(() => api("POST", `/api/sets/${SET}/layers/${at}/labels`, { labels: entries })).catch(() => {});
  return queue;
}

function setLabels(changes, record = true) {
  // changes: [{row, col, cls, checked}]
  if (record) {
    undoStack.push({ index, before: changes.map(({ row, col }) => ({ row, col, cls: L.labels[row][col], checked: L.checked[row][col] })) });
  }
  for (const { row, col, cls, checked } of changes) {
    L.labels[row][col] = cls;
    L.checked[row][col] = checked;
  }
  draw();
  return post(changes);
}

async function undo() {
  const last = undoStack.pop();
  if (!last) return toast("nothing to undo");
  if (last.index !== index) await load(last.index, true);
  setLabels(last.before, false);
}

function advance(step) {
  let k = sel[0] * L.cols + sel[1] + step;
  if (k >= L.rows * L.cols) return index + 1 < COUNT ? load(index + 1) : toast("last tile of the last layer");
  if (k < 0) {
    if (index === 0) return;
    return load(index - 1).then(() => { sel = [L.rows - 1, L.cols - 1]; draw(); });
  }
  sel = [Math.floor(k / L.cols), k % L.cols];
  draw();
}

function move(dr, dc) {
  const r = sel[0] + dr, c = sel[1] + dc;
  if (dc) return advance(dc);
  if (r >= L.rows) return index + 1 < COUNT && load(index + 1, true).then(() => { sel = [0, sel[1]]; draw(); });
  if (r < 0) return index > 0 && load(index - 1, true).then(() => { sel = [L.rows - 1, sel[1]]; draw(); });
  sel = [r, c];
  draw();
}

async function explainTile() {
  const [r, c] = sel;
  toast("Integrated Gradients…");
  const response = await fetch(`/api/sets/${SET}/layers/${index}/explain?row=${r}&col=${c}`);
  if (!response.ok) return toast("could not explain this tile");
  igImage.src = URL.createObjectURL(await response.blob());
  const [x0] = cellX(c), [y0] = cellY(r);
  Object.assign(igImage.style, { left: `${L.xs[c]}px`, top: `${L.ys[r]}px`, width: `${L.patch}px`, height: `${L.patch}px` });
  igImage.hidden = false;
  explained = [r, c];
  toast(`IG for ${response.headers.get("X-Target")} (delta ${response.headers.get("X-Delta")})`);
  return [x0, y0];
}

function tileAt(event) {
  const rect = viewer.getBoundingClientRect();
  const x = (event.clientX - rect.left - view.x) / view.s, y = (event.clientY - rect.top - view.y) / view.s;
  if (!L || x < 0 || y < 0 || x >= L.width || y >= L.height) return null;
  let r = 0, c = 0;
  while (r + 1 < L.rows && L.ys[r + 1] <= y) r++;
  while (c + 1 < L.cols && L.xs[c + 1] <= x) c++;
  return [r, c];
}

let drag = null;
viewer.addEventListener("pointerdown", (e) => {
  drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y, moved: false };
  viewer.setPointerCapture(e.pointerId);
  viewer.focus();
});
viewer.addEventListener("pointermove", (e) => {
  if (drag) {
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
    if (drag.moved) { view.x = drag.vx + dx; view.y = drag.vy + dy; applyView(); }
  }
  const t = tileAt(e);
  if (t) describe(document.getElementById("hover"), ...t);
});
viewer.addEventListener("pointerup", (e) => {
  const was = drag;
  drag = null;
  if (!was || was.moved) return;
  const t = tileAt(e);
  if (!t) return;
  const [r, c] = t;
  sel = [r, c];
  const cls = shownClass(r, c);
  // a click confirms the tile as shown; further clicks cycle Powder -> Object -> Error
  const next = L.labels[r][c] === null && cls >= 0 ? cls : ((cls < 0 ? -1 : cls) + 1) % NAMES.length;
  setLabels([{ row: r, col: c, cls: next, checked: true }]);
});
viewer.addEventListener("wheel", (e) => {
  e.preventDefault();
  const rect = viewer.getBoundingClientRect();
  const px = e.clientX - rect.left, py = e.clientY - rect.top;
  const factor = Math.exp(-e.deltaY * 0.0015);
  const s = Math.min(20, Math.max(0.1, view.s * factor));
  view.x = px - ((px - view.x) * s) / view.s;
  view.y = py - ((py - view.y) * s) / view.s;
  view.s = s;
  applyView();
}, { passive: false });

document.addEventListener("keydown", (e) => {
  if (!L || e.target.matches("input:not([type=radio]), textarea")) return;
  const [r, c] = sel;
  const key = e.key;
  let handled = true;
  if (key >= "1" && key <= String(NAMES.length)) {
    setLabels([{ row: r, col: c, cls: Number(key) - 1, checked: true }]);
    advance(1);
  } else if (key === "0") {
    setLabels([{ row: r, col: c, cls: null, checked: false }]);
  } else if (key === "Enter" || key === " ") {
    const cls = shownClass(r, c);
    if (cls >= 0) setLabels([{ row: r, col: c, cls, checked: true }]);
    advance(1);
  } else if (key === "ArrowLeft" || key === "ArrowRight") {
    const step = key === "ArrowRight" ? 1 : -1;
    if (e.shiftKey) { if (index + step >= 0 && index + step < COUNT) load(index + step, true); }
    else move(0, step);
  } else if (key === "ArrowUp") move(-1, 0);
  else if (key === "ArrowDown") move(1, 0);
  else if ((key === "z" && (e.ctrlKey || e.metaKey)) || key === "u") undo();
  else if (key === "a") confirmAll();
  else if (key === "e") explainTile();
  else if (key === "f") fit();
  else handled = false;
  if (handled) e.preventDefault();
});

function confirmAll() {
  const changes = [];
  for (let r = 0; r < L.rows; r++) for (let c = 0; c < L.cols; c++) {
    const cls = shownClass(r, c);
    if (!L.checked[r][c] && cls >= 0) changes.push({ row: r, col: c, cls, checked: true });
  }
  if (changes.length) setLabels(changes);
}

document.querySelectorAll('input[name="overlay"]').forEach((i) => i.addEventListener("change", draw));
document.getElementById("prev").onclick = () => index > 0 && load(index - 1, true);
document.getElementById("next").onclick = () => index + 1 < COUNT && load(index + 1, true);
document.getElementById("undo").onclick = undo;
document.getElementById("confirm-all").onclick = confirmAll;
document.getElementById("explain").onclick = explainTile;
document.getElementById("fit").onclick = fit;
window.addEventListener("resize", () => L && fit());
window.slmcnnFlush = () => queue;  // tests wait for every label to be stored
load(index, Boolean(asked));
viewer.focus();
