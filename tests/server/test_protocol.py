"""Results protocol per exam day and specialty: figures from finalised checklists only, in JSON, CSV, XLSX and
PDF (rendered and text-extracted), with checklist versions uploaded by an admin."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pypdfium2
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import delete, func, select

from checklists.marks import MarkEvent as WireEvent
from osce_cli import main
from review_server.config import ServerConfig
from review_server.models import Score

from .archive_helpers import CPR, INJECTION, add_schedule, checklist, events, link_attempt, post_marks
from .conftest import World

URL = "/api/protocols?day=2026-06-01&specialty=NURSE"


async def _setup(world: World) -> None:
    ids = add_schedule(world, store_checklists=False)
    world.schedule("P0C", "P1C", "P2C", "P9C")
    world.schedule("P0I", "P1I", "P2I", station="S2")
    admin = world.headers("admin")
    client = world.api.client
    for task, path in (("CPR", CPR), ("INJ", INJECTION)):
        resp = await client.post(f"/api/checklist-versions?task={task}", data=path.read_bytes(), headers=admin)
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["sha256"] == checklist(path).content_hash
    again = await client.post("/api/checklist-versions", data=CPR.read_bytes(), headers=admin)
    assert again.status == 200
    bad = await client.post("/api/checklist-versions", data=b"title: x\nitems: 3\n", headers=admin)
    assert bad.status == 422 and (await bad.json())["where"].startswith("body line ")

    cpr, inj = checklist(CPR), checklist(INJECTION)
    plan = [  # number, CPR items done, INJ items done, INJ finalised
        ("2611001", set(cpr.item_numbers), set(inj.item_numbers[:14]), True),  # 100 %, 70 % exactly: сдано
        ("2611002", set(cpr.item_numbers[:13]), set(inj.item_numbers), True),  # 68.42 %: не сдано
        ("2611003", set(cpr.item_numbers), set(inj.item_numbers), False),  # INJ sheet not signed
    ]
    for i, (number, cdone, idone, fin) in enumerate(plan):
        await post_marks(world, events(f"P{i}C", "S1", cpr, cdone))
        await post_marks(world, events(f"P{i}I", "S2", inj, idone, finalise=fin), token=world.other_station_token)
        link_attempt(world, f"P{i}C", number, ids, "CPR")
        link_attempt(world, f"P{i}I", number, ids, "INJ")
    # Marks against a checklist version the server does not hold: shown, never scored.
    unknown = WireEvent.new(
        attempt_id="P9C",
        station_id="S1",
        examiner="examiner",
        kind="mark",
        checklist_hash="cd" * 32,
        seq=1,
        item=1,
        done=True,
    ).to_json()
    await post_marks(world, [unknown])
    link_attempt(world, "P9C", "2611009", ids, "CPR")


async def test_protocol_figures_in_every_format(world: World, config: ServerConfig, tmp_path: Path) -> None:
    await _setup(world)
    client, arch = world.api.client, world.headers("archivist")
    resp = await client.get(URL, headers=arch)
    assert resp.status == 200, await resp.text()
    p = await resp.json()
    assert [t["code"] for t in p["tasks"]] == ["CPR", "INJ"]
    rows = {r["accreditation_number"]: r for r in p["rows"]}
    assert {n: r["result"] for n, r in rows.items()} == {
        "2611001": "сдано",
        "2611002": "не сдано",
        "2611003": "не окончательно",
        "2611009": "не окончательно",
    }
    assert rows["2611001"]["tasks"]["INJ"]["percent"] == 70.0 and rows["2611001"]["tasks"]["INJ"]["passed"] is True
    assert abs(rows["2611002"]["tasks"]["CPR"]["percent"] - 100 * 13 / 19) < 1e-9
    assert rows["2611003"]["tasks"]["INJ"]["final"] is False
    assert "not on the server" in rows["2611009"]["tasks"]["CPR"]["note"]
    assert rows["2611009"]["tasks"]["INJ"] is None

    text = (await (await client.get(URL + "&format=csv", headers=arch)).read()).decode("utf-8")
    table = {r["accreditation_number"]: r for r in csv.DictReader(io.StringIO(text))}
    assert table["2611002"]["CPR_percent"] == "68.42" and table["2611002"]["CPR_result"] == "не сдано"
    assert table["2611003"]["INJ_final"] == "нет" and table["2611003"]["result"] == "не окончательно"
    assert table["2611001"]["result"] == "сдано"

    xlsx = await (await client.get(URL + "&format=xlsx", headers=arch)).read()
    ws = load_workbook(io.BytesIO(xlsx)).active
    values = [[c for c in row] for row in ws.iter_rows(values_only=True)]
    assert [str(values[4][0]), *values[4][1:4]] == ["1", "2611001", 100.0, 70.0]
    assert values[4][-1] == "сдано" and values[5][-1] == "не сдано"

    resp = await client.get(URL + "&format=pdf", headers=arch)
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/pdf"
    pdf = await resp.read()
    doc = pypdfium2.PdfDocument(pdf)
    image = doc[0].render(scale=1).to_pil().convert("L")
    lo, hi = image.getextrema()
    assert lo < 100 and hi > 200  # dark text on a white page
    assert sum(image.histogram()[:128]) > 2000  # enough dark pixels for a table of text
    doc.close()
    page = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    for number in ("2611001", "2611002", "2611003"):
        assert number in page
    assert "не сдано" in page and "сдано" in page.replace("не сдано", "")
    assert "ПРОТОКОЛ" in page and "Сестринское дело" in page

    # The same protocol from the command line.
    cfg = tmp_path / "server.toml"
    cfg.write_text(f"database_url = {json.dumps(config.database_url)}\n", encoding="utf-8")
    out = tmp_path / "p.csv"
    args = ["server", "protocol", "--day", "2026-06-01", "--specialty", "NURSE", "--format", "csv", "--out", str(out)]
    assert main([*args, "--config", str(cfg)]) == 0
    assert out.read_text(encoding="utf-8") == text


async def test_scores_refresh_feeds_the_result_search(
    world: World, config: ServerConfig, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    await _setup(world)
    client, arch = world.api.client, world.headers("archivist")
    found = await (await client.get("/api/archive/attempts?result=failed", headers=arch)).json()
    assert [a["attempt_id"] for a in found["attempts"]] == ["P1C"]  # stored as the marks arrived (routes/marks.py)
    world.api.run(lambda s: s.execute(delete(Score)))  # as in a database filled before results were stored
    found = await (await client.get("/api/archive/attempts?result=failed", headers=arch)).json()
    assert found["attempts"] == []  # nothing derived now
    cfg = tmp_path / "server.toml"
    cfg.write_text(f"database_url = {json.dumps(config.database_url)}\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["server", "scores", "refresh", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == "6 attempt result(s) stored"  # P9C's checklist is not on the server
    failed = await (await client.get("/api/archive/attempts?result=failed", headers=arch)).json()
    assert [(a["attempt_id"], a["accreditation_number"]) for a in failed["attempts"]] == [("P1C", "2611002")]
    passed = await (await client.get("/api/archive/attempts?result=passed&task=INJ", headers=arch)).json()
    assert sorted(a["attempt_id"] for a in passed["attempts"]) == ["P0I", "P1I"]
    assert main(["server", "scores", "refresh", "--config", str(cfg)]) == 0  # idempotent: rows updated in place
    assert world.api.run(lambda s: s.scalar(select(func.count()).select_from(Score))) == 6


async def test_protocol_refusals(world: World) -> None:
    add_schedule(world)
    client, admin = world.api.client, world.headers("admin")
    assert (await client.get("/api/protocols?day=2026-06-01&specialty=NOPE", headers=admin)).status == 404
    assert (await client.get("/api/protocols?day=2026-06-02&specialty=NURSE", headers=admin)).status == 404
    bad_day = await client.get("/api/protocols?day=01.06.2026&specialty=NURSE", headers=admin)
    assert bad_day.status == 400 and (await bad_day.json())["where"] == "query day"
    fmt = await client.get("/api/protocols?day=2026-06-01&specialty=NURSE&format=doc", headers=admin)
    assert fmt.status == 400
    empty = await (await client.get("/api/protocols?day=2026-06-01&specialty=NURSE", headers=admin)).json()
    assert empty["rows"] == [] and len(empty["tasks"]) == 2
