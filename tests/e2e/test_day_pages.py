"""The exam day pages in Debian's Chromium over a real server and socket, as the admin and the archivist use them:

- setup without JSON: log in, create the day, choose the stations' tasks, upload the centre's candidate list (an
  XLSX made with openpyxl with bad rows: they are named with their row and column and nothing is loaded; then a
  CSV in Windows-1251 with semicolons, as Russian Excel writes it), map the columns, check, load; assign the
  examiners; make the schedule in circuits, see a double booking refused with its field named, fix it; the route
  sheets print; a real station agent (`osce agent run`) fetches its part of the schedule from the server;
- after the day: the completeness page lists what is missing with links, the archivist re-hashes the media, the
  admin closes the day (a reason, since a candidate did not come) and reopens it.

Every page is screenshotted (Russian, some English) into the test's folder, or into $OSCE_SCREENSHOTS when set;
hostile text in the day's title and a station's name stays text (no dialog, no element injected).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from review_server import auth
from review_server.app import create_app
from review_server.db import Database
from review_server.models import DayMediaCheck, DaySlot
from review_server.storage import LocalStorage
from scripts.harness.agent import Daemon, write_config
from scripts.harness.browser import chromium
from scripts.harness.candidate_files import HEADER, csv_bytes, rows_for, xlsx_bytes
from scripts.harness.fmp4_bytes import init_bytes, media_bytes
from scripts.harness.review import add_station, cheap_config, migrated_database
from scripts.harness.server_thread import ServerThread
from scripts.harness.wait import wait_for

PASSWORD = "correct horse battery"
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(1)>"
MSK = zoneinfo.ZoneInfo("Europe/Moscow")
NUMBERS = ["2613001", "2613002", "2613003"]
TASKS = {"st1": "Базовая сердечно-лёгочная реанимация взрослого",
         "st2": "Внутримышечное введение лекарственного препарата в ягодичную мышцу",
         "st3": "Измерение артериального давления механическим тонометром"}
INJECTED = """() => ({img: document.querySelectorAll('img').length,
  inline: Array.from(document.scripts).filter(s => !s.src).length})"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    url = migrated_database(tmp_path / "osce.db")
    tokens = {code: add_station(url, code, HOSTILE if code == "st3" else f"Станция {code[-1]}")
              for code in ("st1", "st2", "st3")}
    db = Database(url)
    with db.transaction() as s:
        for login, role, name in (("admin", "admin", "Секретарь"), ("archivist", "archivist", "Архивариус"),
                                  ("examiner1", "examiner", "Иванова А. А."), ("examiner2", "examiner", "Петров П. П."),
                                  ("examiner3", "examiner", "Сидорова С. С.")):
            auth.add_user(s, login, PASSWORD, role, name)
    cfg = cheap_config(url, tmp_path / "media", insecure_cookies=True, timezone="Europe/Moscow")
    server = ServerThread(create_app(cfg, storage=LocalStorage(cfg.media_dir)))
    base = server.start()
    shots = Path(os.environ.get("OSCE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    try:
        yield {"base": base, "db": db, "tokens": tokens, "shots": shots, "tmp": tmp_path}
    finally:
        server.stop()
        db.dispose()


def login(page: Page, base: str, who: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Имя пользователя").fill(who)
    page.get_by_label("Пароль").fill(PASSWORD)
    page.get_by_role("button", name="Войти").click()
    page.wait_for_url(lambda url: "/login" not in url)  # each role lands on its own home page


def shot(page: Page, stack: dict[str, Any], name: str) -> None:
    page.screenshot(path=str(stack["shots"] / f"{name}.png"), full_page=True)
    assert page.evaluate(INJECTED) == {"img": 0, "inline": 0}, name


def rows(page: Page, table: str) -> list[list[str]]:
    return page.eval_on_selector_all(f"#{table} tbody tr",
                                     "trs => trs.map(tr => Array.from(tr.cells).map(td => td.innerText.trim()))")


def test_a_day_set_up_in_the_browser_reaches_a_station_agent_and_is_closed_after(stack: dict[str, Any]) -> None:
    base = stack["base"]
    tomorrow = dt.datetime.now(MSK).date() + dt.timedelta(days=1)  # served to the stations, not yet running
    dialogs: list[str] = []
    with chromium() as browser:
        ctx = browser.new_context(viewport={"width": 1024, "height": 768}, locale="ru-RU", accept_downloads=True)
        page = ctx.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        login(page, base, "admin")

        # The days, a new day.
        page.goto(f"{base}/admin/days")
        expect(page.locator("h1")).to_have_text("Дни экзамена")
        shot(page, stack, "days-list-empty")
        page.get_by_label("Дата экзамена").fill(tomorrow.isoformat())
        page.get_by_label("Название (например, «Поток 1»)").fill(f"Поток 1 {HOSTILE}")
        page.get_by_label("Код новой специальности").fill("34.02.01")
        page.get_by_label("Начало первого потока").fill("09:00")
        page.get_by_role("button", name="Создать день").click()
        # The specialty has no name yet: refused, the field named, nothing created.
        expect(page.locator("#form-error")).to_have_text(
            "Ошибка в поле «Название новой специальности»: для новой специальности нужно название")
        expect(page.get_by_label("Название новой специальности")).to_have_attribute("aria-invalid", "true")
        shot(page, stack, "days-list-refused")
        page.get_by_label("Название новой специальности").fill("Сестринское дело")
        page.get_by_role("button", name="Создать день").click()
        expect(page.locator(".notice")).to_have_text("День создан. Выберите станции и загрузите список.")
        day_id = int(page.url.split("/admin/days/")[1].split("?")[0])
        expect(page.locator("h1")).to_contain_text(HOSTILE)  # shown as text

        # Stations and their tasks: one circuit of three.
        for code, task in TASKS.items():
            page.locator(f"#use-{code}").check()
            page.get_by_label(f"Задание станции {code}").select_option(label=task)
        page.locator("#stations").get_by_role("button", name="Сохранить").click()
        expect(page.locator("#circuits li")).to_have_text(
            f"st1 ({TASKS['st1']}) → st2 ({TASKS['st2']}) → st3 ({TASKS['st3']})")

        # The list: an XLSX with bad rows first.
        page.get_by_role("link", name="Загрузить список аккредитуемых (XLSX или CSV)").click()
        bad = rows_for(NUMBERS)
        bad[1][1] = "2613001"  # the first number again
        bad[2][5] = "Лечебное дело"
        page.get_by_label("Файл списка").set_input_files(files=[{
            "name": "Список на 2 этап.xlsx", "buffer": xlsx_bytes(HEADER, bad),
            "mimeType": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}])
        page.get_by_role("button", name="Загрузить", exact=True).click()
        expect(page.get_by_label("Номер аккредитации *")).to_have_value("1")  # guessed from the header
        expect(page.get_by_label("Поток", exact=True)).to_have_value("6")
        shot(page, stack, "candidates-mapping")
        page.get_by_role("button", name="Загрузить список").click()
        expect(page.locator("#h-problems")).to_have_text("Ошибок в файле: 2")
        assert rows(page, "problems") == [
            ["3", "B (Номер аккредитации)", "Номер аккредитации", "номер 2613001 уже был в строке 2"],
            ["4", "F (Специальность)", "Специальность",
             "специальность «Лечебное дело» не совпадает со специальностью дня («Сестринское дело»)"],
        ]
        expect(page.get_by_role("alert")).to_have_text(
            "Ничего не загружено. Исправьте файл (или выбор столбцов) и попробуйте снова.")
        shot(page, stack, "candidates-bad-rows")

        # The corrected list as Russian Excel saves a CSV: semicolons, Windows-1251.
        page.get_by_label("Файл списка").set_input_files(files=[{
            "name": "список.csv", "buffer": csv_bytes(HEADER, rows_for(NUMBERS), "cp1251"), "mimeType": "text/csv"}])
        page.get_by_role("button", name="Загрузить", exact=True).click()
        page.get_by_role("button", name="Проверить").click()
        expect(page.locator("#h-preview")).to_have_text("Ошибок нет: аккредитуемых 3")
        assert [r[:2] for r in rows(page, "preview")] == [["2", "2613001"], ["3", "2613002"], ["4", "2613003"]]
        assert "Фамилия" not in page.locator("#preview").inner_text()  # numbers, not names
        shot(page, stack, "candidates-preview")
        page.get_by_role("button", name="Загрузить список").click()
        expect(page.locator(".notice")).to_have_text("Список загружен: аккредитуемых 3. Составьте расписание.")
        expect(page.locator("#candidates")).to_contain_text("В списке: 3; с ФИО (хранятся отдельно): 3.")

        # Examiners for the day: two at st1, one at st2 and st3 (the completeness page will say so).
        for login_name, code in (("examiner1", "st1"), ("examiner2", "st1"), ("examiner3", "st2"),
                                 ("examiner3", "st3")):
            form = page.locator("#examiners form.row")
            form.get_by_label("Член комиссии").select_option(login_name)
            form.get_by_label("Станция").select_option(code)
            form.get_by_role("button", name="Назначить").click()
            expect(page.locator(".notice")).to_have_text("Член комиссии назначен.")

        # The schedule in circuits.
        page.get_by_role("button", name="Составить расписание по кругам").click()
        expect(page.locator(".notice")).to_have_text("Расписание составлено: попыток 9.")
        slots = rows(page, "slots")
        assert [r[0] for r in slots] == ["09:00"] * 3 + ["09:10"] * 3 + ["09:20"] * 3
        assert sorted((r[3], r[1]) for r in slots) == sorted((n, c) for n in NUMBERS for c in TASKS)
        shot(page, stack, "day-draft")
        # A double booking is refused with its field named.
        page.get_by_role("link", name="Изменить 09:00 st1").click()
        page.get_by_label("Время начала").fill("09:10")
        page.get_by_role("button", name="Сохранить").click()
        expect(page.locator("#form-error")).to_contain_text("Ошибка в поле «Время начала»: станция st1 в это время "
                                                            "занята: 09:10")
        shot(page, stack, "slot-refused")
        page.get_by_role("link", name="← День экзамена").click()

        # Fixed: the schedule goes to the stations.
        page.get_by_role("button", name="Утвердить").click()
        expect(page.locator("#form-error")).to_have_text(
            "Ошибка в поле «Подтверждение»: отметьте, что расписание проверено")
        page.get_by_label("Расписание проверено").check()
        page.get_by_role("button", name="Утвердить").click()
        expect(page.locator(".notice")).to_have_text("Расписание утверждено: новых попыток 9.")
        expect(page.locator(".status")).to_have_text("расписание утверждено")
        shot(page, stack, "day-fixed")
        for kind in ("candidates", "stations"):
            pdf = page.request.get(f"{base}/admin/days/{day_id}/route-sheets/{kind}.pdf")
            assert pdf.ok and pdf.headers["content-type"] == "application/pdf" and pdf.body()[:5] == b"%PDF-"
            (stack["shots"] / f"route-sheets-{kind}.pdf").write_bytes(pdf.body())
        page.goto(f"{base}/admin/days/{day_id}?lang=en")
        expect(page.locator("h2#h-schedule")).to_have_text("5. Schedule")
        shot(page, stack, "day-fixed-en")

        # A real station agent fetches its part.
        agent_dir = stack["tmp"] / "agent-st1"
        agent_dir.mkdir()
        config = write_config(agent_dir, extra=f'[server]\nurl = "{base}"\n')
        agent = Daemon(config)
        agent.start(env={"OSCE_STATION_TOKEN": stack["tokens"]["st1"]})
        try:
            cache = agent_dir / "data" / "state" / "schedule.json"
            wait_for(lambda: cache.exists(), 30, "the agent's schedule from the server")
            got = json.loads(cache.read_text(encoding="utf-8"))["schedule"]["attempts"]
        finally:
            agent.stop()
        assert [a["attempt_id"] for a in got] == [f"d{day_id}-st1-{n:03d}" for n in (1, 2, 3)]
        assert sorted(a["candidate"] for a in got) == NUMBERS
        assert dt.datetime.fromisoformat(got[0]["reading_starts_at"]).astimezone(MSK) == dt.datetime.combine(
            tomorrow, dt.time(9, 0), MSK)

        # After the day: one attempt recorded and signed, the others not (yet).
        first = f"d{day_id}-st1-001"
        _record_and_sign(stack, first)
        page.goto(f"{base}/days/{day_id}/completeness")
        expect(page.locator("#summary")).to_contain_text("Попыток: 9; полных: 1;")
        expect(page.locator("#missing-list li").first).to_have_text("станция st2: назначено членов комиссии 1 из 2")
        expect(page.locator("#missing-list")).to_contain_text("хэши записей дня ещё не проверены")
        expect(page.locator("#missing-list")).to_contain_text(f"d{day_id}-st2-001: нет ни одной записи")
        link = page.locator("#missing-list a", has_text=f"d{day_id}-st2-001").first
        assert link.get_attribute("href") == f"/attempts/d{day_id}-st2-001"
        shot(page, stack, "completeness-admin")

        # The archivist re-hashes the media.
        archivist_ctx = browser.new_context(viewport={"width": 1024, "height": 768}, locale="ru-RU")
        arch = archivist_ctx.new_page()
        arch.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        login(arch, base, "archivist")
        arch.goto(f"{base}/days/{day_id}/completeness")
        assert arch.locator("#close").count() == 0  # closing is the admin's
        arch.get_by_role("button", name="Проверить хэши").click()
        expect(arch.locator(".notice")).to_have_text("Проверка хэшей запущена.")
        db = stack["db"]
        wait_for(lambda: db.run(lambda s: (row := s.get(DayMediaCheck, day_id)) is not None
                                and row.finished_at is not None), 30, "the media check")
        arch.reload()
        expect(arch.locator("#media")).to_contain_text("Проверено 5 фрагментов")
        row = next(r for r in rows(arch, "attempt-table") if r[3] == first)
        assert row[6] == "✓ examiner1, examiner2" and row[8] == "полна"
        shot(arch, stack, "completeness-archivist")

        # The admin closes the day: something is missing, so only with a reason.
        page.reload()
        page.get_by_role("button", name="Закрыть день").click()  # the browser asks for the required reason
        expect(page.locator(".status")).to_have_text("День открыт: оценки можно менять")
        page.get_by_label("Причина (нужна, если чего-то не хватает) *").fill("неявка; запись st2 утеряна")
        page.get_by_role("button", name="Закрыть день").click()
        expect(page.locator(".notice")).to_have_text("День закрыт.")
        expect(page.locator(".status")).to_contain_text("День закрыт")
        shot(page, stack, "completeness-closed")
        page.get_by_label("Причина *").fill("закрыт по ошибке")
        page.get_by_role("button", name="Открыть день").click()
        expect(page.locator(".notice")).to_have_text("День открыт снова.")
        page.goto(f"{base}/days/{day_id}/completeness?lang=en")
        expect(page.locator("h1")).to_contain_text("Completeness of the day")
        shot(page, stack, "completeness-en")
        page.goto(f"{base}/admin/days")
        shot(page, stack, "days-list")
    assert dialogs == []


def _record_and_sign(stack: dict[str, Any], attempt_id: str) -> None:
    """The attempt's recording through the station's upload route, and both examiners' signed sheets."""
    import urllib.request

    from checklists.loader import DATA_DIR, load_checklist
    from checklists.marks import MarkEvent as WireEvent
    from tests.mark_signing import Signer

    base, token, db = stack["base"], stack["tokens"]["st1"], stack["db"]
    start = db.run(lambda s: s.scalar(select(DaySlot.reading_starts_at).where(DaySlot.attempt_id == attempt_id)))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def send(method: str, path: str, data: bytes, headers: dict[str, str]) -> None:
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", **headers})
        with opener.open(req, timeout=10) as resp:
            assert resp.status in (200, 201)

    media_from = start.isoformat().replace("+00:00", "Z")
    for seq in range(5):  # the init and four fragments said to cover the attempt's 540 s (only their rows count)
        data = init_bytes(seed=7) if seq == 0 else media_bytes(500, seed=seq)
        query = f"&media_from={media_from}" if seq == 0 else f"&start={135.0 * (seq - 1)}&end={135.0 * seq}"
        send("PUT", f"/api/recordings/rec-{attempt_id}/tracks/cam0/fragments/{seq}?attempt_id={attempt_id}{query}",
             data, {"X-Content-SHA256": hashlib.sha256(data).hexdigest()})
    cpr = load_checklist(DATA_DIR / "01_basic_cpr_adult.yaml")
    events = []
    for examiner in ("examiner1", "examiner2"):
        marks = [WireEvent.new(attempt_id=attempt_id, station_id="st1", examiner=examiner, kind="mark", item=n,
                               done=True, checklist_hash=cpr.content_hash, seq=n).to_json() for n in cpr.item_numbers]
        events += [*marks, WireEvent.new(attempt_id=attempt_id, station_id="st1", examiner=examiner, kind="finalise",
                                         checklist_hash=cpr.content_hash, seq=len(marks) + 1).to_json()]
    signed = Signer(db.run).sign("st1", events)
    send("POST", "/api/marks", json.dumps({"events": signed}).encode(), {"Content-Type": "application/json"})
