"use strict";
// Identification over the picture (review_server/ident.py): the centre (region, code, name), the room, the station,
// the candidate's accreditation number (never a name) and the frame's own date and time, drawn by the player over
// the top left of each <video> (the stored originals are never touched). The time is the picture's: media time 0 on
// the wall (the recording's media_from) plus the video's currentTime, in the centre's time zone: it runs, stops and
// jumps with the picture, not with the viewer's clock. Used by the live grid (static/live/live.js) and the review
// page (static/review/attempt.js); the same three lines as ident.lines() on the server.
window.OsceIdent = (function () {
  const formats = new Map();

  function clockText(ms, tz) {   // DD.MM.YYYY HH:MM:SS in the centre's time zone
    if (!formats.has(tz)) {
      formats.set(tz, new Intl.DateTimeFormat("ru-RU", { timeZone: tz, year: "numeric", month: "2-digit",
        day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }));
    }
    const p = Object.fromEntries(formats.get(tz).formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
    return `${p.day}.${p.month}.${p.year} ${p.hour}:${p.minute}:${p.second}`;
  }

  // ident: {region, centre_code, centre_name, room, station, number}; labels: the catalogue's "ident" section.
  function lines(ident, labels, ms, tz) {
    const join = (parts, sep) => parts.filter(Boolean).join(sep);
    const centre = join([ident.region, join([ident.centre_code, ident.centre_name], " ")], " · ");
    const where = join([ident.room && `${labels.room} ${ident.room}`, ident.station && `${labels.station} ${ident.station}`,
                        ident.number && `${labels.number} ${ident.number}`], " · ");
    return [centre, where, ms === null || Number.isNaN(ms) ? "" : clockText(ms, tz)].filter(Boolean);
  }

  // One overlay on `box` (positioned; the video at its top left). state() -> {ident, mediaFrom (ISO or null),
  // t (the shown frame's media time, s, or null), tz}, asked four times a second and whenever `video` (if given)
  // moves or jumps: the seconds tick with the picture.
  function attach(box, labels, state, video) {
    const el = document.createElement("div");
    el.className = "ident";
    el.setAttribute("aria-hidden", "true");   // a caption of the picture; the page says the same in its text
    el.translate = false;
    box.append(el);
    let shown = "";
    const draw = () => {
      const s = state();
      if (!s || !s.ident) { el.hidden = true; return; }
      const zero = s.mediaFrom ? Date.parse(s.mediaFrom) : NaN;
      const ms = Number.isNaN(zero) || typeof s.t !== "number" ? null : zero + 1000 * s.t;
      const rows = lines(s.ident, labels, ms, s.tz || "Europe/Moscow");
      const text = rows.join("\n");
      el.hidden = !text;
      if (text === shown) return;
      shown = text;
      el.replaceChildren(...rows.map((row) => {   // a line each: a long centre name is cut at the end, not wrapped
        const line = document.createElement("div");
        line.textContent = row;
        return line;
      }));
    };
    draw();
    if (video) for (const e of ["seeked", "timeupdate", "playing"]) video.addEventListener(e, draw);
    return { el, timer: setInterval(draw, 250), draw };
  }

  return { attach, lines, clockText };
})();
