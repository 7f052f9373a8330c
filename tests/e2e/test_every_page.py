"""Every page of the review server (tests/e2e/pages.py), for each role that opens it, in Russian and in English, in
Debian's Chromium against the real server with a centre's data (scripts/harness/centre.py): it loads, axe-core finds
no serious or critical violation, it has no English words in Russian (and the reverse), every control is reached by
Tab, and its screenshot is kept (the folder is printed; OSCE_SCREENSHOTS_OUT chooses it). With
OSCE_README_SCREENSHOTS=1 the README's screenshots (docs/screenshots/) are made again from the same pages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext

from review_server import nav
from scripts.harness.centre import Centre

from . import pages as listed
from .page_checks import axe_problems, keyboard_unreachable, language_problems, screenshot_folder, signed_in

ROOT = Path(__file__).resolve().parents[2]
README_SHOTS = ROOT / "docs" / "screenshots"
CASES = [(p, role, lang) for p in listed.PAGES for role in p.roles for lang in ("ru", "en")]


@pytest.fixture(scope="module")
def filled(centre: Centre) -> dict[str, str]:
    return listed.values(centre)


@pytest.fixture(scope="module")
def browser(centre_browser: Browser) -> Browser:
    return centre_browser


@pytest.fixture(scope="module")
def contexts(browser: Browser, centre: Centre) -> Iterator[dict[tuple[str | None, str], BrowserContext]]:
    made: dict[tuple[str | None, str], BrowserContext] = {}
    yield made
    for context in made.values():
        context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_folder(tmp_path_factory, "screenshots")


def test_every_page_route_is_listed(centre: Centre) -> None:
    """A page route that the walk does not know fails here: add it to tests/e2e/pages.py."""
    routes = set()
    for route in centre.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        if route.method != "GET" or path in ("/", "/health") or path.startswith(("/api/", "/static/")):
            continue
        if "assets" in path or "/recordings/" in path or path.endswith((".m3u8", ".mp4", ".m4s", ".vtt")):
            continue
        routes.add(path)
    # A page may name its placeholder for the data it shows (/days/{today_id}/... for /days/{day_id}/...).
    def shape(path: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", path)

    assert {shape(r) for r in routes - listed.NOT_PAGES} == {shape(p.path) for p in listed.PAGES}


def test_each_role_lands_on_its_work(browser: Browser, centre: Centre) -> None:
    for login, landing in (("admin", "/admin"), ("examiner1", "/examiner"), ("observer", "/live"),
                           ("archivist", "/requests")):
        assert nav.landing(centre.run(lambda s, who=login: _role(s, who))) == landing
        context = signed_in(browser, centre.url, login)
        page = context.new_page()
        page.goto(centre.url + "/")
        assert page.url == centre.url + landing, login
        # The one navigation bar: the role's entries, the current one marked, who is signed in, the language switch.
        bar = page.locator("nav.site-bar")
        assert bar.locator("a[aria-current=page]").get_attribute("href") == landing
        assert f"Вы вошли как {login}" in bar.locator(".who").inner_text()
        page.click("a.lang-switch")
        assert page.url.endswith(landing + "?lang=en") and page.evaluate("document.documentElement.lang") == "en"
        context.close()


def _role(s: object, login: str) -> str:
    from sqlalchemy import select

    from review_server.models import User

    return str(s.scalar(select(User.role).where(User.login == login)))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("page_case", "role", "lang"), CASES,
                         ids=[f"{p.name}-{r or 'anonymous'}-{lang}" for p, r, lang in CASES])
def test_page(page_case: listed.Page, role: str | None, lang: str, browser: Browser, centre: Centre,
              filled: dict[str, str], contexts: dict[tuple[str | None, str], BrowserContext], shots: Path) -> None:
    key = (role, lang)
    if key not in contexts:
        contexts[key] = signed_in(browser, centre.url, role, locale="en-GB" if lang == "en" else "ru-RU")
    page = contexts[key].new_page()
    try:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        response = page.goto(centre.url + listed.url(page_case, filled, lang))
        assert response is not None and response.status == 200, (response.status if response else None)
        if page_case.ready:
            page.wait_for_selector(page_case.ready, timeout=20_000)
        page.wait_for_load_state("networkidle") if page_case.ready is None else page.wait_for_timeout(500)
        page.screenshot(path=shots / f"{page_case.name}-{role or 'anonymous'}-{lang}.png", full_page=True)
        if lang == "ru" and role == page_case.roles[0] and page_case.readme and os.environ.get(
                "OSCE_README_SCREENSHOTS"):
            README_SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=README_SHOTS / f"{page_case.name}.png")
        problems = {"language": language_problems(page, lang), "axe": axe_problems(page),
                    "keyboard": keyboard_unreachable(page), "script errors": errors}
        assert not any(problems.values()), problems
    finally:
        page.close()


def test_the_checks_find_what_they_look_for(browser: Browser) -> None:
    """The same checks on a page made wrong on purpose: each finds its fault (so a pass above means something)."""
    page = browser.new_page()
    page.set_content('<html lang="ru"><head><title>Проверка</title></head><body><main><h1>Проверка</h1>'
                     '<input name="x"><button></button><img src="data:,"><p>Hello, мир. Код st1, PDF.</p>'
                     '<p translate="no">Petrova</p><a href="#a" tabindex="-1">Ссылка</a></main></body></html>')
    rules = {problem.split(" ")[0] for problem in axe_problems(page)}
    assert {"label", "button-name", "image-alt"} <= rules
    assert language_problems(page, "ru") == ["Hello"]
    assert keyboard_unreachable(page) == []  # tabindex=-1 takes a link out of the controls one tabs to
    # A keyboard trap: Tab is swallowed in the field, so the link after it is never reached.
    page.set_content('<html lang="ru"><body><input aria-label="Поле" '
                     'onkeydown="if (event.key === \'Tab\') event.preventDefault()">'
                     '<a href="#b">Вторая</a></body></html>')
    unreachable = keyboard_unreachable(page)
    assert len(unreachable) == 1 and "Вторая" in unreachable[0]
    page.close()
