"""The export request page in Debian's Chromium: the request and its attempts; "make a package" starts a
background export whose progress bar moves (the media storage is held at a gate mid-way, a stand-in for a slow
disk, so the page is seen mid-export), then the download link appears and the downloaded ZIP verifies."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select

from review_server import auth
from review_server.app import create_app
from review_server.config import ServerConfig
from review_server.db import Database
from review_server.migrations import upgrade
from review_server.models import (
    Attempt,
    Candidate,
    ExamDay,
    ExportPackage,
    ExportRequest,
    ExportRequestAttempt,
    Fragment,
    Recording,
    Station,
    User,
)
from review_server.package import verify
from review_server.storage import LocalStorage
from scripts.harness.browser import CHROMIUM_ARGS, chromium_executable
from scripts.harness.server_thread import ServerThread


class GatedStorage(LocalStorage):
    """LocalStorage that opens `free` objects, then waits at the gate (`waiting` says it is there)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.free, self.gate, self.waiting = 10**9, threading.Event(), threading.Event()

    def open(self, key: str):  # type: ignore[no-untyped-def]
        if self.free <= 0:
            self.waiting.set()
            assert self.gate.wait(60)
        self.free -= 1
        return super().open(key)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'osce.db'}"
    upgrade(url)
    cfg = ServerConfig(database_url=url, media_dir=tmp_path / "media", insecure_cookies=True,
                       argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1,
                       export_identified_video=False)  # the ZIP's progress bar; the identified videos: test_ident
    storage = GatedStorage(cfg.media_dir)
    db = Database(url)
    rnd = random.Random(5)
    with db.transaction() as s:
        auth.add_user(s, "archivist", "correct horse battery", "archivist")
        user = s.scalar(select(User).where(User.login == "archivist"))
        token, _row = auth.create_session(s, user, 3600)
        st = Station(code="S1", name="Станция 1")
        day = ExamDay(day=dt.date(2026, 6, 1))
        cand = Candidate(accreditation_number="2611001")
        s.add_all([st, day, cand])
        s.flush()
        s.add(Attempt(id="A1", station_id=st.id, exam_day_id=day.id, candidate_id=cand.id))
        s.flush()
        rec = Recording(key="rec-A1", station_id=st.id, attempt_id="A1")
        s.add(rec)
        s.flush()
        for seq in range(8):
            blob = rnd.randbytes(300_000 + seq)
            sha = storage.put(blob, hashlib.sha256(blob).hexdigest())
            s.add(Fragment(recording_id=rec.id, track="cam0", kind="init" if seq == 0 else "media", seq=seq,
                           sha256=sha, size=len(blob)))
        req = ExportRequest(number="17-3/4512", request_date=dt.date(2026, 7, 1), requester="Минздрав России",
                            subject="видео и листы", created_by="user:archivist")
        s.add(req)
        s.flush()
        s.add(ExportRequestAttempt(request_id=req.id, attempt_id="A1"))
        request_id = req.id
    server = ServerThread(create_app(cfg, storage=storage))
    base = server.start()
    try:
        yield {"base": base, "cookie": token, "storage": storage, "db": db, "request_id": request_id}
    finally:
        server.stop()
        db.dispose()


def test_export_page_progress_and_download(stack: dict[str, Any], tmp_path: Path) -> None:
    base, storage = stack["base"], stack["storage"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_executable(),
                                    args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(accept_downloads=True, viewport={"width": 1024, "height": 768})
            ctx.add_cookies([{"name": auth.SESSION_COOKIE, "value": stack["cookie"], "url": base}])
            page = ctx.new_page()
            page.goto(f"{base}/export-requests/{stack['request_id']}")
            expect(page.locator("h1")).to_have_text("Запрос на выгрузку №17-3/4512")
            expect(page.locator("#request-fields")).to_contain_text("Минздрав России")
            row = page.locator("#attempts tbody tr")
            expect(row).to_have_count(1)
            expect(row).to_contain_text("2611001")
            assert row.locator("a").get_attribute("href") == "/attempts/A1"
            expect(page.locator("#packages tbody")).to_contain_text("Нет пакетов")

            storage.free = 3  # three recording files, then the "disk" stalls until the gate opens
            page.get_by_role("button", name="Сформировать пакет").click()
            assert storage.waiting.wait(20)
            pkg_row = page.locator("#packages tbody tr[data-package-id]")
            expect(pkg_row).to_have_attribute("data-status", "running")
            expect(pkg_row.locator(".state")).to_have_text("выгружается")
            page.wait_for_function(
                "() => { const b = document.querySelector('#packages progress'); return b && b.value > 0; }"
            )
            mid = pkg_row.locator("progress").evaluate("b => b.value")
            assert 0 < mid < 100
            # 8 recording files of 0.3 MB and 6 small ones, plus the 4 of the envelope
            expect(pkg_row.locator(".figures")).to_contain_text(re.compile(r"из 2\.4 MB · [1-9]\d* из 19 файлов"))
            assert pkg_row.locator("a.download").count() == 0

            storage.gate.set()
            link = pkg_row.locator("a.download")
            expect(link).to_be_visible(timeout=20_000)
            expect(pkg_row).to_have_attribute("data-status", "done")
            assert pkg_row.locator("progress").evaluate("b => b.value") == 100
            package_id = int(pkg_row.get_attribute("data-package-id"))
            assert link.get_attribute("href") == f"/api/exports/{package_id}/download"
            with page.expect_download() as dl:
                link.click()
            saved = tmp_path / "package.zip"
            dl.value.save_as(saved)
            sha = stack["db"].run(lambda s: s.get(ExportPackage, package_id).sha256)
            assert hashlib.sha256(saved.read_bytes()).hexdigest() == sha
            published = page.request.get(f"{base}/api/export-key").body()
            assert verify(saved, published).ok
            expect(pkg_row).to_contain_text(f"SHA-256 {sha}")

            page.goto(f"{base}/export-requests/{stack['request_id']}?lang=en")
            expect(page.locator("h1")).to_have_text("Export request №17-3/4512")
            expect(page.locator("#packages a.download")).to_have_text("Download")
        finally:
            browser.close()
