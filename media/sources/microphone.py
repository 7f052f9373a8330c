"""Microphones through sounddevice (PortAudio), mono at 48 kHz."""

from __future__ import annotations

import queue

import sounddevice as sd

from media import clock
from media.sources.base import AudioBlock, SourceError


class Microphone:
    def __init__(self, device: int | str | None = None, rate: int = 48000, block: int = 480) -> None:
        self.device = device
        self.rate = rate
        self.block = block
        self.name = f"microphone {device if device is not None else 'default'}"
        self.description = self.name
        self.overflows = 0
        self._stream: sd.InputStream | None = None
        self._queue: queue.Queue[AudioBlock] = queue.Queue(maxsize=2000)
        self._n = 0

    def open(self) -> None:
        try:
            info = sd.query_devices(self.device, "input")
            stream = sd.InputStream(device=self.device, channels=1, samplerate=self.rate, blocksize=self.block,
                                    dtype="float32", latency="low", callback=self._callback)
            stream.start()
        except (ValueError, sd.PortAudioError) as exc:
            raise SourceError(f"{self.name}: cannot open ({exc})") from exc
        self.description = f"microphone {info['name']!r} via PortAudio {self.rate} Hz"
        self._stream = stream
        self._n = 0

    def _callback(self, indata, frames: int, time_info, status: sd.CallbackFlags) -> None:  # noqa: ANN001
        now = clock.now()
        if status.input_overflow:
            self.overflows += 1
        # PortAudio tells when the first sample hit the ADC, on its stream clock: the
        # difference to its "now" is the device's own latency, which we take off.
        latency = time_info.currentTime - time_info.inputBufferAdcTime
        if not (0.0 < latency < 1.0):
            latency = frames / self.rate
        block = AudioBlock(samples=indata[:, 0].copy(), first_index=self._n, capture_t=now - latency)
        self._n += frames
        try:
            self._queue.put_nowait(block)
        except queue.Full:
            self.overflows += 1

    def read(self, timeout: float) -> AudioBlock | None:
        if self._stream is None:
            raise SourceError(f"{self.name}: not open")
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            if not self._stream.active:
                raise SourceError(f"{self.name}: the audio stream stopped") from None
            return None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.abort()
            self._stream.close()
            self._stream = None
