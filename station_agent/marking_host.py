"""The daemon's marking page: `marking_app` for the current attempt, on its own port.

A marking app serves one attempt, so the agent starts a fresh one (same port, same sign-ins: the sessions live
in the host's TabletAuth, so examiners stay signed in) when the next attempt begins; the previous attempt's
page stays up until then, so examiners can finish and finalise their sheets after the candidate has left.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from aiohttp import web

from checklists.model import Checklist

from .marking_app import COOKIE, MarkingConfig, create_marking_app
from .tablet_auth import TabletAuth

log = logging.getLogger(__name__)


class MarkingHost:
    def __init__(self, checklist: Checklist, db_path: Path, tablet: TabletAuth, station_id: str,
                 host: str, port: int, recordings: Path | None = None) -> None:
        self.checklist, self.db_path, self.tablet = checklist, db_path, tablet
        self.recordings = recordings  # <data>/recordings: the page shows <attempt>/cpr_figures.json when written
        self.station_id, self.host, self.port = station_id, host, port
        self.runner: web.AppRunner | None = None
        self.attempt_id: str | None = None
        self.url: str | None = None

    async def switch(self, attempt_id: str, candidate: str, started_at: datetime) -> None:
        """Serve the page of this attempt (a no-op if it is already the one served)."""
        if attempt_id == self.attempt_id:
            return
        config = MarkingConfig(checklist=self.checklist, db_path=self.db_path, attempt_id=attempt_id,
                               candidate_number=candidate, tablet=self.tablet, station_id=self.station_id,
                               recording_started_at=started_at.isoformat(timespec="microseconds"),
                               figures_path=self.figures_path(attempt_id))
        await self.close()
        runner = web.AppRunner(create_marking_app(config), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        self.runner, self.attempt_id = runner, attempt_id
        address = runner.addresses[0]
        self.url = f"http://{address[0]}:{address[1]}/"
        print(f"marking page: {self.url} ({attempt_id})", flush=True)

    def figures_path(self, attempt_id: str) -> Path | None:
        """Where a CPR figures report (`osce cpr analyze ... > file`) for the attempt is looked for."""
        return None if self.recordings is None else self.recordings / attempt_id / "cpr_figures.json"

    def examiner(self, cookie: str | None) -> str | None:
        """The signed-in examiner a marking cookie belongs to, or None."""
        session = self.tablet.session(cookie)
        return None if session is None else session.examiner

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        self.runner, self.attempt_id, self.url = None, None, None


__all__ = ["COOKIE", "MarkingHost"]
