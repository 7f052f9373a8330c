"""Every page of the review server, as data: which URL, who opens it, what shows it is ready. The checks that hold
for every page (tests/e2e/test_every_page.py: it loads for each of its roles in both languages, axe finds no
serious or critical violation, no English on the Russian page and no Russian on the English one, every control
reachable by the keyboard, a screenshot kept) walk this list; a new page adds one line here (and one in
review_server/nav.py if it is in the navigation). `test_every_page_route_is_listed` fails for a page route that is
neither here nor in NOT_PAGES.

`path` is the route as the server declares it; its {placeholders} are filled from the centre
(scripts/harness/centre.py): `values(centre)` below. `query` is added to the URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Page:
    name: str  # for the screenshots' file names
    path: str  # the route, as declared
    roles: tuple[str | None, ...]  # who opens it (None: nobody signed in); the first one is shown in the README
    query: str = ""
    ready: str | None = None  # a selector that appears once the page's script has filled it in
    readme: bool = False  # one of the README's screenshots (docs/screenshots/)


PAGES: tuple[Page, ...] = (
    Page("login", "/login", (None,)),
    Page("examiner-day", "/examiner", ("examiner1",), readme=True),
    Page("observation-room", "/live", ("observer", "examiner1"), ready="#grid .tile"),
    Page("attempt", "/attempts/{attempt_id}", ("examiner1", "archivist"), readme=True),
    Page("flags", "/flags", ("admin", "examiner1", "observer", "archivist")),
    Page("review-link", "/review/{token}", (None,)),
    Page("archive", "/archive", ("archivist",), query="number=2611001"),
    Page("ministry-requests", "/requests", ("archivist",), readme=True),
    Page("export-request", "/export-requests/{request_id}", ("archivist",), ready="#attempts tbody tr"),
    Page("holds", "/holds", ("archivist", "admin")),
    Page("quality", "/reports/quality", ("admin", "archivist"), query="exam_day={yesterday}&specialty=nursing"),
    Page("stations-board", "/admin", ("admin",), readme=True),
    Page("users", "/admin/users", ("admin",), readme=True),
    Page("station-tokens", "/admin/stations", ("admin",)),
    Page("retention", "/admin/retention", ("admin",)),
    Page("audit", "/admin/audit", ("admin",)),
    Page("readiness", "/admin/readiness", ("admin",), readme=True),
    Page("readiness-act", "/admin/readiness/runs/{run_id}", ("admin",)),
    Page("days", "/admin/days", ("admin",)),
    Page("day", "/admin/days/{day_id}", ("admin",), readme=True),
    Page("day-candidates", "/admin/days/{day_id}/candidates", ("admin",)),
    Page("day-slot", "/admin/days/{day_id}/slots/{slot_id}", ("admin",)),
    Page("day-completeness", "/days/{today_id}/completeness", ("admin", "archivist")),
)

# GET routes that answer HTML but are not pages of their own: parts of a page fetched again by its script.
# PDF documents (printed forms) are not pages either.
NOT_PAGES = frozenset({"/admin/board", "/requests/rows", "/examiner/stations",
                       "/admin/readiness/runs/{run_id}/act.pdf", "/admin/days/{day_id}/route-sheets/{kind}.pdf"})


def values(centre: Any) -> dict[str, str]:
    """The placeholders' values in the centre's data."""
    link = centre.http("POST", f"/api/attempts/{centre.attempts[0]}/review-links",
                       {"reviewer": "Апелляционная комиссия", "minutes": 120}, login="admin")
    return {"attempt_id": centre.attempts[0], "token": link["url"].rsplit("/", 1)[1],
            "request_id": str(centre.request_id), "yesterday": centre.yesterday.isoformat(),
            "run_id": str(centre.readiness_run), "day_id": str(centre.planned_day),
            "slot_id": str(centre.planned_slot), "today_id": str(centre.today_day)}


def url(page: Page, filled: dict[str, str], lang: str) -> str:
    path = page.path.format(**filled)
    query = "&".join(q for q in (page.query.format(**filled), "lang=en" if lang == "en" else "") if q)
    return path + (f"?{query}" if query else "")
