"""Cameras through OpenCV: a V4L2/USB device by index or path, or an IP camera's stream URL.

A USB camera is asked for MJPEG where it offers it: uncompressed YUYV at 1280x720 fits USB 2.0 only at about
10 frames a second, so a camera left on its default format delivers far fewer frames than asked for. What a
device offers is read with V4L2's VIDIOC_ENUM_FMT; the rate it then delivers is measured by the recorder and the
agent's health (a camera short of its requested rate is warned about).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct

import cv2

from media import clock
from media.sources.base import RawFrame, SourceError
from media.sources.rtsp import masked

OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 2000
# VIDIOC_ENUM_FMT = _IOWR('V', 2, struct v4l2_fmtdesc): index, type, flags, description[32], pixelformat,
# mbus_code, reserved[3] (64 bytes); type 1 = V4L2_BUF_TYPE_VIDEO_CAPTURE.
VIDIOC_ENUM_FMT = 0xC0405602
FMTDESC = struct.Struct("=III32sII12x")
PREFERRED = ("MJPG", "JPEG")  # compressed on the camera: full rate over USB 2.0


def v4l2_formats(device: int | str) -> list[str]:
    """The pixel formats (FourCC) a V4L2 capture device offers, in its order; [] when it is not one."""
    path = f"/dev/video{device}" if isinstance(device, int) else device
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return []
    formats: list[str] = []
    try:
        for index in range(64):
            buf = bytearray(FMTDESC.pack(index, 1, 0, b"", 0, 0))
            try:
                fcntl.ioctl(fd, VIDIOC_ENUM_FMT, buf)
            except OSError:
                break  # EINVAL past the last format; ENOTTY: not a V4L2 device
            fourcc = FMTDESC.unpack(buf)[4]
            formats.append(fourcc.to_bytes(4, "little").decode("latin-1"))
    finally:
        os.close(fd)
    return formats


def choose_fourcc(offered: list[str]) -> str | None:
    """The format to ask a USB camera for: MJPEG where offered, else None (leave the driver's default)."""
    return next((f for f in PREFERRED if f in offered), None)


def fourcc_text(value: float) -> str:
    code = int(value)
    return code.to_bytes(4, "little").decode("latin-1").strip("\0") if code > 0 else "?"


class OpenCVCamera:
    encoded = False

    def __init__(self, target: int | str, width: int = 1280, height: int = 720, fps: float = 25.0) -> None:
        self.target = target
        self.width, self.height, self.fps = width, height, fps
        self.is_stream = isinstance(target, str) and "://" in target
        self.name = f"camera {masked(str(target))}"
        self.description = f"OpenCV camera {masked(str(target))}"
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
            # A device is asked for the configured mode (the format first: it decides which sizes and rates
            # exist); a stream has the size it was sent with.
            wanted = choose_fourcc(v4l2_formats(self.target))
            if wanted is not None:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*wanted))
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
        if not self.is_stream:
            with contextlib.suppress(cv2.error):
                self.description = (f"USB camera {self.target} {fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))} "
                                    f"{self.width}x{self.height}@{self.fps:g}")
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
