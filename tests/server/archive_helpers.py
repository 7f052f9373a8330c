"""Shared set-up for the archive tests: schedule rows, checklist versions, marks and uploads through the API."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import select

from checklists.loader import DATA_DIR, load_checklist
from checklists.marks import MarkEvent as WireEvent
from checklists.model import Checklist
from media.manifest import read_manifest
from review_server.models import Attempt, Candidate, ChecklistVersion, ExamDay, Specialty, Station, Task

from .conftest import World

ROOT = Path(__file__).resolve().parents[2]


def make_recording(out: Path) -> Path:
    """A real 6 s recording (synthetic camera and microphone) made by `osce record`."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "osce_cli",
        "record",
        "--video",
        "synthetic",
        "--audio",
        "synthetic",
        "--seconds",
        "6",
        "--size",
        "320x180",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    return out


CPR = DATA_DIR / "01_basic_cpr_adult.yaml"
INJECTION = DATA_DIR / "02_im_injection_gluteal.yaml"
DAY = dt.date(2026, 6, 1)


def checklist(path: Path) -> Checklist:
    return load_checklist(path)


def add_schedule(world: World, *, store_checklists: bool = True) -> dict[str, int]:
    """Specialty NURSE with tasks CPR and INJ, exam day DAY; station S1 runs CPR, S2 runs INJ."""

    def make(s):  # type: ignore[no-untyped-def]
        sp = Specialty(code="NURSE", name="Сестринское дело")
        s.add(sp)
        s.flush()
        ids = {"specialty": sp.id}
        for code, path in (("CPR", CPR), ("INJ", INJECTION)):
            cl = checklist(path)
            task = Task(code=code, title=cl.title, specialty_id=sp.id)
            s.add(task)
            s.flush()
            ids[code] = task.id
            if store_checklists:
                s.add(
                    ChecklistVersion(
                        sha256=cl.content_hash,
                        task_id=task.id,
                        version=cl.version,
                        title=cl.title,
                        source=path.read_text(encoding="utf-8"),
                    )
                )
        day = ExamDay(day=DAY, title="day 1")
        s.add(day)
        s.flush()
        ids["day"] = day.id
        for code, task in (("S1", "CPR"), ("S2", "INJ")):
            st = s.scalar(select(Station).where(Station.code == code))
            st.specialty_id, st.task_id = sp.id, ids[task]
        return ids

    return world.api.run(make)


def link_attempt(world: World, attempt_id: str, number: str, ids: dict[str, int], task: str) -> None:
    def make(s):  # type: ignore[no-untyped-def]
        cand = s.scalar(select(Candidate).where(Candidate.accreditation_number == number))
        if cand is None:
            cand = Candidate(accreditation_number=number, specialty_id=ids["specialty"])
            s.add(cand)
            s.flush()
        att = s.get(Attempt, attempt_id)
        att.candidate_id, att.exam_day_id, att.task_id = cand.id, ids["day"], ids[task]

    world.api.run(make)


def events(
    attempt_id: str, station: str, cl: Checklist, done: set[int], *, examiner: str = "examiner", finalise: bool = True
) -> list[dict[str, Any]]:
    out = []
    for seq, n in enumerate(cl.item_numbers, start=1):
        out.append(
            WireEvent.new(
                attempt_id=attempt_id,
                station_id=station,
                examiner=examiner,
                kind="mark",
                checklist_hash=cl.content_hash,
                seq=seq,
                item=n,
                done=n in done,
                recording_offset_s=float(seq),
            ).to_json()
        )
    if finalise:
        out.append(
            WireEvent.new(
                attempt_id=attempt_id,
                station_id=station,
                examiner=examiner,
                kind="finalise",
                checklist_hash=cl.content_hash,
                seq=len(out) + 1,
            ).to_json()
        )
    return out


async def post_marks(world: World, evs: list[dict[str, Any]], token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token or world.station_token}"}
    resp = await world.api.client.post("/api/marks", json={"events": world.sign(evs, token)}, headers=headers)
    assert resp.status == 200, await resp.text()


async def upload_recording(world: World, folder: Path, key: str, attempt_id: str) -> int:
    """Every fragment of a recording folder through the station upload route; returns how many."""
    manifest = read_manifest(folder)
    n = 0
    for track in manifest.track_ids():
        for frag in manifest.track_files(track):
            data = (folder / frag.file).read_bytes()
            query = f"?attempt_id={attempt_id}"
            if frag.start is not None:
                query += f"&start={frag.start:.6f}&end={frag.end:.6f}"
            resp = await world.api.client.put(
                f"/api/recordings/{key}/tracks/{track}/fragments/{frag.seq}{query}",
                data=data,
                headers={**world.headers("station"), "X-Content-SHA256": frag.sha256},
            )
            assert resp.status == 201, await resp.text()
            n += 1
    return n
