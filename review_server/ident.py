"""Identification on the picture (issue 19): the state-exam video rules want the broadcast and the recording to carry
the region, the exam point's (centre's) code and the room; we add the station, the candidate's accreditation number
(never a name) and the date and time running with the picture.

One source for every place that shows it: the live tiles and the enlarged view (static/live/ident.js over
/api/live/streams), the review page's players (static/review/ident.js over the page's data-ident), the live HLS
output (a WebVTT subtitle rendition, live.py) and the Ministry export's burned-in video (burn_in.py). The centre comes
from the server's configuration (`centre_region`, `centre_code`, `centre_name`), the room from the station's record
(`stations.room`), the number from the attempt; the time is the picture's own: the recording's `media_from` (the
station's wall clock, synchronised with the server's) plus the frame's media time, shown in the centre's time zone.
Players draw it over the picture; the stored originals are never touched.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.orm import Session

from .models import Attempt, Candidate, Station


@dataclass(frozen=True)
class Ident:
    region: str = ""
    centre_code: str = ""
    centre_name: str = ""
    room: str = ""
    station: str = ""
    number: str = ""  # the candidate's accreditation number; "" when not known (between attempts)

    def json(self) -> dict[str, str]:
        return asdict(self)


def centre_of(cfg: Any) -> dict[str, str]:
    """The centre's part from the server configuration (a ServerConfig, or anything with those attributes)."""
    return {"region": getattr(cfg, "centre_region", ""), "centre_code": getattr(cfg, "centre_code", ""),
            "centre_name": getattr(cfg, "centre_name", "")}


def of_station(cfg: Any, station: Station | None, number: str = "") -> Ident:
    return Ident(**centre_of(cfg), room=(station.room or "") if station else "",
                 station=station.code if station else "", number=number)


def of_attempt(s: Session, cfg: Any, att: Attempt) -> Ident:
    cand = s.get(Candidate, att.candidate_id) if att.candidate_id else None
    return of_station(cfg, s.get(Station, att.station_id), cand.accreditation_number if cand else "")


# The texts: Russian, as the Ministry reads them (the burned-in video, the HLS subtitles). The pages' players build
# the same lines from the catalogue's labels in their own language (i18n "ident").
LABELS_RU = {"room": "ауд.", "station": "ст.", "number": "№"}


def lines(ident: Ident, when: dt.datetime | None, tz: str, labels: dict[str, str] = LABELS_RU) -> list[str]:
    """Three short lines (a 320 px tile holds ~40 characters a line): the centre; room, station and number; the
    date and time in the centre's zone (`when` is aware; None: no time line)."""
    centre = " · ".join(x for x in (ident.region, " ".join(x for x in (ident.centre_code, ident.centre_name) if x))
                        if x)
    where = [f"{labels['room']} {ident.room}" if ident.room else "", f"{labels['station']} {ident.station}"
             if ident.station else "", f"{labels['number']} {ident.number}" if ident.number else ""]
    out = [centre, " · ".join(x for x in where if x)]
    if when is not None:
        out.append(clock_text(when, tz))
    return [x for x in out if x]


def clock_text(when: dt.datetime, tz: str) -> str:
    """DD.MM.YYYY HH:MM:SS in the centre's time zone (as the rest of the pages show time)."""
    return when.astimezone(zoneinfo.ZoneInfo(tz)).strftime("%d.%m.%Y %H:%M:%S")


# -- the live HLS output's identification: a WebVTT subtitle rendition, one cue a second -------------------------
# Cue times are media times (X-TIMESTAMP-MAP: MPEGTS 0 is LOCAL 0, RFC 8216 3.5), so the text runs with the picture;
# the time it shows is the frame's own (media time 0 + t on the wall), ticking at whole wall-clock seconds. Placed at
# the top left (line 0, start aligned), away from the centre of the picture.
VTT_SETTINGS = "line:0 position:1% align:start size:70%"


def _vtt_time(t: float) -> str:
    ms = max(0, round(t * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def webvtt(ident: Ident, start: float, duration: float, origin: dt.datetime | None, tz: str) -> str:
    """One segment's WebVTT: [start, start + duration) of media time, a cue per wall-clock second."""
    out = ["WEBVTT", "X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000", ""]
    end = start + duration
    cues: list[tuple[float, float, dt.datetime | None]]
    if origin is None:
        cues = [(start, end, None)]
    else:
        zero = origin.timestamp()
        first = math.floor(zero + start) - zero  # media time of the wall-clock second the segment starts in
        cues, t = [], first
        while t < end:
            cues.append((max(t, start), min(t + 1, end), origin + dt.timedelta(seconds=t)))
            t += 1
    for a, b, when in cues:
        text = lines(ident, when + dt.timedelta(milliseconds=1) if when else None, tz)  # inside the second
        out += [f"{_vtt_time(a)} --> {_vtt_time(b)} {VTT_SETTINGS}", *(x.replace("-->", "->") for x in text), ""]
    return "\n".join(out)
