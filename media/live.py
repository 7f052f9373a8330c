"""Live view: the recorder's own encoded packets re-muxed (never re-encoded) into a low-latency fMP4.

A `LiveMuxer` is a packet tap on a `media.track.Track` (`attach(track)`). It copies each H.264/AAC
packet into a second mp4 muxer with `frag_every_frame`, so every packet leaves as its own
`moof+mdat` chunk (one packet later than it entered: the muxer closes a fragment when the next
packet arrives). The chunks plus the `ftyp+moov` init segment are the live stream.

Wire format of one message (station → server → viewer, WebSocket binary), `Chunk.encode`:
``kind (1 byte) | t (float64, big-endian) | payload`` where kind is ``I`` (init segment), ``K`` (a
chunk holding a video key frame: a new viewer may start here) or ``C`` (any other chunk), and t is the
recording-clock time (seconds) of the chunk's first sample (0 for the init).

The muxer keeps the last GOP (the chunks since the last key frame), so a viewer that joins gets
init + GOP-from-key and then the live chunks (`listen`).
"""

from __future__ import annotations

import logging
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av

from media import mp4box
from media.fragments import BoxSplitter
from media.track import Track

log = logging.getLogger(__name__)

# frag_duration of 1 µs: a track's fragment is closed as soon as its next packet arrives, so a chunk holds
# one video frame (and the audio muxed meanwhile). (frag_every_frame mis-timed the second video frame.)
LIVE_MOVFLAGS = "empty_moov+default_base_moof+skip_trailer"
INIT, KEY, CHUNK = b"I", b"K", b"C"
HEADER = struct.Struct(">cd")
MAX_GOP_CHUNKS = 2000  # a GOP longer than this (a camera without key frames) is not kept whole


@dataclass(frozen=True)
class Chunk:
    kind: bytes
    t: float
    data: bytes

    @property
    def key(self) -> bool:
        return self.kind == KEY

    def encode(self) -> bytes:
        return HEADER.pack(self.kind, self.t) + self.data

    @classmethod
    def decode(cls, message: bytes) -> Chunk:
        if len(message) < HEADER.size:
            raise ValueError(f"live message of {len(message)} bytes is shorter than its header")
        kind, t = HEADER.unpack_from(message)
        if kind not in (INIT, KEY, CHUNK):
            raise ValueError(f"live message kind {kind!r} is not I, K or C")
        return cls(kind, t, bytes(message[HEADER.size:]))


def moof_samples(moof: bytes) -> list[tuple[int, int]]:
    """(track_ID, sample count) of each traf in a moof box (the bytes start with the moof header)."""
    return mp4box.fragment_tracks(moof, mp4box.walk(moof)[0])


def codecs_of_init(init: bytes) -> str:
    """The MSE codec string of an init segment: `avc1.PPCCLL` (or `hvc1.…`), plus `mp4a.40.2` if it has AAC."""
    return mp4box.codecs(init)


