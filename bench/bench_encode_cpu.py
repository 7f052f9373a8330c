"""CPU per minute of 720p25 recording: our Track (PyAV libx264 + CMAF fragments + manifest + fsync)
against bare ffmpeg encoding the same raw input with the same settings, plus a real-time `osce record`.

The raw input (BGR frames from SyntheticCamera's renderer, f32 PCM with the beeps) is made once on
tmpfs; both encoders read it from there as fast as they can, so real-time pacing is out of the figure.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
from common import FFMPEG, FFMPEG_THREADS, OSCE, ProcessCPU, log, median, parse_args, report, run_child, workdir

from media.manifest import ManifestWriter
from media.sources.synthetic import SyntheticCamera
from media.track import AUDIO_RATE, MOVFLAGS, EncodeSettings, Track

W, H, FPS = 1280, 720, 25
BLOCK = 480  # samples per audio block, as SyntheticMicrophone and the recorder deliver them
TARGET = 1.10


def make_raw(folder: Path, seconds: float) -> tuple[Path, Path]:
    """`seconds` of BGR frames and mono f32 PCM (beep every second, quiet noise), written once."""
    cam = SyntheticCamera("", W, H, FPS, label="Station 1")
    video, audio = folder / "input.bgr", folder / "input.f32"
    with open(video, "wb") as fh:
        for k in range(round(seconds * FPS)):
            fh.write(cam._render(k / FPS).tobytes())
    t = np.arange(round(seconds * AUDIO_RATE)) / AUDIO_RATE
    since = t - np.floor(t)
    pcm = np.where(since < 0.1, 0.5 * np.sin(2 * np.pi * 1000 * since), 0.0)
    pcm += np.random.default_rng(0).normal(0.0, 0.002, t.size)
    pcm.astype(np.float32).tofile(audio)
    return video, audio


FMP4 = ["-f", "mp4", "-movflags", MOVFLAGS, "-max_interleave_delta", "500000", "-video_track_timescale", "90000"]


def ffmpeg_command(video: Path, audio: Path, out: Path, settings: EncodeSettings,
                   container: list[str] = FMP4) -> list[str]:  # noqa: B006 - never mutated
    """Bare ffmpeg with Track's settings: x264 options, key frame every fragment, AAC, fMP4 flags."""
    x264 = [arg for key, value in settings.x264_options().items() for arg in (f"-{key}", value)]
    return [FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{W}x{H}", "-r", str(FPS), "-i", video,
            "-f", "f32le", "-ar", str(AUDIO_RATE), "-ac", "1", "-i", audio, "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", *x264, *FFMPEG_THREADS, "-pix_fmt", "yuv420p",
            "-force_key_frames", f"expr:gte(t,n_forced*{settings.fragment_s:g})",
            "-c:a", "aac", "-b:a", f"{settings.audio_kbps}k", *container, out]


def ours(video: Path, audio: Path, out: Path, settings: EncodeSettings) -> tuple[float, int]:
    """Feed the raw file through Track as fast as possible; (process CPU s, bytes written)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    frame_bytes = W * H * 3
    buf = bytearray(frame_bytes)
    per_frame = AUDIO_RATE // FPS
    with ProcessCPU() as cpu:
        manifest = ManifestWriter(out, {"recording_id": "bench", "station": "bench", "tracks": []})
        track = Track(out, "cam0", manifest, settings, W, H, FPS, None, with_audio=True)
        pcm = np.fromfile(audio, dtype=np.float32)
        with open(video, "rb") as fh:
            k = 0
            while fh.readinto(buf) == frame_bytes:
                track.add_frame(np.frombuffer(buf, dtype=np.uint8).reshape(H, W, 3), k / FPS)
                for s in range(k * per_frame, (k + 1) * per_frame, BLOCK):
                    track.add_audio(s, pcm[s:s + BLOCK])
                k += 1
        track.close()
        manifest.close()
    return cpu.cpu, track.bytes_written


def x264_options(data: bytes) -> str:
    """The settings string x264 writes into its first SEI: proof both encoders ran alike."""
    found = re.search(rb"options: ([^\x00]*)", data)
    return found.group(1).decode() if found else "?"


def main() -> None:
    args = parse_args(__doc__)
    seconds = 20.0 if args.quick else 60.0
    root = workdir(args, "encode")
    raw = Path("/dev/shm") / root.name
    raw.mkdir(exist_ok=True)
    settings = EncodeSettings()
    try:
        log(f"writing {seconds:g} s of raw {W}x{H} BGR + PCM to {raw}")
        video, audio = make_raw(raw, seconds)
        base_cpu, our_cpu, live_cpu, live_drop = [], [], [], []
        for i in range(args.repeats):
            run = run_child(ffmpeg_command(video, audio, root / "ffmpeg.mp4", settings))
            base_cpu.append(run.cpu)
            cpu, our_bytes = ours(video, audio, root / "ours", settings)
            our_cpu.append(cpu)
            live = run_child([OSCE, "record", "--video", "synthetic", "--audio", "synthetic", "--seconds",
                              seconds, "--size", f"{W}x{H}", "--out", root / f"live{i}"], check=False)
            stats = json.loads(live.stdout)["stats"]
            live_cpu.append(live.cpu)
            live_drop.append(stats["cam0"]["dropped"])
            log(f"repeat {i + 1}: ffmpeg {run.cpu:.2f} s, ours {cpu:.2f} s, osce record {live.cpu:.2f} s "
                f"(frames {stats['cam0']['frames']}, dropped {stats['cam0']['dropped']})")
        base_opts = x264_options((root / "ffmpeg.mp4").read_bytes()[:200_000])
        our_opts = x264_options((root / "ours/cam0/000001.m4s").read_bytes()[:200_000])
        if base_opts != our_opts:
            diff = sorted(set(base_opts.split()) ^ set(our_opts.split()))
            log(f"WARNING: x264 settings differ: {diff}")
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    per_min = 60.0 / seconds
    base, mine, live = median(base_cpu) * per_min, median(our_cpu) * per_min, median(live_cpu) * per_min
    ratio = mine / base
    rows = [["ffmpeg CLI, raw file -> fMP4 (baseline)", base, 1.0],
            ["ours: Track, raw file -> CMAF fragments", mine, ratio],
            ["osce record, synthetic sources, real time", live, live / base]]
    print(f"{W}x{H}@{FPS} + AAC mono, {seconds:g} s input, medians of {args.repeats} repeat(s); "
          f"x264 settings identical: {base_opts == our_opts}")
    print(f"ratio ours/ffmpeg {ratio:.3f} (target <= {TARGET}): {'PASS' if ratio <= TARGET else 'FAIL'}")
    report("encode_cpu", ["pipeline", "cpu_s_per_min", "vs_ffmpeg"], rows,
           {"seconds": seconds, "repeats": args.repeats, "ffmpeg_cpu_s_per_min": round(base, 3),
            "ours_cpu_s_per_min": round(mine, 3), "osce_record_cpu_s_per_min": round(live, 3),
            "ratio_ours_ffmpeg": round(ratio, 3), "ratio_osce_record_ffmpeg": round(live / base, 3),
            "target": TARGET, "pass": ratio <= TARGET, "x264_settings_identical": base_opts == our_opts,
            "x264_options": our_opts, "our_bytes": our_bytes,
            "ffmpeg_bytes": (root / "ffmpeg.mp4").stat().st_size, "osce_record_dropped": live_drop,
            "raw_cpu_s": {"ffmpeg": base_cpu, "ours": our_cpu, "osce_record": live_cpu}})


if __name__ == "__main__":
    main()
