// Camera set-up: click the bed's four corners on a raw frame, pick good layers, write camera.json.
"use strict";
const BOX = document.getElementById("camera");
const SET = BOX.dataset.set, COUNT = Number(BOX.dataset.count);
const raw = document.getElementById("raw"), outline = document.getElementById("outline");
let corners = [], scale = 1, dragging = -1;

function frameIndex() { return Number(document.getElementById("frame").value); }

function draw() {
  outline.setAttribute("viewBox", `0 0 ${raw.clientWidth} ${raw.clientHeight}`);
  outline.style.width = raw.clientWidth + "px";
  outline.style.height = raw.clientHeight + "px";
  const k = raw.clientWidth / raw.naturalWidth * scale;  // shown px per frame px
  const pts = corners.map(([x, y]) => [x * k, y * k]);
  outline.replaceChildren();
  const NS = "http://www.w3.org/2000/svg";
  if (pts.length > 1) {
    const poly = document.createElementNS(NS, pts.length === 4 ? "polygon" : "polyline");
    poly.setAttribute("points", pts.map((p) => p.join(",")).join(" "));
    poly.setAttribute("class", "bed-outline");
    outline.append(poly);
  }
  pts.forEach(([x, y], i) => {
    const dot = document.createElementNS(NS, "circle");
    Object.entries({ cx: x, cy: y, r: 7, class: "corner", "data-i": i }).forEach(([a, v]) => dot.setAttribute(a, v));
    outline.append(dot);
  });
  document.getElementById("corner-text").textContent = corners.map((p) => p.map((v) => v.toFixed(0)).join(",")).join("  ");
  document.getElementById("write").disabled = corners.length !== 4;
}

function framePoint(event) {
  const rect = raw.getBoundingClientRect();
  const k = raw.clientWidth / raw.naturalWidth * scale;
  return [(event.clientX - rect.left) / k, (event.clientY - rect.top) / k];
}

outline.addEventListener("mousedown", (event) => {
  const i = event.target.dataset ? event.target.dataset.i : undefined;
  if (i !== undefined) { dragging = Number(i); return; }
  if (corners.length < 4) { corners.push(framePoint(event)); draw(); }
});
outline.addEventListener("mousemove", (event) => {
  if (dragging >= 0) { corners[dragging] = framePoint(event); draw(); }
});
window.addEventListener("mouseup", () => { dragging = -1; });

function showDoubts(doubts) {
  document.getElementById("doubts").replaceChildren(...(doubts || []).map((d) => el("li", {}, d)));
}

async function loadFrame() {
  const response = await fetch(`/api/sets/${SET}/layers/${frameIndex()}/raw`);
  scale = Number(response.headers.get("X-Scale")) || 1;
  raw.src = URL.createObjectURL(await response.blob());
}

async function detect() {
  const found = await api("GET", `/api/sets/${SET}/camera?index=${frameIndex()}`);
  corners = found.corners || [];
  showDoubts(found.doubts);
  draw();
}

async function write() {
  const good = [...document.querySelectorAll("#good input:checked")].map((box) => Number(box.value));
  const body = {
    corners, good, index: frameIndex(),
    size: Number(document.getElementById("size").value),
    error_threshold: Number(document.getElementById("threshold").value),
    replace: document.getElementById("replace").checked,
  };
  document.getElementById("write").disabled = true;
  document.getElementById("written").textContent = good.length ? "learning the camera profile..." : "";
  try {
    const done = await api("POST", `/api/sets/${SET}/camera`, body);
    showDoubts(done.doubts);
    document.getElementById("written").textContent =
      `wrote ${done.written.join(" and ")}\n${done.profile || "geometry only"}\nmonitors: ${done.monitor}`;
  } catch (error) {
    document.getElementById("written").textContent = "";
  } finally {
    draw();
  }
}

async function start() {
  const set = await api("GET", `/api/sets/${SET}`);
  const select = document.getElementById("frame");
  set.layer_list.forEach((layer) => select.append(el("option", { value: layer.index }, layer.file)));
  // each frame as a small picture, loaded as it scrolls into view, to tell good layers at a glance
  const good = document.getElementById("good");
  good.classList.add("thumbs");
  good.replaceChildren(
    ...set.layer_list.map((layer) =>
      el("label", { class: "thumb", title: layer.file }, el("input", { type: "checkbox", value: layer.index }),
        el("img", { src: `/api/sets/${SET}/layers/${layer.index}/raw?side=160`, loading: "lazy", alt: layer.file }),
        layer.file)));
  select.addEventListener("change", async () => { await loadFrame(); });
  document.getElementById("detect").onclick = detect;
  document.getElementById("clear").onclick = () => { corners = []; showDoubts([]); draw(); };
  document.getElementById("write").onclick = write;
  raw.addEventListener("load", draw);
  window.addEventListener("resize", draw);
  await loadFrame();
  await detect();
  BOX.dataset.ready = "1";
}

start();
