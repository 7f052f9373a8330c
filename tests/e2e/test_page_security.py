"""Every server page in Debian's Chromium, over a real server and socket, with hostile text in every free-text
field a page shows: `<script>alert(1)</script>` and `"'><img src=x onerror=alert(1)>` in the station names, the
specialty name, the task title, the checklist's title and an item's action, a correction's reason, a station
warning, the CPR report's lines, the export request's number, requester and subject, the live meta a station
publishes, and in the query of every page (search terms, the quality report's specialty, ?lang).

- Escaping alone (the browser told to ignore the CSP): no dialog fires, no element is injected, and the text is
  shown literally where it is shown.
- Under the CSP: no page reports a violation (securitypolicyviolation events, console) while it works: the
  review page plays and seeks, the live grid plays, the export page fills in from its JSON.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright
from sqlalchemy import select

from checklists.loader import DATA_DIR, parse_checklist
from checklists.marks import MarkEvent as WireEvent
from media.manifest import read_manifest
from media.recorder import Recorder, RecorderConfig, SourceConfig
from review_server import auth
from review_server.app import create_app
from review_server.config import ServerConfig
from review_server.migrations import upgrade
from review_server.models import (
    Attempt,
    Candidate,
    ChecklistVersion,
    ExamDay,
    ExaminerAssignment,
    Specialty,
    Station,
    Task,
    User,
)
from review_server.storage import LocalStorage
from review_server.web import DB
from station_agent.live_publisher import LivePublisher

from .server_thread import ServerThread

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = "\"'><img src=x onerror=alert(1)>"
HOSTILE = f"{SCRIPT}{BREAKOUT}"
NUMBER = "2611099"
DAY = dt.date(2026, 6, 1)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
ROOT = Path(__file__).resolve().parents[2]
# What a page must not contain after loading: any <img> (no page has one), an inline script, an event-handler
# attribute, a dialog (counted by Playwright).
INJECTED = """() => ({
  img: document.querySelectorAll('img').length,
  inline_scripts: Array.from(document.scripts).filter(s => !s.src).length,
  handlers: Array.from(document.querySelectorAll('*')).filter(e =>
    Array.from(e.attributes).some(a => a.name.startsWith('on'))).length,
})"""
CSP_LISTENER = """window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));"""


def _hostile_checklist() -> str:
    """The CPR checklist with the hostile text in its title and item 1's action (JSON strings are YAML)."""
    lines = (DATA_DIR / "01_basic_cpr_adult.yaml").read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        if line.startswith("title:"):
            line = f"title: {json.dumps('СЛР ' + HOSTILE, ensure_ascii=False)}"
        elif line.strip().startswith("action: Убедиться в безопасности"):
            action = json.dumps("Безопасность " + HOSTILE, ensure_ascii=False)
            line = line[: line.index("action:")] + f"action: {action}"
        out.append(line)
    return "\n".join(out) + "\n"


