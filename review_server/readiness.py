"""Readiness checks before the exam day: the server asks a station's agent for a short test recording on the
room's real cameras and microphone, takes its fragments over tus (verified by SHA-256 like any), and judges the
station's report item by item (readiness_judge.py). Each press of "check" is a run (one station or all); its
checks are kept, and a run prints as the readiness act (readiness_act.py).

Ownership: a test recording belongs to its check, which the server made for that station; its fragments are
`ReadinessFragment` rows, never `Recording`s, so candidates' protocols, the archive, exports and the retention of
candidates' material never see them. They have a retention of their own (`readiness_keep_days`): their media is
deleted when a new run is started and they are older (the results and the act stay).

A check's life: requested (by an admin) -> claimed (by the station's agent, polling) -> recording -> uploading ->
done; or refused (an attempt running or about to start), offline (no agent took it within
`readiness_claim_timeout_s`), failed (no report within `readiness_report_timeout_s`). Time-outs are applied when
anyone reads or changes checks (`expire`), so nothing runs in the background. Every outcome is audited.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from media.readiness_report import Report, ReportError

from . import audit, i18n
from .models import Fragment, ReadinessCheck, ReadinessFragment, ReadinessRun, Station, User
from .readiness_judge import Item, Limits, bad_report, judge, no_report, offline, ready
from .web import ApiError

RUN = "readiness.run"
RESULT = "readiness.result"
ACT = "readiness.act"
PURGE = "readiness.purge"
ACTIVE = ("requested", "claimed", "recording", "uploading")
TAKEN = ("claimed", "recording", "uploading")  # the station's agent has it: its media is taken
SERVER = "server"  # the audit actor of a time-out


def recording_key(check_id: int) -> str:
    """The test recording's id on the station (its manifest and tus `recording`)."""
    return f"readiness-{check_id}"


# --- runs and checks --------------------------------------------------------------------------------------------


def start_run(s: Session, actor: str, codes: list[str] | None, seconds: int) -> ReadinessRun:
    """A run over the stations named (None: every station); 409 when one of them has a check still running."""
    if codes is None:
        stations = list(s.scalars(select(Station).order_by(Station.code)))
        if not stations:
            raise ApiError(409, "there are no stations to check (add them first)", "stations")
    else:
        found = {st.code: st for st in s.scalars(select(Station).where(Station.code.in_(codes)))}
        for i, code in enumerate(codes):
            if code not in found:
                raise ApiError(422, f"no station {code!r}", f"stations[{i}]")
        stations = [found[c] for c in dict.fromkeys(codes)]
    for st in stations:
        busy = s.scalar(select(ReadinessCheck).where(ReadinessCheck.station_id == st.id,
                                                     ReadinessCheck.state.in_(ACTIVE)))
        if busy is not None:
            raise ApiError(409, f"a readiness check of station {st.code!r} is still running (asked "
                           f"{busy.requested_at.isoformat(timespec='seconds')})", "stations")
    run = ReadinessRun(requested_by=actor, seconds=seconds)
    s.add(run)
    s.flush()
    for st in stations:
        s.add(ReadinessCheck(run_id=run.id, station_id=st.id, state="requested", requested_at=run.requested_at))
    s.flush()
    audit.append(s, actor, RUN, f"readiness:{run.id}", {"stations": [st.code for st in stations],
                                                         "seconds": seconds})
    return run


def _close(s: Session, check: ReadinessCheck, state: str, items: list[Item], when: dt.datetime, actor: str) -> None:
    check.state, check.items, check.ok, check.finished_at = state, items, ready(items), when
    station = s.get(Station, check.station_id)
    red = sorted({r["code"] for i in items if i["ok"] is False for r in i["reasons"]})
    audit.append(s, actor, RESULT, f"readiness:{check.run_id}",
                 {"check": check.id, "station": station.code if station else None, "state": state, "ok": check.ok,
                  "red": red})


