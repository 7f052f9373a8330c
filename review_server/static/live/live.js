"use strict";
// Observation grid: one <video> per station fed through Media Source Extensions from the server's live
// WebSocket (messages: 1-byte kind I/K/C, 8-byte time, then fMP4 bytes). Russian first; texts from the server's
// catalogue (review_server/i18n/, section "live") in the page's data-texts. An examiner marks the
// station's current attempt beside the enlarged picture: each mark is a mark event (checklists/marks.py) with a
// client-made event_id, posted to /api/attempts/{id}/marks and retried until the server has it (idempotent).

// The player chases the live edge, as low-latency MSE players do (mpegts.js liveSync, hls.js live sync): it starts
// at the newest picture (the server sends the GOP from its key frame; the player seeks to its end, hiding the old
// picture until then), keeps the playhead a small cushion behind the end of what has arrived, and catches up by
// playing a little faster, or by a seek when far behind. The cushion is a jitter buffer: how much later than its
// earliest the buffered end has come over the last seconds (a high quantile: a single hiccup now and then costs a
// short freeze rather than being watched late for good), plus a margin for the decoder and the sound card.
const CUSHION_MARGIN_S = 0.05;   // ahead of the playhead beyond the lateness seen: decoding, the audio output
const CUSHION_MAX_S = 0.6;       // a link this jittery is watched this far behind, stalling now and then
const JITTER_QUANTILE = 0.98;    // of the edge's lateness over the window
const JITTER_WINDOW_S = 10;      // the edge's lateness is remembered this long
const JOIN_WAIT_S = 0.1;         // after the first append, for the rest of the joining GOP
const SETTLE_S = 2;              // after the start the page is busy: lateness is not learnt, seeks are not limited
const SEEK_BEHIND_S = 0.2;       // further behind the cushion than this: seek; nearer: play faster
const SEEK_EVERY_S = 3;          // at most one seek in this long: each decodes from a key frame, costly when busy
// Playing faster catches up little here: a media element whose sound goes through Web Audio (the meters) plays at
// most ~4 % faster in Chromium, whatever the rate asked, so a seek does the larger part (slower works). Left to its
// own sound output (the meters on captureStream), the element plays faster as asked but stalls unless ~0.1 s more
// stays buffered (Chromium's media audio sink): 270 against 185 ms to the screen, measured. Web Audio it is.
const MAX_RATE = 1.15;           // catching up; the sound's pitch is kept (preservesPitch)
const MIN_RATE = 0.9;            // letting the cushion grow when the jitter grew
const KEEP_S = 20;               // seconds of buffer kept behind the playhead
const tiles = new Map();         // station code -> Tile
let centre = {};                 // the centre's identification and time zone, from /api/live/streams (ident.js)
let audioCtx = null;
const T = JSON.parse(document.body.dataset.texts);
// A catalogue text with its {name} places filled in.
const fmt = (text, values) => text.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));

function codecsOf(init) {
  // The codec string from the init segment: avc1.PPCCLL from the avcC box, plus AAC if present.
  const text = new TextDecoder("latin1").decode(init);
  const at = text.indexOf("avcC");
  if (at < 0) throw new Error(T.no_avcc);
  const hex = (i) => init[at + i].toString(16).padStart(2, "0");
  const codecs = ["avc1." + hex(5) + hex(6) + hex(7)];
  if (text.includes("mp4a")) codecs.push("mp4a.40.2");
  return codecs.join(", ");
}

class Player {
  constructor(video, station, camera) {
    this.video = video;
    this.station = station;
    this.camera = camera;
    this.closed = false;
    this.timer = setInterval(() => this.chase(), 100);
    this.onSeeked = () => this.seeked();
    video.addEventListener("seeked", this.onSeeked);
    this.start();
  }

  start() {
    this.queue = [];
    this.queued = 0;       // bytes in the queue
    this.sb = null;
    this.started = false;  // the first picture is shown at the edge (a seek into the GOP the server sent)
    this.firstAppendAt = null;
    this.seekedAt = -Infinity;
    this.edges = [];       // [arrival s, wall - buffered end s] after each append, over JITTER_WINDOW_S
    this.keyT = null;      // the recording-clock time of the first key frame (its message's header)
    this.shift = null;     // recording-clock time - the element's time (the muxer starts the element near 0)
    this.ms = new MediaSource();
    this.video.classList.add("joining");
    this.video.src = URL.createObjectURL(this.ms);
    this.ms.addEventListener("sourceopen", () => this.connect(), { once: true });
  }

  connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${proto}://${location.host}/api/live/${this.station}/${this.camera}/ws`);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (e) => this.onMessage(e.data);
    this.ws.onclose = () => { if (!this.closed) setTimeout(() => this.restart(), 2000); };
  }

  restart() {
    if (this.ws) { this.ws.onclose = null; this.ws.close(); }
    if (!this.closed) this.start();
  }

  close() {
    this.closed = true;
    clearInterval(this.timer);
    this.video.removeEventListener("seeked", this.onSeeked);
    if (this.ws) this.ws.close();
  }

  onMessage(buffer) {
    const kind = String.fromCharCode(new Uint8Array(buffer, 0, 1)[0]);
    const data = new Uint8Array(buffer, 9);
    if (kind === "K" && this.keyT === null) this.keyT = new DataView(buffer).getFloat64(1);
    if (kind === "I") {
      if (this.sb) { this.restart(); return; }  // a new stream (new recording): start clean
      this.sb = this.ms.addSourceBuffer(`video/mp4; codecs="${codecsOf(data)}"`);
      this.sb.mode = "segments";
      this.sb.addEventListener("updateend", () => this.appended());
    }
    if (!this.sb) return;
    this.queue.push(data);
    this.queued += data.byteLength;
    this.pump();
  }

  pump() {
    const sb = this.sb;
    if (!sb || sb.updating) return;
    const v = this.video, b = v.buffered;
    if (b.length && v.currentTime - b.start(0) > KEEP_S + 10) {
      sb.remove(0, v.currentTime - KEEP_S);
      return;
    }
    if (!this.queue.length) return;
    // Everything that arrived meanwhile in one append: fewer appends, and nothing waits behind a busy buffer.
    let bytes = this.queue[0];
    if (this.queue.length > 1) {
      bytes = new Uint8Array(this.queued);
      let at = 0;
      for (const part of this.queue) { bytes.set(part, at); at += part.byteLength; }
    }
    this.queue = [];
    this.queued = 0;
    try {
      sb.appendBuffer(bytes);
    } catch (err) {
      console.warn("MSE", this.station, err);
      this.restart();
    }
  }

  appended() {
    const b = this.video.buffered;
    const now = performance.now() / 1000;
    this.firstAppendAt = this.firstAppendAt ?? now;
    if (this.shift === null && this.keyT !== null && b.length) this.shift = this.keyT - b.start(0);
    if (b.length && this.started && now > this.startedAt + SETTLE_S) {
      this.edges.push([now, now - b.end(b.length - 1)]);
      while (this.edges.length && this.edges[0][0] < now - JITTER_WINDOW_S) this.edges.shift();
    }
    this.pump();
  }

  // [cushion s, media time of the edge now had it come at its earliest]: the cushion is how much later than its
  // earliest the buffered end has come lately (JITTER_QUANTILE), plus the margin.
  cushion(end) {
    if (!this.edges.length) return [CUSHION_MARGIN_S, end];
    const late = this.edges.map((e) => e[1]).sort((a, b) => a - b);
    const jitter = late[Math.floor(JITTER_QUANTILE * (late.length - 1))] - late[0];
    return [Math.min(CUSHION_MAX_S, jitter + CUSHION_MARGIN_S), performance.now() / 1000 - late[0]];
  }

  chase() {   // ten times a second
    const v = this.video, b = v.buffered;
    const now = performance.now() / 1000;
    // The GOP the server sends a joining viewer arrives in a burst: the first seek waits until it is in.
    if (!b.length || v.seeking || now < this.firstAppendAt + JOIN_WAIT_S) return;
    const end = b.end(b.length - 1), start = b.start(b.length - 1);
    const [cushion, edge] = this.cushion(end);
    const behind = Math.min(edge, end) - v.currentTime - cushion;
    const settling = !this.started || now < this.startedAt + SETTLE_S;
    if (!this.started || v.currentTime < b.start(0)
        || (behind > SEEK_BEHIND_S && (settling || now > this.seekedAt + SEEK_EVERY_S))) {
      v.currentTime = Math.max(start, end - cushion);   // decodes from the GOP's key frame to here
      v.playbackRate = 1;
      this.seekedAt = now;
      this.startedAt = this.started ? this.startedAt : now;
      this.started = true;
    } else {
      // Proportional: 0.1 s behind the cushion plays at 1.1, 0.05 s too near the edge at 0.95 (the cushion grew).
      const rate = Math.abs(behind) > 0.02 ? Math.max(MIN_RATE, Math.min(MAX_RATE, 1 + behind)) : 1;
      if (Math.abs(rate - v.playbackRate) >= 0.02 || (rate === 1 && v.playbackRate !== 1)) v.playbackRate = rate;
    }
    if (v.paused) v.play().catch(() => {});
  }

  seeked() {
    // Until a seek has brought the playhead to the edge (more of the joining GOP may have come meanwhile: then the
    // next tick seeks again) the element shows an old picture, the GOP's first up to 2 s old: out of sight.
    const v = this.video, b = v.buffered;
    if (!b.length) return;
    const end = b.end(b.length - 1);
    if (end - v.currentTime <= this.cushion(end)[0] + SEEK_BEHIND_S) v.classList.remove("joining");
  }
}

