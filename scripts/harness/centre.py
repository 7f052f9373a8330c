"""An accreditation centre on the morning of an exam day, on a real review server: the data every role's pages show,
made through the server's own rules and, where a station or an examiner would act, its HTTP routes.

- accounts: admin, examiner1, examiner2, observer, archivist (one password, PASSWORD);
- three stations with tokens, today's exam day (three candidates rotating through CPR, an injection and blood
  pressure, imported as `osce server schedule import` does) and yesterday's, examiners assigned;
- a real recording (`osce record`, synthetic camera and microphone) of today's first CPR attempt, uploaded through
  the fragment route with the station's token; marks by both examiners from the observation-room route, one sheet
  signed, one not; a station health warning still open; tablet PINs issued;
- a retention period, an appeal hold, a Ministry request;
- tomorrow's day planned in the admin's pages (stations with their tasks, a candidate list, slots made);
- a readiness run: st1 reports a healthy test (its test recording not uploaded: the act shows that item red),
  st2 refuses (an attempt under way), st3 has not answered.

Station status reports: `report_status()` sends each station's report once as its agent would (PUT with its token,
the wire format of media/station_status.py), `keep_reporting()` every few seconds from a thread. This stands in for
the three agents (FAKE: the reports are made here; tests/agent/test_status_report.py runs the real agent against a
real server for the same route).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import subprocess
import sys
import threading
import urllib.request
import zoneinfo
from pathlib import Path
from typing import Any

from sqlalchemy import select

from media.manifest import read_manifest
from media.station_status import FORMAT, time_text
from review_server import auth, ministry, retention, tablet_credentials
from review_server.app import create_app
from review_server.config import ServerConfig
from review_server.day_import import import_day
from review_server.models import ExamDay, ExaminerAssignment, RetentionPolicy, Specialty, Station, User
from review_server.storage import LocalStorage
from review_server.web import DB

from .review import CHEAP_PASSWORDS, ROOT, migrated_database
from .server_thread import ServerThread

PASSWORD = "correct horse battery"
ACCOUNTS = (("admin", "admin", "Иванова Мария Петровна"), ("examiner1", "examiner", "Петрова Анна Сергеевна"),
            ("examiner2", "examiner", "Соколов Игорь Викторович"), ("observer", "observer", "Кузнецова Ольга"),
            ("archivist", "archivist", "Смирнов Павел"))
STATIONS = (("st1", "Станция 1 — СЛР", "01_basic_cpr_adult"), ("st2", "Станция 2 — в/м инъекция",
            "02_im_injection_gluteal"), ("st3", "Станция 3 — измерение АД", "03_blood_pressure"))
CANDIDATES = ("2611001", "2611002", "2611003")
TIMEZONE = "Europe/Moscow"


def record_clip(out: Path, seconds: int = 4) -> Path:
    """A real short recording (H.264 + AAC fragments with their manifest) of a synthetic camera and microphone."""
    if not (out / "manifest.jsonl").exists():
        subprocess.run([sys.executable, "-m", "osce_cli", "record", "--video", "synthetic:label=st1",
                        "--audio", "synthetic", "--seconds", str(seconds), "--size", "320x180", "--out", str(out)],
                       cwd=ROOT, check=True, capture_output=True, timeout=180)
    return out


class Centre:
    def __init__(self, folder: Path, *, media: bool = True) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        url = migrated_database(folder / "osce.db")
        self.config = ServerConfig(database_url=url, media_dir=folder / "media", insecure_cookies=True,
                                   timezone=TIMEZONE, **CHEAP_PASSWORDS)  # type: ignore[arg-type]
        self.app = create_app(self.config, storage=LocalStorage(self.config.media_dir))
        self.run = self.app[DB].run
        self.server = ServerThread(self.app)
        self.url = self.server.start()
        self.today = dt.datetime.now(zoneinfo.ZoneInfo(TIMEZONE)).date()
        self.yesterday = self.today - dt.timedelta(days=1)
        self.request_id = 0
        self.tokens: dict[str, str] = {}
        self.attempts: list[str] = []
        self.pins: dict[tuple[str, str], str] = {}
        self._reporting: threading.Event | None = None
        self._live: list[Any] = []
        self._setup()
        if media:
            self._upload(record_clip(folder / "clip"), self.attempts[0], "st1")
        self._marks()
        self._flags()
        self._warnings()
        self.report_status()
        self.planned_day, self.planned_slot = self._plan_tomorrow()
        self.today_day = int(self.run(lambda s: s.scalar(select(ExamDay.id).where(ExamDay.day == self.today))))
        self.readiness_run = self._readiness()

    # -- HTTP as the stations and the people ---------------------------------------------------------------------
    def session(self, login: str) -> tuple[str, str]:
        """A signed-in session of `login`: (cookie value, CSRF token)."""
        def make(s: Any) -> tuple[str, str]:
            token, row = auth.create_session(s, s.scalar(select(User).where(User.login == login)), 3600)
            return token, row.csrf_token

        return self.run(make)  # type: ignore[no-any-return]

    def http(self, method: str, path: str, body: Any = None, *, login: str | None = None,
             station: str | None = None, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        head = dict(headers or {})
        if body is not None:
            data, head["Content-Type"] = json.dumps(body).encode(), "application/json"
        if login is not None:
            cookie, csrf = self.session(login)
            head |= {"Cookie": f"{auth.SESSION_COOKIE}={cookie}", "X-CSRF-Token": csrf}
        if station is not None:
            head["Authorization"] = f"Bearer {self.tokens[station]}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=head)
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return json.loads(raw) if resp.headers.get_content_type() == "application/json" else raw

    # -- the day -------------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        start = dt.datetime.combine(self.today, dt.time(9, 0), zoneinfo.ZoneInfo(TIMEZONE)).astimezone(dt.UTC)
        yesterday = start - dt.timedelta(days=1)

        def day(first: dt.datetime, prefix: str) -> dict[str, Any]:
            out = []
            for slot in range(len(CANDIDATES)):
                for i, (code, _name, checklist) in enumerate(STATIONS):
                    out.append({"attempt_id": f"{prefix}-{code}-{slot + 1}", "candidate": CANDIDATES[(i + slot) % 3],
                                "station_id": code, "checklist": checklist,
                                "reading_starts_at": (first + dt.timedelta(minutes=11 * slot)).isoformat(),
                                "reading_s": 30, "performing_s": 510})
            return {"attempts": out}

        today_day, past_day = day(start, "d2"), day(yesterday, "d1")
        self.attempts = [a["attempt_id"] for a in today_day["attempts"]]
        self.past_attempts = [a["attempt_id"] for a in past_day["attempts"]]

        def make(s: Any) -> None:
            for login, role, name in ACCOUNTS:
                auth.add_user(s, login, PASSWORD, role, name)
            for code, name, _ in STATIONS:
                st = Station(code=code, name=name)
                s.add(st)
                s.flush()
                self.tokens[code] = auth.issue_station_token(s, st)[0]
            for schedule, title in ((past_day, "Первичная аккредитация, поток 1"),
                                    (today_day, "Первичная аккредитация, поток 2")):
                import_day(s, schedule, "nursing", "Сестринское дело", title, "admin", timezone=TIMEZONE)
            users = {u.login: u for u in s.scalars(select(User))}
            stations = {st.code: st for st in s.scalars(select(Station))}
            for login, codes in (("examiner1", ("st1", "st2")), ("examiner2", ("st1", "st3"))):
                for code in codes:
                    s.add(ExaminerAssignment(user_id=users[login].id, station_id=stations[code].id, exam_day_id=None))
            s.flush()
            for login in ("examiner1", "examiner2"):
                self.pins[(login, "st1")] = tablet_credentials.issue(s, self.config, "st1", self.today, login,
                                                                     "user:admin")[0]
            nursing = s.scalar(select(Specialty).where(Specialty.code == "nursing"))
            s.add(RetentionPolicy(specialty_id=nursing.id, keep_days=365, updated_by="user:admin"))
            retention.add_hold(s, self.past_attempts[0], "appeal",
                               "Апелляция аккредитуемого 2611001 от вчерашнего дня", "user:archivist")
            self.request_id = ministry.register(s, number="17-4/1203", date=self.today, requester=ministry.MINISTRY,
                              asked_number=CANDIDATES[0], asked_day=self.today - dt.timedelta(days=1),
                              asked_stage=ministry.PRACTICAL, subject="Видеозаписи для рассмотрения обращения",
                              actor="user:archivist").id

        self.run(make)

    def _plan_tomorrow(self) -> tuple[int, int]:
        """Tomorrow's day as the admin's pages make it (review_server/day_plan.py): (day id, its first slot's id)."""
        from review_server import day_plan
        from review_server.candidate_list import Listed
        from review_server.circuits import Timing
        from review_server.models import DaySlot

        def make(s: Any) -> tuple[int, int]:
            day = day_plan.create_day(s, self.today + dt.timedelta(days=1), "Первичная аккредитация, поток 3",
                                      "nursing", "", Timing(30, 510, 60), "09:00", "user:admin")
            day_plan.set_stations(s, day.id, [(code, stem) for code, _, stem in STATIONS], "user:admin")
            upload = day_plan.store_upload(s, day.id, "список.csv", "номер\n2611004\n2611005\n".encode(),
                                           "user:admin")
            listed = [Listed(row=i + 2, number=n, stream="1", time="09:00", names=None)
                      for i, n in enumerate(("2611004", "2611005"))]
            day_plan.import_candidates(s, day.id, upload.id, listed, {"number": 1}, "user:admin")
            day_plan.generate_slots(s, day.id, TIMEZONE, "user:admin")
            slot = s.scalar(select(DaySlot.id).where(DaySlot.exam_day_id == day.id).order_by(DaySlot.id))
            return day.id, int(slot)

        return self.run(make)  # type: ignore[no-any-return]

    def _readiness(self) -> int:
        """A readiness run answered over HTTP as the agents would (FAKE agents: tests/agent/test_readiness.py runs
        the real one): st1 a healthy report, st2 a refusal, st3 nothing."""
        from media.readiness_report import CameraResult, DiskResult, MicrophoneResult, Refusal, Report, SyncResult
        from review_server import readiness

        run_id = self.run(lambda s: readiness.start_run(s, "user:admin", None, 10).id)
        now = dt.datetime.now(dt.UTC)
        healthy = Report(agent_time=now, seconds=10.0, cameras=(CameraResult(
            "synthetic", "cam0", frames=250, fps=25.0, requested_fps=25.0, luma=96.0, arriving=True),),
            microphone=MicrophoneResult("pulse", arriving=True, level_dbfs=-32.0, peak_dbfs=-20.0),
            sync=SyncResult("cam0", pairs=9, median_ms=1.5, max_abs_ms=3.0, suggested_latency_ms=-1.5),
            disk=DiskResult(free_bytes=40 * 2**30, reserve_bytes=500 * 2**20, recorded_bytes=2**20,
                            planned_s=36 * 540.0, planned_attempts=36))
        refused = Report(agent_time=now, refused=Refusal("attempt_running", "d2-st2-1", "performing", 312.0))
        for code, report in (("st1", healthy), ("st2", refused)):
            check = self.http("GET", f"/api/stations/{code}/readiness/next", station=code)["check"]
            self.http("POST", f"/api/stations/{code}/readiness/{check['id']}/report", report.to_json(), station=code)
        return int(run_id)

    def _upload(self, rec: Path, attempt_id: str, station: str) -> None:
        manifest = read_manifest(rec)
        for track in manifest.track_ids():
            for frag in manifest.track_files(track):
                data = (rec / frag.file).read_bytes()
                query = f"?attempt_id={attempt_id}" + (
                    f"&start={frag.start:.6f}&end={frag.end:.6f}" if frag.start is not None else "")
                self.http("PUT", f"/api/recordings/{attempt_id}-r1/tracks/{track}/fragments/{frag.seq}{query}",
                          data=data, station=station, headers={"X-Content-SHA256": hashlib.sha256(data).hexdigest()})

    def _marks(self) -> None:
        """examiner1 and examiner2 mark today's first CPR attempt (examiner1 signs, examiner2 not yet); examiner1
        marks today's first injection attempt (not signed yet) and yesterday's first CPR attempt (signed)."""
        from checklists.loader import DATA_DIR, load_checklist

        lists = {code: load_checklist(DATA_DIR / f"{name}.yaml") for code, _, name in STATIONS}
        for login, attempt, sign in (("examiner1", self.attempts[0], True), ("examiner2", self.attempts[0], False),
                                     ("examiner1", self.attempts[1], False),
                                     ("examiner1", self.past_attempts[0], True)):
            checklist = lists[attempt.split("-")[1]]
            for n in checklist.item_numbers:
                self.http("POST", f"/api/attempts/{attempt}/marks", {
                    "event_id": _uuid(login, attempt, n), "kind": "mark", "item": n,
                    "done": n % 7 != 3 or login == "examiner2", "checklist_hash": checklist.content_hash},
                    login=login)
            if sign:
                self.http("POST", f"/api/attempts/{attempt}/finalise", {
                    "event_id": _uuid(login, attempt, 0), "checklist_hash": checklist.content_hash}, login=login)

    def _flags(self) -> None:
        """Two flags on today's first CPR attempt (one withdrawn with a reason), as the observation room makes them
        (without a live picture: at the moment the server got them)."""
        first = self.attempts[0]
        self.http("POST", "/api/live/st1/flags", {"kind": "outsider", "attempt_id": first}, login="observer")
        flag = self.http("POST", "/api/live/st1/flags", {"kind": "other", "text": "аккредитуемый вышел из кадра",
                                                         "attempt_id": first}, login="examiner1")
        self.http("POST", f"/api/flags/{flag['id']}/withdraw", {"reason": "вернулся через секунду"}, login="examiner1")

    def _warnings(self) -> None:
        started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
        self.http("PUT", "/api/stations/st3/health-events", {"events": [
            {"id": "frozen-1", "code": "camera_frozen", "text": "Камера cam0: изображение застыло (3.0 с)",
             "attempt_id": None, "started_at": time_text(started), "ended_at": None}]}, station="st3")

    # -- the stations' status reports ------------------------------------------------------------------------------
    def status_report(self, code: str) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        camera = {"track": "cam0", "kind": "rtsp", "state": "recording", "arriving": True, "fps": 25.0,
                  "frozen": False, "black": False}
        report: dict[str, Any] = {
            "format": FORMAT, "agent_version": "0.1.0", "sent_at": time_text(now), "phase": "performing",
            "attempt_id": f"d2-{code}-1", "candidate": CANDIDATES[[s[0] for s in STATIONS].index(code)],
            "time_left_s": 312.0, "recording": True, "cameras": [camera],
            "microphone": {"state": "recording", "arriving": True, "level_dbfs": -28.0, "silent": False},
            "disk": {"free_mb": 182_000.0, "reserve_mb": 2048.0, "warning": False, "stop": False},
            "upload": {"queue_length": 2, "bytes_pending": 3_400_000, "oldest_age_s": 3.1, "failed": 0,
                       "last_success_at": time_text(now - dt.timedelta(seconds=2))},
            "clock": {"source": "server", "offset_s": 0.004, "last_sync_age_s": 12.0}, "warnings": []}
        if code == "st1":
            report["cameras"] = [camera, dict(camera, track="cam1", kind="synthetic")]
        if code == "st3":
            report["cameras"] = [dict(camera, frozen=True)]
            report["warnings"] = [{"code": "camera_frozen", "text": "Камера cam0: изображение застыло (3.0 с)"}]
        return report

    def report_status(self) -> None:
        for code, _, _ in STATIONS:
            self.http("PUT", f"/api/stations/{code}/status", self.status_report(code), station=code)

    def keep_reporting(self, every_s: float = 4.0) -> None:
        self._reporting = threading.Event()

        def loop() -> None:
            while not self._reporting.wait(every_s):  # type: ignore[union-attr]
                with contextlib.suppress(OSError):  # the server stopping
                    self.report_status()

        threading.Thread(target=loop, name="station-reports", daemon=True).start()

    # -- the observation room -------------------------------------------------------------------------------------
    def start_live(self, code: str = "st1") -> None:
        """The station publishes a live picture (a real recorder with a synthetic camera and microphone, through the
        agent's live publisher) with the meta its agent sends: today's first attempt there, so that its examiners
        can mark it beside the picture."""
        import asyncio

        from checklists.loader import DATA_DIR, load_checklist
        from media.recorder import Recorder, RecorderConfig, SourceConfig
        from station_agent.live_publisher import LivePublisher

        checklist = load_checklist(DATA_DIR / f"{dict((c, n) for c, _, n in STATIONS)[code]}.yaml")
        attempt = next(a for a in self.attempts if a.split("-")[1] == code)
        live = LivePublisher(self.url, code, self.tokens[code])
        live.set_meta(station_name=dict((c, n) for c, n, _ in STATIONS)[code], candidate=CANDIDATES[0],
                      recording=True, attempt_id=attempt, checklist_hash=checklist.content_hash,
                      phase="performing", time_left=312, warnings=[])
        threading.Thread(target=lambda: asyncio.run(live.run()), name=f"live-{code}", daemon=True).start()
        recorder = Recorder(RecorderConfig(
            out_dir=self.folder / f"live-{code}", videos=[SourceConfig(f"synthetic:label={code}")],
            audio=SourceConfig("synthetic"), width=320, height=180, station=code, live=live.attach))
        recorder.start()
        self._live.append((live, recorder))

    def close(self) -> None:
        for live, recorder in self._live:
            recorder.stop()
            live.stop()
        if self._reporting is not None:
            self._reporting.set()
        self.server.stop()
        self.app[DB].dispose()


def _uuid(*parts: object) -> str:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"
