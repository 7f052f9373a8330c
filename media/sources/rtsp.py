"""IP cameras over RTSP (PyAV's RTSP client): the main stream recorded by stream copy, the camera's microphone.

A ceiling IP camera sends its main stream as H.264 or H.265 and often its microphone (G.711 A-law or µ-law, AAC,
Opus) in the same RTSP session. `RtspCamera` demuxes the session: video packets of H.264/H.265 leave as they came
(stream copy: no decode, no encode), anything else (MJPEG…) is decoded to pictures for the recorder to encode; the
audio is decoded and resampled to 48 kHz and handed to the camera's `CameraMicrophone`.

Time: the camera stamps audio and video on its own clock, and its RTCP sender reports say what that clock reads
(NTP) at a given RTP time; libavformat turns that into a wall-clock time per packet (the packet's `prft` side
data) once a report of that stream has arrived. The video's device time is its stream time; the sound is put on
the same axis (by the camera's clock once both streams have had a report, before that by the stream times, which
libavformat aligns at the start of play), and the recorder maps that one axis onto the shared clock ONCE (this
camera's `DeviceClock`, learnt from the video packets' arrivals): the sound follows through
media.clock.FollowerClock, so the camera's own lip sync is kept as the camera made it.

Transport: RTSP interleaved over the TCP connection by default (what cameras do best through switches and
firewalls), UDP per camera. Credentials come in the URL or separately (the station config's `password_file`);
every text this module makes shows the URL with the password masked (`masked`). Data lost on UDP (RTP sequence
gaps, which libavformat reports in its log) marks the next video packet corrupt, so it is counted as damaged like
a lost MPEG-TS packet.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import av
import av.logging
import cv2
import numpy as np

from media import clock
from media.sources.base import AudioBlock, EncodedVideo, RawFrame, SourceError

OPEN_TIMEOUT_S = 6.0
READ_TIMEOUT_S = 2.0
AUDIO_RATE = 48000
COPY_CODECS = {"h264": "H.264", "hevc": "H.265"}
TRANSPORTS = ("tcp", "udp")
MISSED = re.compile(r"RTP: missed (\d+) packets")
BLOCK = AUDIO_RATE * 60 // 1000  # the camera's sound goes out in blocks of at least 60 ms
CAUGHT_UP_WAIT_S = 0.005  # a packet that kept the reader waiting this long came live, not from a backlog
RECHECK = 50  # once confirmed, a stream's offset to the camera's clock is read again every RECHECK-th packet
BURST_MAX_S = 3.0  # a stream that never keeps the reader waiting is taken as live after this
log = logging.getLogger(__name__)

_USERINFO = re.compile(r"(\b[a-zA-Z][\w+.-]*://)([^/\s'\"]*)@")
_QUERY_SECRET = re.compile(r"((?:password|passwd|pwd|pass)=)[^&\s'\"]*", re.IGNORECASE)


def masked(text: str) -> str:
    """`text` with every URL password replaced by ***: rtsp://admin:***@10.0.0.5/stream (also ?password=***)."""

    def userinfo(m: re.Match[str]) -> str:
        user, sep, _password = m[2].partition(":")
        return f"{m[1]}{user}{':***' if sep else ''}@"

    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub(userinfo, text))


def with_login(url: str, user: str | None, password: str | None) -> str:
    """The URL with the given login in it (percent-encoded); a login already in the URL is kept if none is given."""
    if user is None and password is None:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    login = quote(user or "", safe="") + (":" + quote(password, safe="") if password is not None else "")
    return urlunsplit(parts._replace(netloc=f"{login}@{host}"))


def _prft_seconds(packet: av.Packet) -> float | None:
    """The camera's wall clock (seconds) at this packet's timestamp, from its RTCP sender reports; None before."""
    if not packet.has_sidedata("prft"):
        return None
    wallclock, = struct.unpack_from("=q", bytes(memoryview(packet.get_sidedata("prft"))))
    return wallclock / 1e6


