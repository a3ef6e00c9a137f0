// The start page: sets, opening a folder, export, fine-tune with live progress.
"use strict";

async function loadSets() {
  const sets = await api("GET", "/api/sets");
  const body = document.querySelector("#sets tbody");
  body.replaceChildren(...sets.map((s) =>
    el("tr", { "data-set": s.id },
      el("td", {}, el("a", { href: `/sets/${s.id}` }, s.name)), el("td", {}, s.kind), el("td", {}, s.layers),
      el("td", {}, s.labelled), el("td", {}, s.source || ""))));
}

document.getElementById("open-folder").addEventListener("submit", async (event) => {
  event.preventDefault();
  const opened = await api("POST", "/api/sets", { folder: document.getElementById("folder").value });
  location.href = `/sets/${opened.id}`;
});

document.getElementById("export").addEventListener("click", async () => {
  const done = await api("POST", "/api/export", {});
  document.getElementById("export-result").textContent =
    `${done.tiles} tiles of ${done.layers} layers → ${done.folder} (${Object.entries(done.counts).map(([k, v]) => `${k} ${v}`).join(", ")})`;
});

function showFineTune(s) {
  const bar = document.getElementById("finetune-progress");
  bar.max = s.epochs || 1;
  bar.value = s.epoch;
  let text = s.state;
  if (s.state === "running") text = `epoch ${s.epoch} of ${s.epochs}, ${s.seconds.toFixed(0)} s`;
  if (s.state === "done") text = `done in ${s.seconds.toFixed(0)} s`;
  if (s.state === "failed") text = `failed: ${s.message}`;
  document.getElementById("finetune-text").textContent = text;
  const c = s.comparison;
  document.getElementById("finetune-compare").textContent = c && c.tiles !== undefined
    ? `held-out labelled layers (${c.layers} layers, ${c.tiles} tiles): old ${pct(c.old)} → new ${pct(c.new)} tile accuracy`
    : (s.message || "");
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
  showFineTune(await api("POST", "/api/finetune", { epochs, lr }));
  setTimeout(followFineTune, 500);
});

document.getElementById("make-current").addEventListener("click", async () => {
  const done = await api("POST", "/api/finetune/current", {});
  document.getElementById("current-result").textContent = `now in use; monitors: ${done.monitor}` + (done.camera ? `; ${done.camera}` : "");
  document.getElementById("model-name").textContent = done.model.split("/").pop();
});

loadSets();
followFineTune();
