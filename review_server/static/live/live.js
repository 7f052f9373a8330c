"use strict";
// Observation grid: one <video> per station fed through Media Source Extensions from the server's live
// WebSocket (messages: 1-byte kind I/K/C, 8-byte time, then fMP4 bytes). Russian UI.

const LIVE_EDGE_S = 1.0;     // further behind than this: jump to the live edge
const KEEP_S = 20;           // seconds of buffer kept behind the playhead
const tiles = new Map();     // station code -> Tile
let audioCtx = null;

function codecsOf(init) {
  // The codec string from the init segment: avc1.PPCCLL from the avcC box, plus AAC if present.
  const text = new TextDecoder("latin1").decode(init);
  const at = text.indexOf("avcC");
  if (at < 0) throw new Error("нет avcC в init-сегменте");
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
    this.start();
  }

  start() {
    this.queue = [];
    this.sb = null;
    this.ms = new MediaSource();
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
    if (this.ws) this.ws.close();
  }

  onMessage(buffer) {
    const kind = String.fromCharCode(new Uint8Array(buffer, 0, 1)[0]);
    const data = new Uint8Array(buffer, 9);
    if (kind === "I") {
      if (this.sb) { this.restart(); return; }  // a new stream (new recording): start clean
      this.sb = this.ms.addSourceBuffer(`video/mp4; codecs="${codecsOf(data)}"`);
      this.sb.mode = "segments";
      this.sb.addEventListener("updateend", () => this.pump());
    }
    if (!this.sb) return;
    this.queue.push(data);
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
    if (this.queue.length) {
      try {
        sb.appendBuffer(this.queue.shift());
      } catch (err) {
        console.warn("MSE", this.station, err);
        this.restart();
        return;
      }
    }
    this.keepLive();
  }

  keepLive() {
    const v = this.video, b = v.buffered;
    if (!b.length) return;
    const end = b.end(b.length - 1);
    if (v.currentTime < b.start(0) || end - v.currentTime > LIVE_EDGE_S) {
      v.currentTime = Math.max(b.start(b.length - 1), end - 0.3);
    }
    if (v.paused) v.play().catch(() => {});
  }
}

class Tile {
  constructor(station) {
    this.station = station;
    this.cameras = [];
    this.el = document.createElement("section");
    this.el.className = "tile";
    this.el.dataset.station = station;
    this.el.innerHTML = `<video muted playsinline></video><div class="meter"><div></div></div>
      <div class="info"><span class="name"></span><span class="candidate"></span>
      <span class="rec" hidden>● ЗАПИСЬ</span><span class="offline" hidden>нет сигнала</span></div>
      <div class="warnings"></div>`;
    this.video = this.el.querySelector("video");
    this.meter = this.el.querySelector(".meter > div");
    this.level = 0;
    this.player = null;
    this.el.addEventListener("click", () => enlarge(this));
  }

  update(info) {
    this.cameras = info.cameras.map((c) => c.camera);
    const q = (s) => this.el.querySelector(s);
    q(".name").textContent = info.station_name || info.station;
    q(".candidate").textContent = info.candidate ? `Кандидат № ${info.candidate}` : "";
    q(".rec").hidden = !info.recording;
    q(".offline").hidden = info.live;
    q(".warnings").textContent = (info.warnings || []).join("; ");
    if (!this.player && info.live && this.cameras.length) this.show(this.cameras[0]);
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
    this.gain.gain.value = 0;   // the grid is silent; the enlarged tile is heard
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
    this.meter.style.width = pct + "%";
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

function enlarge(tile) {
  const overlay = document.getElementById("overlay");
  const slot = document.getElementById("big-slot");
  document.getElementById("big-title").textContent = tile.el.querySelector(".name").textContent;
  const cams = document.getElementById("big-cameras");
  cams.replaceChildren(...tile.cameras.map((camera, i) => {
    const b = document.createElement("button");
    b.textContent = `Камера ${i + 1}`;
    b.setAttribute("aria-pressed", String(tile.player && tile.player.camera === camera));
    b.onclick = () => { tile.show(camera); enlarge(tile); };
    return b;
  }));
  tile.placeholder = tile.placeholder || document.createComment("tile");
  if (tile.el.parentNode !== slot) {
    tile.el.replaceWith(tile.placeholder);
    slot.append(tile.el);
  }
  if (audioCtx && audioCtx.state !== "running") audioCtx.resume().then(() => enableAudio());
  if (tile.gain) tile.gain.gain.value = 1;
  overlay.hidden = false;
  document.getElementById("big-close").onclick = () => {
    if (tile.gain) tile.gain.gain.value = 0;
    tile.placeholder.replaceWith(tile.el);
    overlay.hidden = true;
  };
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/api/live/streams", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const { stations } = await r.json();
    for (const info of stations) {
      let tile = tiles.get(info.station);
      if (!tile) {
        tile = new Tile(info.station);
        tiles.set(info.station, tile);
        document.getElementById("grid").append(tile.el);
        if (audioCtx && audioCtx.state === "running") tile.connectAudio();
      }
      tile.update(info);
    }
    status.textContent = stations.length ? "" : "Нет станций в эфире";
  } catch (err) {
    status.textContent = `Нет связи с сервером (${err.message})`;
  }
}

refresh();
setInterval(refresh, 3000);
enableAudio();
setInterval(() => { for (const t of tiles.values()) t.measure(); }, 100);