class LiveMuxer:
    """Re-muxes one Track's packets into live chunks; `tap` runs on the recorder's threads."""

    def __init__(self, video: av.video.stream.VideoStream, audio: av.audio.stream.AudioStream | None,
                 fps: float) -> None:
        self._src_video, self._src_audio = video, audio
        self._frame = Fraction(1, 90000) * round(90000 / fps)
        self._lock = threading.Lock()
        self._out: av.container.OutputContainer | None = None
        self._streams: dict[int, av.stream.Stream] = {}  # id(source stream) -> live stream
        self._pending: dict[int, deque[tuple[float, bool]]] = {}  # track_ID -> (t, key) per muxed packet
        self._last_dts: Fraction | None = None
        self._init: Chunk | None = None
        self._gop: list[Chunk] = []
        self._listeners: list[Callable[[Chunk], None]] = []
        self._held: list[tuple[av.Packet, int, float, bool]] = []
        self._start_t: Fraction | None = None  # the first key frame's time: nothing earlier goes live
        self._calls = 0
        self.chunks = 0
        self.closed = False

    # -- the tap -----------------------------------------------------------------------------
    def tap(self, packet: av.Packet) -> None:
        if packet.pts is None or packet.dts is None or packet.pts < 0 or self.closed:
            return
        is_video = packet.stream is self._src_video
        with self._lock:
            self._calls += 1
            if not is_video and self._start_t is not None and packet.pts * packet.time_base < self._start_t:
                # Audio from before the first key frame (it often arrives after it) would start the audio
                # track before the video one; movenc aborts the whole process on that (next_dts >= 0).
                return
            if self._out is None:
                # The live stream starts at a key frame, and only once the Track's own muxer has written
                # its header (its first packet comes after this tap): the stream parameters we copy
                # (extradata: SPS/PPS, AudioSpecificConfig) are filled in then.
                if is_video and packet.is_keyframe:
                    self._held = []
                    self._start_t = packet.pts * packet.time_base
                elif not self._held:
                    return
                self._held.append(self._copy(packet, is_video))
                if self._calls < 2:
                    return
                self._open()
                held, self._held = self._held, []
                for item in held:
                    self._write(*item)
                return
            self._write(*self._copy(packet, is_video))

    def _copy(self, packet: av.Packet, is_video: bool) -> tuple[av.Packet, int, float, bool]:
        assert packet.pts is not None and packet.dts is not None and packet.time_base is not None  # from a muxer
        copy = av.Packet(bytes(packet))
        copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
        copy.is_keyframe = packet.is_keyframe
        copy.duration = packet.duration or 0
        if is_video:
            dts = packet.dts * packet.time_base
            if not copy.duration:
                # The encoder leaves video durations unset; without one a fragment's only sample would
                # last 0 s and MSE would see a gap. Use the last frame interval.
                step = dts - self._last_dts if self._last_dts is not None else self._frame
                step = min(max(step, Fraction(1, 120)), Fraction(1, 5))
                copy.duration = round(step / packet.time_base)
            self._last_dts = dts
        return copy, id(packet.stream), float(packet.pts * packet.time_base), is_video and packet.is_keyframe

    def _write(self, copy: av.Packet, source: int, t: float, key: bool) -> None:
        out_stream = self._streams.get(source)
        if out_stream is None or self._out is None:
            return
        copy.stream = out_stream
        self._pending[out_stream.index + 1].append((t, key))
        self._out.mux(copy)

    def _open(self) -> None:
        sink = BoxSplitter(self._on_init, self._on_fragment)
        video = self._src_video
        movflags = LIVE_MOVFLAGS + ("" if video.codec_context.extradata else "+delay_moov")
        # max_interleave_delta 1 µs: no waiting for the other stream (audio leaves the AAC encoder ~70 ms after
        # capture, video ~5 ms); each track stays in order, which is all fragmented MP4 and MSE need.
        self._out = av.open(sink, "w", format="mp4",
                            options={"movflags": movflags, "frag_duration": "1",
                                     "max_interleave_delta": "1"})
        self._streams[id(video)] = self._out.add_stream_from_template(video)
        self._streams[id(video)].time_base = video.time_base
        if video.codec_context.codec.canonical_name == "hevc":  # as recorded: parameter sets in the init (hvc1)
            self._streams[id(video)].codec_context.codec_tag = "hvc1"
        if self._src_audio is not None:
            audio = self._out.add_stream_from_template(self._src_audio)
            audio.time_base = self._src_audio.time_base
            self._streams[id(self._src_audio)] = audio
        self._pending = {s.index + 1: deque() for s in self._streams.values()}

    # -- the muxer's output --------------------------------------------------------------------
    def _on_init(self, data: bytes) -> None:
        self._emit(Chunk(INIT, 0.0, data))

    def _on_fragment(self, data: bytes) -> None:
        moof_size = struct.unpack_from(">I", data)[0]
        times: dict[int, float] = {}
        key = False
        for track, count in moof_samples(data[:moof_size]):
            queue = self._pending.get(track)
            for _ in range(count):
                if not queue:
                    break
                pt, pkey = queue.popleft()
                times.setdefault(track, pt)
                key = key or pkey
        # t: the chunk's first video frame (track 1), else its first audio sample.
        t = times.get(1, min(times.values(), default=0.0))
        self._emit(Chunk(KEY if key else CHUNK, t, data))

    def _emit(self, chunk: Chunk) -> None:
        # Called inside mux() under self._lock.
        if chunk.kind == INIT:
            self._init, self._gop = chunk, []
        elif chunk.key or len(self._gop) >= MAX_GOP_CHUNKS:
            self._gop = [chunk] if chunk.key else []
        elif self._gop:
            self._gop.append(chunk)
        self.chunks += 1
        for listener in list(self._listeners):
            try:
                listener(chunk)
            except Exception:  # noqa: BLE001 - a listener never stops the muxer
                log.exception("live listener failed")

    # -- listeners -------------------------------------------------------------------------------
    def listen(self, listener: Callable[[Chunk], None]) -> list[Chunk]:
        """Start calling listener(chunk) for every new chunk; returns what a joiner needs first
        (init + the GOP so far; empty before the first key frame). Atomic with the stream."""
        with self._lock:
            self._listeners.append(listener)
            return ([self._init] if self._init is not None else []) + list(self._gop)

    def unlisten(self, listener: Callable[[Chunk], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            if self._out is not None:
                try:
                    self._out.close()  # the last chunk goes to the listeners
                except Exception:  # noqa: BLE001 - a live muxer's end is not worth a failure
                    log.exception("closing the live muxer")
                self._out = None
            self._listeners.clear()


def attach(track: Track) -> LiveMuxer:
    """Tap a Track (use as `RecorderConfig.live`, or call on a Track before its first packet)."""
    muxer = LiveMuxer(track.video, track.audio, track.fps)
    track.taps.append(muxer.tap)
    return muxer
