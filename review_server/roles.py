"""Who may do what: the role → permission table, in one place.

Route handlers declare the permission they need with `@requires(PERM)` (or `@public`); the auth
middleware enforces it, and tests/server/test_route_walk.py walks every route with every role.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

Handler = Callable[..., Awaitable[Any]]


class Role(StrEnum):
    EXAMINER = "examiner"  # marks the attempts of the stations and days assigned to them
    OBSERVER = "observer"  # watches live and recorded video
    ARCHIVIST = "archivist"  # searches, exports
    ADMIN = "admin"  # users, stations, days, retention


# Not a user role: what a station's bearer token may do.
STATION = "station"

PUBLIC = "public"  # no authentication at all (login page, health)
AUTHENTICATED = "authenticated"  # any signed-in user, whatever the role

# permission -> principals holding it
PERMISSIONS: dict[str, frozenset[str]] = {
    AUTHENTICATED: frozenset(Role),
    "users.manage": frozenset({Role.ADMIN}),
    "stations.manage": frozenset({Role.ADMIN}),
    "schedule.manage": frozenset({Role.ADMIN}),
    "schedule.view": frozenset({Role.ADMIN, Role.EXAMINER, Role.OBSERVER, Role.ARCHIVIST}),
    "candidates.view": frozenset({Role.ADMIN, Role.ARCHIVIST}),
    "candidates.personal": frozenset({Role.ADMIN}),  # names only where they are needed
    # Examiners see recordings only of the stations/days assigned to them (checked in the handler).
    "recordings.view": frozenset({Role.OBSERVER, Role.ARCHIVIST, Role.EXAMINER}),
    "recordings.delete": frozenset({Role.ADMIN}),  # retention
    "marks.view": frozenset({Role.EXAMINER, Role.ARCHIVIST}),
    # The attempt page shows video and marks together: recordings.view and marks.view both (admins issue review
    # links but do not watch). Examiners: their assigned stations only (checked in the handler).
    "attempts.review": frozenset({Role.EXAMINER, Role.ARCHIVIST}),
    "marks.correct": frozenset({Role.EXAMINER}),  # assignment checked in the handler
    "examiner.day": frozenset({Role.EXAMINER}),  # the examiner's own page: their stations, sheets, attempts
    "archive.search": frozenset({Role.ARCHIVIST}),
    "archive.export": frozenset({Role.ARCHIVIST}),
    "protocol.view": frozenset({Role.ADMIN, Role.ARCHIVIST}),  # results protocols (accreditation numbers only)
    "reports.quality": frozenset({Role.ADMIN, Role.ARCHIVIST}),  # station quality report for methodologists
    "checklists.manage": frozenset({Role.ADMIN}),  # upload checklist versions (YAML) for scoring
    "retention.manage": frozenset({Role.ADMIN}),  # retention periods per specialty
    "holds.manage": frozenset({Role.ADMIN, Role.ARCHIVIST}),  # legal holds (appeals, requests)
    "review_links.manage": frozenset({Role.ADMIN}),  # time-limited links for appeal reviewers
    "audit.verify": frozenset({Role.ADMIN}),
    "readiness.run": frozenset({Role.ADMIN}),  # readiness checks of the stations before the day, their acts
    "days.manage": frozenset({Role.ADMIN}),  # set up an exam day in the browser: list, circuits, examiners, sheets
    "days.review": frozenset({Role.ADMIN, Role.ARCHIVIST}),  # a day's completeness; re-hash its media
    "days.close": frozenset({Role.ADMIN}),  # close a day (locks its marks), reopen it with a reason
    # Flags on what was seen live (routes/flags.py): observers, examiners (their stations), admins make them; the day's
    # list for the commission's chair and the attempt's flags for those who review.
    "flags.make": frozenset({Role.OBSERVER, Role.EXAMINER, Role.ADMIN}),
    "flags.view": frozenset({Role.ADMIN, Role.OBSERVER, Role.EXAMINER, Role.ARCHIVIST}),
    "station.upload": frozenset({STATION}),
    "station.marks": frozenset({STATION}),
    "station.schedule": frozenset({STATION}),
    "station.readiness": frozenset({STATION}),  # take a readiness check, report on it
}

# Roles whose permissions are scoped to their examiner assignments.
SCOPED_TO_ASSIGNMENTS = frozenset({Role.EXAMINER})


def allowed(permission: str, principal: str | None) -> bool:
    """May `principal` (a Role value, STATION, or None for anonymous) use `permission`?"""
    if permission == PUBLIC:
        return True
    if principal is None:
        return False
    return principal in PERMISSIONS[permission]


def requires(permission: str) -> Callable[[Handler], Handler]:
    """Mark a handler with the permission it needs; unknown permissions fail at import time."""
    if permission != PUBLIC and permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")

    def mark(handler: Handler) -> Handler:
        handler.osce_permission = permission  # type: ignore[attr-defined]
        return handler

    return mark


public = requires(PUBLIC)


def permission_of(handler: object) -> str | None:
    return getattr(handler, "osce_permission", None)
