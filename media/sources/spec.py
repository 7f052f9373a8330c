"""Source strings, as typed on the command line and in the station config.

Video: ``synthetic[:params]``, a device index (``0``) or path (``/dev/video0``), a stream URL
(``rtsp://…``, ``http://…``, ``udp://…``) decoded through OpenCV, or ``copy:URL`` for stream copy.
Audio: ``synthetic[:params]``, a PortAudio device index, or a device name (``pulse``, ``default``).
"""

from __future__ import annotations

from media.sources.base import AudioSource, SourceError, VideoSource


def open_video_source(spec: str, width: int = 1280, height: int = 720, fps: float = 25.0,
                      label: str = "OSCE") -> VideoSource:
    """Build (not yet open) the video source a spec names."""
    spec = spec.strip()
    if not spec:
        raise SourceError("empty video source")
    if spec == "synthetic" or spec.startswith("synthetic:"):
        from media.sources.synthetic import SyntheticCamera

        return SyntheticCamera(spec.partition(":")[2], width=width, height=height, fps=fps, label=label)
    if spec.startswith("copy:"):
        from media.sources.passthrough import StreamCopyCamera

        return StreamCopyCamera(spec[len("copy:"):])
    from media.sources.camera import OpenCVCamera

    target: int | str = int(spec) if spec.isdigit() else spec
    return OpenCVCamera(target, width=width, height=height, fps=fps)


def open_audio_source(spec: str) -> AudioSource:
    """Build (not yet open) the audio source a spec names."""
    spec = spec.strip()
    if not spec:
        raise SourceError("empty audio source")
    if spec == "synthetic" or spec.startswith("synthetic:"):
        from media.sources.synthetic import SyntheticMicrophone

        return SyntheticMicrophone(spec.partition(":")[2])
    from media.sources.microphone import Microphone

    return Microphone(int(spec) if spec.isdigit() else spec)
