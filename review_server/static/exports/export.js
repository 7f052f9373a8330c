// The export request page: the request, its attempts, its packages; a running package's progress bar polls
// GET /api/exports/{id} until the package is written, then shows its download link. Russian first; the page
// (templates/export_request.html) is laid out on the server, the rows are filled here.
"use strict";

const LANG = document.documentElement.lang === "en" ? "en" : "ru";
const T = JSON.parse(document.body.dataset.texts); // the server's text catalogue (i18n/), section "export"
const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
const REQUEST_ID = meta("export-request-id");
const POLL_MS = 1000;
const polling = new Map(); // package id -> timer

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function showError(message) {
  const p = document.getElementById("error");
  p.textContent = message;
  p.hidden = !message;
}

async function api(method, url) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = meta("csrf-token");
  const resp = await fetch(url, { method, headers, credentials: "same-origin", cache: "no-store" });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(`${body.error || resp.status}${body.where ? ` (${body.where})` : ""}`);
  return body;
}

const mb = (n) => (n / 1e6).toFixed(1);

function fillRow(tr, pkg) {
  const p = pkg.progress || { percent: 0, bytes_done: 0, bytes_total: 0, files_done: 0, files_total: 0 };
  tr.dataset.status = pkg.status;
  tr.querySelector(".state").textContent = T[`status.${pkg.status}`] || pkg.status;
  const bar = tr.querySelector("progress");
  bar.value = p.percent;
  bar.textContent = `${p.percent} %`;
  tr.querySelector(".figures").textContent =
    `${p.percent.toFixed(0)} % · ${mb(p.bytes_done)} ${T.of} ${mb(p.bytes_total)} MB · ` +
    `${p.files_done} ${T.of} ${p.files_total} ${T.files}` + (pkg.error ? ` · ${pkg.error}` : "");
  const cell = tr.querySelector(".action");
  cell.replaceChildren();
  if (pkg.status === "done") {
    cell.append(el("a", { class: "download", href: pkg.url, download: pkg.file_name, text: T.download }));
    cell.append(el("span", { class: "figures", text: `SHA-256 ${pkg.sha256}` }));
  } else if (pkg.status === "interrupted" || pkg.status === "failed") {
    const b = el("button", { type: "button", class: "resume", text: T.resume });
    b.addEventListener("click", () => start(`/api/exports/${pkg.id}/resume?background=1`, b));
    cell.append(b);
  }
  if (pkg.status === "running") poll(pkg.id); else stopPolling(pkg.id);
}

function packageRow(pkg) {
  let tr = document.querySelector(`tr[data-package-id="${pkg.id}"]`);
  if (!tr) {
    const cells = [
      el("td", { text: `№ ${pkg.id}` }),
      el("td", { text: new Date(pkg.created_at).toLocaleString(LANG === "en" ? "en-GB" : "ru-RU") }),
      el("td", { class: "state" }),
      el("td", {}, el("progress", { max: "100", value: "0" }), el("span", { class: "figures" })),
      el("td", { class: "action" }),
    ];
    tr = el("tr", { "data-package-id": String(pkg.id) }, ...cells);
    const body = document.querySelector("#packages tbody");
    body.querySelector(".empty")?.remove();
    body.append(tr);
  }
  fillRow(tr, pkg);
}

function stopPolling(id) {
  clearTimeout(polling.get(id));
  polling.delete(id);
}

function poll(id) {
  if (polling.has(id)) return;
  const tick = async () => {
    try {
      const pkg = await api("GET", `/api/exports/${id}`);
      polling.delete(id);
      packageRow(pkg);
    } catch (err) {
      showError(err.message);
      polling.set(id, setTimeout(tick, POLL_MS * 3));
    }
  };
  polling.set(id, setTimeout(tick, POLL_MS));
}

async function start(url, button) {
  button.disabled = true;
  showError("");
  try {
    const pkg = await api("POST", url);
    document.getElementById("status").textContent = `${T.started}: № ${pkg.id}`;
    packageRow(pkg);
  } catch (err) {
    showError(err.message);
  } finally {
    button.disabled = false;
  }
}

function render(req) {
  document.title = `${T.title} №${req.number}`;
  document.getElementById("title").textContent = `${T.title} №${req.number}`;
  const dl = document.getElementById("request-fields");
  dl.replaceChildren();
  const fields = [[T.number_req, req.number], [T.date, req.date], [T.requester, req.requester],
                  [T.subject, req.subject || "—"], [T.created_by, `${req.created_by}, ${req.created_at}`]];
  for (const [k, v] of fields) dl.append(el("dt", { text: k }), el("dd", { text: v }));
  const attempts = document.querySelector("#attempts tbody");
  attempts.replaceChildren();
  for (const a of req.attempt_rows) {
    const link = el("a", { href: `/attempts/${encodeURIComponent(a.attempt_id)}`, text: a.attempt_id });
    attempts.append(el("tr", {}, el("td", {}, link), el("td", { text: a.accreditation_number || "—" }),
      el("td", { text: a.exam_day || "—" }), el("td", { text: a.station || "—" }), el("td", { text: a.task || "—" })));
  }
  if (!req.attempt_rows.length) attempts.append(el("tr", {}, el("td", { colspan: "5", text: T.no_attempts })));
  const packages = document.querySelector("#packages tbody");
  packages.replaceChildren();
  if (!req.packages.length) packages.append(el("tr", { class: "empty" }, el("td", { colspan: "5", text: T.none })));
  for (const pkg of req.packages) packageRow(pkg);
}

async function main() {
  const button = document.getElementById("new-export");
  button.addEventListener("click", () => start(`/api/export-requests/${REQUEST_ID}/exports?background=1`, button));
  try {
    render(await api("GET", `/api/export-requests/${REQUEST_ID}`));
  } catch (err) {
    showError(err.message);
  }
}

main();
