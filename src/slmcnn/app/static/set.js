// A build (or photo set): fractions per layer, where errors recur, the alert queue, the layers.
// Polls every 2 s, so a build that a monitor is writing grows on the page.
"use strict";
const SET = document.getElementById("set").dataset.set;
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function drawChart(layers) {
  const chart = document.getElementById("chart");
  const W = 600, H = 220, L = 40, B = 20, T = 8;
  const done = layers.filter((l) => l.error !== undefined);
  chart.replaceChildren();
  if (!done.length) return;
  const top = Math.max(0.05, ...done.map((l) => Math.max(l.error, l.object)));
  const x = (i) => L + (done.length === 1 ? 0 : (i * (W - L - 10)) / (done.length - 1));
  const y = (v) => T + (1 - v / top) * (H - T - B);
  for (const v of [0, top / 2, top]) {
    chart.append(svg("line", { x1: L, x2: W - 10, y1: y(v), y2: y(v), stroke: "#ddd" }));
    const label = svg("text", { x: 2, y: y(v) + 4, "font-size": 10, fill: "#666" });
    label.textContent = (100 * v).toFixed(1) + "%";
    chart.append(label);
  }
  for (const [key, colour] of [["object", "#26d"], ["error", "#d22"]]) {
    const points = done.map((l, i) => `${x(i)},${y(l[key])}`).join(" ");
    chart.append(svg("polyline", { points, fill: "none", stroke: colour, "stroke-width": 1.5 }));
  }
  done.forEach((l, i) => {
    const dot = svg("circle", { cx: x(i), cy: y(l.error), r: 3, fill: "#d22", class: "dot" });
    const title = svg("title", {});
    title.textContent = `layer ${l.number}: error ${pct(l.error)}, object ${pct(l.object)}`;
    dot.append(title);
    dot.addEventListener("click", () => (location.href = `/sets/${SET}/layers/${l.index}`));
    chart.append(dot);
  });
}

function drawHeat(heat) {
  const box = document.getElementById("heat");
  if (!heat.length) return box.replaceChildren();
  box.style.gridTemplateColumns = `repeat(${heat[0].length}, 1fr)`;
  box.replaceChildren(...heat.flat().map((v) => {
    const cell = el("div", { title: pct(v) }, v > 0 ? Math.round(100 * v) : "");
    const a = Math.min(1, v * 1.5);  // white to red
    cell.style.background = `rgb(${255 - 35 * a}, ${255 - 225 * a}, ${255 - 225 * a})`;
    return cell;
  }));
}

async function review(id, verdict, instead) {
  const done = await api("POST", `/api/sets/${SET}/alerts/${id}`, { verdict, instead });
  const taught = done.lesson ? (verdict === "false_alarm" ? "; the fine maps take its look as sound" : "; the fine maps take its look as a defect") : "";
  toast((verdict === "false_alarm" ? `false alarm: ${done.labelled} tile(s) labelled ${done.instead || ""}` : "alert confirmed") + taught);
  refresh();
}

async function undo(id) {
  const done = await api("DELETE", `/api/sets/${SET}/alerts/${id}`, {});
  toast(`undone: the alert is open again${done.restored ? `, ${done.restored} label(s) as before` : ""}`);
  refresh();
}

function regionText(regions) {
  const named = regions.filter((r) => r.type);  // the fine map's defects, when the monitor drew one
  const shown = named.length ? named : regions;
  return shown.slice(0, 2).map((r) => r.type ? r.text : `rows ${r.rows[0]}-${r.rows[1]} cols ${r.cols[0]}-${r.cols[1]} (${r.tiles})`).join("; ")
    + (shown.length > 2 ? ` +${shown.length - 2}` : "");
}

