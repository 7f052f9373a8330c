// The attempt review page: one master <video> (first camera, with the sound and the controls) and the other
// cameras slaved to its currentTime. All tracks carry the recording's own clock, so "in sync" means equal
// currentTime. Drift is corrected every 100 ms: a small lead or lag is absorbed by nudging the slave's
// playbackRate in proportion (3 × the difference per second, up to ±50 %: a 0.05 s lag after a decoder stall
// is made up within a few tenths of a second, unseen on a muted camera), a large one (a seek) by a jump.
"use strict";

(function () {
  const master = document.querySelector("video.master");
  const slaves = Array.from(document.querySelectorAll("video.slave"));
  const labels = JSON.parse(document.body.dataset.texts); // from the server's text catalogue (i18n/)
  const timeline = document.querySelector(".timeline");
  const duration = timeline ? Number(timeline.dataset.duration) : 0;
  const playButton = document.getElementById("play");
  const clockEl = document.getElementById("clock");
  const SOFT = 0.01; // s: within this, the slave plays at the master's rate
  const HARD = 0.3; // s: beyond this, the slave jumps to the master's time
  const GAIN = 3; // rate change per second of difference (0.3 of it corrected per 100 ms step: no overshoot)
  const MAX_NUDGE = 0.5;

  function fmt(t) {
    const m = Math.floor(t / 60);
    const s = (t - 60 * m).toFixed(1).padStart(4, "0");
    return `${m}:${s}`;
  }

  function syncSlaves() {
    if (!master) return;
    const t = master.currentTime;
    for (const v of slaves) {
      if (v.readyState < 1) continue;
      const end = Number.isFinite(v.duration) ? v.duration : Infinity;
      if (t >= end) { if (!v.paused) v.pause(); continue; } // this camera's track ended earlier
      const d = v.currentTime - t;
      if (master.paused || master.seeking) {
        if (!v.paused) v.pause();
        if (Math.abs(d) > 0.02 && !v.seeking) v.currentTime = t;
        continue;
      }
      if (Math.abs(d) > HARD) {
        v.currentTime = t;
        v.playbackRate = master.playbackRate;
      } else if (Math.abs(d) > SOFT) {
        const nudge = Math.max(-MAX_NUDGE, Math.min(MAX_NUDGE, GAIN * d));
        v.playbackRate = master.playbackRate * (1 - nudge);
      } else {
        v.playbackRate = master.playbackRate;
      }
      if (v.paused) v.play().catch(() => {});
    }
  }

  function seek(t) {
    if (!master) return;
    master.currentTime = Math.max(0, t);
    for (const v of slaves) if (v.readyState >= 1) v.currentTime = Math.max(0, t);
    showTime();
  }

  function showTime() {
    if (!master) return;
    const t = master.currentTime;
    if (clockEl) clockEl.textContent = fmt(t);
    if (duration > 0) {
      const x = `${(100 * Math.min(t, duration)) / duration}%`;
      for (const el of document.querySelectorAll(".playhead")) el.style.left = x;
    }
    if (playButton) playButton.textContent = master.paused ? labels.play : labels.pause;
  }

  if (master) {
    master.addEventListener("play", syncSlaves);
    // Playback (re)starts: start the cameras from the same frame rather than correcting a start-up lag.
    master.addEventListener("playing", () => { for (const v of slaves) v.currentTime = master.currentTime; });
    master.addEventListener("pause", syncSlaves);
    master.addEventListener("seeking", () => { for (const v of slaves) v.currentTime = master.currentTime; });
    master.addEventListener("ratechange", syncSlaves);
    master.addEventListener("timeupdate", showTime);
    master.addEventListener("play", showTime);
    master.addEventListener("pause", showTime);
    setInterval(syncSlaves, 100);
    if (playButton) {
      playButton.addEventListener("click", () => {
        if (master.paused) master.play().catch(() => {}); else master.pause();
      });
    }
  }

  // Marks, gaps, pauses and ticks sit along the lanes where the server placed them (data-left, data-width:
  // no inline style, which the pages' Content-Security-Policy forbids).
  for (const el of document.querySelectorAll("[data-left]")) {
    el.style.left = el.dataset.left;
    if (el.dataset.width) el.style.width = el.dataset.width;
  }

  // Every mark point, gap and history entry with a time seeks the players there.
  document.addEventListener("click", (ev) => {
    const el = ev.target.closest("[data-t]");
    if (!el) return;
    seek(Number(el.dataset.t));
  });

  // A click on an empty part of a timeline lane seeks to that moment too.
  for (const lane of document.querySelectorAll(".timeline .lane-body")) {
    lane.addEventListener("click", (ev) => {
      if (ev.target.closest("[data-t]") || !duration) return;
      const box = lane.getBoundingClientRect();
      seek(((ev.clientX - box.left) / box.width) * duration);
    });
  }
  // `?t=SECONDS` (links from the day's flags and the quality report): open at that moment.
  const asked = /^[0-9]{1,6}(\.[0-9]{1,3})?$/.test(new URLSearchParams(location.search).get("t") || "")
    ? Number(new URLSearchParams(location.search).get("t")) : null;
  if (asked !== null && master) {
    if (master.readyState >= 1) seek(asked);
    else master.addEventListener("loadedmetadata", () => seek(asked), { once: true });
  }
  showTime();

  // Centre, room, station, number and each frame's own time over every camera (static/pages/ident.js).
  const cameras = document.querySelector(".cameras[data-ident]");
  if (cameras && window.OsceIdent) {
    const info = JSON.parse(cameras.dataset.ident), labels = JSON.parse(cameras.dataset.identLabels);
    for (const fig of cameras.querySelectorAll("figure.camera")) {
      const video = fig.querySelector("video");
      // The track file keeps the recording's clock (routes/track_file.py): currentTime is the frame's media time.
      window.OsceIdent.attach(fig, labels, () => ({ ident: info.ident, mediaFrom: info.media_from,
                                                    t: video.currentTime, tz: info.tz }), video);
    }
  }
})();
