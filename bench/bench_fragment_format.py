"""Why fragmented MP4 (CMAF) rather than MPEG-TS for 2 s fragments.

One encode of 720p25 synthetic raw input with Track's x264/AAC settings (bench_encode_cpu), then
stream-copied (so every container carries the identical bitstream) into (a) fMP4 2 s fragments
(init.mp4 + .m4s, ffmpeg's HLS muxer in fmp4 mode: the same mp4 muxer Track drives) and (b) MPEG-TS
2 s HLS segments, plus the baseline: the bare elementary streams (H.264 Annex B `-f h264`, AAC
without its 7-byte ADTS headers). Reported: bytes and container overhead over the elementary
streams, the muxing (write) CPU, and whether each fragment decodes on its own after a simulated
kill that truncates the last file to half its size.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import av
from bench_encode_cpu import ffmpeg_command, make_raw
from common import FFMPEG, log, median, parse_args, report, run_child, workdir

from media.track import EncodeSettings

FRAGMENT_S = 2
ADTS_HEADER = 7


def remux(master: Path, args: list[str]) -> float:
    return run_child([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", master, *args]).cpu


def hls(folder: Path, kind: str) -> list[str]:
    ext = "m4s" if kind == "fmp4" else "ts"
    extra = ["-hls_fmp4_init_filename", "init.mp4"] if kind == "fmp4" else []
    return ["-map", "0", "-c", "copy", "-f", "hls", "-hls_time", str(FRAGMENT_S), "-hls_playlist_type", "vod",
            "-hls_segment_type", "fmp4" if kind == "fmp4" else "mpegts", *extra,
            "-hls_segment_filename", str(folder / f"%06d.{ext}"), str(folder / "index.m3u8")]


def decode(data: bytes) -> tuple[int, int, bool]:
    """(video frames decoded, audio frames decoded, opened and read without an exception)."""
    video = audio = 0
    try:
        with av.open(io.BytesIO(data), "r") as container:
            for frame in container.decode(*container.streams.video, *container.streams.audio):
                if isinstance(frame, av.VideoFrame):
                    video += 1
                else:
                    audio += 1
    except av.error.FFmpegError:
        return video, audio, False
    return video, audio, True


def kill_test(folder: Path, ext: str) -> dict[str, Any]:
    """Truncate the last fragment to half (a kill while writing it); decode every fragment alone."""
    init = (folder / "init.mp4").read_bytes() if ext == "m4s" else b""
    files = sorted(folder.glob(f"*.{ext}"))
    before = decode(init + files[-1].read_bytes())[0]
    with open(files[-1], "r+b") as fh:
        fh.truncate(files[-1].stat().st_size // 2)
    standalone, frames = 0, 0
    for path in files[:-1]:
        video, _, ok = decode(init + path.read_bytes())
        standalone += ok and video > 0
        frames += video
    after, _, ok = decode(init + files[-1].read_bytes())
    return {"fragments": len(files), "complete_decode_alone": standalone, "frames_in_complete": frames,
            "truncated_frames_before": before, "truncated_frames_after": after, "truncated_opened": ok}


def main() -> None:
    args = parse_args(__doc__)
    seconds = 20.0 if args.quick else 60.0
    root = workdir(args, "fragments")
    raw = Path("/dev/shm") / root.name
    raw.mkdir(exist_ok=True)
    master = root / "master.mkv"
    try:
        log(f"encoding {seconds:g} s of raw 720p25 once with Track's settings")
        video, audio = make_raw(raw, seconds)
        run_child(ffmpeg_command(video, audio, master, EncodeSettings(), ["-f", "matroska"]))
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    with av.open(str(master)) as container:
        aac_frames = sum(1 for p in container.demux(container.streams.audio[0]) if p.size)
    cpu: dict[str, list[float]] = {"es": [], "fmp4": [], "ts": []}
    for i in range(args.repeats):
        for kind in cpu:
            out = root / kind
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            if kind == "es":
                cpu[kind].append(remux(master, ["-map", "0:v", "-c", "copy", "-f", "h264", str(out / "video.h264"),
                                                "-map", "0:a", "-c", "copy", "-f", "adts", str(out / "audio.aac")]))
            else:
                cpu[kind].append(remux(master, hls(out, kind)))
        log(f"repeat {i + 1}: write CPU " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in cpu.items()))
    es = (root / "es/video.h264").stat().st_size + (root / "es/audio.aac").stat().st_size - ADTS_HEADER * aac_frames
    sizes = {kind: sum(p.stat().st_size for p in (root / kind).iterdir() if p.suffix in (".mp4", ".m4s", ".ts"))
             for kind in ("fmp4", "ts")}
    kills = {"fmp4": kill_test(root / "fmp4", "m4s"), "ts": kill_test(root / "ts", "ts")}
    per_min = 60.0 / seconds
    rows = [["elementary streams (baseline)", es, 0.0, 0.0, median(cpu["es"]) * per_min, "-", "-"]]
    result: dict[str, Any] = {"seconds": seconds, "repeats": args.repeats, "es_bytes": es,
                              "es_kbps": round(es * 8 / seconds / 1000, 1),
                              "es_write_cpu_s_per_min": round(median(cpu["es"]) * per_min, 4)}
    for kind, label in (("fmp4", "fMP4 init + 2 s .m4s"), ("ts", "MPEG-TS 2 s .ts")):
        k = kills[kind]
        overhead = 100.0 * (sizes[kind] - es) / es
        # Overhead in kbit/s hardly depends on the video bitrate (per-packet and per-fragment
        # headers); the percentage does: this synthetic scene needs only ~0.5 Mbit/s.
        kbps = (sizes[kind] - es) * 8 / seconds / 1000
        rows.append([label, sizes[kind], overhead, kbps, median(cpu[kind]) * per_min,
                     f"{k['complete_decode_alone']}/{k['fragments'] - 1}"
                     + (" (+init)" if kind == "fmp4" else ""),
                     f"{k['truncated_frames_after']}/{k['truncated_frames_before']}"])
        result[kind] = {"bytes": sizes[kind], "overhead_pct": round(overhead, 3), "overhead_kbps": round(kbps, 2),
                        "bytes_ratio_vs_es": round(sizes[kind] / es, 4),
                        "write_cpu_s_per_min": round(median(cpu[kind]) * per_min, 4), **k}
    print(f"{seconds:g} s 720p25 H.264 + AAC 96k, identical bitstream in each container; "
          f"medians of {args.repeats} repeat(s); CPU = ffmpeg stream-copy remux per minute of media")
    print("kill test: last file truncated to half; 'alone' = complete fragments decoding on their own")
    report("fragment_format", ["container", "bytes", "overhead_%", "overhead_kbit/s", "write_cpu_s/min", "alone",
                               "frames_left_in_truncated"], rows, {**result, "raw_cpu_s": cpu})


if __name__ == "__main__":
    main()