function drawAlerts(alerts) {
  const open = alerts.filter((a) => !a.verdict).length;
  document.getElementById("alert-count").textContent = `${open} open of ${alerts.length}`;
  // rows stay where they are (by layer): a verdict changes its row, never the order under the pointer
  const rows = [...alerts].sort((a, b) => a.layer - b.layer || a.id - b.id);
  document.querySelector("#alerts tbody").replaceChildren(...rows.map((a) => {
    const instead = el("select", { class: "instead", title: "what the Error tiles really are" },
      el("option", { value: "0" }, "as Powder"), el("option", { value: "1" }, "as Object"));
    const actions = a.verdict
      ? [el("button", { class: "undo", onclick: () => undo(a.id) }, "Undo")]
      : [el("button", { class: "ok confirm", onclick: () => review(a.id, "confirmed") }, "Confirmed"), " ",
         el("button", { class: "bad false-alarm", onclick: () => review(a.id, "false_alarm", Number(instead.value)) }, "False alarm"),
         " ", instead];
    return el("tr", { "data-alert": a.id, class: `grade-${a.grade}` },
      el("td", {}, a.index !== null ? el("a", { href: `/sets/${SET}/layers/${a.index}` }, a.layer) : a.layer),
      el("td", {}, el("span", { class: `badge g-${a.grade}` }, a.grade)),
      el("td", {}, a.rule), el("td", {}, regionText(a.regions || [])),
      el("td", { class: `verdict-${a.verdict}` }, a.verdict ? `${a.verdict.replace("_", " ")} (${a.who})` : "open"),
      el("td", {}, ...actions));
  }));
}

function drawStrip(layers) {
  const strip = document.getElementById("strip");
  const graded = layers.filter((l) => l.grade !== undefined);
  strip.replaceChildren(...graded.map((l) => {
    const cell = el("a", { class: `g-${l.grade || "ungraded"}`, href: `/sets/${SET}/layers/${l.index}`,
      title: `layer ${l.number}: ${l.grade || "not graded"}` });
    return cell;
  }));
  const count = (g) => graded.filter((l) => l.grade === g).length;
  document.getElementById("strip-count").textContent =
    graded.length ? `${count("critical")} critical, ${count("minor")} minor, ${count("ok")} ok` : "";
}

function drawRegions(regions) {
  document.querySelector("#regions tbody").replaceChildren(...(regions.length ? regions.map((r) =>
    el("tr", {}, el("td", {}, `${r.rows[0]}-${r.rows[1]}`), el("td", {}, `${r.cols[0]}-${r.cols[1]}`),
      el("td", {}, r.tiles), el("td", {}, `${r.layers.length}: ${r.spans}`)))
    : [el("tr", {}, el("td", { colspan: 4 }, "no tile was Error in two layers"))]));
}

function drawLayers(layers) {
  document.querySelector("#layers tbody").replaceChildren(...layers.map((l) =>
    el("tr", {},
      el("td", {}, el("a", { href: `/sets/${SET}/layers/${l.index}` }, l.number ?? l.index)), el("td", {}, l.file),
      el("td", {}, pct(l.powder)), el("td", {}, pct(l.object)), el("td", {}, pct(l.error)), el("td", {}, l.labelled))));
}

async function propose() {
  const count = Number(document.getElementById("propose-count").value) || 20;
  const button = document.getElementById("propose");
  button.disabled = true;
  try {
    const tiles = await api("GET", `/api/sets/${SET}/proposals?count=${count}`);
    document.querySelector("#proposals tbody").replaceChildren(...tiles.map((t) =>
      el("tr", {},
        el("td", {}, el("a", { href: `/sets/${SET}/layers/${t.index}?tile=${t.row},${t.col}`, class: "propose-link" }, t.layer)),
        el("td", {}, `${t.row}, ${t.col}`), el("td", {}, t.predicted), el("td", {}, t.why))));
    document.getElementById("proposal-count").textContent = `${tiles.length} tile(s)`;
  } finally {
    button.disabled = false;
  }
}
document.getElementById("propose").addEventListener("click", propose);

let shown = "";
async function refresh() {
  const doc = await api("GET", `/api/sets/${SET}`);
  document.getElementById("live").hidden = !doc.live;  // only while a monitor is writing it
  const key = JSON.stringify(doc);
  if (key !== shown) {
    shown = key;
    drawChart(doc.layer_list);
    drawStrip(doc.layer_list);
    drawHeat(doc.recurrence);
    drawRegions(doc.regions);
    drawAlerts(doc.alerts);
    drawLayers(doc.layer_list);
  }
  document.body.dataset.ready = "1";
}

refresh();
setInterval(() => refresh().catch(() => {}), 2000);
