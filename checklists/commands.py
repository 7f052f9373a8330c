"""Subcommands of `osce` that belong to this part (see osce_cli.py)."""

from __future__ import annotations

import argparse
import sys

from .loader import ChecklistError, builtin_checklists, load_checklist


def register(sub: argparse._SubParsersAction) -> None:
    """Add this part's subcommands to the `osce` parser."""
    checklist = sub.add_parser("checklist", help="checklist definitions")
    actions = checklist.add_subparsers(dest="checklist_command", required=True, metavar="ACTION")
    validate = actions.add_parser("validate", help="check checklist files; print file:line: field: problem")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.set_defaults(func=_validate)
    show = actions.add_parser("list", help="the shipped checklists with their content hashes")
    show.set_defaults(func=_list)


def _validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.paths:
        try:
            checklist = load_checklist(path)
        except ChecklistError as exc:
            failed += 1
            print(exc, file=sys.stderr)
            continue
        print(
            f"{path}: ok: {checklist.title} v{checklist.version}, {len(checklist.items)} items, "
            f"sha256 {checklist.content_hash}"
        )
    return 1 if failed else 0


def _list(args: argparse.Namespace) -> int:
    for checklist in builtin_checklists():
        print(f"{checklist.content_hash[:12]}  {checklist.source}  {checklist.title} v{checklist.version}")
    return 0
