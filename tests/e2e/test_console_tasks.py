"""The console's tasks done end to end in Chromium by each role, against the real server of the centre
(tests/e2e/conftest.py), through the pages' forms and links only: the admin watches the stations board, adds a
station and its token (shown once, working, then revoked), creates an examiner (a bad login refused with the field
named), assigns them, issues their tablet PIN (shown once, and printed as a PDF), resets and disables; sets a
retention period, holds and releases an attempt, checks the audit chain and writes an anchor. The examiner lands on
their day and opens a station to mark in the observation room (buttons of at least 44 px). The archivist registers a
Ministry request, builds its package from it (progress until ready), downloads it and records it as sent. Every
change is found in the audit log. Screenshots of each step go to the test's folder."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from pypdf import PdfReader
from sqlalchemy import select

from media.station_status import time_text
from review_server import audit
from review_server.models import AuditEvent, MarkEvent
from scripts.harness.centre import PASSWORD, Centre

from .page_checks import small_targets


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-steps")


def _audited(centre: Centre, since: int) -> list[tuple[str, str, dict[str, Any]]]:
    rows = centre.run(lambda s: [(e.action, e.target, e.details) for e in
                                 s.scalars(select(AuditEvent).where(AuditEvent.seq > since).order_by(AuditEvent.seq))])
    return rows  # type: ignore[no-any-return]


def _head(centre: Centre) -> int:
    return int(centre.run(lambda s: s.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))) or 0)


def _login_by_keyboard(browser: Browser, centre: Centre, login: str, password: str = PASSWORD) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 800}, locale="ru-RU", timezone_id="Europe/Moscow",
                               accept_downloads=True).new_page()
    page.goto(centre.url + "/login")
    page.keyboard.press("Tab")  # the skip link
    while page.evaluate("document.activeElement.name") != "login":
        page.keyboard.press("Tab")
    page.keyboard.type(login)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_load_state()
    return page


def _put_status(centre: Centre, code: str, token: str) -> int:
    body = centre.status_report("st1") | {"sent_at": time_text(dt.datetime.now(dt.UTC))}
    req = urllib.request.Request(f"{centre.url}/api/stations/{code}/status", data=json.dumps(body).encode(),
                                 method="PUT", headers={"Authorization": f"Bearer {token}",
                                                        "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_admin_runs_the_centre(centre_browser: Browser, centre: Centre, steps: Path) -> None:
    start = _head(centre)
    page = _login_by_keyboard(centre_browser, centre, "admin")
    try:
        _admin_day(page, centre_browser, centre, steps)
    finally:
        page.context.close()
    actions = [a for a, _, _ in _audited(centre, start)]
    for action in ("station.add", "station.token.issue", "station.token.revoke", "user.add", "assignment.add",
                   "tablet.issue", "user.password.reset", "user.disable", "retention.policy.set", "hold.add",
                   "hold.release", "audit.anchor"):
        assert action in actions, (action, actions)
    assert actions.count("tablet.issue") == 2


def _admin_day(page: Page, centre_browser: Browser, centre: Centre, steps: Path) -> None:
    assert page.url == centre.url + "/admin"

    # The stations board: every room, the frozen camera at st3 in red with since when, st1 well.
    board = page.locator("#board")
    expect(board.locator("tbody tr")).to_have_count(3)
    st3 = board.locator("tr[data-station=st3]")
    expect(st3).to_have_class(re.compile(r"\bbad\b"))
    frozen = re.compile(r"камера: изображение застыло с \d\d:\d\d:\d\d")
    expect(st3.locator(".warning[data-code=camera_frozen]")).to_contain_text(frozen)
    expect(board.locator("tr[data-station=st1]")).to_have_class(re.compile(r"\bok\b"))
    expect(board.locator("tr[data-station=st1]")).to_contain_text("на связи")
    page.screenshot(path=steps / "admin-1-board.png", full_page=True)

    # A new station: added, its token shown once; the token works, the board shows the station; revoked, refused.
    page.click("nav.site-bar >> text=Токены станций")
    page.fill("input[name=code]", "st9")
    page.fill("input[name=name]", "Станция 9 — резерв")
    page.click("form[aria-labelledby=new-title] button[type=submit]")
    expect(page.locator("p.done")).to_contain_text("Станция добавлена")
    page.click("tr[data-station=st9] >> text=Выдать новый токен")
    token = page.locator(".secret").inner_text().strip()
    assert token.startswith("osce_st_")
    page.screenshot(path=steps / "admin-2-token.png", full_page=True)
    page.reload()  # shown once: not on the page again
    assert token not in page.content()
    assert _put_status(centre, "st9", token) == 200
    page.goto(centre.url + "/admin")
    expect(page.locator("tr[data-station=st9]")).to_contain_text("на связи")
    page.goto(centre.url + "/admin/stations")
    page.click("tr[data-station=st9] >> text=Отозвать")
    expect(page.locator("p.done")).to_contain_text("Токен отозван")
    assert _put_status(centre, "st9", token) == 401

    # A new examiner: a bad login is refused with the field named and what was typed kept.
    page.click("nav.site-bar >> text=Пользователи")
    form = page.locator("form[aria-labelledby=new-title]")
    form.locator("input[name=login]").fill("Не логин")
    form.locator("input[name=display_name]").fill("Новикова Елена")
    form.locator("button[type=submit]").click()
    expect(page.locator("#form-error")).to_have_text(
        "Поле «Имя входа»: только латинские буквы, цифры и знаки «.», «-», «_»")
    expect(form.locator("input[name=login]")).to_have_attribute("aria-invalid", "true")
    expect(form.locator("input[name=display_name]")).to_have_value("Новикова Елена")
    form.locator("input[name=login]").fill("examiner3")
    form.locator("button[type=submit]").click()
    password = page.locator(".secret").inner_text().strip()
    assert len(password) >= 10
    other = _login_by_keyboard(centre_browser, centre, "examiner3", password)
    assert other.url == centre.url + "/examiner"
    other.context.close()

    # Assigned to st1 for any day; a tablet PIN for today shown once, and printed.
    row = page.locator("tr[data-login=examiner3]")
    row.locator("select[name=station]").select_option("st1")
    row.locator("text=Назначить").click()
    expect(page.locator("p.done")).to_contain_text("Назначение добавлено")
    expect(page.locator("tr[data-login=examiner3]")).to_contain_text("st1 — любой день")
    tablet = page.locator("form[aria-labelledby=tablet-title]")
    tablet.locator("select[name=login]").select_option("examiner3")
    tablet.locator("select[name=station]").select_option("st1")
    tablet.locator("button[value=page]").click()
    pin = page.locator("section.done .secret").inner_text().strip()
    assert re.fullmatch(r"[0-9]{6,}", pin), pin
    page.screenshot(path=steps / "admin-3-pin.png", full_page=True)
    tablet = page.locator("form[aria-labelledby=tablet-title]")
    tablet.locator("select[name=login]").select_option("examiner3")
    with page.expect_download() as download:
        tablet.locator("button[value=pdf]").click()
    pdf_text = "".join(p.extract_text() for p in PdfReader(download.value.path()).pages)
    printed = re.search(r"PIN:\s*([0-9 ]+)", pdf_text)
    assert "examiner3" in pdf_text and "Станция 1" in pdf_text and printed, pdf_text
    assert printed.group(1).replace(" ", "") != pin  # a new PIN replaced the one shown before

    # Password reset (shown once), disabled.
    page.goto(centre.url + "/admin/users")
    page.locator("tr[data-login=examiner3] >> text=Новый пароль").click()
    assert page.locator(".secret").inner_text().strip() not in ("", password)
    page.locator("tr[data-login=examiner3] >> text=Отключить").click()
    expect(page.locator("tr[data-login=examiner3]")).to_contain_text("отключён")

    # Retention: a bad period names the field; a good one is kept.
    page.click("nav.site-bar >> text=Хранение")
    page.fill("#keep-nursing", "0")
    page.locator("#keep-nursing").press("Enter")
    expect(page.locator("#form-error")).to_have_text("Поле «Срок хранения, дней»: целое число от 1 до 36600")
    page.fill("#keep-nursing", "400")
    page.locator("#keep-nursing").press("Enter")
    expect(page.locator("p.done")).to_have_text("Срок хранения сохранён.")
    expect(page.locator("#keep-nursing")).to_have_value("400")

    # A legal hold placed and released.
    page.click("nav.site-bar >> text=Удержания")
    page.fill("input[name=attempt_id]", centre.past_attempts[4])
    page.select_option("select[name=kind]", "appeal")
    page.fill("form[aria-labelledby=new-title] input[name=reason]", "Апелляция № 7")
    page.click("form[aria-labelledby=new-title] button[type=submit]")
    held = page.locator("tr", has_text="Апелляция № 7")
    expect(held).to_contain_text(centre.past_attempts[4])
    held.locator("input[name=reason]").fill("Апелляция рассмотрена")
    held.locator("button[type=submit]").click()
    expect(page.locator("p.done")).to_have_text("Удержание снято.")

    # The audit chain: intact, its head as the chain says; an anchor written.
    page.click("nav.site-bar >> text=Аудит")
    expect(page.locator("#chain-state")).to_contain_text("Цепочка цела.")
    page.click("text=Записать якорь за сегодня")
    expect(page.locator("p.done")).to_contain_text("Якорь за сегодня")
    anchored = page.locator("table").nth(0).locator("tbody tr").first.locator("td.hash").inner_text()
    chain = centre.run(audit.verify)
    assert page.locator("#head-hash").inner_text() == chain.head and chain.ok
    assert re.fullmatch(r"[0-9a-f]{64}", anchored)
    page.screenshot(path=steps / "admin-4-audit.png", full_page=True)


def test_examiner_marks_from_their_day(centre_browser: Browser, centre: Centre, steps: Path) -> None:
    page = _login_by_keyboard(centre_browser, centre, "examiner2")
    try:
        _examiner_day(page, centre, steps)
    finally:
        page.context.close()
    marks = centre.run(lambda s: [(e.item, e.done, e.source) for e in s.scalars(
        select(MarkEvent).where(MarkEvent.attempt_id == centre.attempts[0], MarkEvent.examiner == "examiner2")
        .order_by(MarkEvent.id))])
    assert marks[-1] == (1, False, "user:examiner2")  # the N pressed in the observation room, stored


def _examiner_day(page: Page, centre: Centre, steps: Path) -> None:
    assert page.url == centre.url + "/examiner"
    stations = page.locator("table.examiner-stations tbody tr")
    expect(stations).to_have_count(2)  # st1 and st3
    expect(stations.nth(0)).to_contain_text("выполнение")
    unsigned = page.locator("section[aria-labelledby=unsigned-title] tbody tr")
    expect(unsigned).to_have_count(1)
    expect(unsigned).to_contain_text(centre.attempts[0])
    marked = page.locator("section[aria-labelledby=marked-title] tbody tr")
    expect(marked).to_have_count(1)

    # One click: the observation room opens st1 enlarged with its sheet; the marking buttons are big enough.
    page.click("tr[data-station=st1] a.mark-link")
    assert page.url.endswith("/live?station=st1")
    expect(page.locator("#overlay")).to_be_visible(timeout=20_000)
    expect(page.locator("#items li")).to_have_count(19, timeout=20_000)
    assert small_targets(page, "#items button, #big-bar button") == []
    first = page.locator("#items li").nth(0)
    expect(first.locator("button.yes")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("KeyN")  # the first item, by the keyboard: now "no"
    expect(first.locator("button.no")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#sheet-sync")).not_to_contain_text("Отправляется", timeout=10_000)
    page.screenshot(path=steps / "examiner-1-marking.png")
    page.keyboard.press("Escape")
    page.go_back()
    page.locator("section[aria-labelledby=marked-title] a", has_text=centre.attempts[0]).click()
    expect(page.locator("h1")).to_contain_text(centre.attempts[0])


def test_archivist_answers_a_ministry_request(centre_browser: Browser, centre: Centre, steps: Path) -> None:
    start = _head(centre)
    page = _login_by_keyboard(centre_browser, centre, "archivist")
    try:
        attempts = _answer_request(page, centre, steps)
    finally:
        page.context.close()
    actions = [a for a, _, _ in _audited(centre, start)]
    for action in ("archive.request.add", "archive.request.select", "hold.add", "archive.export.start",
                   "archive.export", "archive.export.download", "archive.request.sent"):
        assert action in actions, (action, actions)
    assert len(attempts) == 3


def _answer_request(page: Page, centre: Centre, steps: Path) -> list[str]:
    assert page.url == centre.url + "/requests"
    form = page.locator("form[aria-labelledby=new-title]")
    form.locator("input[name=number]").fill("17-4/1300")
    form.locator("input[name=number]").press("Enter")
    expect(page.locator("#form-error")).to_have_text("Поле «№ аккредитуемого»: укажите аккредитуемого или день")
    form = page.locator("form[aria-labelledby=new-title]")
    expect(form.locator("input[name=number]")).to_have_value("17-4/1300")
    form.locator("input[name=asked_number]").fill("2611002")
    form.locator("input[name=asked_day]").fill(centre.yesterday.isoformat())
    form.locator("input[name=asked_number]").press("Enter")
    expect(page.locator("p.done")).to_contain_text("Запрос зарегистрирован")
    row = page.locator("#requests tr", has_text="17-4/1300")
    expect(row).to_have_attribute("data-state", "registered")

    # Built from what it asks: the candidate's three attempts of that day, held; the package written with progress.
    row.locator("text=Собрать пакет").click()
    expect(page.locator("p.done")).to_contain_text("Пакет собирается")
    row = page.locator("#requests tr", has_text="17-4/1300")
    expect(row).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(row.locator("td").nth(2)).to_have_text("3")  # the attempts, after the request's own cell
    page.screenshot(path=steps / "archivist-1-ready.png", full_page=True)
    with page.expect_download() as download:
        row.locator("text=Скачать пакет").click()
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as z:
        manifest = json.loads(z.read("manifest.json"))
        attempts = sorted({name.split("/")[1] for name in z.namelist() if name.startswith("attempts/")})
    assert attempts == sorted(a for a in centre.past_attempts if _candidate(centre, a) == "2611002")
    assert manifest["audit_anchor"]["seq"] > 0

    row.locator("input[name=note]").fill("исх. № 45-12 от сегодня, курьером")
    row.locator("input[name=note]").press("Enter")
    expect(page.locator("p.done")).to_contain_text("отмечен отправленным")
    expect(page.locator("#requests tr", has_text="17-4/1300")).to_have_attribute("data-state", "sent")
    page.screenshot(path=steps / "archivist-2-sent.png", full_page=True)

    page.click("nav.site-bar >> text=Удержания")
    for attempt in attempts:
        expect(page.locator("tr", has_text=attempt).first).to_contain_text("запрос")
    return attempts


def _candidate(centre: Centre, attempt_id: str) -> str:
    from review_server.models import Attempt, Candidate

    return str(centre.run(lambda s: s.scalar(select(Candidate.accreditation_number).join(
        Attempt, Attempt.candidate_id == Candidate.id).where(Attempt.id == attempt_id))))


def test_a_session_less_visitor_sees_no_console(centre: Centre) -> None:
    """Without a session the console's pages go to the login page and its forms are refused."""
    for path in ("/admin", "/admin/users", "/requests", "/examiner", "/holds"):
        req = urllib.request.Request(centre.url + path, headers={"Accept": "text/html"})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            opener.open(req, timeout=10)
            raise AssertionError(path)
        except urllib.error.HTTPError as exc:
            assert exc.code == 303 and exc.headers["Location"] == "/login", path
    req = urllib.request.Request(centre.url + "/admin/users", data=b"login=x&role=admin", method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 401


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
