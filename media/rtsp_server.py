"""A stand-in for the room's IP cameras: GStreamer's reference RTSP server from Debian, run as a child process.

Used by the tests, the benchmarks and `osce demo --rtsp`: a real RTSP server speaking to our real RTSP client,
not a mock. The server program is media/rtsp_server_gst.py, run by `/usr/bin/python3` (Debian's `gi` and
GstRtspServer live there, not in the project's virtual environment); this module starts it, restarts it (a
camera reboot, maybe with another resolution or codec), switches a mount's audio off and on, and makes the
flash-and-beep stimulus file it can serve.

    with RtspServer({"main": {"video": "h265", "audio": "alaw"}, "sub": {"width": 320, "height": 180}}) as cams:
        url = cams.url("main")
"""

from __future__ import annotations

import copy
import functools
import json
import select
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from media.calibration import stimulus_command

SYSTEM_PYTHON = "/usr/bin/python3"
PROGRAM = Path(__file__).with_name("rtsp_server_gst.py")
READY_TIMEOUT_S = 15.0


@functools.cache
def available() -> str | None:
    """None when GStreamer's RTSP server can run here, else why not."""
    try:
        probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                                "from gi.repository import GstRtspServer"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON}: {exc}"
    if probe.returncode != 0:
        return ("GStreamer's RTSP server is not installed for the system Python (Debian: python3-gi "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good/-bad/-ugly gstreamer1.0-libav): "
                + probe.stderr.strip().splitlines()[-1])
    return None


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_stimulus(path: Path, seconds: float, width: int = 640, height: int = 360, fps: int = 25) -> Path:
    """The flash-and-beep clip as a file the server plays (its sound as PCM: AAC's priming delay would shift it)."""
    subprocess.run(stimulus_command(str(path), seconds, width, height, fps), check=True, capture_output=True,
                   timeout=300)
    return path


class PortTaken(RuntimeError):
    pass


class RtspServer:
    """One RTSP server process holding one or more camera streams (mounts); see rtsp_server_gst.py for the keys."""

    def __init__(self, mounts: dict[str, dict[str, Any]], port: int | None = None, user: str | None = None,
                 password: str | None = None) -> None:
        self.mounts = copy.deepcopy(mounts)
        self.port = port or free_tcp_port()
        self._fixed_port = port is not None
        self.user, self.password = user, password
        self.process: subprocess.Popen | None = None

    def url(self, mount: str, user: str | None = None, password: str | None = None) -> str:
        """The mount's URL, with the given credentials in it (none by default)."""
        login = f"{quote(user, safe='')}:{quote(password or '', safe='')}@" if user else ""
        return f"rtsp://{login}127.0.0.1:{self.port}/{mount}"

    def start(self) -> RtspServer:
        reason = available()
        if reason is not None:
            raise RuntimeError(reason)
        for attempt in range(5):
            try:
                return self._start()
            except PortTaken:
                # Another program took the port between our probe and the server's bind: a camera keeps its
                # address across a reboot, so wait for it; a new server picks another.
                time.sleep(0.5 * (attempt + 1))
                if not self._fixed_port:
                    self.port = free_tcp_port()
        return self._start()

    def _start(self) -> RtspServer:
        config = {"port": self.port, "mounts": self.mounts, "user": self.user, "password": self.password}
        self.process = subprocess.Popen([SYSTEM_PYTHON, str(PROGRAM), json.dumps(config)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err_pipe = self.process.stdout, self.process.stderr
        assert out is not None and err_pipe is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([out], [], [], 0.2)
            if ready and out.readline().strip() == "ready":
                return self
            if self.process.poll() is not None:
                break
        err = err_pipe.read() if self.process.poll() is not None else "no answer"
        self.stop()
        if "cannot listen" in err:
            raise PortTaken(err)
        raise RuntimeError(f"the RTSP stand-in did not start on port {self.port}: {err.strip()[-500:]}")

    def stop(self) -> None:
        """The camera goes away at once (a power cut or reboot, as the client sees it)."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        self.process = None

    def restart(self, down_s: float = 0.0, **changes: dict[str, Any]) -> None:
        """Reboot: stop, wait `down_s`, start again, with `changes` per mount (e.g. main={"width": 320})."""
        self.stop()
        for mount, keys in changes.items():
            self.mounts[mount].update(keys)
        time.sleep(down_s)
        self.start()

    def set_audio(self, mount: str, on: bool) -> None:
        """Stop (or restart) a mount's audio packets; its video goes on."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": "audio", "mount": mount, "on": on}) + "\n")
        self.process.stdin.flush()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
