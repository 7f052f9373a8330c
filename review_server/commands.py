"""Subcommands of `osce` that belong to this part (see osce_cli.py): `osce server ...`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ServerConfig


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
    ver = asub.add_parser("verify", help="check the hash chain and its signed anchors; exit 1 at the first broken row "
                                         "or an anchor the chain no longer matches")
    _config_option(ver)
    ver.set_defaults(func=_audit_verify)
    anc = asub.add_parser("anchor", help="write today's signed head of the chain to audit_anchor_dir (once a day)")
    _config_option(anc)
    anc.set_defaults(func=_audit_anchor)

    st = ssub.add_parser("station", help="stations and their tokens")
    stsub = st.add_subparsers(dest="station_command", required=True, metavar="ACTION")
    sadd = stsub.add_parser("add", help="add a station and print its first token (shown once)")
    sadd.add_argument("code")
    sadd.add_argument("--name", default="")
    sadd.add_argument("--room", default="", help="the room number shown on its pictures (ident.py)")
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

    _register_tablet(ssub)

    sch = ssub.add_parser("schedule", help="the exam day's schedule")
    schsub = sch.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    simp = schsub.add_parser("import", help="create the day, candidates, tasks, checklist versions and attempts")
    simp.add_argument("file", type=Path, help="the schedule JSON (the file the exam clock serves)")
    simp.add_argument("--specialty", required=True, help="specialty code, e.g. nursing")
    simp.add_argument("--specialty-name", default="", help="its name, e.g. Сестринское дело")
    simp.add_argument("--title", default="", help="the exam day's title")
    simp.add_argument("--checklists", type=Path, default=None, help="folder of checklist YAML (default: shipped)")
    _config_option(simp)
    simp.set_defaults(func=_schedule_import)

    _register_archive(sub, ssub)

    run = ssub.add_parser("run", help="serve HTTP")
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=int, default=None)
    _config_option(run)
    run.set_defaults(func=_run)


def _register_tablet(ssub: argparse._SubParsersAction) -> None:
    tab = ssub.add_parser("tablet", help="examiners' tablet credentials (PIN and signing key per station and day)")
    tsub = tab.add_subparsers(dest="tablet_command", required=True, metavar="ACTION")
    iss = tsub.add_parser("issue", help="issue credentials and print each PIN (shown once)")
    iss.add_argument("--station", required=True, help="station code")
    iss.add_argument("--day", required=True, help="the exam day, YYYY-MM-DD")
    iss.add_argument("--login", action="append", help="an examiner (repeat); default: all assigned that day")
    iss.add_argument("--json", action="store_true", help="print JSON lines")
    _config_option(iss)
    iss.set_defaults(func=_tablet_issue)
    lst = tsub.add_parser("list", help="a station's credentials (no PINs: they are kept nowhere)")
    lst.add_argument("--station", required=True)
    _config_option(lst)
    lst.set_defaults(func=_tablet_list)
    rev = tsub.add_parser("revoke", help="revoke a credential: every mark it signed is refused from now on")
    rev.add_argument("key_id")
    _config_option(rev)
    rev.set_defaults(func=_tablet_revoke)


def _tablet_issue(args: argparse.Namespace) -> int:
    import datetime as dt

    from .tablet_credentials import CredentialError, describe, issue, issue_for_assigned

    try:
        day = dt.date.fromisoformat(args.day)
    except ValueError:
        print(f"osce server tablet issue: --day: expected YYYY-MM-DD, got {args.day!r}", file=sys.stderr)
        return 2
    cfg = _config(args)
    db = _db(args)
    actor = f"cli:{getpass.getuser()}"
    try:
        with db.transaction() as s:
            made = ([(login, *issue(s, cfg, args.station, day, login, actor)) for login in args.login]
                    if args.login else issue_for_assigned(s, cfg, args.station, day, actor))
            rows = [describe(s, row) | {"pin": pin} for _, pin, row in made]
    except CredentialError as exc:
        print(f"osce server tablet issue: {exc.where}: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    if not rows:
        print(f"osce server tablet issue: no examiner is assigned to {args.station} on {day}", file=sys.stderr)
        return 1
    for row in rows:
        print(json.dumps(row, ensure_ascii=False) if args.json else
              f"{row['login']}\tPIN {row['pin']}\t{row['key_id']}\tuntil {row['valid_until']}")
    return 0


def _tablet_list(args: argparse.Namespace) -> int:
    from .tablet_credentials import listed

    db = _db(args)
    try:
        with db.transaction() as s:
            st = _find_station(s, args.station, "tablet list")
            if st is None:
                return 2
            for row in listed(s, st.id):
                print(json.dumps(row, ensure_ascii=False))
    finally:
        db.dispose()
    return 0


def _tablet_revoke(args: argparse.Namespace) -> int:
    from .tablet_credentials import CredentialError, describe, revoke

    db = _db(args)
    try:
        with db.transaction() as s:
            print(json.dumps(describe(s, revoke(s, args.key_id, f"cli:{getpass.getuser()}")), ensure_ascii=False))
    except CredentialError as exc:
        print(f"osce server tablet revoke: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    return 0


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="server TOML file (default: demo settings)")


def _config(args: argparse.Namespace) -> ServerConfig:
    """The server's configuration; a mistake in it exits 2 with the file, the key and the problem."""
    from .auth import configure_passwords
    from .config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"osce server: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_passwords(cfg.argon2_time_cost, cfg.argon2_memory_kib, cfg.argon2_parallelism)
    return cfg


