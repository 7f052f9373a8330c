"""The agent's pages (tablet marking page, room clock page): Jinja2 templates with autoescape, texts from one
catalogue in Russian and English, no inline script or style, and the security headers on every answer; the
English page in Debian's Chromium with the CSP in force."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from playwright.sync_api import Browser, expect

from checklists.loader import load_checklist
from station_agent.agent_http import build_app
from station_agent.config import AgentConfig
from station_agent.daemon import Agent
from station_agent.marking_app import MarkingConfig, create_marking_app
from station_agent.pages import STATIC_DIR, TEMPLATES_DIR
from station_agent.texts import LANGS, TEXTS, catalogue

from .conftest import CPR, AgentProcess

CYRILLIC = re.compile(r"[А-Яа-яЁё]")


@pytest.fixture
async def marking(tmp_path: Path) -> AsyncIterator[TestClient]:
    cfg = MarkingConfig(checklist=load_checklist(CPR), db_path=tmp_path / "marks.db", attempt_id="A1",
                        candidate_number="240517", examiners={"ivanova": "2468"})
    async with TestClient(TestServer(create_marking_app(cfg))) as client:
        yield client


@pytest.fixture
async def station(tmp_path: Path) -> AsyncIterator[TestClient]:
    agent = Agent(AgentConfig(data_dir=tmp_path), load_checklist(CPR))
    async with TestClient(TestServer(build_app(agent))) as client:
        yield client


class Inline(HTMLParser):
    """What a strict CSP would block in a page: inline script or style, event-handler or style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.scripts: list[str] = []
        self.text = ""  # what the page shows (not its attributes)
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style":
            self.found.append("<style>")
        if tag == "script":
            self.scripts.append(dict(attrs).get("src") or "")
            self._in = "script"
        self.found += [f"<{tag} {name}>" for name in names if name.startswith("on") or name == "style"]

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        self.text += data
        if self._in == "script" and data.strip():
            self.found.append("inline <script>")


def _checked(html: str) -> Inline:
    parser = Inline()
    parser.feed(html)
    assert parser.found == [], parser.found
    assert parser.scripts and all(src.startswith("/static/") for src in parser.scripts), parser.scripts
    return parser


@pytest.mark.parametrize("lang", LANGS)
async def test_pages_in_both_languages_have_no_inline_script_or_style(marking: TestClient, station: TestClient,
                                                                      lang: str) -> None:
    texts = catalogue(lang)
    for client, must in ((marking, ["candidate_label", "finalise", "login_submit"]), (station, ["clock_title"])):
        response = await client.get(f"/?lang={lang}")
        assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
        html = await response.text()
        shown = _checked(html).text
        assert f'<html lang="{lang}"' in html
        for key in must:
            assert texts[key] in shown, key
        assert bool(CYRILLIC.search(shown.replace(texts["other_language"], ""))) == (lang == "ru"), shown
    wrong = await marking.get("/?lang=de")  # an unknown language: Russian
    assert '<html lang="ru"' in await wrong.text()


async def test_every_answer_carries_the_security_headers(marking: TestClient, station: TestClient) -> None:
    answers = [await marking.get("/"), await marking.get("/api/state"), await marking.get("/static/marking.js"),
               await marking.get("/no-such-page"), await station.get("/"), await station.get("/api/clock"),
               await station.get("/static/clock.js"), await station.get("/api/health"),
               await station.get("/cues/reading.wav")]
    for response in answers:
        csp = response.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp, response.url
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert [r.status for r in answers] == [200, 401, 200, 404, 200, 200, 200, 401, 200]


def test_one_catalogue_has_every_text_the_templates_and_scripts_use() -> None:
    assert all(len(pair) == len(LANGS) and all(pair) for pair in TEXTS.values())
    used: set[str] = set()
    for path in TEMPLATES_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bt\.(\w+)", text))
        assert not CYRILLIC.search(text), f"{path}: a text belongs in station_agent/texts.py"
    for path in STATIC_DIR.glob("*.js"):
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\btr\(\"(\w+)\"", text))
        used |= {f"{prefix}{name}" for prefix in re.findall(r"T\[`(\w+)\$\{", text)
                 for name in ("do", "say", "do_say", "idle", "scheduled", "reading", "performing", "done",
                              "one_minute", "time_up") if f"{prefix}{name}" in TEXTS}
        assert not CYRILLIC.search(text), f"{path}: a text belongs in station_agent/texts.py"
    assert used - set(TEXTS) == set()
    assert {"presentation_do_say", "clock_performing", "cue_one_minute", "score_line"} <= used


def test_the_english_page_in_chromium_with_the_csp_in_force(agent: AgentProcess, browser: Browser,
                                                             tmp_path: Path) -> None:
    url = agent.start()
    refused: list[str] = []
    for marked, lang in enumerate(LANGS, start=1):  # the same examiner: one more item each time
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{url}?lang={lang}")
        texts = catalogue(lang)
        expect(page.locator("#login h1")).to_have_text(texts["login_heading"])
        page.screenshot(path=str(tmp_path / f"login-{lang}.png"))
        page.fill("#login-examiner", "ivanova")
        page.fill("#login-pin", "2468")
        page.click("#login-form button[type=submit]")
        expect(page.locator(f"#item-{marked} button.mark.yes")).to_have_text(texts["yes"])
        page.locator(f"#item-{marked} button.mark.yes").click()
        expect(page.locator("#item-1 .how")).to_have_text(texts["presentation_do_say"])
        expect(page.locator("#score")).to_contain_text(f"{marked} из 19" if lang == "ru" else f"{marked} of 19")
        expect(page.locator("#status")).to_have_text(texts["saved"])
        page.screenshot(path=str(tmp_path / f"sheet-{lang}.png"), full_page=True)
        sizes = page.eval_on_selector_all(
            "button:not([hidden]), nav.lang a",
            "els => els.filter(e => e.offsetParent).map(e => [e.id || e.className || e.textContent,"
            " e.getBoundingClientRect().width, e.getBoundingClientRect().height])")
        small = [s for s in sizes if s[1] < 44 or s[2] < 44]
        assert sizes and small == [], small  # every touch target at least 44 x 44 px
        assert refused == [], refused
        page.close()
