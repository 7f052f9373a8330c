"""The flash-and-beep signal as ffmpeg command lines (built with ffmpeg-python).

- `clip_command`: a calibration clip for a room: play it full-screen on a monitor facing the
  camera with its sound on a speaker near the microphone, record, run `osce sync-check`, and
  put the suggested latency into the station's config.
- `LiveRoom`: the same signal as a live network camera (MPEG-TS over UDP) plus sound into a
  PulseAudio sink, from one ffmpeg process and so one clock: the test stand-in for a room.

The flash is one white frame at every whole second; the beep is 1 kHz for 100 ms from the
same instant (per-sample exact through aevalsrc).
"""

from __future__ import annotations

import subprocess

import ffmpeg
import imageio_ffmpeg

BEEP_EXPR = "if(lt(mod(t\\,1)\\,0.1)\\,0.5*sin(2*PI*1000*t)\\,0)"


def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped by imageio-ffmpeg (no system install needed)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def _inputs(width: int, height: int, fps: int, seconds: float | None, realtime: bool):  # noqa: ANN202
    # No initial burst: ffmpeg 6.1+ reads 0.5 s ahead by default, which parks in the sound
    # server as a fixed, run-dependent audio delay.
    kwargs = {"re": None, "readrate_initial_burst": 0} if realtime else {}
    size = f"{width}x{height}"
    vsrc = f"testsrc2=s={size}:r={fps}" + (f":d={seconds}" if seconds else "")
    video = ffmpeg.input(vsrc, f="lavfi", **kwargs).drawbox(
        x=0, y=0, width="iw", height="ih", color="white", thickness="fill", enable=f"eq(mod(n,{fps}),0)")
    asrc = f"aevalsrc={BEEP_EXPR}:s=48000:c=mono" + (f":d={seconds}" if seconds else "")
    audio = ffmpeg.input(asrc, f="lavfi", **kwargs)
    return video, audio


def clip_command(out: str, seconds: float = 30.0, width: int = 1280, height: int = 720, fps: int = 25) -> list[str]:
    video, audio = _inputs(width, height, fps, seconds, realtime=False)
    stream = ffmpeg.output(video, audio, out, vcodec="libx264", pix_fmt="yuv420p", acodec="aac",
                           **{"b:a": "128k"}).overwrite_output()
    return stream.compile(cmd=ffmpeg_exe())


def stimulus_command(out: str, seconds: float, width: int = 640, height: int = 360, fps: int = 25) -> list[str]:
    """The signal as a file for the RTSP camera stand-in to serve (media/rtsp_server.py): Matroska with the sound as
    PCM, because AAC's priming delay would move the beep by 21 ms before the camera's own encoder ever sees it."""
    video, audio = _inputs(width, height, fps, seconds, realtime=False)
    stream = ffmpeg.output(video, audio, out, format="matroska", vcodec="libx264", preset="ultrafast", crf=18,
                           g=fps, pix_fmt="yuv420p", acodec="pcm_s16le").overwrite_output()
    return stream.global_args("-loglevel", "error").compile(cmd=ffmpeg_exe())


def live_command(udp_url: str, pulse_sink: str, width: int = 1280, height: int = 720, fps: int = 25,
                 seconds: float | None = None) -> list[str]:
    """The signal as a live camera (MPEG-TS over UDP) plus its sound played into a PulseAudio sink.

    The sound server buffers what ffmpeg plays by an amount set when the stream starts, so the
    sound's delay is fixed for one run of this command but differs between runs (measured: up to
    hundreds of ms). Calibrate and check within one run, as in a room. A smaller buffer
    (`buffer_duration`) made ffmpeg's blocking writes stall the video output by up to 280 ms.
    """
    video, audio = _inputs(width, height, fps, seconds, realtime=True)
    outputs = [ffmpeg.output(video, udp_url, format="mpegts", vcodec="libx264", preset="veryfast",
                             tune="zerolatency", g=fps, pix_fmt="yuv420p"),
               ffmpeg.output(audio, "osce-calibration", format="pulse", device=pulse_sink)]
    return ffmpeg.merge_outputs(*outputs).global_args("-loglevel", "error").compile(cmd=ffmpeg_exe())


class LiveRoom:
    """A stand-in room: a network camera and a loudspeaker driven by one ffmpeg clock."""

    def __init__(self, udp_url: str, sink: str, width: int = 1280, height: int = 720, fps: int = 25) -> None:
        self.process = subprocess.Popen(live_command(udp_url, sink, width, height, fps), stdin=subprocess.DEVNULL)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self) -> LiveRoom:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