@dataclass(frozen=True)
class StreamFormat:
    """What a track's init segment is made from: when it changes across a reconnect, a new part starts."""

    codec: str
    width: int
    height: int
    extradata: bytes

    def describe(self) -> str:
        return f"{COPY_CODECS.get(self.codec, self.codec)} {self.width}x{self.height}"


class CameraMicrophone:
    """The sound of an RTSP camera's session, as an audio source: 48 kHz mono blocks whose `capture_t` is the
    camera's own clock (the recorder maps it with the camera's video clock: `FollowerClock`)."""

    rate = AUDIO_RATE
    startup_s = 8.0  # the first sound comes with the camera's first RTCP sender report (GStreamer: up to ~3 s)

    def __init__(self, camera: RtspCamera) -> None:
        self.camera = camera
        self.name = f"sound of {camera.name}"
        self.description = self.name
        self.overflows = 0
        self.codec: str | None = None
        self._queue: queue.Queue[AudioBlock] = queue.Queue(maxsize=1000)
        self.opened = False

    def open(self) -> None:
        if self.camera.audio_codec is None:
            raise SourceError(f"{self.camera.name}: the camera sends no sound (its RTSP session has no audio stream)")
        self.codec = self.camera.audio_codec
        self.description = f"{self.name} ({self.codec}, resampled to {AUDIO_RATE} Hz)"
        self.opened = True

    def put(self, block: AudioBlock) -> None:
        try:
            self._queue.put_nowait(block)
        except queue.Full:
            self.overflows += 1

    def read(self, timeout: float) -> AudioBlock | None:
        if not self.opened:
            raise SourceError(f"{self.name}: not open")
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.opened = False


class _AudioPath:
    """One session's audio: decode, resample to 48 kHz mono float, stamp each block on the video's time axis.

    Each decoded frame takes the time of the packet it came from (a decoder keeps the packet's timestamp; Opus
    and AAC decoders hand a frame out one packet later, so the time is looked up, not taken from the packet just
    fed), as `to_axis(stream time, camera clock time or None)` puts it (RtspCamera._axis). Output sample n of a run
    stands for the time n / 48000 after the run's first sample: libswresample holds back its filter's delay
    instead of shifting the output (measured with an impulse). Each frame is an anchor (its output index and its
    time), so a camera whose sound clock drifts against its own wall clock is followed."""

    def __init__(self, stream: av.audio.stream.AudioStream, to_axis: Callable[[float, float | None], float]) -> None:
        self.stream = stream
        self.to_axis = to_axis
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        self.stamps: dict[int, float | None] = {}  # packet pts -> camera clock time (None before a report)
        self.index = 0  # the next 48 kHz output sample (gaps included)
        self.next_t: float | None = None  # the time the next decoded frame should start at
        self.anchor: tuple[int, float] = (0, 0.0)  # (output index, time) of the latest frame's start
        self.fed = 0  # output samples the frames fed to the resampler stand for, in this run
        self.run_index = 0  # output index where this run began
        self.time_base = float(stream.time_base or 0)
        self.pending: list[np.ndarray] = []  # resampled samples not yet handed out, from pending_index on
        self.pending_index = 0
        self.pending_t = 0.0

    def push(self, packet: av.Packet, camera_t: float | None, into: Callable[[AudioBlock], None]) -> None:
        if packet.pts is None:
            return
        self.stamps[packet.pts] = camera_t
        if len(self.stamps) > 64:
            del self.stamps[next(iter(self.stamps))]
        for frame in self.stream.codec_context.decode(packet):
            if frame.pts is None or frame.pts not in self.stamps:
                continue  # a frame of a packet we never saw (a decoder's first, primed frame)
            start = self.to_axis(frame.pts * self.time_base, self.stamps[frame.pts])
            if self.next_t is not None and abs(start - self.next_t) > 0.05:
                # A hole (lost packets, the camera stopped sending its sound): a new run after it, so that the
                # sample count keeps matching the time and the drift corrector sees the jump.
                self.flush(into)
                self.index = self.run_index + self.fed + max(0, round((start - self.next_t) * AUDIO_RATE))
                self.resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
                self.next_t = None
            if self.next_t is None:
                self.run_index, self.fed = self.index, 0
            self.anchor = (self.run_index + self.fed, start)
            self.next_t = start + frame.samples / frame.sample_rate
            self.fed += round(frame.samples * AUDIO_RATE / frame.sample_rate)
            for out in self.resampler.resample(frame):
                if not self.pending:
                    anchor_index, anchor_t = self.anchor
                    self.pending_t = anchor_t + (self.index - anchor_index) / AUDIO_RATE
                    self.pending_index = self.index
                samples = np.frombuffer(memoryview(out.planes[0]), dtype=np.float32, count=out.samples).copy()
                self.pending.append(samples)
                self.index += samples.size
            if self.index - self.pending_index >= BLOCK:
                self.flush(into)

    def flush(self, into: Callable[[AudioBlock], None]) -> None:
        """Hand out what is pending as one block (a few frames at once: fewer, larger steps downstream)."""
        if self.pending:
            samples = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
            into(AudioBlock(samples=samples, first_index=self.pending_index, capture_t=self.pending_t))
            self.pending = []


