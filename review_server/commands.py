"""Subcommands of `osce` that belong to this part (see osce_cli.py): `osce server ...`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add this part's subcommands to the `osce` parser."""
    server = sub.add_parser("server", help="the review server: database, users, stations, audit, run")
    ssub = server.add_subparsers(dest="server_command", required=True, metavar="SUBCOMMAND")

    db = ssub.add_parser("db", help="database schema")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", help="apply migrations up to the newest (creates the database if new)")
    up.add_argument("--revision", default="head")
    _config_option(up)
    up.set_defaults(func=_db_upgrade)

    user = ssub.add_parser("user", help="user accounts")
    usub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = usub.add_parser("add", help="add a user (e.g. the first admin)")
    add.add_argument("login")
    add.add_argument("--role", required=True, choices=["examiner", "observer", "archivist", "admin"])
    add.add_argument("--display-name", default="")
    add.add_argument("--password-file", type=Path, help="read the password from this file (first line)")
    _config_option(add)
    add.set_defaults(func=_user_add)

    aud = ssub.add_parser("audit", help="the audit log")
    asub = aud.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    ver = asub.add_parser("verify", help="check the hash chain; exit 1 at the first broken row")
    _config_option(ver)
    ver.set_defaults(func=_audit_verify)

    st = ssub.add_parser("station", help="stations and their tokens")
    stsub = st.add_subparsers(dest="station_command", required=True, metavar="ACTION")
    sadd = stsub.add_parser("add", help="add a station and print its first token (shown once)")
    sadd.add_argument("code")
    sadd.add_argument("--name", default="")
    _config_option(sadd)
    sadd.set_defaults(func=_station_add)
    stok = stsub.add_parser("issue-token", help="print a new token for a station (shown once)")
    stok.add_argument("code")
    _config_option(stok)
    stok.set_defaults(func=_station_issue)
    srev = stsub.add_parser("revoke-token", help="revoke a station's tokens (all, or --id N)")
    srev.add_argument("code")
    srev.add_argument("--id", type=int, default=None)
    _config_option(srev)
    srev.set_defaults(func=_station_revoke)

    run = ssub.add_parser("run", help="serve HTTP")
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=int, default=None)
    _config_option(run)
    run.set_defaults(func=_run)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="server TOML file (default: demo settings)")


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .auth import configure_passwords
    from .config import load_config

    cfg = load_config(args.config)
    configure_passwords(cfg.argon2_time_cost, cfg.argon2_memory_kib, cfg.argon2_parallelism)
    return cfg


def _db(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .db import Database

    return Database(_config(args).database_url)


def _db_upgrade(args: argparse.Namespace) -> int:
    from .migrations import upgrade

    cfg = _config(args)
    upgrade(cfg.database_url, args.revision)
    print(f"database at {_safe_url(cfg.database_url)} is at revision {args.revision}")
    return 0


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        lines = args.password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise SystemExit("osce server user add: the passwords differ")
    return first


def _user_add(args: argparse.Namespace) -> int:
    from . import audit, auth

    password = _read_password(args)
    db = _db(args)
    try:
        with db.transaction() as s:
            auth.add_user(s, args.login, password, args.role, args.display_name)
            audit.append(s, "cli", audit.USER_ADD, args.login, {"role": args.role})
    except ValueError as exc:
        print(f"osce server user add: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(f"user {args.login} added with role {args.role}")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from . import audit

    db = _db(args)
    try:
        result = db.run(audit.verify)
    finally:
        db.dispose()
    print(json.dumps(result.as_dict(), ensure_ascii=False))
    return 0 if result.ok else 1


def _station_add(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from . import audit, auth
    from .models import Station
    from .validate import CODE_RE

    if not CODE_RE.fullmatch(args.code):
        print(f"osce server station add: code must match {CODE_RE.pattern}", file=sys.stderr)
        return 2
    db = _db(args)
    try:
        with db.transaction() as s:
            if s.scalar(select(Station.id).where(Station.code == args.code)) is not None:
                print(f"osce server station add: station {args.code!r} already exists", file=sys.stderr)
                return 2
            st = Station(code=args.code, name=args.name)
            s.add(st)
            s.flush()
            token, row = auth.issue_station_token(s, st)
            audit.append(s, "cli", audit.STATION_ADD, args.code)
            audit.append(s, "cli", audit.STATION_TOKEN_ISSUE, args.code, {"token_id": row.id})
    finally:
        db.dispose()
    print(token)
    return 0


def _station_issue(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from . import audit, auth
    from .models import Station

    db = _db(args)
    try:
        with db.transaction() as s:
            st = s.scalar(select(Station).where(Station.code == args.code))
            if st is None:
                print(f"osce server station issue-token: no station {args.code!r}", file=sys.stderr)
                return 2
            token, row = auth.issue_station_token(s, st)
            audit.append(s, "cli", audit.STATION_TOKEN_ISSUE, args.code, {"token_id": row.id})
    finally:
        db.dispose()
    print(token)
    return 0


def _station_revoke(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from . import audit, auth
    from .models import Station

    db = _db(args)
    try:
        with db.transaction() as s:
            st = s.scalar(select(Station).where(Station.code == args.code))
            if st is None:
                print(f"osce server station revoke-token: no station {args.code!r}", file=sys.stderr)
                return 2
            n = auth.revoke_station_tokens(s, st, args.id)
            audit.append(s, "cli", audit.STATION_TOKEN_REVOKE, args.code, {"token_id": args.id, "revoked": n})
    finally:
        db.dispose()
    print(f"revoked {n} token(s) of station {args.code}")
    return 0 if n else 1


def _run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .app import create_app

    cfg = _config(args)
    host = args.host or cfg.host
    port = args.port or cfg.port
    if cfg.insecure_cookies and host not in ("127.0.0.1", "localhost", "::1"):
        print("osce server run: insecure_cookies is only for plain http on localhost", file=sys.stderr)
        return 2
    web.run_app(create_app(cfg), host=host, port=port)
    return 0
