"""Source strings, as typed on the command line and in the station config.

Video: ``synthetic[:params]``, a device index (``0``) or path (``/dev/video0``), an RTSP camera (``rtsp://…``:
H.264 and H.265 recorded by stream copy, anything else decoded; ``copy:rtsp://…`` refuses what it cannot copy,
``decode:rtsp://…`` decodes and encodes even what it could copy), another stream URL (``http://…``,
``udp://…``) decoded through OpenCV, or ``copy:URL`` for stream copy of H.264.
Audio: ``synthetic[:params]``, a PortAudio device index, a device name (``pulse``, ``default``), or ``camera:N``
(the sound of the N-th camera's RTSP session, counted from 0; the recorder wires it, see media/recorder.py).

A camera URL may hold a password: `masked` is how every such string is shown (logs, manifest, health, errors).
"""

from __future__ import annotations

from media.sources.base import AudioSource, SourceError, VideoSource
from media.sources.rtsp import masked

__all__ = ["camera_audio_index", "is_rtsp", "masked", "open_audio_source", "open_video_source"]

RTSP_SCHEMES = ("rtsp://", "rtsps://")


def open_video_source(spec: str, width: int = 1280, height: int = 720, fps: float = 25.0, label: str = "OSCE",
                      transport: str = "tcp", user: str | None = None, password: str | None = None) -> VideoSource:
    """Build (not yet open) the video source a spec names; `transport`, `user` and `password` are an RTSP
    camera's (the login may also be in the URL)."""
    spec = spec.strip()
    if not spec:
        raise SourceError("empty video source")
    if spec == "synthetic" or spec.startswith("synthetic:"):
        from media.sources.synthetic import SyntheticCamera

        return SyntheticCamera(spec.partition(":")[2], width=width, height=height, fps=fps, label=label)
    copy = spec.startswith("copy:")
    decode = spec.startswith("decode:")
    url = spec.partition(":")[2] if copy or decode else spec
    if url.startswith(RTSP_SCHEMES):
        from media.sources.rtsp import RtspCamera

        return RtspCamera(url, transport=transport, user=user, password=password,
                          copy=True if copy else False if decode else None, width=width, height=height, fps=fps)
    if decode:
        raise SourceError(f"video source {masked(spec)!r}: decode: is for rtsp:// cameras")
    if copy:
        from media.sources.passthrough import StreamCopyCamera

        return StreamCopyCamera(url)
    from media.sources.camera import OpenCVCamera

    target: int | str = int(spec) if spec.isdigit() else spec
    return OpenCVCamera(target, width=width, height=height, fps=fps)


def is_rtsp(spec: str) -> bool:
    """Is this video spec an RTSP camera (``rtsp://…``, ``copy:rtsp://…``, ``decode:rtsp://…``)?"""
    spec = spec.strip()
    return spec.startswith(RTSP_SCHEMES) or spec.partition(":")[2].startswith(RTSP_SCHEMES)


def camera_audio_index(spec: str) -> int | None:
    """N for ``camera:N`` (the sound of camera N), None for any other audio spec."""
    spec = spec.strip()
    if not spec.startswith("camera:") and spec != "camera":
        return None
    number = spec.partition(":")[2] or "0"
    if not number.isdigit():
        raise SourceError(f"audio source {spec!r}: expected camera:N, N the camera's number counted from 0")
    return int(number)


def open_audio_source(spec: str) -> AudioSource:
    """Build (not yet open) the audio source a spec names (not ``camera:N``: that one is the camera's)."""
    spec = spec.strip()
    if not spec:
        raise SourceError("empty audio source")
    if camera_audio_index(spec) is not None:
        raise SourceError(f"audio source {spec!r} is a camera's sound: the recorder takes it from that camera")
    if spec == "synthetic" or spec.startswith("synthetic:"):
        from media.sources.synthetic import SyntheticMicrophone

        return SyntheticMicrophone(spec.partition(":")[2])
    from media.sources.microphone import Microphone

    return Microphone(int(spec) if spec.isdigit() else spec)