class RtspCamera:
    """One RTSP camera session; `copy` True: stream copy only (refuse other codecs), None: copy H.264/H.265 and
    decode anything else, False: always decode.

    The video's device time is its stream time (RTP), which is continuous through the first sender report; the
    report gives the camera clock's offset to it, and the sound is put on that same axis (`capture_t` minus the
    offset), so the recorder's one DeviceClock of this camera maps both. What libavformat read while it probed
    the session comes out in a burst: those pictures are held until the reader has caught up with the camera and
    are then given the arrival times they would have had live, so the burst cannot bend the camera's clock.
    """

    def __init__(self, url: str, transport: str = "tcp", user: str | None = None, password: str | None = None,
                 copy: bool | None = None, width: int = 1280, height: int = 720, fps: float = 25.0) -> None:
        if transport not in TRANSPORTS:
            raise SourceError(f"camera {masked(url)}: transport {transport!r} must be tcp or udp")
        self.url = with_login(url, user, password)
        self.transport = transport
        self.copy = copy
        self.name = f"camera {masked(url)}"
        self.description = self.name
        self.width, self.height, self.fps = width, height, fps
        self.want_size = (width, height)
        self.encoded = copy is not False
        self.format: StreamFormat | None = None
        self.stream: av.video.stream.VideoStream | None = None
        self.audio_codec: str | None = None
        self.timeline = 0  # raised when the device times start on a new axis (a new session, a jump)
        self.exact_stamps = True  # RTP times are the camera's capture instants: the recorder's stamped clock
        self.microphone = CameraMicrophone(self)
        self._container: av.container.InputContainer | None = None
        self._packets: Iterator[av.Packet] | None = None
        self._audio: _AudioPath | None = None
        self._logs: list = []
        self._capture: tuple[int, av.logging.Capture] | None = None
        self._started = False  # a key frame came: copying may begin
        self._lost = 0
        self._offset: float | None = None  # camera clock - video stream time, from the sender reports
        self._candidate: float | None = None  # the last picture's offset, to be confirmed by the next one
        self._audio_offset: float | None = None  # camera clock - sound stream time, confirmed the same way
        self._audio_candidate: float | None = None
        self._audio_packets = self._video_packets = 0
        self._video_index, self._video_tb, self._audio_tb = 0, 0.0, 0.0
        self._last_pts: float | None = None
        self._live = False
        self._opened_at = 0.0
        self._held: list[EncodedVideo | RawFrame] = []
        self._ready: deque[EncodedVideo | RawFrame] = deque()

    # -- opening --------------------------------------------------------------------------------------------
    def open(self) -> None:
        _route_libav_logs()
        # 0.5 s of probing, not 5: the SDP gives the codecs and sizes, and a camera back from a reboot records
        # sooner (the default probing took 1.3 s here).
        container = self._connect(quick=True)
        if container.streams.video and not container.streams.video[0].codec_context.width:
            container.close()  # the picture size takes a decoded picture: probe as long as libavformat likes
            container = self._connect(quick=False)
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.name}: the stream has no video")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        copyable = codec in COPY_CODECS
        if self.copy and not copyable:
            container.close()
            raise SourceError(f"{self.name}: sends {codec}; stream copy needs H.264 or H.265 "
                              f"(drop the copy: prefix to decode and encode it)")
        self.encoded = copyable and self.copy is not False
        ctx = stream.codec_context
        self.format = StreamFormat(codec, ctx.width, ctx.height, bytes(ctx.extradata or b""))
        if self.encoded:
            self.width, self.height = ctx.width, ctx.height
        if stream.average_rate:
            self.fps = float(stream.average_rate)
        self.description = f"{self.name} ({self.format.describe()}, RTSP over {self.transport.upper()}, " \
                           f"{'stream copy' if self.encoded else 'decoded'})"
        self.stream = stream
        self.audio_codec = container.streams.audio[0].codec_context.name if container.streams.audio else None
        self._audio = _AudioPath(container.streams.audio[0], self._axis) if container.streams.audio else None
        self._container = container
        self._packets = None  # made at the first read: with the sound only if the microphone was opened
        self._started, self._lost, self._offset, self._candidate, self._last_pts = False, 0, None, None, None
        self._audio_offset, self._audio_candidate, self._audio_packets, self._video_packets = None, None, 0, 0
        self._video_index, self._video_tb = stream.index, float(stream.time_base or 0)
        self._audio_tb = float(container.streams.audio[0].time_base or 0) if container.streams.audio else 0.0
        self._live, self._opened_at, self._held = False, clock.now(), []
        self._ready.clear()
        self.timeline += 1

    def _connect(self, quick: bool) -> av.container.InputContainer:
        options = {"rtsp_transport": self.transport, "buffer_size": str(4 << 20)}
        if quick:
            options["analyzeduration"] = "500000"
        try:
            return av.open(self.url, options=options, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
        except av.error.HTTPUnauthorizedError:
            raise SourceError(f"{self.name} refused the login (401)") from None
        except av.error.HTTPNotFoundError:
            raise SourceError(f"{self.name}: cannot open: the camera has no stream at this path (404)") from None
        except (ConnectionError, TimeoutError, av.error.TimeoutError) as exc:
            raise SourceError(f"{self.name}: cannot open: unreachable ({self._why(exc)})") from None
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"{self.name}: cannot open: not an RTSP video stream ({self._why(exc)})") from None

    def _why(self, exc: BaseException) -> str:
        """An error's text without the password (libavformat puts the URL in it)."""
        return masked(str(exc)).replace(self.url, masked(self.url))

    # -- reading --------------------------------------------------------------------------------------------
    def read(self, timeout: float) -> EncodedVideo | RawFrame | None:
        if self._container is None:
            raise SourceError(f"{self.name}: not open")
        if self._packets is None:
            # Sound nobody asked for is not even handed out by the demuxer.
            streams = [self.stream, *(self._container.streams.audio[:1] if self.microphone.opened else ())]
            self._packets = self._container.demux(*streams)
        if self._capture is None or self._capture[0] != threading.get_ident():
            self._release_logs()
            capture = av.logging.Capture(local=True)  # this thread's libav log lines: the lost RTP packets
            self._capture = (threading.get_ident(), capture)
            self._logs = capture.__enter__()
        if self._ready:
            return self._ready.popleft()
        try:
            while True:
                asked = clock.now() if not self._live else 0.0
                packet = next(self._packets, None)
                arrived = clock.now()
                if packet is None:
                    return None
                if self._logs:
                    self._count_losses()
                if not self._live and (arrived - asked >= CAUGHT_UP_WAIT_S or arrived - self._opened_at > BURST_MAX_S):
                    self._live = True  # the reader had to wait for the camera: what comes now is live
                pts = packet.pts
                if pts is None or packet.size == 0:
                    continue
                if packet.stream_index != self._video_index:
                    if self._audio is not None:
                        self._audio.push(packet, self._audio_stamp(packet, pts * self._audio_tb), self.microphone.put)
                    continue
                item = self._video(packet, pts * self._video_tb, arrived)
                if item is None:
                    continue
                if not self._live:
                    self._held.append(item)
                    continue
                if self._held:
                    # The burst, timed as if each picture had come live: as far before this one as it was taken.
                    for held in self._held:
                        held.observed_t = item.observed_t - (item.device_t - held.device_t)
                    self._ready.extend(self._held[1:] + [item])
                    item, self._held = self._held[0], []
                return item
        except (av.error.FFmpegError, OSError) as exc:
            log.info("%s: %s", self.name, self._why(exc))
            return None

    def _audio_stamp(self, packet: av.Packet, stream_t: float) -> float | None:
        """A sound packet's time on the camera's clock. The side data is read for every packet until two in a
        row agree on the camera's offset to the stream time, then every `RECHECK`-th packet (it costs ~0.1 ms)."""
        self._audio_packets += 1
        if self._audio_offset is not None and self._audio_packets % RECHECK:
            return stream_t + self._audio_offset
        camera_t = _prft_seconds(packet)
        if camera_t is not None:
            offset = camera_t - stream_t
            self._audio_offset = offset if self._audio_candidate is not None \
                and abs(offset - self._audio_candidate) < 0.001 else None
            self._audio_candidate = offset
        return camera_t

    def _axis(self, stream_t: float, camera_t: float | None) -> float:
        """A sound packet's time on the video's time axis: by the camera's clock once the sender reports have come
        for both (exact), before that by its stream time, which libavformat aligns with the video's at the start
        of play (RTP-Info; within tens of ms of the reports' answer here, as bare ffmpeg shows)."""
        if camera_t is not None and self._offset is not None:
            return camera_t - self._offset
        return stream_t

    def _video(self, packet: av.Packet, device_t: float, observed: float) -> EncodedVideo | RawFrame | None:
        self._video_packets += 1
        camera_t = _prft_seconds(packet) if self._offset is None or not self._video_packets % RECHECK else None
        if camera_t is not None:
            if self._offset is None and self._candidate is None and self._last_pts is not None \
                    and abs(device_t - self._last_pts - 1.0 / self.fps) > 0.5 / self.fps:
                self.timeline += 1  # the stream time jumped at the first report: the recorder learns it afresh
            # The offset counts once two pictures in a row agree on it: the first picture stamped after a report
            # came one frame off here (libavformat's), and the sound would have been placed by it.
            offset = camera_t - device_t
            if self._candidate is not None and abs(offset - self._candidate) < 0.001:
                self._offset = offset
            self._candidate = offset
        self._last_pts = device_t
        if not self._started:
            if not packet.is_keyframe:
                return None  # a session starts mid-picture-group: nothing decodes before the next key frame
            self._started = True
        if self._lost:
            packet.is_corrupt = True  # data of this or an earlier frame was lost on the network
            self._lost = 0
        if self.encoded:
            return EncodedVideo(packet=packet, device_t=device_t, observed_t=observed)
        frames = packet.decode()
        if not frames:
            return None
        image: np.ndarray = frames[-1].to_ndarray(format="bgr24")
        if (image.shape[1], image.shape[0]) != self.want_size:
            image = cv2.resize(image, self.want_size)
        return RawFrame(image=image, device_t=device_t, observed_t=observed)

    def _count_losses(self) -> None:
        if self._logs:
            for _level, _name, message in self._logs:
                found = MISSED.search(message)
                if found:
                    self._lost += int(found[1])
            self._logs.clear()

    # -- closing --------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._packets = None
        self._ready.clear()
        self._held = []
        self._release_logs()

    def _release_logs(self) -> None:
        if self._capture is not None:
            with contextlib.suppress(IndexError):
                self._capture[1].__exit__(None, None, None)
            self._capture = None
            self._logs = []


_routed = False


def _route_libav_logs() -> None:
    """libavformat reports lost RTP packets only in its log: let its warnings reach Python (each camera captures
    its own thread's), and keep every uncaptured line out of the logs (they may hold a camera URL)."""
    global _routed
    if not _routed:
        logging.getLogger("libav").setLevel(logging.CRITICAL + 1)
        av.logging.set_skip_repeated(False)
        av.logging.set_level(av.logging.WARNING)
        _routed = True