def _http(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={**({"Content-Type": "application/json"} if data else {}), **(headers or {})})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        return resp.status, json.loads(raw) if resp.headers.get_content_type() == "application/json" else raw


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.rec = tmp / "rec"
        subprocess.run([sys.executable, "-m", "osce_cli", "record", "--video", "synthetic:label=cam0",
                        "--video", "synthetic:seed=2", "--audio", "synthetic", "--seconds", "6", "--size", "320x180",
                        "--out", str(self.rec)], cwd=ROOT, check=True, capture_output=True, timeout=120)
        url = f"sqlite:///{tmp / 'osce.db'}"
        upgrade(url)
        config = ServerConfig(database_url=url, media_dir=tmp / "media", insecure_cookies=True,
                              argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)
        self.app = create_app(config, storage=LocalStorage(config.media_dir))
        self.run = self.app[DB].run
        self.server = ServerThread(self.app)
        self.url = self.server.start()
        self.checklist = parse_checklist(_hostile_checklist(), "hostile")
        self.token = self.run(self._schedule)
        self._upload("rec-E1")
        self._marks()
        self._station_reports()
        self.review_url = self._api("admin", "POST", "/api/attempts/E1/review-links",
                                    {"reviewer": HOSTILE, "minutes": 60})["url"]
        req = self._api("archivist", "POST", "/api/export-requests",
                        {"number": f"17/{HOSTILE}", "date": "2026-06-02", "requester": HOSTILE, "subject": HOSTILE})
        self.request_id = req["id"]
        self._api("archivist", "POST", f"/api/export-requests/{self.request_id}/attempts", {"attempt_ids": ["E1"]})
        self.live: LivePublisher | None = None
        self.recorder: Recorder | None = None

    def _schedule(self, s: Any) -> str:
        for role in ("admin", "examiner", "examiner2", "archivist", "observer"):
            auth.add_user(s, role, "not used here", "examiner" if role == "examiner2" else role)
        sp = Specialty(code="NURSE", name=f"Сестринское дело {HOSTILE}")
        s.add(sp)
        s.flush()
        task = Task(code="CPR", title=f"СЛР {HOSTILE}", specialty_id=sp.id)
        s.add(task)
        s.flush()
        s.add(ChecklistVersion(sha256=self.checklist.content_hash, task_id=task.id, version=self.checklist.version,
                               title=self.checklist.title, source=_hostile_checklist()))
        day = ExamDay(day=DAY, title=HOSTILE)
        st = Station(code="S1", name=f"Станция {HOSTILE}", specialty_id=sp.id, task_id=task.id)
        s.add_all([day, st, Station(code="S2", name=BREAKOUT)])
        s.flush()
        cand = Candidate(accreditation_number=NUMBER, specialty_id=sp.id)
        s.add(cand)
        s.flush()
        s.add(Attempt(id="E1", station_id=st.id, candidate_id=cand.id, exam_day_id=day.id, task_id=task.id))
        for login in ("examiner", "examiner2"):
            uid = s.scalar(select(User.id).where(User.login == login))
            s.add(ExaminerAssignment(user_id=uid, station_id=st.id, exam_day_id=None))
        return auth.issue_station_token(s, st)[0]

    def session(self, login: str) -> tuple[str, str]:
        def make(s: Any) -> tuple[str, str]:
            user = s.scalar(select(User).where(User.login == login))
            token, row = auth.create_session(s, user, 3600)
            return token, row.csrf_token

        return self.run(make)

    def _api(self, login: str, method: str, path: str, body: Any) -> Any:
        cookie, csrf = self.session(login)
        status, answer = _http(self.url + path, method, body,
                               {"Cookie": f"{auth.SESSION_COOKIE}={cookie}", "X-CSRF-Token": csrf})
        assert status in (200, 201), answer
        return answer

    def _station(self, method: str, path: str, body: Any) -> Any:
        status, answer = _http(self.url + path, method, body, {"Authorization": f"Bearer {self.token}"})
        assert status in (200, 201), answer
        return answer

    def _upload(self, key: str) -> None:
        manifest = read_manifest(self.rec)
        for track in manifest.track_ids():
            for frag in manifest.track_files(track):
                data = (self.rec / frag.file).read_bytes()
                query = "?attempt_id=E1" + (f"&start={frag.start:.6f}&end={frag.end:.6f}" if frag.start is not None
                                            else "")
                req = urllib.request.Request(
                    f"{self.url}/api/recordings/{key}/tracks/{track}/fragments/{frag.seq}{query}", data=data,
                    method="PUT", headers={"Authorization": f"Bearer {self.token}",
                                           "X-Content-SHA256": hashlib.sha256(data).hexdigest()})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    assert resp.status == 201

    def _marks(self) -> None:
        """Two examiners' signed sheets that disagree on item 1; a correction of item 2 with a hostile reason."""
        events, cl = [], self.checklist
        for examiner in ("examiner", "examiner2"):
            seq = 0
            for seq, n in enumerate(cl.item_numbers, start=1):
                done = n != 1 if examiner == "examiner" else True
                events.append(WireEvent.new(attempt_id="E1", station_id="S1", examiner=examiner, kind="mark", item=n,
                                            done=done, checklist_hash=cl.content_hash, seq=seq,
                                            recording_offset_s=0.5 + 0.25 * seq).to_json())
            events.append(WireEvent.new(attempt_id="E1", station_id="S1", examiner=examiner, kind="mark", item=2,
                                        done=False, checklist_hash=cl.content_hash, seq=seq + 1, reason=HOSTILE,
                                        recording_offset_s=5.5).to_json())
            events.append(WireEvent.new(attempt_id="E1", station_id="S1", examiner=examiner, kind="finalise",
                                        checklist_hash=cl.content_hash, seq=seq + 2).to_json())
        self._station("POST", "/api/marks", {"events": events})

    def _station_reports(self) -> None:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._station("PUT", "/api/stations/S1/health-events", {"events": [
            {"id": "h1", "code": "camera_frozen", "text": HOSTILE, "attempt_id": "E1",
             "started_at": (now - dt.timedelta(seconds=30)).isoformat().replace("+00:00", "Z"),
             "ended_at": (now - dt.timedelta(seconds=20)).isoformat().replace("+00:00", "Z")}]})
        report = {"format": "osce-cpr-figures/1", "checklist": "01_basic_cpr_adult",
                  "guidelines": {"rate_per_min": [100, 120]}, "video": {"estimate": False, "reason": HOSTILE},
                  "manikin": None, "alignment": None, "items": {"1": [HOSTILE]}}
        self._station("PUT", "/api/attempts/E1/cpr-figures", report)

    def start_live(self, tmp: Path) -> None:
        """S1 publishes its two cameras live with hostile meta (name, number, warnings)."""
        self.live = LivePublisher(self.url, "S1", self.token)
        self.live.set_meta(station_name=HOSTILE, candidate=HOSTILE, recording=True,
                           warnings=[HOSTILE, {"code": "camera_frozen", "text": HOSTILE}])
        threading.Thread(target=lambda: asyncio.run(self.live.run()), daemon=True).start()  # type: ignore[union-attr]
        self.recorder = Recorder(RecorderConfig(
            out_dir=tmp / "live-rec", videos=[SourceConfig("synthetic:label=S1"), SourceConfig("synthetic:seed=3")],
            audio=SourceConfig("synthetic"), width=320, height=180, station="S1", live=self.live.attach))
        self.recorder.start()

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        if self.live is not None:
            self.live.stop()
        self.server.stop()
        self.app[DB].dispose()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("hostile")
    s = Stack(tmp)
    s.start_live(tmp)
    try:
        yield s
    finally:
        s.close()


