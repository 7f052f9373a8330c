"""The recorder: sources in, stamped and encoded CMAF fragments plus a manifest out.

Threads, and why:
- one capture thread per source, so a slow or stalled device never holds up another;
- one encode thread per camera, fed through a short queue, so encoding never delays the
  next read (a late read would add timing jitter);
- the audio thread corrects the microphone's drift once and feeds every camera's track.

A source that cannot open, or stops, is reported (log, manifest event, `failures`) and
retried; the other sources go on recording. A full disk stops the recording cleanly: what
was written stays intact and listed in the manifest.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import cv2

from media import clock
from media.clock import DeviceClock, FollowerClock
from media.durable import DiskFullError
from media.manifest import ManifestWriter
from media.resample import DriftCorrector
from media.sources import (
    AudioBlock,
    AudioSource,
    EncodedVideo,
    RawFrame,
    SourceError,
    VideoSource,
    open_audio_source,
    open_video_source,
)
from media.sources.spec import camera_audio_index, masked
from media.substream import SubStream, live_of
from media.track import AUDIO_RATE, EncodeSettings, Track

log = logging.getLogger(__name__)

STALL_S = 2.0  # no frames for this long: the camera is reported lost and reopened
RETRY_S = 1.0  # a lost source is tried again this often (a camera back from a reboot records within 5 s)
DAMAGE_NOTE_S = 10.0  # a network camera losing packets is noted in the manifest at most this often
# Media from the first moments after opening is not recorded: the device clocks are still
# settling (see DeviceClock) and a network stream flushes its backlog. Measured here: without
# it the first flash-and-beep pair of a UDP camera was 170 ms off, every later one within 2 ms.
WARMUP_S = 1.5


@dataclass
class SourceConfig:
    spec: str
    latency_ms: float = 0.0  # the device's capture-to-delivery delay, measured by calibration
    # An RTSP camera's: transport, and a login given apart from the URL (the station config's password_file).
    transport: str = "tcp"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    live_url: str | None = None  # a camera's sub-stream for live view (the agent's live publisher uses it)

    @property
    def shown(self) -> str:
        """The spec as it may be printed: any password masked."""
        return masked(self.spec)


@dataclass
class RecorderConfig:
    out_dir: Path
    videos: list[SourceConfig]
    audio: SourceConfig | None = None
    width: int = 1280
    height: int = 720
    fps: float = 25.0
    station: str = "station"
    recording_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempt_id: str | None = None  # the exam attempt this recording belongs to (the agent sets it)
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    # Called with each camera's Track before its capture starts: attaches the live view's packet tap. With a
    # sub-stream (`SourceConfig.live_url`) it is called as live(track, muxer): the sub-stream's live muxer.
    live: Callable[..., object] | None = None


@dataclass
class _Camera:
    config: SourceConfig
    source: VideoSource
    track: Track | None = None
    clock: DeviceClock = field(default_factory=DeviceClock)
    queue: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=50))
    dropped: int = 0
    damaged: int = 0  # stream copy: packets the demuxer marked corrupt (a network camera's lost packets)
    damaged_noted_t: float = -math.inf
    lost: bool = False
    format: Any = None  # a copied stream's StreamFormat: another one after a reconnect needs a new part
    timeline: int = 0  # the source's device timeline the clock was learnt on (an RTSP camera: one per session)
    first_t: float | None = None  # recording time of the first and the latest item: the delivered rate
    last_t: float = 0.0
    items: int = 0


class Recorder:
    def __init__(self, config: RecorderConfig) -> None:
        if not config.videos:
            raise ValueError("a recording needs at least one --video source")
        self.config = config
        self.failures: list[str] = []
        self.stop_reason = "stopped"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cameras: list[_Camera] = []
        self._substreams: list[SubStream] = []
        self._audio: AudioSource | None = None
        self._drift: DriftCorrector | None = None
        self.manifest: ManifestWriter | None = None
        self.origin = 0.0

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.config
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        by_number: dict[int, _Camera] = {}
        for i, vc in enumerate(cfg.videos):
            try:
                source = open_video_source(vc.spec, cfg.width, cfg.height, cfg.fps, label=cfg.station,
                                           transport=vc.transport, user=vc.user, password=vc.password)
                source.open()
            except SourceError as exc:
                self._fail(f"video {i} ({vc.shown}): {masked(str(exc))}")
                continue
            by_number[i] = _Camera(config=vc, source=source)
            self._cameras.append(by_number[i])
        audio_clock: FollowerClock | None = None
        audio_latency_ms = cfg.audio.latency_ms if cfg.audio is not None else 0.0
        if cfg.audio is not None:
            try:
                number = camera_audio_index(cfg.audio.spec)
                if number is None:
                    audio = open_audio_source(cfg.audio.spec)
                else:
                    # The camera's own microphone: its sound goes through the camera's picture clock, and moves
                    # with the camera's calibrated latency (one mapping for the camera's sound and pictures).
                    cam = by_number.get(number)
                    if cam is None:
                        raise SourceError(f"camera {number} "
                                          + ("was not opened" if number < len(cfg.videos) else "is not configured"))
                    microphone: AudioSource | None = getattr(cam.source, "microphone", None)
                    if microphone is None:
                        raise SourceError(f"camera {number} is not an RTSP camera: it has no sound to give")
                    audio = microphone
                    audio_clock = FollowerClock(lambda cam=cam: cam.clock)
                    audio_latency_ms += cam.config.latency_ms
                audio.open()
                self._audio = audio
            except SourceError as exc:
                self._fail(f"audio ({cfg.audio.shown}): {masked(str(exc))}")
        if not self._cameras:
            self._close_sources()
            raise SourceError("no camera could be opened: " + "; ".join(self.failures))
        self.origin = clock.now() + WARMUP_S
        tracks = []
        for i, cam in enumerate(self._cameras):
            src = cam.source
            fmt = getattr(src, "format", None)
            tracks.append({"id": f"cam{i}", "source": cam.config.shown, "description": masked(src.description),
                           "latency_ms": cam.config.latency_ms,
                           "video": {"codec": fmt.codec if src.encoded and fmt is not None else "h264",
                                     "width": src.width, "height": src.height,
                                     "fps": src.fps, "fps_requested": cfg.fps, "copy": src.encoded},
                           "audio": None if self._audio is None or cfg.audio is None else
                           {"codec": "aac", "rate": AUDIO_RATE, "channels": 1,
                            "source": cfg.audio.shown, "description": masked(self._audio.description),
                            "latency_ms": audio_latency_ms}})
        self.manifest = ManifestWriter(out, {
            "recording_id": cfg.recording_id, "attempt_id": cfg.attempt_id, "station": cfg.station,
            "started_wall": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "fragment_s": cfg.encode.fragment_s, "clock": "monotonic", "tracks": tracks})
        for f in self.failures:
            self.manifest.event("source_failed", 0.0, message=f)
        for i, cam in enumerate(self._cameras):
            src = cam.source
            template = getattr(src, "stream", None) if src.encoded else None
            cam.track = Track(out, f"cam{i}", self.manifest, cfg.encode, src.width, src.height, src.fps,
                              template, with_audio=self._audio is not None)
            cam.format = getattr(src, "format", None)
            if cfg.live is not None:
                vc = cam.config
                sub = None if not vc.live_url else SubStream(vc.live_url, cam.track, self.origin, vc.latency_ms / 1000,
                                                              vc.transport, vc.user, vc.password)
                live_of(cam.track, cfg.live, sub)
                if sub is not None and sub.muxer is not None:
                    self._substreams.append(sub)
            self._spawn(f"capture-cam{i}", self._capture_video, cam)
            if not src.encoded:
                self._spawn(f"encode-cam{i}", self._encode_video, cam)
        if self._audio is not None and cfg.audio is not None:
            self._drift = DriftCorrector(AUDIO_RATE, self.origin, audio_latency_ms / 1000.0, clock=audio_clock)
            self._spawn("capture-audio", self._capture_audio, self._audio)
        # What the imports made lives as long as the process: out of the collector's way, so that the many small
        # objects of a recording (packets, frames, blocks) do not make it walk them all again and again.
        gc.freeze()
        log.info("recording %s into %s: %d camera(s), audio %s", cfg.recording_id, out,
                 len(self._cameras), "yes" if self._audio else "no")

    def _spawn(self, name: str, target, *args) -> None:  # noqa: ANN001
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait(self, seconds: float) -> None:
        """Record for `seconds` from the origin (after the warm-up), or until a fatal error stops it."""
        self._stop.wait(max(0.0, self.origin - clock.now()) + seconds)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self, reason: str = "completed") -> dict[str, Any]:
        if not self._stop.is_set():
            self.stop_reason = reason
        self._stop.set()
        for cam in self._cameras:
            cam.queue.put(None)
        for sub in self._substreams:
            sub.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self._close_sources()
        for cam in self._cameras:
            if cam.track is not None and cam.track.error is None:
                try:
                    cam.track.close()
                except Exception as exc:  # noqa: BLE001 - report and keep closing the others
                    self._fail(f"{cam.track.id}: closing: {exc}")
        stats = self.stats()
        if self.manifest is not None:
            try:
                self.manifest.end(clock.now() - self.origin, self.stop_reason, stats)
            except OSError as exc:
                self._fail(f"manifest: {exc}")
            self.manifest.close()
        return stats

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"failures": list(self.failures)}
        for i, cam in enumerate(self._cameras):
            span = cam.last_t - cam.first_t if cam.first_t is not None else 0.0
            out[f"cam{i}"] = {"frames": cam.track.frames if cam.track else 0, "dropped": cam.dropped,
                              "fps_delivered": round((cam.items - 1) / span, 2) if span > 0 else None,
                              "damaged_packets": cam.damaged,
                              "drift_ppm": round(cam.clock.drift_ppm, 2) if cam.clock.ready else None,
                              "bytes": cam.track.bytes_written if cam.track else 0,
                              "audio_silence_filled_s": round(cam.track.silence_filled / AUDIO_RATE, 3)
                              if cam.track else 0.0}
        if self._drift is not None:
            out["audio"] = {"drift_ppm": round(self._drift.clock.drift_ppm, 2) if self._drift.clock.ready
                            else None, "resyncs": self._drift.resyncs,
                            "overflows": getattr(self._audio, "overflows", 0)}
        return out

    def _close_sources(self) -> None:
        for cam in self._cameras:
            cam.source.close()
        if self._audio is not None:
            self._audio.close()

    def _fail(self, message: str) -> None:
        message = masked(message)  # a camera URL in an error may hold its password
        log.error(message)
        self.failures.append(message)

    def _fatal(self, message: str) -> None:
        """A failure that ends the recording (the disk): stop cleanly, keep what is written."""
        self._fail(message)
        if self.manifest is not None:
            # The disk that failed holds the manifest too: if this line fails, the earlier ones stand.
            with contextlib.suppress(OSError):
                self.manifest.event("recording_stopped", clock.now() - self.origin, message=message)
        self.stop_reason = "error"
        self._stop.set()

    # -- threads ---------------------------------------------------------------------------
    def _capture_video(self, cam: _Camera) -> None:
        src, track = cam.source, cam.track
        assert track is not None  # made before the threads start
        last_seen = clock.now()
        while not self._stop.is_set():
            try:
                item = src.read(timeout=0.5) if not cam.lost else None
            except SourceError as exc:
                self._fail(masked(str(exc)))
                item = None
            now = clock.now()
            if item is None:
                if not cam.lost and now - last_seen > STALL_S:
                    cam.lost = True
                    msg = f"{track.id}: {src.name} stopped delivering frames"
                    self._fail(msg)
                    self._event("source_lost", track=track.id, message=msg)
                    src.close()
                if cam.lost:
                    cam.lost = not self._reopen(cam)
                    last_seen = clock.now()
                continue
            last_seen = now
            timeline = getattr(src, "timeline", 0)
            if timeline != cam.timeline:  # the source's times now count on another clock: learn it afresh
                cam.clock, cam.timeline = _clock_of(src), timeline
            cam.clock.observe(item.device_t, item.observed_t)
            t = cam.clock.to_shared(item.device_t) - cam.config.latency_ms / 1000.0 - self.origin
            if t < 0:
                continue
            if cam.first_t is None:
                cam.first_t = t
            cam.last_t, cam.items = t, cam.items + 1
            if isinstance(item, EncodedVideo):
                if item.packet.is_corrupt:
                    self._note_damage(cam, t)
                self._guard(track, track.add_packet, item.packet, t,
                            float((item.packet.pts - item.packet.dts) * item.packet.time_base))
            else:
                try:
                    cam.queue.put_nowait((item, t))
                except queue.Full:
                    cam.dropped += 1  # the encoder cannot keep up: drop, never block capture

    def _note_damage(self, cam: _Camera, t: float) -> None:
        """Count a damaged packet; the manifest notes where, at most once per `DAMAGE_NOTE_S` (the picture is
        recorded as it came: a decoder shows the loss as a smear until the next key frame)."""
        cam.damaged += 1
        if t - cam.damaged_noted_t >= DAMAGE_NOTE_S:
            cam.damaged_noted_t = t
            assert cam.track is not None
            self._event("source_damaged", track=cam.track.id, damaged_packets=cam.damaged,
                        message=f"{cam.source.name}: damaged packets from the network (lost data)")

    def _reopen(self, cam: _Camera) -> bool:
        assert cam.track is not None
        if self._stop.wait(RETRY_S):
            return False
        try:
            cam.source.open()
        except SourceError as exc:
            log.info("still waiting for %s: %s", cam.track.id, masked(str(exc)))
            return False
        # A reopened stream starts a new device timeline.
        cam.clock, cam.timeline = _clock_of(cam.source), getattr(cam.source, "timeline", 0)
        fmt = getattr(cam.source, "format", None)
        if cam.format is not None and fmt != cam.format:
            # Copied packets of another codec, size or parameter sets cannot go on in this track (its init
            # segment describes the old stream): the recording stops here and the agent starts a new part.
            what = fmt.describe() if fmt is not None else "another stream"
            msg = f"{cam.track.id}: {cam.source.name} came back as {what} (was {cam.format.describe()})"
            log.warning("%s: a new part starts", msg)
            self._event("source_changed", track=cam.track.id, message=msg)
            self.stop_reason = "source_changed"
            self._stop.set()
            return False
        self._event("source_back", track=cam.track.id, message=f"{cam.source.name} delivers again")
        return True

    def _encode_video(self, cam: _Camera) -> None:
        track = cam.track
        assert track is not None
        while True:
            job = cam.queue.get()
            if job is None or track.error is not None:
                return
            frame, t = job
            assert isinstance(frame, RawFrame)
            image = frame.image
            width, height = track.video.codec_context.width, track.video.codec_context.height
            if image.shape[0] != height or image.shape[1] != width:  # a camera back with another size
                image = cv2.resize(image, (width, height))
            self._guard(track, track.add_frame, image, t)

    def _capture_audio(self, source: AudioSource) -> None:
        drift = self._drift
        assert drift is not None  # made with the audio source
        silent_since = clock.now()
        reported = False
        # A camera's sound starts with its first RTCP sender report, which may come seconds after the pictures.
        allowed = getattr(source, "startup_s", STALL_S)
        while not self._stop.is_set():
            try:
                block = source.read(timeout=0.5)
            except SourceError as exc:
                self._fail(str(exc))
                self._event("source_lost", track="audio", message=str(exc))
                return
            if block is None:
                if not reported and clock.now() - silent_since > allowed:
                    reported = True
                    msg = f"audio: {source.name} stopped delivering samples"
                    self._fail(msg)
                    self._event("source_lost", track="audio", message=msg)
                continue
            if reported:
                self._event("source_back", track="audio", message=f"audio: {source.name} delivers again")
            silent_since, reported, allowed = clock.now(), False, STALL_S
            pts, samples = drift.push(block)
            for cam in self._cameras:
                if cam.track is not None and cam.track.error is None:
                    self._guard(cam.track, cam.track.add_audio, pts, samples)

    def _guard(self, track: Track, fn, *args) -> None:  # noqa: ANN001
        """Run a muxing call; a full disk ends the recording, other errors end this track."""
        if track.error is not None:
            return
        try:
            fn(*args)
        except DiskFullError as exc:
            track.error = exc
            self._fatal(f"{track.id}: {exc}")
        except Exception as exc:  # noqa: BLE001 - keep the other tracks recording
            track.error = exc
            self._fail(f"{track.id}: {masked(str(exc))}")
            self._event("track_failed", track=track.id, message=masked(str(exc)))

    def _event(self, event: str, **fields: Any) -> None:
        if "message" in fields:
            fields["message"] = masked(str(fields["message"]))
        if self.manifest is not None:
            try:
                self.manifest.event(event, clock.now() - self.origin, **fields)
            except OSError as exc:
                log.error("manifest: %s", exc)


def _clock_of(source: VideoSource) -> DeviceClock:
    """A camera's clock mapping: the stamped kind when the camera stamps its pictures itself (RTSP)."""
    return DeviceClock.stamped() if getattr(source, "exact_stamps", False) else DeviceClock()


