"""The review server for tests and benchmarks: a migrated SQLite database with stations and users, a config with a
test-only password cost, the app on a real port in this process, or as a child process that can be killed and
started again (``python -m scripts.harness.review serve DB_URL MEDIA_DIR PORT`` prints "serving" when up)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select

from review_server import auth
from review_server.app import create_app
from review_server.config import ServerConfig
from review_server.db import Database
from review_server.migrations import upgrade
from review_server.models import Station, User
from review_server.storage import LocalStorage

from .wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
CHEAP_PASSWORDS = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}  # TEST-ONLY cost


def cheap_config(db_url: str, media_dir: Path, **extra: Any) -> ServerConfig:
    return ServerConfig(database_url=db_url, media_dir=media_dir, **{**CHEAP_PASSWORDS, **extra})


def migrated_database(path: Path) -> str:
    """A new SQLite database at `path`, migrated; its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    upgrade(url)
    auth.configure_passwords(1, 8, 1)  # TEST-ONLY cost, for the users added here
    return url


def _run(url: str, work: Any) -> Any:
    db = Database(url)
    try:
        return db.run(work)
    finally:
        db.dispose()


def add_station(url: str, code: str, name: str | None = None) -> str:
    """A station; its bearer token."""
    def make(s: Any) -> str:
        station = Station(code=code, name=name or code)
        s.add(station)
        s.flush()
        return auth.issue_station_token(s, station)[0]

    return str(_run(url, make))


def add_session(url: str, login: str, role: str, password: str = "correct horse battery") -> str:
    """A user with a signed-in session; its Cookie header value."""
    def make(s: Any) -> str:
        auth.add_user(s, login, password, role)
        user = s.scalar(select(User).where(User.login == login))
        return auth.create_session(s, user, 3600)[0]

    return f"{auth.SESSION_COOKIE}={_run(url, make)}"


def review_app(cfg: ServerConfig) -> web.Application:
    return create_app(cfg, storage=LocalStorage(cfg.media_dir))


async def start_review_server(cfg: ServerConfig, port: int = 0) -> tuple[web.AppRunner, str]:
    """The review server (with tus) in this process on a real loopback port: (runner to clean up, base URL)."""
    runner = web.AppRunner(review_app(cfg))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def serve_command(db_url: str, media_dir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "scripts.harness.review", "serve", db_url, str(media_dir), str(port)]


class ReviewProcess:
    """The review server as a child process on a fixed port, so that it can go away and come back."""

    def __init__(self, db_url: str, media: Path, port: int, log: Path) -> None:
        self.args = serve_command(db_url, media, port)
        self.url, self.log = f"http://127.0.0.1:{port}", log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: b"serving" in self.log.read_bytes() and self._up(), 30, "the review server")

    def _up(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            opener.open(self.url + "/login", timeout=5).close()
        except urllib.error.HTTPError:
            return True  # answering
        except OSError:
            return False
        return True

    def get(self, path: str, headers: dict[str, str]) -> Any:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(urllib.request.Request(self.url + path, headers=headers), timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        if self.log.exists():  # the next start waits for its own "serving"
            self.log.write_bytes(self.log.read_bytes().replace(b"serving", b"served"))


def main(argv: list[str]) -> None:
    if argv[:1] != ["serve"] or len(argv) != 4:
        raise SystemExit("usage: python -m scripts.harness.review serve DB_URL MEDIA_DIR PORT")
    db_url, media_dir, port = argv[1:4]
    web.run_app(review_app(cheap_config(db_url, Path(media_dir))), host="127.0.0.1", port=int(port),
                print=lambda *_: print("serving", flush=True))


if __name__ == "__main__":
    main(sys.argv[1:])