# (who, path, texts that the page shows literally): every server page, hostile values in its query too.
def _pages(stack: Stack) -> list[tuple[str | None, str, list[str]]]:
    q = quote(HOSTILE)
    attempt_texts = [f"СЛР {HOSTILE}", f"Безопасность {HOSTILE}", HOSTILE]  # title, action, reason/warning/CPR
    return [
        (None, f"/login?lang={q}&next={q}", []),
        ("admin", f"/?x={q}", []),
        ("archivist", f"/?lang=en&x={q}", []),
        ("archivist", f"/attempts/E1?x={q}", attempt_texts),
        ("examiner", "/attempts/E1?lang=en", attempt_texts),
        (None, stack.review_url, attempt_texts),
        ("archivist", "/archive?task=CPR", [f"СЛР {HOSTILE}", f"Станция {HOSTILE}", f"Сестринское дело {HOSTILE}"]),
        ("archivist", f"/archive?number={q}&examiner={q}", [HOSTILE]),
        ("admin", "/reports/quality?exam_day=2026-06-01&specialty=NURSE",
         [f"Сестринское дело {HOSTILE}", f"СЛР {HOSTILE}", f"Безопасность {HOSTILE}"]),
        ("archivist", f"/reports/quality?exam_day=2026-06-01&specialty={q}&lang=en", []),
        ("archivist", f"/export-requests/{stack.request_id}", [f"17/{HOSTILE}", HOSTILE]),
        ("archivist", f"/export-requests/{stack.request_id}?lang=en&x={q}", [HOSTILE]),
        ("observer", f"/live?x={q}", [HOSTILE, BREAKOUT]),
    ]