def expire(s: Session, now: dt.datetime, claim_timeout_s: float, report_timeout_s: float) -> None:
    """Close the checks whose time is up: never taken (the agent is offline), or taken and never reported. Rows
    locked by another transaction (a report arriving, another time-out) are left to it."""
    for check in s.scalars(select(ReadinessCheck).where(ReadinessCheck.state.in_(ACTIVE))
                           .with_for_update(skip_locked=True)):
        if check.state == "requested":
            if (now - check.requested_at).total_seconds() > claim_timeout_s:
                _close(s, check, "offline", offline(claim_timeout_s), now, SERVER)
        elif check.claimed_at is not None and (now - check.claimed_at).total_seconds() > report_timeout_s:
            _close(s, check, "failed", no_report(report_timeout_s), now, SERVER)


def claim(s: Session, station_id: int, now: dt.datetime) -> dict[str, Any] | None:
    """The station's oldest asked check, now taken by it. The row is locked (PostgreSQL; SQLite transactions are
    serialised already, see db.py), so two pollers of one station cannot both take it."""
    check = s.scalar(select(ReadinessCheck).where(ReadinessCheck.station_id == station_id,
                                                  ReadinessCheck.state == "requested")
                     .order_by(ReadinessCheck.id).limit(1).with_for_update(skip_locked=True))
    if check is None:
        return None
    check.state, check.claimed_at = "claimed", now
    run = s.get(ReadinessRun, check.run_id)
    assert run is not None
    return {"id": check.id, "seconds": run.seconds, "recording": recording_key(check.id)}


def _own_check(s: Session, station_id: int, check_id: int, states: tuple[str, ...], where: str) -> ReadinessCheck:
    check = s.get(ReadinessCheck, check_id, with_for_update=True)  # a time-out or a second report waits for us
    if check is None or check.station_id != station_id:
        raise ApiError(404, f"no readiness check {check_id} of this station", where)
    if check.state not in states:
        raise ApiError(409, f"readiness check {check_id} is {check.state}: it takes nothing more", where)
    return check


def set_progress(s: Session, station_id: int, check_id: int, state: str) -> None:
    _own_check(s, station_id, check_id, TAKEN, "URL check_id").state = state


def take_report(s: Session, station_id: int, check_id: int, body: Any, received_at: dt.datetime, limits: Limits,
                actor: str) -> tuple[ReadinessCheck, ReportError | None]:
    """Judge and keep a station's report. A report that breaks the format closes the check red (and the caller
    answers 422 naming the field, after this is committed)."""
    check = _own_check(s, station_id, check_id, TAKEN, "URL check_id")
    try:
        report = Report.from_json(body)
    except ReportError as exc:
        _close(s, check, "failed", bad_report(exc.where, exc.message), received_at, actor)
        return check, exc
    stored = {(f.track, f.seq): f.sha256 for f in
              s.scalars(select(ReadinessFragment).where(ReadinessFragment.check_id == check.id))}
    check.report = json.dumps(report.to_json(), ensure_ascii=False)
    items = judge(report, stored, received_at, limits)
    _close(s, check, "refused" if report.refused is not None else "done", items, received_at, actor)
    return check, None


# --- the test recording's fragments (tus ingest, fragment_rows.py) ---------------------------------------------


def _ingest_check(s: Session, station_id: int, check_id: int, where: str) -> ReadinessCheck:
    check = s.get(ReadinessCheck, check_id)
    if check is None or check.station_id != station_id:
        raise ApiError(409, f"readiness check {check_id} is not this station's", where)
    if check.state not in TAKEN:
        raise ApiError(409, f"readiness check {check_id} is {check.state}: its recording is not taken", where)
    return check


