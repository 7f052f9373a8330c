"""One camera's output: H.264 video encoded here, or H.264 / H.265 copied from the camera, plus the room's
AAC audio, muxed into CMAF fragments that are made durable one by one.

A copied H.265 stream gets the `hvc1` sample entry (the parameter sets in the init's hvcC, as Apple's players and
HLS require; libavformat's default `hev1` leaves them to the stream). The camera repeats them before each key
frame too, and they stay there: every fragment then decodes on its own.

Timestamps are the shared clock's, relative to the recording's origin, in a 1/90000 time
base, so several cameras of a station play side by side in sync and variable frame timing is
kept exactly as captured.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media.durable import write_atomic
from media.fragments import BoxSplitter
from media.manifest import Fragment, ManifestWriter

log = logging.getLogger(__name__)

VIDEO_TB = Fraction(1, 90000)
AUDIO_RATE = 48000
AUDIO_TB = Fraction(1, AUDIO_RATE)
AAC_FRAME = 1024
MOVFLAGS = "empty_moov+default_base_moof+frag_keyframe+skip_trailer"


@dataclass(frozen=True)
class EncodeSettings:
    """x264 settings shared by the recorder and the benchmark's bare-ffmpeg baseline."""

    preset: str = "veryfast"
    crf: int = 23
    maxrate_kbps: int = 4000
    fragment_s: float = 2.0
    audio_kbps: int = 96

    def x264_options(self) -> dict[str, str]:
        # zerolatency: no B-frames and no look-ahead, so a packet leaves with its frame (live view);
        # key frames are placed by the recorder at fragment boundaries, never by scene cuts.
        return {"preset": self.preset, "tune": "zerolatency", "crf": str(self.crf),
                "maxrate": f"{self.maxrate_kbps}k", "bufsize": f"{2 * self.maxrate_kbps}k",
                "x264-params": "scenecut=0:keyint=1000:min-keyint=1000"}


