"""`osce server schedule import`: the exam day's schedule becomes the day, candidates, tasks, checklist versions
and attempt rows, so that the results protocol sees the day's attempts before any mark arrives."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from osce_cli import main
from review_server import protocol
from review_server.day_import import ScheduleImportError, import_day
from review_server.db import Database
from review_server.models import Attempt, AuditEvent, Candidate, ChecklistVersion, Station
from review_server.scores import checklist_for

STEMS = ["01_basic_cpr_adult", "02_im_injection_gluteal", "03_blood_pressure"]
START = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)


def schedule() -> dict:
    attempts = []
    for slot in range(3):
        for i in range(3):
            attempts.append({"attempt_id": f"d1-st{i + 1}-{slot + 1}", "candidate": f"260{(i + slot) % 3}",
                             "station_id": f"st{i + 1}", "checklist": STEMS[i],
                             "reading_starts_at": (START + dt.timedelta(minutes=10 * slot)).isoformat(),
                             "reading_s": 30, "performing_s": 510})
    return {"attempts": attempts}


def add_stations(db: Database) -> None:
    with db.transaction() as s:
        for n in (1, 2, 3):
            s.add(Station(code=f"st{n}", name=f"Станция {n}"))


def test_import_links_every_attempt_and_is_idempotent(db: Database) -> None:
    add_stations(db)
    with db.transaction() as s:
        s.add(Attempt(id="d1-st2-1", station_id=s.scalar(select(Station.id).where(Station.code == "st2"))))
    for run in range(2):
        with db.transaction() as s:
            r = import_day(s, schedule(), "nursing", "Сестринское дело", "Поток 1", "test")
        assert (r.attempts_new, r.attempts_updated) == ((8, 1) if run == 0 else (0, 9))
        assert r.candidates_new == (3 if run == 0 else 0)
    with db.transaction() as s:
        attempts = s.scalars(select(Attempt)).all()
        assert len(attempts) == 9 and all(a.exam_day_id and a.candidate_id and a.task_id for a in attempts)
        assert {c.accreditation_number for c in s.scalars(select(Candidate))} == {"2600", "2601", "2602"}
        assert len(s.scalars(select(ChecklistVersion)).all()) == 3
        for v in s.scalars(select(ChecklistVersion)):
            assert checklist_for(s, v.sha256) is not None  # scores can be computed from marks
        p = protocol.build(s, START.date(), "nursing")
        assert sorted(r.number for r in p.rows) == ["2600", "2601", "2602"]
        assert all(set(r.cells) == set(STEMS) for r in p.rows)
        assert s.scalar(select(AuditEvent.action).order_by(AuditEvent.seq.desc()).limit(1)) == "schedule.import"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda a: a[4].pop("reading_starts_at"), "attempts[4]"),
        (lambda a: a[2].update(station_id="st9"), "attempts[2].station_id"),
        (lambda a: a[1].update(checklist="../../etc/passwd"), "attempts[1].checklist"),
        (lambda a: a[7].update(checklist="no_such_checklist"), "attempts[7].checklist"),
        (lambda a: a[0].update(candidate="Иванов Иван"), "attempts[0].candidate"),
    ],
)
def test_bad_entries_name_where_and_change_nothing(db: Database, change, where: str) -> None:  # type: ignore[no-untyped-def]
    add_stations(db)
    day = schedule()
    change(day["attempts"])
    with pytest.raises(ScheduleImportError) as err, db.transaction() as s:
        import_day(s, day, "nursing", "", "", "test")
    assert err.value.where == where
    with db.transaction() as s:
        assert s.scalars(select(Attempt)).all() == []


def test_the_cli_imports_a_file(db: Database, migrated_url: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    add_stations(db)
    cfg = tmp_path / "server.toml"
    cfg.write_text(f"database_url = {json.dumps(migrated_url)}\nmedia_dir = \"media\"\n", encoding="utf-8")
    day = tmp_path / "day.json"
    day.write_text(json.dumps(schedule()), encoding="utf-8")
    assert main(["server", "schedule", "import", str(day), "--specialty", "nursing", "--config", str(cfg)]) == 0
    assert "9 attempts added" in capsys.readouterr().out
    day.write_text("{not json", encoding="utf-8")
    assert main(["server", "schedule", "import", str(day), "--specialty", "nursing", "--config", str(cfg)]) == 2
    assert str(day) in capsys.readouterr().err