const PHASES = Object.fromEntries(["idle", "scheduled", "reading", "performing", "done"].map(
  (p) => [p, T[`phase.${p}`]]));

function clock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function number(value, digits) {
  return value === null || value === undefined ? "—" : Number(value).toLocaleString("ru-RU", { maximumFractionDigits: digits });
}

class Tile {
  constructor(station) {
    this.station = station;
    this.cameras = [];
    this.info = {};
    this.el = document.createElement("section");
    this.el.className = "tile";
    this.el.dataset.station = station;
    this.el.innerHTML = `<video muted playsinline></video><div class="meter"><div></div></div>
      <div class="info"><span class="name" translate="no"></span><span class="candidate"></span><span class="phase"></span>
      <span class="rec" hidden></span><span class="offline" hidden></span></div>
      <div class="cpr"></div><div class="warnings"></div>`;
    this.el.querySelector(".rec").textContent = T.rec;
    this.el.querySelector(".offline").textContent = T.offline;
    this.video = this.el.querySelector("video");
    this.meter = this.el.querySelector(".meter > div");
    this.level = 0;
    this.player = null;
    this.el.addEventListener("click", () => enlarge(this));
    // Centre, room, station, number and the frame's own time over the picture (static/pages/ident.js).
    OsceIdent.attach(this.el, JSON.parse(document.getElementById("grid").dataset.identLabels), () => ({
      ident: { ...centre, room: this.info.room, station: this.station, number: this.info.candidate || "" },
      mediaFrom: this.info.media_from, tz: centre.timezone,
      t: this.player && this.player.shift !== null ? this.video.currentTime + this.player.shift : null }), this.video);
  }

  update(info) {
    this.info = info;
    this.cameras = info.cameras.map((c) => c.camera);
    const q = (s) => this.el.querySelector(s);
    q(".name").textContent = info.station_name || info.station;
    q(".candidate").textContent = info.candidate ? `${T.candidate} ${info.candidate}` : "";
    const phase = PHASES[info.phase] || info.phase || "";
    const left = typeof info.time_left === "number" && ["reading", "performing"].includes(info.phase)
      ? ` ${clock(info.time_left)}` : "";
    q(".phase").textContent = info.phase && info.phase !== "idle" ? phase + left : "";
    q(".rec").hidden = !info.recording;
    q(".offline").hidden = info.live;
    q(".warnings").replaceChildren(...(info.warnings || []).map((w) => {
      const b = document.createElement("span");
      b.className = "badge";
      b.translate = false;  // the station's own words (Russian), as it sent them
      b.dataset.code = typeof w === "string" ? "other" : (w.code || "other");
      b.textContent = typeof w === "string" ? w : (w.text || w.code);
      return b;
    }));
    const cpr = q(".cpr");
    const c = info.cpr;
    cpr.classList.toggle("none", !!c && !c.estimate);
    if (!c) cpr.textContent = "";
    else if (!c.estimate) cpr.textContent = T.cpr_none;
    else {
      cpr.textContent = fmt(T.cpr, {
        rate: number(c.rate_per_min, 0), compressions: number(c.compressions, 0),
        ccf: c.ccf === null || c.ccf === undefined ? "—" : number(c.ccf * 100, 0) + " %",
        confidence: number((c.confidence || 0) * 100, 0) });
    }
    if (!this.player && info.live && this.cameras.length) this.show(this.cameras[0]);
    if (current === this) sheet.title();
  }

