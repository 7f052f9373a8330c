"use strict";
// The in-room marking page: one examiner, one attempt. Every mark is an event with a client-made UUID,
// so a retry after a lost answer is stored once (the agent's journal is idempotent on event_id).

const $ = (id) => document.getElementById(id);
let state = null;
let clockOffsetMs = 0;

function uuid4() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = {};
  try { data = await response.json(); } catch (e) { data = {}; }
  if (!response.ok) {
    const error = new Error(data.error || tr("error_status", { status: response.status }));
    error.status = response.status;
    throw error;
  }
  return data;
}

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "status error" : "status";
}

async function load() {
  try {
    apply(await api("GET", "/api/state"));
  } catch (e) {
    if (e.status === 401) { showLogin(); return; }
    setStatus(tr("no_connection", { message: e.message }), true);
  }
}

function showLogin() {
  $("sheet").hidden = true;
  $("login").hidden = false;
}

function apply(newState) {
  state = newState;
  clockOffsetMs = Date.parse(state.server_time) - Date.now();
  $("login").hidden = true;
  $("sheet").hidden = false;
  $("candidate").textContent = state.candidate_number;
  $("station").textContent = state.station_id;
  $("examiner").textContent = state.examiner;
  $("task-title").textContent = state.checklist.title;
  $("start").hidden = Boolean(state.started_at);
  $("signed").hidden = !state.sheet.finalised;
  $("finalise").hidden = state.sheet.ever_finalised && state.sheet.finalised;
  renderItems();
  renderRating();
  renderScore();
  renderHistory();
  tick();
}

function renderItems() {
  const list = $("items");
  list.replaceChildren();
  for (const item of state.checklist.items) {
    const mark = state.sheet.marks[String(item.number)];
    const li = document.createElement("li");
    li.id = `item-${item.number}`;
    li.className = mark === true ? "yes" : mark === false ? "no" : "";
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = `${item.number}.`;
    const text = document.createElement("div");
    text.className = "text";
    const action = document.createElement("div");
    action.textContent = item.action;
    const how = document.createElement("div");
    how.className = "how";
    how.textContent = T[`presentation_${item.presentation}`] || "";
    text.append(action, how);
    if (item.done_criteria) {
      const c = document.createElement("div");
      c.className = "criteria";
      c.textContent = item.done_criteria;
      text.append(c);
    }
    const figures = (state.figures || {})[String(item.number)] || [];
    if (figures.length) {
      // Measured CPR figures (video/manikin): information only, the marks stay the examiner's.
      const f = document.createElement("div");
      f.className = "figures";
      f.textContent = figures.join(" · ");
      text.append(f);
    }
    if (item.critical) {
      const c = document.createElement("div");
      c.className = "critical";
      c.textContent = tr("critical");
      text.append(c);
    }
    li.append(num, text, markButton(item.number, true, mark), markButton(item.number, false, mark));
    list.append(li);
  }
}

function markButton(number, done, current) {
  const b = document.createElement("button");
  b.className = `mark ${done ? "yes" : "no"}`;
  b.textContent = tr(done ? "yes" : "no");
  b.dataset.item = String(number);
  b.dataset.done = String(done);
  b.setAttribute("aria-pressed", String(current === done));
  b.setAttribute("aria-label", tr("mark_label", { n: number, what: tr(done ? "done" : "not_done") }));
  b.addEventListener("click", () => {
    if (current === done) return;
    send({ kind: "mark", item: number, done }, tr("what_item", { n: number }));
  });
  return b;
}

function renderRating() {
  const scale = state.checklist.rating;
  $("rating-block").hidden = !scale;
  if (!scale) return;
  const box = $("rating");
  box.replaceChildren();
  for (let v = scale.min; v <= scale.max; v++) {
    const b = document.createElement("button");
    const label = scale.labels[String(v)];
    b.textContent = label ? `${v} — ${label}` : String(v);
    if (v === scale.borderline && !label) b.textContent += tr("borderline");
    b.dataset.rating = String(v);
    b.setAttribute("aria-pressed", String(state.sheet.rating === v));
    b.addEventListener("click", () => {
      if (state.sheet.rating !== v) send({ kind: "rating", rating: v }, tr("what_rating"));
    });
    box.append(b);
  }
}

function renderScore() {
  const s = state.score;
  const percent = s.percent.toLocaleString(tr("locale"), { maximumFractionDigits: 1 });
  const el = $("score");
  el.textContent = tr("score_line", { done: s.done, total: s.total, percent, verdict: tr(s.passed ? "passed" : "failed"),
    threshold: s.threshold_percent });
  el.className = s.passed ? "passed" : "failed";
}

