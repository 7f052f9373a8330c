"""More servers for attacks that need their own limits or PostgreSQL, and clients that arrive all at once.

`own_server(folder, backend, extra_config)` starts a seeded `osce server run` (the same seed as the session's
stand: a user per role plus examiner2, stations S1 and S2 with tokens) on SQLite or on a fresh schema of the
PostgreSQL database named by OSCE_TEST_PG_URL (required under CI, see tests/server/conftest.py).
`late_bodies` opens many connections, sends every request's head, and only then all the bodies: the requests
are all inside the server at once, past any check made before the body was read.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from .conftest import Stand, _seed, start_server, stop_server


@contextlib.contextmanager
def database(folder: Path, backend: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'osce.db'}"
        return
    base = os.environ.get("OSCE_TEST_PG_URL")
    if not base:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("OSCE_TEST_PG_URL is not set under CI: PostgreSQL attacks must run (scripts/services.sh)")
        pytest.skip('OSCE_TEST_PG_URL not set: start PostgreSQL with `eval "$(bash scripts/services.sh)"`')
    from sqlalchemy import create_engine, text

    schema = f"sec_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def own_server(folder: Path, backend: str = "sqlite", extra_config: str = "") -> Iterator[Stand]:
    folder.mkdir(parents=True, exist_ok=True)
    with database(folder, backend) as url:
        tokens = _seed(url)
        server = start_server(folder, url, extra_config, tokens)
        try:
            yield server
        finally:
            stop_server(server)


def late_bodies(stand: Stand, requests: list[tuple[bytes, bytes]], source: str | None = None,
                timeout: float = 60.0) -> list[int]:
    """Send every head first, then every body; return each answer's status (0: no answer)."""
    socks: list[socket.socket] = []
    try:
        for head, _ in requests:
            sock = socket.create_connection((stand.host, stand.port), timeout=timeout,
                                            source_address=(source, 0) if source else None)
            socks.append(sock)
            sock.sendall(head)
        time.sleep(0.3)  # every request is now waiting for its body inside the server
        for sock, (_, body) in zip(socks, requests, strict=True):
            sock.sendall(body)
        statuses = []
        for sock in socks:
            data = b""
            with contextlib.suppress(OSError):
                while b"\r\n" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            statuses.append(int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0)
        return statuses
    finally:
        for sock in socks:
            sock.close()


def login_request(stand: Stand, login: str, password: str, source: str | None = None,
                  extra_headers: str = "") -> tuple[bytes, bytes]:
    """A JSON login (head, body), with its own double-submit CSRF token fetched from `source`."""
    token = stand.request("GET", "/login", source=source).headers["X-CSRF-Token"]
    body = json.dumps({"login": login, "password": password}).encode()
    head = (f"POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"X-CSRF-Token: {token}\r\nCookie: osce_login_csrf={token}\r\nContent-Length: {len(body)}\r\n"
            f"{extra_headers}\r\n").encode()
    return head, body