  show(camera) {
    if (this.player && this.player.camera === camera) return;
    if (this.player) this.player.close();
    this.player = new Player(this.video, this.station, camera);
  }

  connectAudio() {
    if (this.gain || !audioCtx) return;
    const source = audioCtx.createMediaElementSource(this.video);
    this.analyser = audioCtx.createAnalyser();
    this.analyser.fftSize = 1024;
    this.gain = audioCtx.createGain();
    this.gain.gain.value = current === this ? 1 : 0;   // the grid is silent; the enlarged tile is heard
    source.connect(this.analyser).connect(this.gain).connect(audioCtx.destination);
    this.video.muted = false;
    this.samples = new Float32Array(this.analyser.fftSize);
  }

  measure() {
    if (!this.analyser) return;
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const s of this.samples) sum += s * s;
    const db = 20 * Math.log10(Math.sqrt(sum / this.samples.length) + 1e-9);
    const pct = Math.max(0, Math.min(100, (db + 60) * 100 / 60));   // -60..0 dBFS
    this.meter.style.transform = `scaleX(${pct / 100})`;
    this.level = Math.max(this.level, pct);
    this.el.dataset.peak = this.level.toFixed(1);
  }
}

function enableAudio() {
  if (!audioCtx) audioCtx = new AudioContext();
  const button = document.getElementById("sound");
  const ready = () => { for (const t of tiles.values()) t.connectAudio(); button.hidden = true; };
  if (audioCtx.state === "running") ready();
  else {
    button.hidden = false;   // the browser wants a click before sound
    button.onclick = () => audioCtx.resume().then(ready);
  }
}

let current = null;   // the enlarged tile

function enlarge(tile) {
  const overlay = document.getElementById("overlay");
  const slot = document.getElementById("big-slot");
  const cams = document.getElementById("big-cameras");
  cams.replaceChildren(...tile.cameras.map((camera, i) => {
    const b = document.createElement("button");
    b.textContent = `${T.camera} ${i + 1}`;
    b.setAttribute("aria-pressed", String(tile.player && tile.player.camera === camera));
    b.onclick = (e) => { e.stopPropagation(); tile.show(camera); enlarge(tile); };
    return b;
  }));
  if (current && current !== tile) shrink();
  tile.placeholder = tile.placeholder || document.createComment("tile");
  if (tile.el.parentNode !== slot) {
    tile.el.replaceWith(tile.placeholder);
    slot.append(tile.el);
  }
  current = tile;
  // The click is the user gesture browsers want before sound: resume here, then un-mute this tile only.
  if (audioCtx && audioCtx.state !== "running") audioCtx.resume().then(() => enableAudio());
  if (tile.gain) tile.gain.gain.value = 1;
  overlay.hidden = false;
  document.getElementById("big-close").onclick = shrink;
  sheet.open(tile);
}

function shrink() {
  const tile = current;
  if (!tile) return;
  if (tile.gain) tile.gain.gain.value = 0;
  tile.placeholder.replaceWith(tile.el);
  document.getElementById("overlay").hidden = true;
  current = null;
  sheet.close();
}

function uuid4() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function metaOf(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el ? el.content : "";
}

