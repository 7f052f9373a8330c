"""The marking page in Debian's Chromium (headless, driven by Playwright): mark, score, finalise, reload."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from .conftest import AgentProcess


def _mark(page: Page, item: int, done: bool) -> None:
    page.locator(f"#item-{item} button.mark.{'yes' if done else 'no'}").click()


def _pressed(page: Page, item: int, done: bool) -> None:
    expect(page.locator(f"#item-{item} button.mark.{'yes' if done else 'no'}")).to_have_attribute(
        "aria-pressed", "true"
    )


RATE = "Частота (тренажёр): 112/мин, в диапазоне 100–120: 85 %"


def test_mark_score_finalise_reload_correct(agent: AgentProcess, browser: Browser, tmp_path: Path) -> None:
    agent.figures = tmp_path / "cpr_figures.json"
    report = {"format": "osce-cpr-figures/1", "checklist": "01_basic_cpr_adult", "items": {"16": [RATE]}}
    agent.figures.write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")
    url = agent.start()
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    external: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(url) else external.append(r.url))
    page.goto(url)

    # Not signed in: the login form, and a wrong PIN is refused.
    expect(page.locator("#login")).to_be_visible()
    page.fill("#login-examiner", "ivanova")
    page.fill("#login-pin", "0000")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("неверный логин или PIN")
    page.fill("#login-pin", "246802")
    page.click("#login-form button[type=submit]")

    expect(page.locator("#candidate")).to_have_text("240517")
    expect(page.locator("#task-title")).to_have_text("Базовая сердечно-лёгочная реанимация взрослого")
    expect(page.locator("#score")).to_contain_text("Выполнено 0 из 19")
    expect(page.locator("#items > li")).to_have_count(19)
    # The measured CPR figures under the rate item, as a muted line; no marks from them.
    expect(page.locator("#item-16 .figures")).to_have_text(RATE)
    expect(page.locator("#item-16 .figures")).to_be_visible()
    expect(page.locator("#items .figures")).to_have_count(1)
    expect(page.locator("#items button.mark[aria-pressed='true']")).to_have_count(0)
    # Large touch targets.
    box = page.locator("#item-1 button.mark.yes").bounding_box()
    assert box is not None and box["height"] >= 60 and box["width"] >= 80

    # Phase timer starts on demand and counts the reading phase down.
    page.click("#start")
    expect(page.locator("#phase-name")).to_have_text("Ознакомление с заданием")
    expect(page.locator("#phase-timer")).to_have_text(re.compile(r"00:(2\d|30)"))

    for item in range(1, 15):
        _mark(page, item, True)
        expect(page.locator("#score")).to_contain_text(f"Выполнено {item} из 19")
    _mark(page, 15, False)
    _pressed(page, 15, False)
    expect(page.locator("#score")).to_contain_text("73,7 % — сдано")
    _mark(page, 14, False)  # a change before signing: a new event, the score follows
    expect(page.locator("#score")).to_contain_text("Выполнено 13 из 19 — 68,4 % — не сдано")
    _mark(page, 14, True)
    page.locator("#rating button[data-rating='4']").click()
    expect(page.locator("#rating button[data-rating='4']")).to_have_attribute("aria-pressed", "true")

    # Finalise asks for confirmation; cancelling changes nothing.
    page.click("#finalise")
    expect(page.locator("#modal")).to_be_visible()
    page.click("#modal-cancel")
    expect(page.locator("#signed")).to_be_hidden()
    page.click("#finalise")
    page.click("#modal-ok")
    expect(page.locator("#signed")).to_be_visible()

    page.reload()
    expect(page.locator("#signed")).to_be_visible()
    expect(page.locator("#score")).to_contain_text("Выполнено 14 из 19 — 73,7 % — сдано")
    for item in range(1, 15):
        _pressed(page, item, True)
    _pressed(page, 15, False)
    expect(page.locator("#rating button[data-rating='4']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#phase-name")).not_to_have_text("Ожидание начала")

    # After signing, a change needs a reason; an empty one is refused in the dialog.
    _mark(page, 15, True)
    expect(page.locator("#modal-reason")).to_be_visible()
    page.click("#modal-ok")
    expect(page.locator("#modal-error")).to_have_text("Причина обязательна")
    page.fill("#modal-reason", "пересмотр по видеозаписи")
    page.click("#modal-ok")
    expect(page.locator("#score")).to_contain_text("Выполнено 15 из 19")
    page.reload()
    _pressed(page, 15, True)
    expect(page.locator("#signed")).to_be_visible()
    page.locator("#history-block summary").click()
    expect(page.locator("#history li")).to_have_count(20)  # 17 marks, a rating, the finalise, the correction
    expect(page.locator("#history li").last).to_contain_text("причина: пересмотр по видеозаписи")
    assert external == []  # no CDN, nothing outside the agent