def _open(context: BrowserContext, stack: Stack, who: str | None, path: str) -> tuple[Page, list[str], list[str]]:
    context.clear_cookies()
    if who is not None:
        context.add_cookies([{"name": auth.SESSION_COOKIE, "value": stack.session(who)[0], "url": stack.url}])
    page = context.new_page()
    dialogs: list[str] = []
    console: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: console.append(m.text))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    resp = page.goto(stack.url + path)
    assert resp is not None and resp.status in (200, 400, 404), (path, resp and resp.status)
    return page, dialogs, console


def _settle(page: Page, path: str) -> None:
    """Wait until what the page's script fills in is there."""
    if path.startswith("/export-requests"):
        page.wait_for_function("() => document.querySelectorAll('#request-fields dd').length > 0", timeout=10_000)
    elif path.startswith("/live"):
        page.wait_for_function("() => document.querySelectorAll('.tile .badge').length > 0", timeout=20_000)
    page.wait_for_timeout(300)


def _browser_contexts(p: Any, **options: Any) -> tuple[Any, BrowserContext]:
    executable = os.environ.get("OSCE_CHROMIUM", "/usr/bin/chromium")
    browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    return browser, browser.new_context(viewport={"width": 1280, "height": 900}, **options)


def test_hostile_text_is_inert_and_shown_literally_on_every_page(stack: Stack) -> None:
    """Escaping alone, with the CSP switched off in the browser: the payloads never run and never make elements."""
    with sync_playwright() as p:
        browser, context = _browser_contexts(p, bypass_csp=True)
        try:
            failures = []
            for who, path, texts in _pages(stack):
                page, dialogs, _ = _open(context, stack, who, path)
                _settle(page, path)
                injected = page.evaluate(INJECTED)
                body = page.text_content("body") or ""
                missing = [t for t in texts if t not in body]
                if dialogs or any(injected.values()) or missing:
                    failures.append((who, path, dialogs, injected, missing))
                page.close()
            assert failures == []
        finally:
            browser.close()


def test_no_page_breaks_the_content_security_policy_while_working(stack: Stack) -> None:
    with sync_playwright() as p:
        browser, context = _browser_contexts(p)
        context.add_init_script(CSP_LISTENER)
        try:
            violations = []
            for who, path, _ in _pages(stack):
                page, dialogs, console = _open(context, stack, who, path)
                _settle(page, path)
                if path.startswith("/attempts/E1?x"):
                    _plays_and_seeks(page)
                if path.startswith("/live"):
                    _live_plays(page)
                reported = page.evaluate("() => window.__csp")
                logged = [m for m in console if "Content Security Policy" in m or "pageerror" in m]
                if reported or logged or dialogs:
                    violations.append((who, path, reported, logged, dialogs))
                page.close()
            assert violations == []
        finally:
            browser.close()


def _plays_and_seeks(page: Page) -> None:
    # Predicates as functions: Playwright evaluates a bare expression with eval, which the CSP refuses.
    page.wait_for_function("() => Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 2)",
                           timeout=20_000)
    page.click("#play")
    page.wait_for_function("() => document.querySelector('video.master').currentTime > 1.0", timeout=10_000)
    page.evaluate("() => document.querySelector('video.master').pause()")
    point = page.locator('.timeline .mark-point[data-examiner="examiner2"]').nth(3)  # drawn over examiner's
    left = point.evaluate("b => b.style.left")
    placed = float((point.get_attribute("data-left") or "nan%").rstrip("%"))
    assert left.endswith("%") and float(left.rstrip("%")) == pytest.approx(placed)  # by attempt.js, not inline
    target = float(point.get_attribute("data-t") or "nan")
    point.click()
    for video in ("master", "slave"):
        page.wait_for_function(f"() => Math.abs(document.querySelector('video.{video}').currentTime - {target}) <= 0.5",
                               timeout=10_000)


def _live_plays(page: Page) -> None:
    js = "() => { const v = document.querySelector('.tile video'); return v ? v.currentTime : -1; }"
    page.wait_for_function("() => { const v = document.querySelector('.tile video');"
                           " return !!v && v.getVideoPlaybackQuality().totalVideoFrames > 5; }", timeout=30_000)
    t0 = page.evaluate(js)
    deadline = time.monotonic() + 10
    while page.evaluate(js) < t0 + 0.8:
        assert time.monotonic() < deadline, "the live picture does not advance"
        page.wait_for_timeout(200)
