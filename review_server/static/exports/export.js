// The export request page: the request, its attempts, its packages; a running package's progress bar polls
// GET /api/exports/{id} until the package is written, then shows its download link. Russian first.
"use strict";

const TEXT = {
  ru: {
    title: "Запрос на выгрузку", number_req: "Номер запроса", date: "Дата запроса", requester: "Кто запрашивает",
    subject: "Что запрошено", created_by: "Записал", attempts: "Выбранные попытки", packages: "Пакеты",
    attempt: "Попытка", number: "Номер аккредитуемого", day: "Дата", station: "Станция", task: "Задание",
    package: "Пакет", created: "Создан", state: "Состояние", progress: "Ход выгрузки", action: "Действие",
    new_export: "Сформировать пакет", resume: "Продолжить", download: "Скачать", none: "Нет пакетов",
    no_attempts: "Попытки не выбраны", started: "Выгрузка начата", other: "English", other_lang: "en",
    files: "файлов", of: "из",
    status: { running: "выгружается", done: "готов", failed: "ошибка", interrupted: "прервана",
              missing: "файла нет в папке выгрузок" },
  },
  en: {
    title: "Export request", number_req: "Request number", date: "Request date", requester: "Requested by",
    subject: "What is asked for", created_by: "Recorded by", attempts: "Selected attempts", packages: "Packages",
    attempt: "Attempt", number: "Accreditation number", day: "Date", station: "Station", task: "Task",
    package: "Package", created: "Created", state: "State", progress: "Progress", action: "Action",
    new_export: "Make a package", resume: "Resume", download: "Download", none: "No packages",
    no_attempts: "No attempts selected", started: "Export started", other: "Русский", other_lang: "ru",
    files: "files", of: "of",
    status: { running: "running", done: "done", failed: "failed", interrupted: "interrupted",
              missing: "file gone from the exports folder" },
  },
};
const LANG = document.documentElement.lang === "en" ? "en" : "ru";
const T = TEXT[LANG];
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
  tr.querySelector(".state").textContent = T.status[pkg.status] || pkg.status;
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

function translate() {
  document.getElementById("attempts-title").textContent = T.attempts;
  document.getElementById("packages-title").textContent = T.packages;
  document.getElementById("new-export").textContent = T.new_export;
  for (const th of document.querySelectorAll("th[data-t]")) th.textContent = T[th.dataset.t];
  const sw = document.getElementById("lang-switch");
  sw.textContent = T.other;
  sw.href = `?lang=${T.other_lang}`;
}

async function main() {
  translate();
  const button = document.getElementById("new-export");
  button.addEventListener("click", () => start(`/api/export-requests/${REQUEST_ID}/exports?background=1`, button));
  try {
    render(await api("GET", `/api/export-requests/${REQUEST_ID}`));
  } catch (err) {
    showError(err.message);
  }
}

main();