// The checklist beside the enlarged picture: the station's current attempt from /api/live/{station}/attempt,
// marks as events through an outbox that retries each event (same event_id) until the server stored it.
const sheet = {
  role: metaOf("osce-role"),
  tile: null,
  data: null,        // the last answer of /api/live/{station}/attempt
  selected: 0,       // index into the items
  seq: 0,            // the next seq for this examiner on this attempt
  outbox: [],        // events not yet stored on the server, oldest first
  saved: 0,
  lastError: "",
  timer: null,

  enabled() { return this.role === "examiner"; },

  open(tile) {
    if (!this.enabled()) return;
    if (this.tile !== tile) { this.data = null; this.selected = 0; }
    this.tile = tile;
    document.getElementById("panel").hidden = false;
    this.title();
    this.poll();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.poll(), 2000);
  },

  close() {
    clearInterval(this.timer);
    this.tile = null;
    document.getElementById("panel").hidden = true;
  },

  title() {
    const d = this.data, a = d && d.attempt;
    document.getElementById("big-title").textContent = current ? current.el.querySelector(".name").textContent : "";
    if (!this.enabled()) return;
    const info = current ? current.info : {};
    let text = "";
    if (a) {
      const phase = PHASES[a.phase] || a.phase || "";
      const left = typeof info.time_left === "number" && ["reading", "performing"].includes(info.phase)
        ? info.time_left : a.time_left_s;
      text = fmt(T.attempt_line, { attempt: a.attempt_id, candidate: a.candidate || "—", phase }) +
        (["reading", "performing"].includes(a.phase) && typeof left === "number" ? ` ${clock(left)}` : "");
    }
    document.getElementById("sheet-attempt").textContent = text;
  },

  async poll() {
    const tile = this.tile;
    if (!tile) return;
    try {
      const r = await fetch(`/api/live/${tile.station}/attempt`, { cache: "no-store" });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
      if (this.tile !== tile) return;
      const before = this.data && this.data.attempt ? this.data.attempt.attempt_id : null;
      this.data = body;
      const now = body.attempt ? body.attempt.attempt_id : null;
      if (now !== before) { this.selected = 0; this.seq = 0; }
      if (body.sheet) this.seq = Math.max(this.seq, body.sheet.next_seq);
      this.render();
    } catch (err) {
      document.getElementById("sheet-note").textContent = `${T.no_server} (${err.message})`;
    }
  },

  items() {
    return this.data && this.data.checklist ? this.data.checklist.items : [];
  },

  marks() {   // the server's sheet, then what is still on its way
    const a = this.data && this.data.attempt;
    const out = Object.assign({}, this.data && this.data.sheet ? this.data.sheet.marks : {});
    for (const e of this.outbox) if (a && e.attempt === a.attempt_id) out[String(e.body.item)] = e.body.done;
    return out;
  },

  render() {
    this.title();
    const d = this.data;
    const note = document.getElementById("sheet-note");
    const list = document.getElementById("items");
    document.getElementById("sheet-title").textContent = d && d.checklist ? d.checklist.title : T.sheet;
    if (!d || !d.attempt) {
      note.textContent = T.no_attempt;
      list.replaceChildren();
      this.footer();
      return;
    }
    note.textContent = !d.checklist ? T.no_checklist
      : !d.can_mark ? T.examiners_only
      : d.sheet && d.sheet.finalised ? T.signed : "";
    const marks = this.marks();
    const pending = new Set(this.outbox.map((e) => String(e.body.item)));
    this.selected = Math.min(this.selected, Math.max(0, this.items().length - 1));
    list.replaceChildren(...this.items().map((item, i) => {
      const li = document.createElement("li");
      li.dataset.item = item.number;
      li.className = (i === this.selected ? "current " : "") + (pending.has(String(item.number)) ? "pending" : "");
      const done = marks[String(item.number)];
      li.innerHTML = `<span class="num"></span><span class="text" translate="no"><span class="act"></span><span class="how"></span></span>
        <span class="yn"><button class="yes"></button><button class="no"></button></span>`;
      li.querySelector(".yes").textContent = T.yes;
      li.querySelector(".no").textContent = T.no;
      li.querySelector(".num").textContent = item.number + ".";
      li.querySelector(".act").textContent = item.action + (item.critical ? " *" : "");
      li.querySelector(".how").textContent = item.presentation;
      const yes = li.querySelector(".yes"), no = li.querySelector(".no");
      yes.setAttribute("aria-pressed", String(done === true));
      no.setAttribute("aria-pressed", String(done === false));
      yes.onclick = (e) => { e.stopPropagation(); this.selected = i; this.mark(true); };
      no.onclick = (e) => { e.stopPropagation(); this.selected = i; this.mark(false); };
      li.onclick = () => { this.selected = i; this.render(); };
      return li;
    }));
    const cur = list.querySelector("li.current");
    if (cur && cur.scrollIntoView) cur.scrollIntoView({ block: "nearest" });
    this.footer();
  },

  footer() {
    const marks = this.marks(), total = this.items().length;
    const done = Object.values(marks).filter((v) => v === true).length;
    document.getElementById("sheet-count").textContent =
      total ? fmt(T.count, { marked: Object.keys(marks).length, total, done }) : "";
    const sync = document.getElementById("sheet-sync");
    sync.className = this.lastError ? "error" : "";
    sync.textContent = this.outbox.length
      ? fmt(T.sending, { n: this.outbox.length }) + (this.lastError ? ` (${this.lastError}; ${T.retry})` : "")
      : this.lastError || (this.saved ? fmt(T.saved, { n: this.saved }) : "");
  },

  move(step) {
    const n = this.items().length;
    if (!n) return;
    this.selected = Math.max(0, Math.min(n - 1, this.selected + step));
    this.render();
  },

  mark(done) {
    const d = this.data, item = this.items()[this.selected];
    if (!d || !d.attempt || !d.checklist || !d.can_mark || !item) return;
    let reason = null;  // a mark before the sheet is signed is an ordinary mark; after it, a correction
    if (d.sheet && d.sheet.finalised) {
      reason = window.prompt(T.reason, "");
      if (!reason || !reason.trim()) return;
      reason = reason.trim();
    }
    const body = { event_id: uuid4(), kind: "mark", item: item.number, done, rating: null, reason,
                   checklist_hash: d.checklist.content_hash, wall_time: new Date().toISOString(),
                   recording_offset_s: null, seq: this.seq++ };
    this.outbox.push({ attempt: d.attempt.attempt_id, body });
    this.move(1);
    this.flush();
  },

  async flush() {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.outbox.length) {
        const e = this.outbox[0];
        let r;
        try {
          r = await fetch(`/api/attempts/${encodeURIComponent(e.attempt)}/marks`, {
            method: "POST", credentials: "same-origin",
            headers: { "Content-Type": "application/json", "X-CSRF-Token": metaOf("csrf-token") },
            body: JSON.stringify(e.body) });
        } catch (err) {
          r = null;
        }
        const answer = r ? await r.json().catch(() => ({})) : {};
        if (r && r.ok) {
          this.outbox.shift();
          this.saved++;
          this.lastError = "";
        } else if (!r || r.status >= 500 || r.status === 404) {
          // No network, or the attempt is not on the server yet (its first upload is on the way): same event later.
          this.lastError = r ? answer.error || `HTTP ${r.status}` : T.offline_short;
          this.footer();
          await new Promise((res) => setTimeout(res, 2000));
          continue;
        } else {
          this.outbox.shift();   // refused for good: say what and where
          this.lastError = `${T.not_saved}: ${answer.error || r.status}${answer.where ? ` (${answer.where})` : ""}`;
        }
        this.render();
      }
    } finally {
      this.sending = false;
    }
    this.poll();
  },
};

