"""Subcommands of `osce` that belong to this part (see osce_cli.py)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this part's subcommands to the `osce` parser."""