class Track:
    """Owns one MP4 muxer; `add_frame`/`add_packet` and `add_audio` may come from different threads."""

    def __init__(self, folder: Path, track_id: str, manifest: ManifestWriter, settings: EncodeSettings,
                 width: int, height: int, fps: float, template: av.video.stream.VideoStream | None,
                 with_audio: bool) -> None:
        self.id = track_id
        self.dir = folder / track_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.manifest = manifest
        self.settings = settings
        self.fps = fps
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.frames = 0
        self.bytes_written = 0
        self.silence_filled = 0  # audio samples of silence put into gaps
        self._seq = 0
        self._keys: list[float] = []
        self._last_video_t = 0.0
        self._last_pts = -1
        self._next_key_t = 0.0
        # Packet taps (the live view): each is called with every packet before it is muxed, under self.lock;
        # a tap must not modify the packet and must return quickly. Its errors are logged, never raised.
        self.taps: list[Callable[[av.Packet], None]] = []
        self._sink = BoxSplitter(self._write_init, self._write_fragment)
        movflags = MOVFLAGS + ("+delay_moov" if template is not None else "")
        self._out = av.open(self._sink, "w", format="mp4",
                            options={"movflags": movflags, "max_interleave_delta": "500000"})
        if template is None:
            stream = self._out.add_stream("libx264", rate=round(fps), options=settings.x264_options())
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.time_base = VIDEO_TB
        else:
            stream = self._out.add_stream_from_template(template)
            if template.codec_context.codec.canonical_name == "hevc":
                stream.codec_context.codec_tag = "hvc1"
        stream.time_base = VIDEO_TB
        self.video = stream
        self.audio = None
        if with_audio:
            audio = self._out.add_stream("aac", rate=AUDIO_RATE)
            audio.layout = "mono"
            audio.bit_rate = settings.audio_kbps * 1000
            audio.time_base = AUDIO_TB
            audio.codec_context.time_base = AUDIO_TB
            self.audio = audio
            self._pcm = np.zeros(0, dtype=np.float32)
            self._pcm_pts: int | None = None

    # -- writing fragments -------------------------------------------------------------
    def _write_init(self, data: bytes) -> None:
        self._store("init.mp4", data, "init", None, None)

    def _write_fragment(self, data: bytes) -> None:
        self._seq += 1
        start = self._keys[self._seq - 1] if self._seq - 1 < len(self._keys) else None
        end = self._keys[self._seq] if self._seq < len(self._keys) else self._last_video_t + 1.0 / self.fps
        self._store(f"{self._seq:06d}.m4s", data, "media", start, end)

    def _store(self, name: str, data: bytes, kind: str, start: float | None, end: float | None) -> None:
        path = self.dir / name
        write_atomic(path, data)
        self.bytes_written += len(data)
        self.manifest.fragment(Fragment(
            track=self.id, seq=0 if kind == "init" else self._seq, kind=kind,
            file=f"{self.id}/{name}", sha256=hashlib.sha256(data).hexdigest(), size=len(data),
            start=None if start is None else round(start, 6), end=None if end is None else round(end, 6)))

    def _mux(self, packets) -> None:  # noqa: ANN001 - iterable of av.Packet
        for packet in packets:
            if packet.stream is self.video and packet.is_keyframe and packet.pts is not None:
                self._keys.append(float(packet.pts * packet.time_base))
            for tap in self.taps:
                try:
                    tap(packet)
                except Exception:  # noqa: BLE001 - the live view must never stop the recording
                    log.exception("%s: live tap failed", self.id)
            try:
                self._out.mux(packet)
            except Exception as exc:
                raise (self._sink.error or exc) from exc
            if self._sink.error is not None:
                raise self._sink.error

    # -- video ---------------------------------------------------------------------------
    def add_frame(self, image: np.ndarray, t: float) -> None:
        """Encode one BGR picture captured at recording time t (seconds)."""
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        pts = max(round(t / VIDEO_TB), self._last_pts + 1)
        frame.pts, frame.time_base = pts, VIDEO_TB
        if t >= self._next_key_t:
            # A key frame at every fragment boundary of the shared clock: all cameras cut alike.
            frame.pict_type = av.video.frame.PictureType.I
            step = self.settings.fragment_s
            self._next_key_t = (int(t / step) + 1) * step
        with self.lock:
            self._last_pts, self._last_video_t = pts, t
            self._mux(self.video.encode(frame))
            self.frames += 1

    def add_packet(self, packet: av.Packet, t: float, dts_lead: float) -> None:
        """Mux a copied H.264/H.265 packet presented at recording time t (dts = t - dts_lead). The track starts at
        a key frame: the pictures before it refer to one it does not have."""
        if self.frames == 0 and not packet.is_keyframe:
            return
        pts = max(round(t / VIDEO_TB), self._last_pts + 1)
        packet.stream = self.video
        packet.time_base = VIDEO_TB
        packet.pts = pts
        packet.dts = pts - round(dts_lead / VIDEO_TB)
        with self.lock:
            self._last_pts, self._last_video_t = pts, t
            self._mux([packet])
            self.frames += 1

    # -- audio ---------------------------------------------------------------------------
    def add_audio(self, pts: int, samples: np.ndarray) -> None:
        """Samples of the drift-corrected room audio, pts in 1/48000 of the recording clock."""
        if self.audio is None or samples.size == 0:
            return
        with self.lock:
            if self._pcm_pts is not None and pts < self._pcm_pts + self._pcm.size:
                # Overlaps what we hold (a source restarted): drop the overlap, keep timestamps rising.
                samples = samples[self._pcm_pts + self._pcm.size - pts:]
                pts = self._pcm_pts + self._pcm.size
                if samples.size == 0:
                    return
            if self._pcm_pts is None:
                self._pcm_pts = pts
            elif pts > self._pcm_pts + self._pcm.size:
                # A gap (samples lost while the machine stalled): fill it with silence. Players play
                # audio as one continuous stream, so a hole would put every later sound early.
                gap = pts - (self._pcm_pts + self._pcm.size)
                self.silence_filled += gap
                while gap > 0:  # a second at a time: a gap of minutes must not need minutes of memory
                    step = min(gap, AUDIO_RATE)
                    self._encode_pcm(np.zeros(step, dtype=np.float32))
                    gap -= step
            self._encode_pcm(samples)

    def _encode_pcm(self, samples: np.ndarray) -> None:
        """Append samples to the continuous run and encode every whole AAC frame (lock held)."""
        assert self.audio is not None and self._pcm_pts is not None  # add_audio set them
        self._pcm = np.concatenate([self._pcm, samples])
        while self._pcm.size >= AAC_FRAME:
            chunk, self._pcm = self._pcm[:AAC_FRAME], self._pcm[AAC_FRAME:]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, self._pcm_pts, AUDIO_TB
            self._pcm_pts += AAC_FRAME
            self._mux(self.audio.encode(frame))

    def close(self) -> None:
        """Flush encoders and write the last fragment."""
        with self.lock:
            try:
                if self.video.codec_context.is_encoder and self.video.codec_context.name == "libx264":
                    self._mux(self.video.encode(None))
                if self.audio is not None:
                    self._mux(self.audio.encode(None))
                self._out.close()
            except Exception as exc:
                raise (self._sink.error or exc) from exc
            if self._sink.error is not None:
                raise self._sink.error
