"""The `osce` command: parses arguments and hands over to the parts; no logic lives here.

Each part adds its own subcommands through `register(subparsers)` in its `commands` module.
"""

from __future__ import annotations

import argparse
import logging
import sys

from checklists import commands as checklist_commands
from media import commands as media_commands
from review_server import commands as server_commands
from review_server import demo as demo_command
from station_agent import commands as agent_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="osce", description="OSCE station recording and scoring")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for part in (media_commands, checklist_commands, agent_commands, server_commands, demo_command):
        part.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