def _db(args: argparse.Namespace):
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
    from . import audit, audit_anchor
    from .signing import data_dir, load_existing

    cfg = _config(args)
    db = _db(args)
    key = load_existing(data_dir(cfg))
    try:
        result = db.run(audit.verify)
        checked, problems = db.run(lambda s: audit_anchor.check(s, key, audit_anchor.folder_of(cfg)))
    finally:
        db.dispose()
    out = result.as_dict() | {"anchors_checked": checked, "anchor_problems": problems}
    out["ok"] = result.ok and not problems
    print(json.dumps(out, ensure_ascii=False))
    return 0 if out["ok"] else 1


def _audit_anchor(args: argparse.Namespace) -> int:
    from . import audit_anchor
    from .signing import data_dir, load_or_create

    cfg = _config(args)
    db = _db(args)
    key = load_or_create(data_dir(cfg))
    try:
        written = db.run(lambda s: audit_anchor.publish(s, key, audit_anchor.folder_of(cfg)))
    finally:
        db.dispose()
    print(f"wrote {written}" if written else "today's anchor exists already")
    return 0


def _station_add(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from . import audit, auth
    from .models import Station
    from .names import name_problem
    from .validate import CODE_RE

    if not CODE_RE.fullmatch(args.code):
        print(f"osce server station add: code must match {CODE_RE.pattern}", file=sys.stderr)
        return 2
    if problem := name_problem(args.name):
        print(f"osce server station add: --name: {problem}", file=sys.stderr)
        return 2
    if problem := ("longer than 32 characters" if len(args.room) > 32 else name_problem(args.room)):
        print(f"osce server station add: --room: {problem}", file=sys.stderr)
        return 2
    db = _db(args)
    try:
        with db.transaction() as s:
            if s.scalar(select(Station.id).where(Station.code == args.code)) is not None:
                print(f"osce server station add: station {args.code!r} already exists", file=sys.stderr)
                return 2
            st = Station(code=args.code, name=args.name, room=args.room)
            s.add(st)
            s.flush()
            token, row = auth.issue_station_token(s, st)
            audit.append(s, "cli", audit.STATION_ADD, args.code)
            audit.append(s, "cli", audit.STATION_TOKEN_ISSUE, args.code, {"token_id": row.id})
    finally:
        db.dispose()
    print(token)
    return 0


def _find_station(s, code: str, action: str):
    """The station with this code, or None after saying so on stderr."""
    from sqlalchemy import select

    from .models import Station

    st = s.scalar(select(Station).where(Station.code == code))
    if st is None:
        print(f"osce server station {action}: no station {code!r}", file=sys.stderr)
    return st


def _station_issue(args: argparse.Namespace) -> int:
    from . import audit, auth

    db = _db(args)
    try:
        with db.transaction() as s:
            st = _find_station(s, args.code, "issue-token")
            if st is None:
                return 2
            token, row = auth.issue_station_token(s, st)
            audit.append(s, "cli", audit.STATION_TOKEN_ISSUE, args.code, {"token_id": row.id})
    finally:
        db.dispose()
    print(token)
    return 0


def _station_revoke(args: argparse.Namespace) -> int:
    from . import audit, auth

    db = _db(args)
    try:
        with db.transaction() as s:
            st = _find_station(s, args.code, "revoke-token")
            if st is None:
                return 2
            n = auth.revoke_station_tokens(s, st, args.id)
            audit.append(s, "cli", audit.STATION_TOKEN_REVOKE, args.code, {"token_id": args.id, "revoked": n})
    finally:
        db.dispose()
    print(f"revoked {n} token(s) of station {args.code}")
    return 0 if n else 1


def _schedule_import(args: argparse.Namespace) -> int:
    from . import audit
    from .day_import import SCHEDULE_IMPORT_REFUSED, SHIPPED_CHECKLISTS, ScheduleImportError, import_day

    try:
        schedule = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"osce server schedule import: {args.file}: {exc}", file=sys.stderr)
        return 2
    cfg = _config(args)
    db = _db(args)
    actor = f"cli:{getpass.getuser()}"
    try:
        with db.transaction() as s:
            r = import_day(s, schedule, args.specialty, args.specialty_name, args.title, actor,
                           args.checklists or SHIPPED_CHECKLISTS, cfg.timezone)
    except ScheduleImportError as exc:
        if exc.holds:  # nothing was imported; the refusal itself goes on record
            with db.transaction() as s:
                audit.append(s, actor, SCHEDULE_IMPORT_REFUSED, str(args.file)[:300],
                             {"where": exc.where, "holds": exc.holds})
        print(f"osce server schedule import: {args.file}: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(f"exam day {r.exam_day_id}: {r.attempts_new} attempts added, {r.attempts_updated} updated, "
          f"{r.candidates_new} new candidates, tasks {', '.join(r.tasks)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .app import create_app
    from .service import serve

    cfg = _config(args)
    host = args.host or cfg.host
    port = args.port or cfg.port
    if cfg.insecure_cookies and host not in ("127.0.0.1", "localhost", "::1"):
        print("osce server run: insecure_cookies is only for plain http on localhost", file=sys.stderr)
        return 2
    serve(create_app(cfg), host, port, keepalive_timeout_s=cfg.idle_timeout_s)
    return 0


def _register_archive(sub: argparse._SubParsersAction, ssub: argparse._SubParsersAction) -> None:
    ver = sub.add_parser("verify", help="check an export package (ZIP or folder): who signed it, hashes, files",
                         description="The package must be signed by the centre's key: give its published key "
                                     "(GET /api/export-key) with --public-key, or --config on the server. Exit 0 when "
                                     "every check holds, 1 otherwise (also when no trusted key was given).")
    ver.add_argument("package", type=Path)
    ver.add_argument("--public-key", type=Path, default=None, help="the centre's published key (PEM) to check against")
    ver.add_argument("--config", type=Path, default=None, help="the server's TOML: check against the server's own key")
    ver.add_argument("--trust-embedded-key", action="store_true",
                     help="check against the key inside the package (proves integrity, not who made it)")
    ver.set_defaults(func=_verify_package)
    exp = ssub.add_parser("export", help="write the export package of a request, with progress")
    exp.add_argument("--request", type=int, required=True, help="the export request's id")
    exp.add_argument("--out", type=Path, default=None, help="also copy the ZIP here")
    _config_option(exp)
    exp.set_defaults(func=_export)
    ret = ssub.add_parser("retention", help="retention of recordings")
    rsub = ret.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    rrun = rsub.add_parser("run", help="delete the media of expired recordings not under legal hold (audited)")
    rrun.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    rrun.add_argument("--today", type=_date, default=None, help="YYYY-MM-DD instead of today (UTC)")
    _config_option(rrun)
    rrun.set_defaults(func=_retention_run)
    sc = ssub.add_parser("scores", help="derived results (what the archive search filters on)")
    scsub = sc.add_subparsers(dest="scores_command", required=True, metavar="ACTION")
    scr = scsub.add_parser("refresh", help="recompute every attempt's stored result from its marks")
    _config_option(scr)
    scr.set_defaults(func=_scores_refresh)
    prot = ssub.add_parser("protocol", help="results protocol of an exam day and specialty")
    prot.add_argument("--day", type=_date, required=True)
    prot.add_argument("--specialty", required=True)
    prot.add_argument("--format", choices=["csv", "xlsx", "pdf", "json"], default="pdf")
    prot.add_argument("--out", type=Path, required=True)
    _config_option(prot)
    prot.set_defaults(func=_protocol)


def _verify_package(args: argparse.Namespace) -> int:
    from .package import verify
    from .signing import data_dir, load_existing, public_pem

    key, source = None, ""
    if args.public_key is not None and args.config is not None:
        print("osce verify: give --public-key or --config, not both", file=sys.stderr)
        return 2
    if args.public_key is not None:
        try:
            key, source = args.public_key.read_bytes()[:64 * 1024], f"--public-key {args.public_key}"
        except OSError as exc:
            print(f"osce verify: --public-key: {exc}", file=sys.stderr)
            return 2
    elif args.config is not None:
        server_key = load_existing(data_dir(_config(args)))
        if server_key is None:
            print(f"osce verify: the server of {args.config} has no signing key yet", file=sys.stderr)
            return 2
        key, source = public_pem(server_key), f"the server's key (--config {args.config})"
    report = verify(args.package, key, trust_embedded_key=args.trust_embedded_key, trusted_from=source)
    for line in report.lines():
        print(line)
    if report.ok and key is None:
        print("WARNING: checked against the package's own key only: anyone can make a package that passes this; "
              "compare the key's sha256 above with the centre's published one", file=sys.stderr)
    return 0 if report.ok else 1


def _export(args: argparse.Namespace) -> int:
    import shutil

    from .export import ExportError, exports_dir, run_export
    from .storage import storage_from_config

    cfg = _config(args)
    db = _db(args)
    shown = [-1]

    def progress(p) -> None:  # export.ExportProgress, once per whole percent
        pct = int(p.percent)
        if pct != shown[0]:
            shown[0] = pct
            print(
                f"export: {pct:3d}% {p.bytes_done / 1e6:.1f} of {p.bytes_total / 1e6:.1f} MB, "
                f"{p.files_done} of {p.files_total} files  {p.current}",
                file=sys.stderr,
                flush=True,
            )

    try:
        pkg = run_export(db, storage_from_config(cfg), cfg, args.request, f"cli:{getpass.getuser()}", progress)
    except ExportError as exc:
        print(f"osce server export: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    path = exports_dir(cfg) / pkg["file_name"]
    if args.out is not None:
        shutil.copyfile(path, args.out)
        path = args.out
    print(json.dumps(pkg | {"path": str(path)}, ensure_ascii=False))
    return 0


def _date(value: str):
    import datetime as dt
    import re

    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):  # not the week form "2026-W27-3" either
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


def _retention_run(args: argparse.Namespace) -> int:
    from . import retention
    from .storage import storage_from_config

    cfg = _config(args)
    db = _db(args)
    try:
        report = retention.run(db, storage_from_config(cfg), f"cli:{getpass.getuser()}", args.today, args.dry_run)
    finally:
        db.dispose()
    verb = "would delete" if args.dry_run else "deleted"
    for d in report.deleted:
        print(f"{verb} {d['recording']} ({d['bytes']} bytes; {d['keep_days']} days for {d['specialty']})")
    for key in report.held:
        print(f"kept {key}: legal hold")
    print(f"{verb} {len(report.deleted)} recording(s), {report.media_deleted} media object(s); {len(report.held)} held")
    return 0


def _protocol(args: argparse.Namespace) -> int:
    from . import protocol

    db = _db(args)
    try:
        with db.transaction() as s:
            p = protocol.build(s, args.day, args.specialty)
    except protocol.ProtocolError as exc:
        print(f"osce server protocol: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    if args.format == "json":
        args.out.write_text(json.dumps(p.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        args.out.write_bytes({"csv": protocol.to_csv, "xlsx": protocol.to_xlsx, "pdf": protocol.to_pdf}[args.format](p))
    print(f"{args.out}: {len(p.rows)} candidate(s), {len(p.tasks)} task(s)")
    return 0


def _scores_refresh(args: argparse.Namespace) -> int:
    from . import scores

    db = _db(args)
    try:
        n = db.run(lambda s: scores.refresh(s))
    finally:
        db.dispose()
    print(f"{n} attempt result(s) stored")
    return 0