def fragment_held(s: Session, station_id: int, check_id: int, track: str, seq: int, sha256: str,
                  where: str) -> bool:
    """True if this fragment of a check's recording is stored already; 409 if it conflicts with what is."""
    check = _ingest_check(s, station_id, check_id, where)
    row = s.scalar(select(ReadinessFragment).where(ReadinessFragment.check_id == check.id,
                                                   ReadinessFragment.track == track, ReadinessFragment.seq == seq))
    if row is None:
        return False
    if row.sha256 != sha256:
        raise ApiError(409, f"fragment {track}/{seq} of readiness check {check.id} is already stored with other "
                       "content", where)
    return True


def record_fragment(s: Session, station_id: int, check_id: int, track: str, seq: int, kind: str, sha256: str,
                    size: int, where: str) -> bool:
    """Keep a fragment of a check's recording (False if it was there already)."""
    if fragment_held(s, station_id, check_id, track, seq, sha256, where):
        return False
    s.add(ReadinessFragment(check_id=check_id, track=track, kind=kind, seq=seq, sha256=sha256, size=size))
    s.flush()
    return True


def init_sha(s: Session, check_id: int, track: str) -> str | None:
    return s.scalar(select(ReadinessFragment.sha256).where(ReadinessFragment.check_id == check_id,
                                                           ReadinessFragment.track == track,
                                                           ReadinessFragment.kind == "init"))


def purge_media(s: Session, actor: str, now: dt.datetime, keep_days: int) -> list[str]:
    """Drop the fragment rows of test recordings older than `keep_days`; the media blobs that nothing else refers
    to (for the caller to delete after the commit). Init segments are left: they are a few hundred bytes, and an
    attempt's init can be the very same bytes, which a concurrent upload may be recording against this moment."""
    if keep_days <= 0:
        return []
    before = now - dt.timedelta(days=keep_days)
    checks = list(s.scalars(select(ReadinessCheck).where(ReadinessCheck.finished_at < before,
                                                         ReadinessCheck.media_purged_at.is_(None))))
    hashes: set[str] = set()
    for check in checks:
        for f in s.scalars(select(ReadinessFragment).where(ReadinessFragment.check_id == check.id)):
            if f.kind == "media":
                hashes.add(f.sha256)
            s.delete(f)
        check.media_purged_at = now
    s.flush()
    orphans = sorted(h for h in hashes
                     if not s.scalar(select(func.count()).where(Fragment.sha256 == h))
                     and not s.scalar(select(func.count()).where(ReadinessFragment.sha256 == h)))
    if checks:
        audit.append(s, actor, PURGE, "readiness", {"checks": [c.id for c in checks], "media_deleted": len(orphans),
                                                    "keep_days": keep_days})
    return orphans


# --- what pages show --------------------------------------------------------------------------------------------


DIGITS = {"offset": 3}  # decimals a value is shown with (1 unless named here)
SIGNED = ("offset", "median", "suggested")  # shown with their sign


def _size(n: float, lang: str) -> str:
    unit = i18n.CATALOGUE[lang]["readiness"]
    if n >= 2**30:
        return f"{i18n.decimal(n / 2**30, lang, 1)} {unit['gb']}"
    return f"{i18n.decimal(n / 2**20, lang, 1)} {unit['mb']}"


def _param(name: str, value: Any, lang: str) -> str:
    if name == "phase":
        return i18n.CATALOGUE[lang]["readiness"].get(f"phase.{value}", str(value))
    if name.endswith("_bytes"):
        return _size(value, lang)
    if isinstance(value, float):
        digits = DIGITS.get(name, 1)
        value = round(value, digits) + 0.0  # + 0.0: no "-0"
        text = str(int(value)) if value.is_integer() else i18n.decimal(value, lang, digits).rstrip("0")
        return f"+{text}" if name in SIGNED and value > 0 else text
    return str(value)


def say(entry: dict[str, Any] | None, prefix: str, lang: str) -> str:
    """A value or a reason of an item in the reader's language."""
    if entry is None:
        return ""
    texts = i18n.CATALOGUE[lang]["readiness"]
    params = {k: _param(k, v, lang) for k, v in entry["params"].items()}
    return texts[f"{prefix}.{entry['code']}"].format(**params)


