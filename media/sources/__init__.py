"""Capture sources: cameras (OpenCV, stream copy, synthetic) and microphones (sounddevice, synthetic)."""

from media.sources.base import AudioBlock, AudioSource, EncodedVideo, RawFrame, SourceError, VideoSource
from media.sources.spec import open_audio_source, open_video_source

__all__ = [
    "AudioBlock",
    "AudioSource",
    "EncodedVideo",
    "RawFrame",
    "SourceError",
    "VideoSource",
    "open_audio_source",
    "open_video_source",
]
