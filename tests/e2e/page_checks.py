"""What every page must show, as checks on a page open in Chromium: accessibility (axe-core), the language rule,
keyboard reach, touch-target size, and signing in through the real login form.

The language rule: in a Russian page no Latin word, in an English page no Cyrillic word, outside what is not a word
of the interface: identifiers and codes (a token with a digit or one of `_ . / : @ = #`, or in capitals such as
PDF, UTC, SHA-256, II), the language switch, and values shown as they were entered or sent, which the pages mark
`translate="no"` (logins, names, station names, reasons: data, not interface) or set in `<code>`/`<kbd>`/`<samp>`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page

PASSWORD = "correct horse battery"
SERIOUS = ("serious", "critical")
MIN_TARGET_PX = 44

# The interface's text of the page: visible text, option texts, the title and the labelling attributes, except
# what is marked as data or code (see the module's docstring).
PAGE_TEXTS = """() => {
  const skip = (el) => el.closest('[translate="no"], code, kbd, samp, .lang-switch, script, style, noscript, [hidden]');
  const out = [document.title];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!el || skip(el)) continue;
    if (el.tagName !== 'OPTION' && !el.getClientRects().length) continue;
    out.push(walker.currentNode.textContent);
  }
  for (const el of document.querySelectorAll('[title], [aria-label], [placeholder], [alt]')) {
    if (skip(el)) continue;
    for (const a of ['title', 'aria-label', 'placeholder', 'alt']) if (el.hasAttribute(a)) out.push(el.getAttribute(a));
  }
  return out;
}"""
LATIN, CYRILLIC = re.compile(r"[A-Za-z]"), re.compile(r"[А-Яа-яЁё]")
CODE_MARK = re.compile(r"[0-9_./:@=#]")
CAPITALS = re.compile(r"[A-Z]{1,6}(-[0-9]+)?")
PUNCT = "«»“”\"'()[]{},;!?…—–-·•*%+"


def foreign_words(texts: list[str], lang: str) -> list[str]:
    """The words of the other language in the page's interface texts."""
    found = []
    for text in texts:
        for token in text.split():
            word = token.strip(PUNCT)
            if not word or CODE_MARK.search(word):
                continue
            if lang == "ru" and LATIN.search(word) and not CAPITALS.fullmatch(word):
                found.append(word)
            if lang == "en" and CYRILLIC.search(word):
                found.append(word)
    return sorted(set(found))


def language_problems(page: Page, lang: str) -> list[str]:
    assert page.evaluate("document.documentElement.lang") == lang
    return foreign_words(page.evaluate(PAGE_TEXTS), lang)


_AXE = Axe()


def axe_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations: "rule (impact): the first elements"."""
    results = _AXE.run(page).response
    return [f"{v['id']} ({v['impact']}): {v['help']}: " + "; ".join(n["target"][0] for n in v["nodes"][:3])
            for v in results["violations"] if v["impact"] in SERIOUS]


FOCUSABLE = """() => Array.from(document.querySelectorAll(
    'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select:not([disabled]), ' +
    'textarea:not([disabled]), [tabindex]'))
  .filter((e) => e.tabIndex >= 0 && e.getClientRects().length && !e.closest('[hidden], [inert]')
                 && getComputedStyle(e).visibility !== 'hidden')
  .map((e, i) => { e.dataset.kbd = String(i); return i; })"""


def keyboard_unreachable(page: Page) -> list[str]:
    """The visible controls that Tab from the top of the page does not reach (none on a keyboard-usable page).
    Call it on a page just loaded, nothing focused or clicked yet. The page's refreshing parts are stopped first
    (a part replaced meanwhile would be new elements)."""
    page.evaluate("document.querySelectorAll('[data-refresh]').forEach((e) => { e.dataset.refresh = ''; })")
    wanted = set(page.evaluate(FOCUSABLE))
    reached: set[int] = set()
    for _ in range(3 * len(wanted) + 20):  # a video's own controls take several stops
        page.keyboard.press("Tab")
        index = page.evaluate("document.activeElement && document.activeElement.dataset.kbd")
        if index is not None:
            reached.add(int(index))
        if reached >= wanted:
            break
    missing = sorted(wanted - reached)
    return [page.evaluate(f"document.querySelector('[data-kbd=\"{i}\"]').outerHTML.slice(0, 120)") for i in missing]


def small_targets(page: Page, selector: str) -> list[str]:
    """Controls matching `selector` smaller than MIN_TARGET_PX in either direction."""
    boxes: list[dict[str, Any]] = page.eval_on_selector_all(selector, """els => els.map((e) => {
        const r = e.getBoundingClientRect(); return {w: r.width, h: r.height, text: e.textContent.trim()}; })""")
    return [f"{b['text']!r} {b['w']:.0f}x{b['h']:.0f}" for b in boxes
            if b["w"] < MIN_TARGET_PX or b["h"] < MIN_TARGET_PX]


def signed_in(browser: Browser, base: str, login: str | None, *, locale: str = "ru-RU") -> BrowserContext:
    """A browser context signed in as `login` through the login form (None: nobody signed in)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale=locale,
                                  timezone_id="Europe/Moscow", accept_downloads=True)
    if login is not None:
        page = context.new_page()
        page.goto(base + "/login")
        page.fill("input[name=login]", login)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        page.close()
    return context


def screenshot_folder(factory: pytest.TempPathFactory, name: str) -> Path:
    """Where a browser test keeps its screenshots: OSCE_SCREENSHOTS_OUT, else a temporary folder (printed)."""
    out = Path(os.environ["OSCE_SCREENSHOTS_OUT"]) if os.environ.get("OSCE_SCREENSHOTS_OUT") else factory.mktemp(name)
    out.mkdir(parents=True, exist_ok=True)
    print(f"\n{name}: {out}")
    return out