def record(config: RecorderConfig, seconds: float) -> tuple[Recorder, dict[str, Any]]:
    """Record one attempt for `seconds` (or until a fatal error) and return the stats."""
    recorder = Recorder(config)
    recorder.start()
    try:
        recorder.wait(seconds)
    finally:
        stats = recorder.stop("completed")
    return recorder, stats


_Item = TypeVar("_Item", RawFrame | EncodedVideo | None, AudioBlock | None)


def tap_sources(recorder: Recorder, callback: Callable[[str, RawFrame | EncodedVideo | AudioBlock], None]) -> list[str]:
    """Show a started recorder's items to `callback(track, item)` as they are read; returns the tapped tracks.

    For health checks (frames arriving, frozen picture, sound level): `track` is ``camN`` or ``audio``.
    The callback runs on the capture threads, so it must only keep a reference or do trivial work;
    an exception in it is logged and never reaches the recording.
    """

    def wrap(track: str, read: Callable[[float], _Item]) -> Callable[..., _Item]:
        def tapped(timeout: float) -> _Item:
            item = read(timeout)
            if item is not None:
                try:
                    callback(track, item)
                except Exception:  # noqa: BLE001 - a health check never stops a recording
                    log.exception("source tap %s", track)
            return item

        return tapped

    tracks = []
    for i, cam in enumerate(recorder._cameras):
        cam.source.read = wrap(f"cam{i}", cam.source.read)  # type: ignore[method-assign]
        tracks.append(f"cam{i}")
    if recorder._audio is not None:
        recorder._audio.read = wrap("audio", recorder._audio.read)  # type: ignore[method-assign]
        tracks.append("audio")
    return tracks
