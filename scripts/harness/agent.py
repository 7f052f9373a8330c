"""`osce agent run --config FILE` as a real child process (the daemon, health, lifecycle and exam-day tests), its
config, a short checklist, and the clock-step shim that steps one process's system clock."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from checklists.loader import DATA_DIR

from .wait import wait_for

__all__ = ["TOKEN", "Daemon", "build_clock_step_shim", "events", "set_clock_step", "short_checklist", "wait_for",
           "write_config"]

TOKEN = "test-station-token"
CLOCK_STEP_SHIM = Path(__file__).with_name("clock_step_shim.c")


def build_clock_step_shim(folder: Path) -> Path:
    """Compile `clock_step_shim.c` (LD_PRELOAD: steps one process's system clock) into `folder`."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler (Debian's gcc) is needed to build the clock-step shim: scripts/setup.sh installs it"
    out = folder / "clock_step_shim.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(CLOCK_STEP_SHIM), "-ldl"], check=True)
    return out


def set_clock_step(path: Path, seconds: float) -> None:
    """Step the clock of the processes started with OSCE_CLOCK_STEP_FILE=path (the shim maps the file: at once)."""
    mode = "r+b" if path.exists() else "wb"
    with open(path, mode) as fh:
        fh.write(struct.pack("<q", int(seconds * 1e9)))


def short_checklist(folder: Path, reading_s: int = 2, performing_s: int = 4) -> Path:
    """The CPR checklist with short time limits."""
    text = (DATA_DIR / "01_basic_cpr_adult.yaml").read_text(encoding="utf-8")
    text = text.replace("reading_s: 30", f"reading_s: {reading_s}").replace("performing_s: 510",
                                                                          f"performing_s: {performing_s}")
    path = folder / "short.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def write_config(folder: Path, *, cameras: tuple[str, ...] = ("synthetic",), microphone: str = "synthetic",
                 data_dir: Path | None = None, extra: str = "", checklist: Path | None = None,
                 exam_extra: str = "", reserve_mb: int = 1) -> Path:
    cams = "".join(f'[[cameras]]\nsource = "{c}"\n' for c in cameras)
    text = f"""
[station]
id = "st1"
name = "Test station"
{cams}
[microphone]
source = "{microphone}"
[video]
width = 320
height = 180
fps = 25
[storage]
data_dir = "{data_dir or folder / 'data'}"
reserve_mb = {reserve_mb}
[exam]
checklist = "{checklist or short_checklist(folder)}"
warn_before_end_s = 2
{exam_extra}
[http]
port = 0
{extra}
"""
    path = folder / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Daemon:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log = config.parent / "agent.log"

    def start(self, env: dict[str, str] | None = None) -> str:
        environ = {**os.environ, "OSCE_STATION_TOKEN": TOKEN, **(env or {})}
        with open(self.log, "ab") as out:
            start_at = out.tell()
            self.proc = subprocess.Popen([sys.executable, "-m", "osce_cli", "agent", "run", "--config",
                                          str(self.config)], stdout=out, stderr=subprocess.STDOUT, env=environ)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[start_at:].decode("utf-8", "replace")
            match = re.search(r"agent: (http://\S+)/", text)
            if match:
                self.url = match.group(1)
                return self.url
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the agent did not start: {self.log.read_text(errors='replace')}")

    def request(self, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=15) as response:
                raw = response.read()
                kind = response.headers.get("Content-Type", "")
                return response.status, json.loads(raw) if "json" in kind else raw
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def events(folder: Path) -> list[dict[str, Any]]:
    path = folder / "attempt.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
