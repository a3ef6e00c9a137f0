// The start page: the builds at a glance (grades, open alerts, live), the photo folders to label,
// export, fine-tune with live progress. Polls every 5 s, so a build being monitored moves on the page.
"use strict";

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  const text = s < 90 ? `${Math.round(s)} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : s < 172800 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86400)} days ago`;
  return `${new Date(seconds * 1000).toLocaleString()} (${text})`;
}

function gradeBadges(grades) {
  const shown = ["critical", "minor", "ok"].filter((g) => grades[g]);
  return shown.length ? shown.map((g) => el("span", { class: `badge g-${g}`, title: `${grades[g]} layer(s) ${g}` }, `${grades[g]} ${g}`)) : ["not graded"];
}

function buildRow(s) {
  const name = el("td", {}, el("a", { href: `/sets/${s.id}` }, s.build));  // its machine has a column
  if (s.live) name.append(" ", el("small", { class: "live", title: "a monitor is writing this build now" }, "● live"));
  const alerts = el("td", {}, s.alerts_open ? el("a", { href: `/sets/${s.id}#alerts`, class: "bad" }, `${s.alerts_open} to review`) : "none");
  return el("tr", { "data-set": s.id, class: s.live ? "is-live" : "" },
    name, el("td", {}, s.machine || "–"), el("td", {}, s.layers), el("td", { class: "grades" }, ...gradeBadges(s.grades)),
    alerts, el("td", {}, ago(s.last_layer)), el("td", {}, s.source));
}

async function loadSets() {
  const sets = await api("GET", "/api/sets");
  const builds = sets.filter((s) => s.kind === "build");
  document.querySelector("#builds tbody").replaceChildren(...(builds.length ? builds.map(buildRow)
    : [el("tr", {}, el("td", { colspan: 7 }, "no build yet: start the app with --db of a monitor's database"))]));
  const folders = await api("GET", "/api/folders");
  document.querySelector("#folders tbody").replaceChildren(...(folders.length ? folders.map((f) =>
    el("tr", { "data-folder": f.folder }, el("td", {}, f.folder), el("td", {}, f.photos),
      el("td", {}, el("button", { class: "open", onclick: () => openFolder(f.folder) }, "Open to label"))))
    : [el("tr", {}, el("td", { colspan: 3 }, "no photo folder: start the app with --data FOLDER"))]));
  document.body.dataset.ready = "1";
}

async function openFolder(folder) {
  const opened = await api("POST", "/api/sets", { folder });
  location.href = `/sets/${opened.id}`;
}

document.getElementById("open-folder").addEventListener("submit", (event) => {
  event.preventDefault();
  openFolder(document.getElementById("folder").value);
});

document.getElementById("export").addEventListener("click", async () => {
  const done = await api("POST", "/api/export", {});
  document.getElementById("export-result").textContent =
    `${done.tiles} tiles of ${done.layers} layers → ${done.folder} (${Object.entries(done.counts).map(([k, v]) => `${k} ${v}`).join(", ")})`;
});

function comparisonTable(c) {
  // per class: recall of old and new, then false alarms (Error on tiles labelled sound); the counts they rest on
  const row = (label, old, neu, n) => el("tr", {}, el("th", {}, label), el("td", {}, old), el("td", {}, neu), el("td", {}, n));
  const show = (v) => (v === null || v === undefined ? "–" : pct(v));
  const { old, new: neu } = c.models;
  return el("table", { class: "list", id: "comparison" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "old model"), el("th", {}, "new model"), el("th", {}, "held-out tiles"))),
    el("tbody", {},
      ...Object.keys(c.counts).map((k) => row(`${k} recall`, show(old.recall[k]), show(neu.recall[k]), c.counts[k])),
      row("false alarms (Error on sound tiles)", old.false_alarms, neu.false_alarms, old.sound_tiles),
      row("tile accuracy", show(old.accuracy), show(neu.accuracy), c.tiles)));
}

function showFineTune(s) {
  const bar = document.getElementById("finetune-progress");
  bar.max = s.epochs || 1;
  bar.value = s.epoch;
  let text = s.state;
  if (s.state === "running") text = `epoch ${s.epoch} of ${s.epochs}, ${s.seconds.toFixed(0)} s`;
  if (s.state === "done") text = `done in ${s.seconds.toFixed(0)} s`;
  if (s.state === "failed") text = `failed: ${s.message}`;
  if (s.state === "refused") text = `not started: ${s.message}`;
  const status = document.getElementById("finetune-text");
  status.textContent = text;
  status.className = s.state === "refused" || s.state === "failed" ? "bad" : "";
  const c = s.comparison;
  const box = document.getElementById("finetune-compare");
  if (c && c.models) {
    box.replaceChildren(
      el("p", {}, `on ${c.layers} held-out labelled layer(s), ${c.tiles} tiles, never seen by the fine-tune:`),
      comparisonTable(c), ...c.warnings.map((w) => el("p", { class: "warning" }, `⚠ ${w}`)));
  } else {
    box.replaceChildren(s.state === "done" && s.message ? el("p", {}, s.message) : "");
  }
  document.getElementById("make-current").hidden = s.state !== "done";
  document.getElementById("finetune-log").textContent = s.log.join("\n");
  return s.state === "running";
}

async function followFineTune() {
  const running = showFineTune(await api("GET", "/api/finetune"));
  if (running) setTimeout(followFineTune, 1000);
}

document.getElementById("finetune-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const epochs = Number(document.getElementById("epochs").value);
  const lr = Number(document.getElementById("lr").value);
  try {
    showFineTune(await api("POST", "/api/finetune", { epochs, lr }));
  } finally {
    setTimeout(followFineTune, 500);  // a refusal is shown from the state, with its reason
  }
});

document.getElementById("make-current").addEventListener("click", async () => {
  const done = await api("POST", "/api/finetune/current", {});
  document.getElementById("current-result").textContent = `now in use; monitors: ${done.monitor}` + (done.camera ? `; ${done.camera}` : "");
  document.getElementById("model-name").textContent = done.model.split("/").pop();
});

loadSets();
setInterval(() => loadSets().catch(() => {}), 5000);
followFineTune();
