"""`osce server db upgrade`, `user add`, `station add`/`revoke-token`, `audit verify` through the real parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, text

from osce_cli import main
from review_server import auth
from review_server.db import Database
from review_server.models import AuditEvent, StationToken, User


@pytest.fixture
def cfg_file(db_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "server.toml"
    # TEST-ONLY Argon2 cost, so the suite stays fast; the defaults are the production ones.
    path.write_text(
        f'database_url = {json.dumps(db_url)}\nmedia_dir = "media"\n'
        "argon2_time_cost = 1\nargon2_memory_kib = 8\nargon2_parallelism = 1\n",
        encoding="utf-8",
    )
    return path


def osce(*args: str) -> int:
    return main(list(args))


def test_db_upgrade_then_first_admin_then_audit_verify(cfg_file: Path, db_url: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert osce("server", "db", "upgrade", "--config", str(cfg_file)) == 0
    pw = tmp_path / "pw"
    pw.write_text("a long admin password\n", encoding="utf-8")
    assert (
        osce("server", "user", "add", "root", "--role", "admin", "--password-file", str(pw), "--config", str(cfg_file))
        == 0
    )
    db = Database(db_url)
    try:
        user = db.run(lambda s: s.scalar(select(User).where(User.login == "root")))
        assert user.role == "admin" and auth.check_password(user.password_hash, "a long admin password")
        assert db.run(lambda s: s.scalar(select(AuditEvent.action))) == "user.add"
    finally:
        db.dispose()
    capsys.readouterr()
    assert osce("server", "audit", "verify", "--config", str(cfg_file)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["checked"] == 1


def test_user_add_refuses_bad_input(cfg_file: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert osce("server", "db", "upgrade", "--config", str(cfg_file)) == 0
    pw = tmp_path / "pw"
    pw.write_text("short\n", encoding="utf-8")
    assert (
        osce("server", "user", "add", "root", "--role", "admin", "--password-file", str(pw), "--config", str(cfg_file))
        == 2
    )
    assert "password" in capsys.readouterr().err
    pw.write_text("long enough password\n", encoding="utf-8")
    assert (
        osce("server", "user", "add", "../x", "--role", "admin", "--password-file", str(pw), "--config", str(cfg_file))
        == 2
    )
    assert (
        osce("server", "user", "add", "ok", "--role", "admin", "--password-file", str(pw), "--config", str(cfg_file))
        == 0
    )
    assert (
        osce("server", "user", "add", "ok", "--role", "admin", "--password-file", str(pw), "--config", str(cfg_file))
        == 2
    )
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        osce("server", "user", "add", "x", "--role", "root", "--config", str(cfg_file))


def test_station_tokens_from_the_cli(cfg_file: Path, db_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert osce("server", "db", "upgrade", "--config", str(cfg_file)) == 0
    capsys.readouterr()
    assert osce("server", "station", "add", "S1", "--name", "Room 1", "--config", str(cfg_file)) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith(auth.STATION_TOKEN_PREFIX)
    db = Database(db_url)
    try:
        assert db.run(lambda s: auth.identity_from_station_token(s, token)).station_code == "S1"
        assert osce("server", "station", "revoke-token", "S1", "--config", str(cfg_file)) == 0
        assert db.run(lambda s: auth.identity_from_station_token(s, token)) is None
        assert db.run(lambda s: s.scalar(select(StationToken.revoked_at))) is not None
    finally:
        db.dispose()
    assert osce("server", "station", "revoke-token", "S9", "--config", str(cfg_file)) == 2


def test_audit_verify_exits_1_on_a_tampered_row(cfg_file: Path, db_url: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert osce("server", "db", "upgrade", "--config", str(cfg_file)) == 0
    pw = tmp_path / "pw"
    pw.write_text("a long admin password\n", encoding="utf-8")
    for login in ("a1", "a2", "a3"):
        assert (
            osce(
                "server", "user", "add", login, "--role", "admin", "--password-file", str(pw), "--config", str(cfg_file)
            )
            == 0
        )
    db = Database(db_url)
    try:
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET actor = 'someone' WHERE seq = 2"))
    finally:
        db.dispose()
    capsys.readouterr()
    assert osce("server", "audit", "verify", "--config", str(cfg_file)) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["first_bad_seq"] == 2


def test_the_osce_command_is_installed_and_reads_the_password_from_stdin(cfg_file: Path) -> None:
    upgrade = [sys.executable, "-m", "osce_cli", "server", "db", "upgrade", "--config", str(cfg_file)]
    assert subprocess.run(upgrade, capture_output=True, timeout=120).returncode == 0
    add = [
        sys.executable,
        "-m",
        "osce_cli",
        "server",
        "user",
        "add",
        "admin",
        "--role",
        "admin",
        "--config",
        str(cfg_file),
    ]
    done = subprocess.run(add, input=b"a long admin password\n", capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert b"added with role admin" in done.stdout


def test_osce_server_run_notifies_systemd_and_feeds_the_watchdog(cfg_file: Path, tmp_path: Path) -> None:
    """`osce server run` under a stand-in for systemd's notify socket (a real AF_UNIX datagram socket):
    READY=1 comes when /health answers, WATCHDOG=1 every half WatchdogSec, STOPPING=1 and exit 0 on SIGTERM."""
    import signal
    import socket
    import time
    import urllib.request

    assert osce("server", "db", "upgrade", "--config", str(cfg_file)) == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
    cmd = [sys.executable, "-m", "osce_cli", "server", "run", "--port", str(port), "--config", str(cfg_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        assert notify.recv(4096) == b"READY=1", proc.stderr.read() if proc.poll() is not None else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:  # ready means serving
            assert resp.status == 200 and json.loads(resp.read()) == {"ok": True}
        started, pings = time.monotonic(), 0
        while pings < 3:
            if notify.recv(4096) == b"WATCHDOG=1":
                pings += 1
        assert time.monotonic() - started < 3.0, "three pings at a 0.5 s interval took too long"
        proc.send_signal(signal.SIGTERM)
        messages = []
        while b"STOPPING=1" not in messages:
            messages.append(notify.recv(4096))
        assert proc.wait(timeout=15) == 0
    finally:
        notify.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