def shown_items(items: list[Item] | None, lang: str) -> list[dict[str, Any]]:
    texts = i18n.CATALOGUE[lang]["readiness"]
    return [{"ok": i["ok"], "label": texts[f"item.{i['item']}"], "subject": i["subject"],
             "value": say(i["value"], "v", lang), "reasons": [say(r, "r", lang) for r in i["reasons"]],
             "detail": i["detail"]} for i in items or []]


def _actor_name(s: Session, actor: str) -> str:
    login = actor.removeprefix("user:")
    user = s.scalar(select(User).where(User.login == login))
    return f"{user.display_name} ({login})" if user is not None and user.display_name else login


def check_view(check: ReadinessCheck, station: Station, lang: str) -> dict[str, Any]:
    return {"id": check.id, "run_id": check.run_id, "station": station.code, "station_name": station.name,
            "state": check.state, "ok": check.ok, "requested_at": check.requested_at,
            "finished_at": check.finished_at, "results": shown_items(check.items, lang)}


def run_view(s: Session, run_id: int, lang: str) -> dict[str, Any]:
    run = s.get(ReadinessRun, run_id)
    if run is None:
        raise ApiError(404, f"no readiness run {run_id}", "URL run_id")
    rows = s.execute(select(ReadinessCheck, Station).join(Station, Station.id == ReadinessCheck.station_id)
                     .where(ReadinessCheck.run_id == run_id).order_by(Station.code))
    checks = [check_view(c, st, lang) for c, st in rows]
    return {"id": run.id, "requested_at": run.requested_at, "requested_by": _actor_name(s, run.requested_by),
            "seconds": run.seconds, "checks": checks, "ready": sum(1 for c in checks if c["ok"]),
            "finished": all(c["state"] not in ACTIVE for c in checks)}


def board(s: Session, lang: str, history: int = 30) -> dict[str, Any]:
    """Every station with its latest check, and the latest runs."""
    stations = []
    for st in s.scalars(select(Station).order_by(Station.code)):
        last = s.scalar(select(ReadinessCheck).where(ReadinessCheck.station_id == st.id)
                        .order_by(ReadinessCheck.id.desc()).limit(1))
        stations.append({"code": st.code, "name": st.name, "check": check_view(last, st, lang) if last else None})
    runs = []
    for run in s.scalars(select(ReadinessRun).order_by(ReadinessRun.id.desc()).limit(history)):
        states = list(s.execute(select(ReadinessCheck.state, ReadinessCheck.ok, Station.code)
                                .join(Station, Station.id == ReadinessCheck.station_id)
                                .where(ReadinessCheck.run_id == run.id).order_by(Station.code)))
        runs.append({"id": run.id, "requested_at": run.requested_at, "requested_by": _actor_name(s, run.requested_by),
                     "stations": [code for _, _, code in states], "ready": sum(1 for _, ok, _ in states if ok),
                     "total": len(states), "finished": all(state not in ACTIVE for state, _, _ in states)})
    return {"stations": stations, "runs": runs}


def run_status(s: Session, run_id: int) -> dict[str, Any]:
    """What the page polls while a run goes on: each check's state and result."""
    run = s.get(ReadinessRun, run_id)
    if run is None:
        raise ApiError(404, f"no readiness run {run_id}", "URL run_id")
    rows = s.execute(select(ReadinessCheck, Station.code).join(Station, Station.id == ReadinessCheck.station_id)
                     .where(ReadinessCheck.run_id == run_id).order_by(Station.code))
    checks = [{"id": c.id, "station": code, "state": c.state, "ok": c.ok} for c, code in rows]
    return {"id": run_id, "checks": checks, "finished": all(c["state"] not in ACTIVE for c in checks)}
