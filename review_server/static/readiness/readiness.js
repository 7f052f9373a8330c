// The readiness page (templates/readiness.html): a button starts a run for its station or for all; the page then
// polls the run (GET /api/readiness/runs/{id}) and shows each station's progress, and reloads when every check is
// finished, so that the server-rendered green/red tables appear. A run already going on when the page opens (another
// tab, a reload) is followed the same way.
"use strict";

const T = JSON.parse(document.body.dataset.texts); // the server's text catalogue (i18n/), section "readiness"
const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
const POLL_MS = 1000;
const ACTIVE = new Set(["requested", "claimed", "recording", "uploading"]);

function showError(message) {
  const p = document.getElementById("error");
  p.textContent = message ? `${T.error}: ${message}` : "";
  p.hidden = !message;
}

function setStatus(text) {
  const s = document.getElementById("status");
  if (s) s.textContent = text;
}

function setBusy(busy) {
  for (const b of document.querySelectorAll("button.run")) b.disabled = busy;
}

async function api(method, url, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = meta("csrf-token");
    headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(url, { method, headers, credentials: "same-origin", cache: "no-store",
                                  body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(`${data.error || resp.status}${data.where ? ` (${data.where})` : ""}`);
  return data;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function follow(runId) {
  for (;;) {
    const run = await api("GET", `/api/readiness/runs/${runId}`);
    let done = 0;
    for (const c of run.checks) {
      if (!ACTIVE.has(c.state)) done += 1;
      const section = document.querySelector(`section.station[data-station="${CSS.escape(c.station)}"]`);
      if (!section) continue;
      const state = T[`state.${c.state}`] || c.state;
      section.querySelector(".progress").textContent =
        ACTIVE.has(c.state) ? state : `${c.ok ? "✓ " + T.ready : "✗ " + T.not_ready} (${state})`;
    }
    setStatus(T.progress.replace("{done}", done).replace("{total}", run.checks.length));
    if (run.finished) return;
    await sleep(POLL_MS);
  }
}

async function start(stations) {
  showError("");
  setBusy(true);
  setStatus(T.starting);
  try {
    const run = await api("POST", "/api/readiness/runs", { stations });
    await follow(run.id);
    window.location.reload();
  } catch (err) {
    showError(err.message);
    setStatus("");
    setBusy(false);
  }
}

for (const button of document.querySelectorAll("button.run")) {
  button.addEventListener("click", () => {
    const which = button.dataset.stations;
    start(which === "all" ? "all" : [which]);
  });
}

const running = meta("readiness-running");
if (running) {
  setBusy(true);
  follow(running).then(() => window.location.reload(), (err) => { showError(err.message); setBusy(false); });
}
