// Shared by every page: the token for state-changing requests, JSON helpers, the labeller's name.
"use strict";
const TOKEN = document.querySelector('meta[name="slmcnn-token"]').content;

function who() {
  const field = document.getElementById("who");
  return (field && field.value) || SLMCNN.user || "anonymous";
}

async function api(method, url, body) {
  const options = { method, headers: { "X-Slmcnn-Token": TOKEN } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify({ who: who(), ...body });
  }
  const response = await fetch(url, options);
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const message = (data && data.error) || response.statusText;
    toast(message);
    throw new Error(message);
  }
  return data;
}

function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove("show"), 2500);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") node.onclick = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%");

document.addEventListener("DOMContentLoaded", () => {
  const field = document.getElementById("who");
  if (!field) return;
  field.value = localStorage.getItem("slmcnn-who") || SLMCNN.user || "";
  field.addEventListener("change", () => localStorage.setItem("slmcnn-who", field.value));
});
