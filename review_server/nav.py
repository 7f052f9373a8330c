"""The navigation bar of every page: one list of entries, each with the roles that see it.

A role's bar is its entries in this order, and its first entry is where it lands after logging in (`GET /`):
the examiner on their day, the observer on the observation grid, the archivist on the requests, the admin on the
centre console. A new page adds one line here (its label goes into the catalogue's "nav" section) and one row to
the page list of the browser tests (tests/e2e/pages.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .roles import Role

ADMIN, EXAMINER, OBSERVER, ARCHIVIST = Role.ADMIN, Role.EXAMINER, Role.OBSERVER, Role.ARCHIVIST


@dataclass(frozen=True)
class Entry:
    key: str  # its label: the catalogue's "nav" section
    href: str
    roles: frozenset[str]


def _entry(key: str, href: str, *roles: str) -> Entry:
    return Entry(key, href, frozenset(roles))


NAV: tuple[Entry, ...] = (
    _entry("examiner", "/examiner", EXAMINER),
    _entry("live", "/live", EXAMINER, OBSERVER),
    _entry("requests", "/requests", ARCHIVIST),
    _entry("archive", "/archive", ARCHIVIST),
    _entry("board", "/admin", ADMIN),
    _entry("flags", "/flags", ADMIN, EXAMINER, OBSERVER),  # the day's flags from the observation room
    _entry("days", "/admin/days", ADMIN),  # the exam day's plan (its own page)
    _entry("readiness", "/admin/readiness", ADMIN),  # readiness before the day (its own page)
    _entry("users", "/admin/users", ADMIN),
    _entry("stations", "/admin/stations", ADMIN),
    _entry("holds", "/holds", ADMIN, ARCHIVIST),
    _entry("retention", "/admin/retention", ADMIN),
    _entry("audit", "/admin/audit", ADMIN),
    _entry("quality", "/reports/quality", ADMIN, ARCHIVIST),
)


def entries(role: str | None) -> list[Entry]:
    return [e for e in NAV if role in e.roles]


def landing(role: str | None) -> str:
    """Where a role lands: its first entry (an unknown role gets the login page)."""
    mine = entries(role)
    return mine[0].href if mine else "/login"


def current(role: str | None, path: str) -> str | None:
    """The href of the entry this page belongs to: the longest entry that is the path or a folder above it."""
    found = [e.href for e in entries(role) if path == e.href or path.startswith(e.href.rstrip("/") + "/")]
    return max(found, key=len) if found else None
