"""The export's identification video: one MP4 per attempt with the identification burned in (issue 19).

Beside the hashed originals (byte for byte as recorded, review_server/export.py), the Ministry gets for each attempt
one ordinary MP4 anyone can play: every camera side by side (scaled to a common height), the attempt's sound (the
first camera's track carries the microphone), and over the top left a banner with the centre (region, code, name),
room, station, the candidate's accreditation number and the date and time running with the picture (the frame's
media time + the recording's media_from, in the centre's time zone), in DejaVu Sans (Cyrillic). A banner is never
wider than the picture: the font shrinks until the longest line fits. Made by ffmpeg at the lowest priority (nice 19,
idle I/O class, one encoder thread) in the export's background job; it is a copy for viewing, the manifest says so,
and the originals stay what is verified.

A recording cut into parts by a restart gives one segment per part, joined in order (the parts' own times shown).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import av
from fpdf import FPDF

from media.calibration import ffmpeg_exe

from .ident import Ident, lines

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
MAX_HEIGHT = 720  # the common height: the smallest camera's, at most this
MARGIN = 6  # px around the text inside the banner
FILE_NAME = "identified.mp4"
DESCRIPTION = ("a copy for viewing, not an original: every camera side by side, the attempt's sound, the "
               "identification burned in (centre, room, station, accreditation number, date and time of each "
               "frame); the originals are the files under recordings/")

Open = Callable[[str], BinaryIO]  # storage key (SHA-256) -> its bytes


@dataclass
class Layout:
    height: int  # common height of the cameras
    widths: list[int]  # each camera scaled to it
    fontsize: int
    line_gap: int
    banner: tuple[int, int]  # width, height of the banner at the top left

    @property
    def width(self) -> int:
        return sum(self.widths)


def text_width(text: str, fontsize: int) -> float:
    """The text's width in pixels at `fontsize` px in DejaVu Sans (the font ffmpeg's drawtext draws with)."""
    pdf = FPDF(unit="pt")
    pdf.add_font("DejaVu", "", str(FONT))
    pdf.set_font("DejaVu", size=fontsize)
    return float(pdf.get_string_width(text))


def layout(sizes: list[tuple[int, int]], texts: list[str]) -> Layout:
    """Cameras (width, height) side by side at a common height; the largest font (up to height/16) whose longest
    line fits the picture's width."""
    height = min(MAX_HEIGHT, *(h for _, h in sizes)) // 2 * 2
    widths = [max(2, round(w * height / h / 2) * 2) for w, h in sizes]
    total = sum(widths)
    size = max(8, height // 16)
    while size > 8 and max(text_width(t, size) for t in texts) + 2 * MARGIN > total:
        size -= 1
    gap = max(2, size // 4)
    longest = max(text_width(t, size) for t in texts)
    banner = (min(total, int(longest) + 2 * MARGIN + 2), len(texts) * (size + gap) + 2 * MARGIN - gap)
    return Layout(height, widths, size, gap, banner)


def _probe(path: Path) -> tuple[int, int, float, bool]:
    """(width, height, earliest start s, has sound) of one assembled track file."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        starts = [float(s.start_time * s.time_base) for s in c.streams if s.start_time is not None
                  and s.time_base is not None]
        return v.codec_context.width, v.codec_context.height, min(starts, default=0.0), bool(c.streams.audio)


def _filter_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'").replace(",", "\\,")


def _clock_file(media_from: dt.datetime, tz: str) -> str:
    """drawtext's expansion: the frame's pts (media time) + media time 0 in the centre's local time, shown as UTC
    (gmtime), so that the result does not depend on ffmpeg's own idea of the time zone."""
    local = media_from.astimezone(zoneinfo.ZoneInfo(tz))
    offset = media_from.timestamp() + (local.utcoffset() or dt.timedelta()).total_seconds()
    return f"%{{pts:gmtime:{offset:.3f}:%d.%m.%Y %H\\:%M\\:%S}}"


def _low_priority() -> list[str]:
    return ["nice", "-n", "19", *(["ionice", "-c", "3"] if shutil.which("ionice") else [])]


def burn_part(tracks: dict[str, list[dict[str, Any]]], open_media: Open, ident: Ident,
              media_from: dt.datetime | None, tz: str, work: Path, out: Path) -> Layout:
    """One recording (its tracks' stored fragments: init first) into `out` with the banner burned in."""
    work.mkdir(parents=True, exist_ok=True)
    inputs: list[Path] = []
    for track in sorted(tracks):
        path = work / f"{track}.mp4"
        with path.open("wb") as fh:
            for frag in tracks[track]:  # init, then media fragments in order: the stored bytes, checked
                sha = hashlib.sha256()
                with open_media(frag["sha256"]) as src:
                    while chunk := src.read(1024 * 1024):
                        sha.update(chunk)
                        fh.write(chunk)
                if sha.hexdigest() != frag["sha256"]:
                    raise ValueError(f"{track} fragment {frag.get('seq')}: media storage returned other bytes than "
                                     f"sha256 {frag['sha256']}")
        inputs.append(path)
    probes = [_probe(p) for p in inputs]
    fixed = lines(ident, None, tz)
    clock = lines(Ident(), media_from, tz) if media_from else []
    look = layout([(w, h) for w, h, _, _ in probes], fixed + clock)
    t0 = min(p[2] for p in probes)
    (work / "fixed.txt").write_text("\n".join(fixed), encoding="utf-8")
    if media_from:
        (work / "clock.txt").write_text(_clock_file(media_from, tz), encoding="utf-8")
    font = _filter_escape(str(FONT))
    parts = [f"[{i}:v]scale={w}:{look.height},setsar=1[v{i}]" for i, w in enumerate(look.widths)]
    stacked = "".join(f"[v{i}]" for i in range(len(inputs)))
    parts.append(f"{stacked}hstack=inputs={len(inputs)}[s]" if len(inputs) > 1 else "[v0]null[s]")
    draw = (f"[s]drawbox=x=0:y=0:w={look.banner[0]}:h={look.banner[1]}:color=black@0.6:t=fill,"
            f"drawtext=fontfile={font}:textfile={_filter_escape(str(work / 'fixed.txt'))}:expansion=none:"
            f"fontsize={look.fontsize}:fontcolor=white:line_spacing={look.line_gap}:x={MARGIN}:y={MARGIN}")
    if media_from:
        y = MARGIN + len(fixed) * (look.fontsize + look.line_gap)
        draw += (f",drawtext=fontfile={font}:textfile={_filter_escape(str(work / 'clock.txt'))}:"
                 f"fontsize={look.fontsize}:fontcolor=white:x={MARGIN}:y={y}")
    parts.append(f"{draw},setpts=PTS-{t0:.6f}/TB,format=yuv420p[v]")
    sound = probes[0][3]
    if sound:
        parts.append(f"[0:a]asetpts=PTS-{t0:.6f}/TB[a]")
    cmd = [*_low_priority(), ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-copyts"]
    for p in inputs:
        cmd += ["-i", str(p)]
    cmd += ["-filter_complex", ";".join(parts), "-map", "[v]", *(["-map", "[a]"] if sound else []),
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-threads", "1",
            *(["-c:a", "aac", "-b:a", "96k"] if sound else []), "-movflags", "+faststart", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=6 * 3600)
    if run.returncode != 0:
        raise ValueError(f"ffmpeg: {run.stderr.strip()[-1000:]}")
    for p in inputs:
        p.unlink()
    return look


def burn_attempt(recordings: list[dict[str, Any]], open_media: Open, ident: Ident, tz: str, work: Path,
                 out: Path) -> None:
    """The attempt's recordings (export.gather's: key, media_from, tracks) into one MP4, parts joined in order."""
    parts = []
    for i, rec in enumerate(recordings):
        when = rec.get("media_from")
        media_from = dt.datetime.fromisoformat(when) if isinstance(when, str) else None
        tracks = {t: frags for t, frags in rec["tracks"].items() if frags and frags[0]["kind"] == "init"}
        if not tracks:
            continue
        part = work / f"part{i}.mp4"
        burn_part(tracks, open_media, ident, media_from, tz, work / f"part{i}", part)
        parts.append(part)
    if not parts:
        raise ValueError("no recording with an init file to make the identification video from")
    if len(parts) == 1:
        os.replace(parts[0], out)
        return
    listing = work / "parts.txt"
    listing.write_text("".join(f"file '{p.name}'\n" for p in parts), encoding="utf-8")
    run = subprocess.run([*_low_priority(), ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe",
                          "0", "-i", str(listing), "-c", "copy", "-movflags", "+faststart", str(out)],
                         capture_output=True, text=True, timeout=3600)
    if run.returncode != 0:
        raise ValueError(f"ffmpeg concat: {run.stderr.strip()[-1000:]}")
