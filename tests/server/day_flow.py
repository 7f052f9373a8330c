"""TEST HELPER: an exam day set up through the admin's forms over HTTP, as the browser posts them (form bodies with
the CSRF field, 303 answers): shared by the day setup and day closing tests."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import FormData

from review_server import auth
from scripts.harness.candidate_files import HEADER, rows_for, xlsx_bytes

from .conftest import Api

STEMS = ("01_basic_cpr_adult", "02_im_injection_gluteal", "03_blood_pressure")


class DayForms:
    """An admin's session posting the day pages' forms."""

    def __init__(self, api: Api, login: str = "admin") -> None:
        self.api = api
        self.cookie, self.csrf = api.session_for(login)

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"{auth.SESSION_COOKIE}={self.cookie}", "Accept": "text/html"}

    async def post(self, path: str, fields: dict[str, str], expect: int = 303) -> Any:
        resp = await self.api.client.post(path, data={"csrf_token": self.csrf, **fields}, headers=self.headers,
                                          allow_redirects=False)
        text = await resp.text()
        assert resp.status == expect, (path, resp.status, text[:3000])
        return resp, text

    async def get(self, path: str, expect: int = 200) -> str:
        resp = await self.api.client.get(path, headers=self.headers, allow_redirects=False)
        text = await resp.text()
        assert resp.status == expect, (path, resp.status, text[:3000])
        return text

    async def create_day(self, day: str = "2026-06-01", title: str = "Поток 1", **extra: str) -> int:
        fields = {"day": day, "title": title, "specialty": "", "specialty_code": "34.02.01",
                  "specialty_name": "Сестринское дело", "starts_at": "09:00", "reading_s": "30",
                  "performing_s": "510", "changeover_s": "60", **extra}
        resp, _ = await self.post("/admin/days", fields)
        m = re.fullmatch(r"/admin/days/([0-9]+)\?done=created", resp.headers["Location"])
        assert m, resp.headers["Location"]
        return int(m.group(1))

    async def stations(self, day_id: int, chosen: dict[str, str]) -> None:
        fields = {}
        for code, stem in chosen.items():
            fields[f"use_{code}"], fields[f"task_{code}"] = "1", stem
        await self.post(f"/admin/days/{day_id}/stations", fields)

    async def upload(self, day_id: int, name: str, data: bytes, expect: int = 303) -> tuple[int | None, str]:
        form = FormData()
        form.add_field("csrf_token", self.csrf)
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
        resp = await self.api.client.post(f"/admin/days/{day_id}/candidates", data=form, headers=self.headers,
                                          allow_redirects=False)
        text = await resp.text()
        assert resp.status == expect, (resp.status, text[:3000])
        if expect != 303:
            return None, text
        m = re.search(r"upload=([0-9]+)", resp.headers["Location"])
        assert m
        return int(m.group(1)), text

    async def import_list(self, day_id: int, data: bytes, name: str = "список.xlsx",
                          mapping: dict[str, str] | None = None) -> None:
        upload, _ = await self.upload(day_id, name, data)
        fields = {"upload": str(upload), "action": "import", **(mapping or {
            "map_number": "1", "map_last_name": "2", "map_first_name": "3", "map_middle_name": "4",
            "map_specialty": "5", "map_stream": "6", "map_stream_time": "7"})}
        await self.post(f"/admin/days/{day_id}/candidates/map", fields)

    async def ready_day(self, numbers: list[str], stations: dict[str, str], *, day: str = "2026-06-01",
                        streams: tuple[tuple[str, str], ...] = (("1", "09:00"),), fix: bool = True) -> int:
        """A day through every form: created, stations chosen, the list imported, the schedule made (and fixed)."""
        day_id = await self.create_day(day)
        await self.stations(day_id, stations)
        await self.import_list(day_id, xlsx_bytes(HEADER, rows_for(numbers, streams=streams)))
        await self.post(f"/admin/days/{day_id}/schedule", {})
        if fix:
            await self.post(f"/admin/days/{day_id}/fix", {"confirm": "yes"})
        return day_id


def table_rows(page: str, table_id: str) -> list[list[str]]:
    """The body rows of the page's table with that id, each a list of its cells' text."""
    from html.parser import HTMLParser

    class Rows(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.depth, self.in_body, self.rows, self.cell = 0, False, [], None  # type: ignore[var-annotated]

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "table" and ("id", table_id) in attrs:
                self.depth = 1
            elif self.depth and tag == "tbody":
                self.in_body = True
            elif self.in_body and tag == "tr":
                self.rows.append([])
            elif self.in_body and tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag: str) -> None:
            if self.in_body and tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append(self.cell.strip())
                self.cell = None
            elif tag == "table" and self.depth:
                self.depth, self.in_body = 0, False

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell += data

    parser = Rows()
    parser.feed(page)
    return parser.rows
