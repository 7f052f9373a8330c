"""Cameras through OpenCV: a V4L2/USB device by index or path, or an IP camera's stream URL."""

from __future__ import annotations

import cv2

from media import clock
from media.sources.base import RawFrame, SourceError

OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 2000


class OpenCVCamera:
    encoded = False

    def __init__(self, target: int | str, width: int = 1280, height: int = 720, fps: float = 25.0) -> None:
        self.target = target
        self.width, self.height, self.fps = width, height, fps
        self.is_stream = isinstance(target, str) and "://" in target
        self.name = f"camera {target}"
        self.description = f"OpenCV camera {target}"
        self._cap: cv2.VideoCapture | None = None
        self._count = 0
        self._last_device_t = -1.0

    def open(self) -> None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
        api = cv2.CAP_FFMPEG if self.is_stream else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.target, api, params)
        if not cap.isOpened():
            what = "stream unreachable or not a video stream" if self.is_stream else "no such video device"
            raise SourceError(f"{self.name}: cannot open ({what})")
        if not self.is_stream:
            # A device is asked for the configured mode; a stream has the size it was sent with.
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        ok, image = cap.read()
        if not ok or image is None:
            cap.release()
            raise SourceError(f"{self.name}: opened but delivers no frames (unsupported format?)")
        self.height, self.width = image.shape[:2]
        fps = cap.get(cv2.CAP_PROP_FPS)
        if 1.0 <= fps <= 120.0:
            self.fps = fps
        self._cap = cap
        self._count = 0
        self._last_device_t = -1.0

    def read(self, timeout: float) -> RawFrame | None:
        if self._cap is None:
            raise SourceError(f"{self.name}: not open")
        ok, image = self._cap.read()  # bounded by READ_TIMEOUT_MS
        observed = clock.now()
        if not ok or image is None:
            return None
        self._count += 1
        # The stream's own timestamp beats the arrival time: it carries no network or decoder jitter.
        device_t = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if device_t <= self._last_device_t:
            device_t = self._last_device_t + 1.0 / self.fps
        self._last_device_t = device_t
        if image.shape[0] != self.height or image.shape[1] != self.width:
            image = cv2.resize(image, (self.width, self.height))
        return RawFrame(image=image, device_t=device_t, observed_t=observed)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
