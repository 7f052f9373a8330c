"""An attempt whose time ends while the agent is down (kill -9) is closed when the agent comes back: a real
daemon on the CPR station records a synthetic camera showing compressions, is killed during the performing
phase and started again after the attempt's end. The cut part gets its manifest end, every fragment reaches
the review server, the CPR report is made and sent, and the log says the attempt was closed after a restart;
a second restart changes nothing (nothing queued twice)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from media.manifest import read_manifest, verify_recording
from review_server.db import Database
from review_server.models import AuditEvent, Fragment, Recording
from station_agent.upload_queue import DONE, UploadQueue

from .conftest import (
    CAMERA,
    RATE,
    Daemon,
    ReviewProcess,
    events,
    free_port,
    health_of,
    server_db,
    short_checklist,
    stored_report,
    wait_for,
    write_config,
)

ATTEMPT = "d1-st1-late-001"


def media_end(part: Path) -> float:
    return max((f.end or 0.0 for f in read_manifest(part).fragments if f.kind == "media"), default=0.0)


def server_fragments(db_url: str) -> set[tuple[str, int, str]]:
    db = Database(db_url)
    try:
        return set(db.run(lambda s: s.execute(
            select(Fragment.track, Fragment.seq, Fragment.sha256).join(Recording)
            .where(Recording.attempt_id == ATTEMPT)).all()))
    finally:
        db.dispose()


def figure_audits(db_url: str) -> int:
    db = Database(db_url)
    try:
        return len(db.run(lambda s: s.scalars(select(AuditEvent.details).where(
            AuditEvent.action == "attempt.cpr_figures", AuditEvent.target == ATTEMPT)).all()))
    finally:
        db.dispose()


def test_attempt_that_ended_while_the_agent_was_killed_is_closed_after_restart(tmp_path: Path) -> None:
    db_url, token, _ = server_db(tmp_path, (ATTEMPT,))
    server = ReviewProcess(db_url, tmp_path / "media", free_port(), tmp_path / "server.log")
    checklist = short_checklist(tmp_path).rename(tmp_path / "01_basic_cpr_adult.yaml")
    config = write_config(tmp_path, cameras=(CAMERA,), microphone="none", checklist=checklist,
                          extra=f'[server]\nurl = "{server.url}"\n[cpr]\nanalysis = true\nlive = false\n')
    daemon = Daemon(config)
    env = {"OSCE_STATION_TOKEN": token}
    folder = tmp_path / "data" / "recordings" / ATTEMPT
    part = folder / "part-1"
    try:
        server.start()
        daemon.start(env)
        status, answer = daemon.request("POST", "/api/attempt/start", {
            "candidate": "240517", "attempt_id": ATTEMPT, "reading_s": 1, "performing_s": 12}, token=token)
        assert status == 200, answer
        ends_at = datetime.fromisoformat(answer["attempt"]["reading_starts_at"]).timestamp() + 13
        # the camera's first cycle of 12 compressions is over at about 8 s of media
        wait_for(lambda: media_end(part) >= 9.5, 25, "9.5 s of media in part-1")
        assert time.time() < ends_at - 0.5, "the attempt ended before the kill: the machine is too slow"
        daemon.kill9()
        assert read_manifest(part).end is None and "attempt_done" not in [e["event"] for e in events(folder)]
        time.sleep(max(0.0, ends_at + 0.5 - time.time()))  # the attempt's end passes while the agent is down

        daemon.start(env)
        log = wait_for(lambda: (e := events(folder)) and e[-1]["event"] == "attempt_done" and e, 10, "the close")
        late = [e for e in log if e["event"] == "closed_after_restart"]
        assert len(late) == 1 and late[0]["late_s"] >= 0.5, log
        noticed, ended = (datetime.fromisoformat(late[0][k]) for k in ("noticed_at", "ended_at"))
        assert noticed > ended and abs(ended.timestamp() - ends_at) < 0.01
        assert log[-1]["closed_after_restart"] is True and log[-2]["event"] == "part_closed", log[-3:]
        assert [e["phase"] for e in log if e["event"] == "phase"][-1] == "done"
        assert not [e for e in log if e["event"] == "cue" and e["cue"] == "time_up"]  # never played late
        manifest = read_manifest(part)
        assert manifest.end is not None and manifest.end["reason"] == "interrupted", manifest.end
        assert verify_recording(part) == []
        assert not (folder / "part-2").exists()  # nothing recorded after the end
        assert daemon.request("GET", "/api/clock", token=None)[1]["phase"] == "idle"

        # Uploaded completely: every fragment of the part confirmed by the server, and stored there.
        listed = {(f.track, f.seq, f.sha256) for f in manifest.fragments}
        wait_for(lambda: server_fragments(db_url) == listed, 20, "all fragments on the server")
        # The server stores a fragment before it answers; the agent marks it done once the answer arrives.
        queue = UploadQueue(tmp_path / "data" / "state" / "upload-queue.db")
        try:
            wanted = {(t, s, DONE) for t, s, _ in listed}
            wait_for(lambda: {(i.track, i.seq, i.state) for i in queue.items()} == wanted, 10, "the queue all done")
        finally:
            queue.close()

        # The CPR report of the first cycle reaches the server.
        report = wait_for(lambda: stored_report(db_url, ATTEMPT), 30, "the CPR report on the server")
        video = report["video"]
        assert video["estimate"] is True and abs(video["rate_per_min"] - RATE) <= 5, video
        assert video["compressions"] >= 10 and video["part"] == "part-1", video
        wait_for(lambda: health_of(daemon, token)["cpr"]["jobs"] == {"done": 1}, 10, "the CPR job done")

        assert daemon.stop() == 0  # restarting again closes nothing twice, queues nothing twice
        daemon.start(env)
        time.sleep(2.0)
        log = events(folder)
        assert [e["event"] for e in log].count("attempt_done") == 1
        assert [e["event"] for e in log].count("closed_after_restart") == 1
        assert health_of(daemon, token)["cpr"]["jobs"] == {"done": 1}
        assert figure_audits(db_url) == 1 and server_fragments(db_url) == listed
    finally:
        daemon.stop()
        server.stop()
