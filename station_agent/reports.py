"""What the agent tells about itself: its status (the technician's API) and its health report (cameras, microphone,
disk, exam clock, uploads, failures, CPR jobs, problems), read by the API, the live meta and the health events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .health import FailureLog, problems
from .lifecycle import iso

if TYPE_CHECKING:
    from .attempts import AttemptRunner
    from .cpr_analysis import CprStation
    from .marking_host import MarkingHost
    from .recording import Recording
    from .uploads import Uploads


class Reports:
    def __init__(self, station_id: str, station_name: str, attempts: AttemptRunner, recording: Recording,
                 uploads: Uploads, failures: FailureLog, *, marking: MarkingHost | None = None,
                 cpr: CprStation | None = None) -> None:
        self.station_id, self.station_name = station_id, station_name
        self.attempts, self.recording, self.uploads, self.failures = attempts, recording, uploads, failures
        self.marking, self.cpr = marking, cpr

    def clock_state(self) -> dict[str, Any]:
        return self.attempts.clock_state()

    def status(self) -> dict[str, Any]:
        state = self.clock_state()
        attempt, folder = self.attempts.current, self.recording.folder
        state.update(station_id=self.station_id, station_name=self.station_name,
                     attempt=attempt.to_json() if attempt else None,
                     recording={"part": self.recording.part, "folder": str(folder)} if folder else None,
                     marking={"url": self.marking.url, "attempt_id": self.marking.attempt_id,
                              "roster": self._roster_state(self.marking)} if self.marking else None)
        return state

    @staticmethod
    def _roster_state(marking: MarkingHost) -> dict[str, Any]:
        """Who may sign in on the tablet: where the roster came from, its examiners (logins) and when fetched."""
        roster = marking.tablet.roster
        return {"source": roster.source, "examiners": roster.logins(), "fetched_at": roster.fetched_at}

    def health(self) -> dict[str, Any]:
        sources = self.recording.report()
        attempts = self.attempts
        report: dict[str, Any] = {
            "station_id": self.station_id, "exam_time": iso(attempts.clock.now()), "phase": attempts.phase or "idle",
            "attempt_id": attempts.current.attempt_id if attempts.current else None,
            "recording": sources["recording"], "cameras": sources["cameras"], "microphone": sources["microphone"],
            "disk": self.recording.disk, "clock": attempts.clock.to_json(), "upload": self.uploads.status(),
            "failures": sources["failures"] + self.failures.recent[-5:],
        }
        if self.cpr is not None:
            report["cpr"] = self.cpr.status()
        report["problems"] = problems(report)
        report["ok"] = not report["problems"]
        return report