document.addEventListener("keydown", (e) => {
  if (document.getElementById("overlay").hidden) return;
  if (e.key === "Escape") { shrink(); return; }
  if (!sheet.tile || e.ctrlKey || e.altKey || e.metaKey || /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
  // By physical key (e.code), so that Y and N work in the Russian layout too.
  const keys = { ArrowDown: () => sheet.move(1), ArrowUp: () => sheet.move(-1), Home: () => sheet.move(-1e6),
                 End: () => sheet.move(1e6), KeyY: () => sheet.mark(true), Digit1: () => sheet.mark(true),
                 Numpad1: () => sheet.mark(true), KeyN: () => sheet.mark(false), Digit0: () => sheet.mark(false),
                 Numpad0: () => sheet.mark(false) };
  const act = keys[e.code];
  if (act) { e.preventDefault(); act(); }
});

// `/live?station=CODE` (the examiner's "mark" link): that station opens enlarged with its sheet, once it is live.
let asked = new URLSearchParams(location.search).get("station");

async function refresh() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/api/live/streams", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const { stations, centre: c } = await r.json();
    centre = c || {};
    for (const info of stations) {
      let tile = tiles.get(info.station);
      if (!tile) {
        tile = new Tile(info.station);
        tiles.set(info.station, tile);
        document.getElementById("grid").append(tile.el);
        if (audioCtx && audioCtx.state === "running") tile.connectAudio();
      }
      tile.update(info);
      if (asked && info.station === asked) {
        asked = null;
        enlarge(tile);
      }
    }
    status.textContent = stations.length ? "" : T.none_live;
  } catch (err) {
    status.textContent = `${T.no_server} (${err.message})`;
  }
}

refresh();
setInterval(refresh, 2000);
enableAudio();
setInterval(() => { for (const t of tiles.values()) t.measure(); }, 100);
