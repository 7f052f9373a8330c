"use strict";
// The room's clock: phase, time left, and each new cue shown and played once.
let seen = null;

async function poll() {
  try {
    const s = await (await fetch("/api/clock", { cache: "no-store" })).json();
    const r = Math.max(0, Math.ceil(s.remaining_s));
    document.getElementById("p").textContent = T[`clock_${s.phase}`] || s.phase;
    document.getElementById("t").textContent = s.phase === "idle" ? "--:--"
      : String(Math.floor(r / 60)).padStart(2, "0") + ":" + String(r % 60).padStart(2, "0");
    const last = s.cues.length ? s.cues[s.cues.length - 1] : null;
    if (seen === null) seen = last ? last.seq : 0;
    for (const c of s.cues) {
      if (c.seq > seen) {
        seen = c.seq;
        document.getElementById("c").textContent = T[`cue_${c.cue}`] || c.text;
        new Audio(`/cues/${c.cue}.wav`).play().catch(() => {});
      }
    }
  } catch (e) { /* the agent restarts: try again */ }
}
setInterval(poll, 500);
poll();
