"""Fixtures for the station agent tests: the marking page run as a real `osce agent marking` process."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from checklists.loader import DATA_DIR

CPR = DATA_DIR / "01_basic_cpr_adult.yaml"
PINS = "ivanova:2468,petrov:1357"


class AgentProcess:
    """`osce agent marking` in a child process on a free port; start, kill -9 and start again."""

    def __init__(self, db: Path, checklist: Path = CPR, figures: Path | None = None) -> None:
        self.db = db
        self.checklist = checklist
        self.figures = figures
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> str:
        cmd = [
            sys.executable,
            "-m",
            "osce_cli",
            "agent",
            "marking",
            "--checklist",
            str(self.checklist),
            "--db",
            str(self.db),
            "--attempt",
            "day1-st1-007",
            "--candidate",
            "240517",
            "--station",
            "st1",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
        if self.figures is not None:
            cmd += ["--figures", str(self.figures)]
        env = {**os.environ, "OSCE_MARKING_PINS": PINS}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"marking page: (http://\S+/)", line)
            if match:
                self.url = match.group(1)
                return self.url
        self.proc.kill()
        raise AssertionError(f"the marking agent did not start: {''.join(lines)}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Client:
    """A tiny JSON client with a cookie jar and no proxy (urllib, synchronous)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
        )
        try:
            with self.opener.open(req, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path / "marks.db")
    try:
        yield process
    finally:
        process.stop()


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = os.environ.get("OSCE_CHROMIUM", "/usr/bin/chromium")
    assert os.path.exists(executable), f"Debian's chromium is needed at {executable} (or set OSCE_CHROMIUM)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
