"""Subcommands of `osce` that belong to this part (see osce_cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from checklists.loader import ChecklistError, load_checklist

PINS_ENV = "OSCE_MARKING_PINS"


def register(sub: argparse._SubParsersAction) -> None:
    """Add this part's subcommands to the `osce` parser."""
    agent = sub.add_parser("agent", help="the station agent")
    actions = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    marking = actions.add_parser("marking", help="serve the in-room marking page for one attempt")
    marking.add_argument("--checklist", required=True, type=Path, help="checklist definition (YAML)")
    marking.add_argument("--db", required=True, type=Path, help="the marks journal (SQLite file)")
    marking.add_argument("--attempt", required=True, help="attempt id")
    marking.add_argument("--candidate", required=True, help="candidate's accreditation number")
    marking.add_argument("--station", default="station-1", help="station id")
    marking.add_argument("--host", default="0.0.0.0")
    marking.add_argument("--port", type=int, default=8081, help="0 picks a free port (printed on start)")
    marking.add_argument("--recording-started-at", help="ISO-8601 UTC start of the recording, if known")
    marking.add_argument(
        "--figures",
        type=Path,
        help="CPR figures report (osce-cpr-figures/1 JSON, e.g. from `osce cpr analyze`), shown beside the items "
        "when it exists; read again on every page update",
    )
    marking.add_argument(
        "--pin-file", type=Path, help=f"lines 'login:PIN'; else the environment variable {PINS_ENV}='login:PIN,...'"
    )
    marking.set_defaults(func=_marking)
    run = actions.add_parser("run", help="the station daemon: attempts, recording, health, cues (systemd unit)")
    run.add_argument("--config", type=Path, help="the agent's TOML file (see station_agent/CONFIG.md); none: demo")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .daemon import run

    return run(args.config)


def _pins(args: argparse.Namespace) -> dict[str, str]:
    from .config import parse_pins

    text = args.pin_file.read_text(encoding="utf-8") if args.pin_file else os.environ.get(PINS_ENV, "")
    try:
        pins = parse_pins(text)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if not pins:
        raise SystemExit(f"examiner PINs: give --pin-file or set {PINS_ENV}='login:PIN'")
    return pins


def _marking(args: argparse.Namespace) -> int:
    from .journal import Journal
    from .marking_app import MarkingConfig, check_journal_version, create_marking_app

    try:
        checklist = load_checklist(args.checklist)
    except ChecklistError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        config = MarkingConfig(
            checklist=checklist,
            db_path=args.db,
            attempt_id=args.attempt,
            candidate_number=args.candidate,
            examiners=_pins(args),
            station_id=args.station,
            recording_started_at=args.recording_started_at,
            figures_path=args.figures,
        )
        journal = Journal(config.db_path)
        try:
            check_journal_version(journal, config)
        finally:
            journal.close()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    asyncio.run(_serve(create_marking_app(config), args.host, args.port))
    return 0


async def _serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    for address in runner.addresses:
        print(f"marking page: http://{address[0]}:{address[1]}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
