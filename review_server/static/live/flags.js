"use strict";
// Flags in the observation room (review_server/flags.py, routes/flags.py): an observer or examiner flags what a
// station's live picture shows now: a prompt, an outsider in the room, a breach of order, a technical problem, or
// their own words. The moment sent is the picture's own time (the player's currentTime is the station's recording
// clock: media/live.py), taken when the control is pressed, not when the flag reaches the server. On each tile a
// "flag" button opens the kinds; in the enlarged view they are always shown, with Shift+1..5. The author's own
// flags of the day are listed, each withdrawable with a reason (never deleted).
// Uses live.js's globals: tiles, current, T, fmt, metaOf.
(() => {
  const KINDS = ["prompt", "outsider", "disorder", "technical", "other"];
  const role = metaOf("osce-role");
  if (!["observer", "examiner", "admin"].includes(role)) return;   // roles.py "flags.make"
  const status = document.getElementById("flag-status");
  const other = document.getElementById("flag-other");
  const otherText = document.getElementById("flag-other-text");
  const mine = document.getElementById("flag-mine");
  const bar = document.getElementById("flag-bar");
  let pendingOther = null;   // the moment taken when "other…" was pressed, until its words are given
  let statusTimer = null;

  function say(text, error = false) {
    status.textContent = text;
    status.classList.toggle("error", error);
    status.hidden = false;
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => { status.hidden = true; }, 6000);
  }

  // The moment on the tile's picture now: its camera and time, or nothing when no picture plays.
  function moment(tile) {
    const v = tile.video;
    const out = { station: tile.station, shown: new Date() };
    if (tile.player && v.readyState >= 2 && !v.classList.contains("joining") && Number.isFinite(v.currentTime)) {
      out.camera = tile.player.camera;
      out.media_t = Math.round(v.currentTime * 1000) / 1000;
    }
    return out;
  }

  async function post(url, body) {
    const r = await fetch(url, { method: "POST", cache: "no-store", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRF-Token": metaOf("csrf-token") } });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(`${answer.error || r.status}${answer.where ? ` (${answer.where})` : ""}`);
    return answer;
  }

  async function send(seen, kind, text) {
    const body = { kind };
    if (text) body.text = text;
    if (seen.camera) { body.camera = seen.camera; body.media_t = seen.media_t; }
    try {
      const flag = await post(`/api/live/${encodeURIComponent(seen.station)}/flags`, body);
      document.body.dataset.lastFlag = JSON.stringify({ id: flag.id, media_t: flag.media_t, sent: body.media_t });
      say(fmt(T["flag.done"], { kind: kind === "other" ? text : T[`flag.${kind}`], station: seen.station,
                                time: seen.shown.toLocaleTimeString("ru-RU") }));
      if (!mine.hidden) listMine();
    } catch (err) {
      say(`${T["flag.failed"]}: ${err.message}`, true);
    }
  }

  function choose(seen, kind) {
    if (kind !== "other") { send(seen, kind); return; }
    pendingOther = seen;
    other.hidden = false;
    otherText.value = "";
    otherText.focus();
  }

  other.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = otherText.value.trim();
    if (!text || !pendingOther) return;
    other.hidden = true;
    send(pendingOther, "other", text);
    pendingOther = null;
  });

  // -- on each tile: a button that opens the kinds (the moment is taken when it is pressed) -----------------------
  function menuFor(tile, seen) {
    const menu = document.createElement("div");
    menu.className = "flag-menu";
    menu.setAttribute("role", "group");
    menu.setAttribute("aria-label", T["flag.bar"]);
    for (const kind of KINDS) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.kind = kind;
      b.textContent = T[`flag.${kind}`];
      b.addEventListener("click", (e) => { e.stopPropagation(); menu.remove(); choose(seen, kind); });
      menu.append(b);
    }
    menu.addEventListener("click", (e) => e.stopPropagation());
    return menu;
  }

  function equip(tile) {
    if (tile.el.querySelector(".flag-open")) return;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "flag-open";
    b.textContent = T["flag.button"];
    b.title = T["flag.button_title"];
    b.addEventListener("click", (e) => {
      e.stopPropagation();   // not the tile's own click (enlarge)
      const open = tile.el.querySelector(".flag-menu");
      if (open) { open.remove(); return; }
      const menu = menuFor(tile, moment(tile));
      tile.el.append(menu);
      menu.querySelector("button").focus();
    });
    tile.el.querySelector(".info").append(b);
  }
  setInterval(() => { for (const t of tiles.values()) equip(t); }, 500);

  // -- the enlarged view: the kinds always shown, and Shift+1..5 --------------------------------------------------
  for (const b of bar.querySelectorAll(".flag-kind")) {
    b.addEventListener("click", () => { if (current) choose(moment(current), b.dataset.kind); });
  }
  new MutationObserver(() => { bar.hidden = document.getElementById("overlay").hidden; })
    .observe(document.getElementById("overlay"), { attributes: true, attributeFilter: ["hidden"] });
  // Capturing on window, before live.js's own keys (1 marks "yes" there): Shift+digit is a flag, only a flag.
  window.addEventListener("keydown", (e) => {
    if (!current || !e.shiftKey || e.ctrlKey || e.altKey || e.metaKey
        || /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
    const n = { Digit1: 0, Digit2: 1, Digit3: 2, Digit4: 3, Digit5: 4 }[e.code];
    if (n === undefined) return;
    e.preventDefault();
    e.stopPropagation();
    choose(moment(current), KINDS[n]);
  }, true);

  // -- my flags of the day, each withdrawable with a reason ------------------------------------------------------
  async function listMine() {
    const list = document.getElementById("flag-mine-list");
    const r = await fetch("/api/flags?mine=1", { cache: "no-store" });
    const rows = r.ok ? (await r.json()).flags : [];
    list.replaceChildren(...rows.map((f) => {
      const li = document.createElement("li");
      li.dataset.flag = f.id;
      const what = document.createElement(f.withdrawn ? "del" : "span");
      what.textContent = `${f.station} ${new Date(f.at).toLocaleTimeString("ru-RU")}: `
        + (f.kind === "other" ? f.text : T[`flag.${f.kind}`]);
      li.append(what);
      if (f.withdrawn) {
        li.append(` — ${T["flag.withdrawn"]}: ${f.withdraw_reason}`);
        return li;
      }
      const form = document.createElement("form");
      const id = `flag-why-${f.id}`;
      form.innerHTML = `<label for="${id}"></label><input id="${id}" maxlength="500" required>
        <button type="submit"></button>`;
      form.querySelector("label").textContent = T["flag.reason_label"];
      form.querySelector("button").textContent = T["flag.withdraw"];
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const reason = form.querySelector("input").value.trim();
        if (!reason) return;
        try {
          await post(`/api/flags/${f.id}/withdraw`, { reason });
          say(T["flag.withdrawn_done"]);
        } catch (err) {
          say(`${T["flag.failed"]}: ${err.message}`, true);
        }
        listMine();
      });
      li.append(form);
      return li;
    }));
    if (!rows.length) {
      const li = document.createElement("li");
      li.textContent = T["flag.mine_none"];
      list.append(li);
    }
  }

  const headerMine = document.createElement("button");   // "my flags" from the grid too
  headerMine.type = "button";
  headerMine.className = "flag-mine-open";
  headerMine.textContent = T["flag.mine"];
  document.getElementById("status").before(headerMine);
  for (const b of document.querySelectorAll(".flag-mine-open")) {
    b.addEventListener("click", () => { mine.hidden = false; listMine(); });
  }
  for (const b of document.querySelectorAll(".flag-dialog .flag-cancel")) {
    b.addEventListener("click", () => { b.closest(".flag-dialog").hidden = true; pendingOther = null; });
  }
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    for (const d of document.querySelectorAll(".flag-dialog:not([hidden])")) { d.hidden = true; e.stopPropagation(); }
    for (const m of document.querySelectorAll(".flag-menu")) m.remove();
  }, true);
})();