function renderHistory() {
  const list = $("history");
  list.replaceChildren();
  for (const e of state.sheet.history) {
    const li = document.createElement("li");
    const when = new Date(e.wall_time).toLocaleTimeString(tr("locale"));
    const offset = e.recording_offset_s === null ? "" : tr("history_recording", { clock: formatClock(e.recording_offset_s) });
    let what = "";
    if (e.kind === "mark") what = tr("history_mark", { item: e.item, answer: tr(e.done ? "answer_yes" : "answer_no") });
    else if (e.kind === "rating") what = tr("history_rating", { rating: e.rating });
    else if (e.kind === "finalise") what = tr("history_finalise");
    else what = tr("history_reopen");
    li.textContent = `${when}${offset} — ${what}${e.reason ? tr("history_reason", { reason: e.reason }) : ""}`;
    list.append(li);
  }
}

function formatClock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function tick() {
  if (!state) return;
  const name = $("phase-name");
  const timer = $("phase-timer");
  if (!state.started_at) {
    name.textContent = tr("phase_waiting");
    timer.textContent = "--:--";
    return;
  }
  const limits = state.checklist.time_limits;
  const elapsed = (Date.now() + clockOffsetMs - Date.parse(state.started_at)) / 1000;
  $("phase").className = "";
  if (elapsed < limits.reading_s) {
    name.textContent = tr("phase_reading");
    timer.textContent = formatClock(limits.reading_s - elapsed);
  } else if (elapsed < limits.reading_s + limits.performing_s) {
    name.textContent = tr("phase_performing");
    timer.textContent = formatClock(limits.reading_s + limits.performing_s - elapsed);
  } else {
    name.textContent = tr("phase_over");
    timer.textContent = formatClock(elapsed - limits.reading_s - limits.performing_s);
    $("phase").className = "over";
  }
}

// After the sheet was signed, every change asks for a reason first.
async function send(fields, what) {
  if (state.sheet.ever_finalised) {
    const reason = await ask(tr("correction_title"), tr("correction_text", { what }), true);
    if (reason === null) return;
    fields.reason = reason;
  }
  await post({ event_id: uuid4(), ...fields });
}

async function post(event) {
  setStatus(tr("saving"), false);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const answer = await api("POST", "/api/events", event);
      apply(answer.state);
      setStatus(tr("saved"), false);
      return true;
    } catch (e) {
      if (e.status === 401) { showLogin(); return false; }
      if (e.status) { setStatus(tr("not_saved", { message: e.message }), true); return false; }
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));  // network: retry the same event_id
    }
  }
  setStatus(tr("offline_not_saved"), true);
  return false;
}

let modalResolve = null;
function ask(title, text, needReason) {
  $("modal-title").textContent = title;
  $("modal-text").textContent = text;
  $("modal-error").textContent = "";
  const reason = $("modal-reason");
  reason.hidden = !needReason;
  reason.value = "";
  $("modal").hidden = false;
  (needReason ? reason : $("modal-ok")).focus();
  return new Promise((resolve) => {
    modalResolve = (ok) => {
      if (ok && needReason && !reason.value.trim()) {
        $("modal-error").textContent = tr("reason_required");
        return;
      }
      $("modal").hidden = true;
      modalResolve = null;
      resolve(ok ? (needReason ? reason.value.trim() : true) : null);
    };
  });
}
$("modal-ok").addEventListener("click", () => modalResolve && modalResolve(true));
$("modal-cancel").addEventListener("click", () => modalResolve && modalResolve(false));

$("finalise").addEventListener("click", async () => {
  const s = state.score;
  const unmarked = s.total - Object.keys(state.sheet.marks).length;
  const note = unmarked > 0 ? tr("unmarked_note", { n: unmarked }) : "";
  const ok = await ask(tr("finalise_title"), tr("finalise_text", { done: s.done, total: s.total, note }), false);
  if (ok) await post({ event_id: uuid4(), kind: "finalise" });
});

$("start").addEventListener("click", async () => {
  try { apply(await api("POST", "/api/start")); } catch (e) { setStatus(e.message, true); }
});

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    await api("POST", "/api/login", { examiner: $("login-examiner").value.trim(), pin: $("login-pin").value });
    $("login-pin").value = "";
    await load();
  } catch (e) {
    $("login-error").textContent = e.message;
  }
});

setInterval(tick, 500);
load();
// Marks made in the observation room reach the journal through the agent's pull (mark_pull.py): re-read
// the sheet now and then, but not while the examiner is in a dialog.
setInterval(() => { if (state && $("modal").hidden && !$("sheet").hidden) load(); }, 3000);
