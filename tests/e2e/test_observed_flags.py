"""A flag made in the observation room reaches the attempt's timeline at the moment the observer saw, and the export
package (issue 19), in Debian's Chromium against the real server with the centre's data (scripts/harness/centre.py:
st1 publishes a live picture from a real recorder). The observer enlarges st1 and presses Shift+1 (a prompt); the
live recorder's fragments so far are uploaded as that attempt's recording, as the station's agent would (with the
part's media_from); on the attempt page the flag sits within 0.5 s of the picture's time the observer saw, and a
click on it seeks the player there, where the frame is the one the observer saw; the package has the flag in
attempts/<id>/flags.json, listed and hashed in SHA256SUMS."""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from media.manifest import read_manifest
from review_server import export
from review_server.models import ExportRequest
from review_server.web import DB, STORAGE
from scripts.harness.centre import Centre
from station_agent.lifecycle import part_media_span

from .page_checks import signed_in

# A 48 × 27 grey thumbnail of what a <video> shows now, and its time (the synthetic camera's pattern moves 160 px/s,
# so a frame a fraction of a second away differs).
THUMB = """(sel) => { const v = document.querySelector(sel); const c = document.createElement("canvas");
  c.width = 48; c.height = 27; const g = c.getContext("2d"); g.drawImage(v, 0, 0, 48, 27);
  const d = g.getImageData(0, 0, 48, 27).data; const out = [];
  for (let i = 0; i < d.length; i += 4) out.push(Math.round((d[i] + d[i + 1] + d[i + 2]) / 3));
  return { t: v.currentTime, px: out }; }"""


def _difference(a: list[int], b: list[int]) -> float:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def _upload_live_recording(centre: Centre, attempt_id: str, key: str, until_s: float) -> None:
    """The live recorder's fragments up to past `until_s`, uploaded with the station's token as its agent would."""
    folder = centre.folder / "live-st1"
    deadline = time.monotonic() + 20
    while True:
        manifest = read_manifest(folder)
        ends = [f.end for f in manifest.fragments if f.kind == "media" and f.end is not None]
        if ends and max(ends) > until_s + 1:
            break
        assert time.monotonic() < deadline, f"the live recorder wrote nothing past {until_s} s"
        time.sleep(0.3)
    origin = part_media_span(folder)[0]
    assert origin is not None
    for track in manifest.track_ids():
        for frag in manifest.track_files(track):
            data = (folder / frag.file).read_bytes()
            query = f"?attempt_id={attempt_id}" + (
                f"&start={frag.start:.6f}&end={frag.end:.6f}" if frag.start is not None else
                f"&media_from={origin.isoformat().replace('+00:00', 'Z')}")
            centre.http("PUT", f"/api/recordings/{key}/tracks/{track}/fragments/{frag.seq}{query}", data=data,
                        station="st1", headers={"X-Content-SHA256": hashlib.sha256(data).hexdigest()})


def _flag_in_the_room(page: Page, base: str) -> tuple[int, dict[str, object]]:
    page.goto(base + "/live")
    tile = page.locator('#grid .tile[data-station="st1"]')
    expect(tile).to_be_visible(timeout=15000)
    page.wait_for_function("""() => { const v = document.querySelector('.tile[data-station="st1"] video');
        return v && !v.classList.contains('joining') && v.readyState >= 2 && v.currentTime > 1; }""", timeout=20000)
    tile.locator("video").click()  # enlarge
    expect(page.locator("#flag-bar")).to_be_visible()
    expect(page.locator("#flag-bar .keys")).to_contain_text("Shift+1")
    sizes = page.evaluate("""() => [...document.querySelectorAll('#flag-bar button, .tile .flag-open')]
        .map((b) => { const r = b.getBoundingClientRect(); return [b.textContent, r.width, r.height]; })""")
    assert len(sizes) >= 7 and all(w >= 44 and h >= 44 for _, w, h in sizes), sizes  # a tablet's finger
    page.wait_for_timeout(700)  # the enlarged picture settles at the live edge again
    seen = page.evaluate(THUMB, '#big-slot .tile[data-station="st1"] video')
    page.keyboard.press("Shift+Digit1")
    expect(page.locator("#flag-status")).to_contain_text("Подсказка")
    page.wait_for_function("() => !!document.body.dataset.lastFlag")
    last = json.loads(page.evaluate("() => document.body.dataset.lastFlag"))
    assert abs(last["sent"] - seen["t"]) < 0.3, (last, seen["t"])  # the key press took the picture's time
    return int(last["id"]), seen


def test_a_flag_from_the_room_is_on_the_attempts_timeline_at_the_moment_seen_and_in_the_export(
        centre: Centre, centre_browser: Browser, tmp_path: Path) -> None:
    attempt_id = centre.attempts[0]  # st1's live meta: today's first CPR attempt
    observer = signed_in(centre_browser, centre.url, "observer")
    examiner = signed_in(centre_browser, centre.url, "examiner1")
    try:
        page = observer.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        flag_id, seen = _flag_in_the_room(page, centre.url)

        # From the grid: the tile's own control, "other…" with the observer's words; then withdrawn from "my flags"
        # with a reason (kept, struck through), and the first one still in force.
        page.keyboard.press("Escape")
        expect(page.locator("#overlay")).to_be_hidden()
        page.locator('#grid .tile[data-station="st1"] .flag-open').click()
        page.locator('#grid .tile[data-station="st1"] .flag-menu button[data-kind="other"]').click()
        page.fill("#flag-other-text", "дверь открыта")
        page.locator("#flag-other button[type=submit]").click()
        expect(page.locator("#flag-status")).to_contain_text("дверь открыта")
        other_id = json.loads(page.evaluate("() => document.body.dataset.lastFlag"))["id"]
        page.locator("header .flag-mine-open").click()
        item = page.locator(f'#flag-mine-list li[data-flag="{other_id}"]')
        item.locator("input").fill("ошиблась станцией")
        item.locator("button").click()
        expect(item.locator("del")).to_contain_text("дверь открыта")
        expect(item).to_contain_text("ошиблась станцией")
        expect(page.locator(f'#flag-mine-list li[data-flag="{flag_id}"] form')).to_be_visible()
        assert errors == []

        key = f"{attempt_id}-live"
        _upload_live_recording(centre, attempt_id, key, seen["t"])

        review = examiner.new_page()
        review.goto(f"{centre.url}/attempts/{attempt_id}?rec={key}")
        point = review.locator(f'.lane-body.flags .flag-point[data-flag="{flag_id}"]')
        expect(point).to_be_visible()
        at = float(point.get_attribute("data-t") or "nan")
        assert abs(at - seen["t"]) <= 0.5, (at, seen["t"])
        master = "video.master"
        review.wait_for_function(f"() => document.querySelector('{master}').readyState >= 2", timeout=20000)
        # By the keyboard: on a busy machine the withdrawn flag made just after may sit on top of this one.
        point.focus()
        review.keyboard.press("Enter")
        review.wait_for_function(f"""() => {{ const v = document.querySelector('{master}');
            return !v.seeking && Math.abs(v.currentTime - {at}) < 0.5 && v.readyState >= 2; }}""", timeout=15000)
        review.evaluate(f"() => document.querySelector('{master}').pause()")
        shown = review.evaluate(THUMB, master)
        assert abs(shown["t"] - seen["t"]) <= 0.5, (shown["t"], seen["t"])
        # The same picture as the observer saw: nearer to it than the recording a second later is.
        review.evaluate(f"() => {{ document.querySelector('{master}').currentTime = {at + 1.0}; }}")
        review.wait_for_function(f"() => !document.querySelector('{master}').seeking", timeout=15000)
        review.wait_for_timeout(300)
        later = review.evaluate(THUMB, master)
        same, moved = _difference(seen["px"], shown["px"]), _difference(seen["px"], later["px"])
        print(f"\nflag seen at {seen['t']:.3f} s, on the timeline at {at:.3f} s, player at {shown['t']:.3f} s; "
              f"picture difference there {same:.1f}, a second later {moved:.1f} (grey levels)")
        assert same < moved / 2, (same, moved)

        # The chair's list of the day: by accreditation number, the withdrawn one struck through, each linked to the
        # attempt page at its moment.
        review.goto(f"{centre.url}/flags")
        row = review.locator(f'tr[data-flag="{flag_id}"]')
        expect(row).to_contain_text("подсказка")
        expect(row).to_contain_text("2611001")
        expect(review.locator(f'tr[data-flag="{other_id}"] del')).to_be_visible()
        row.locator("a").click()
        review.wait_for_url(f"**/attempts/{attempt_id}?t=*")
        review.wait_for_function(f"""() => {{ const v = document.querySelector('{master}');
            return v && v.readyState >= 1 && Math.abs(v.currentTime - {at}) < 0.5; }}""", timeout=15000)
    finally:
        observer.close()
        examiner.close()

    # The export package carries it, listed and hashed like every other file.
    def select_it(s):  # type: ignore[no-untyped-def]
        req = s.scalar(select(ExportRequest).where(ExportRequest.id == centre.request_id))
        export.select_for_request(s, req, [attempt_id], "user:archivist")

    centre.run(select_it)
    db, storage = centre.app[DB], centre.app[STORAGE]
    package = export.run_export(db, storage, centre.config, centre.request_id, "user:archivist")
    zip_path = export.exports_dir(centre.config) / package["file_name"]
    with zipfile.ZipFile(zip_path) as z:
        name = f"attempts/{attempt_id}/flags.json"
        body = z.read(name)
        sums = dict(line.split("  ", 1)[::-1] for line in z.read("SHA256SUMS").decode().splitlines())
        audit_lines = [json.loads(line) for line in z.read("audit.jsonl").decode().splitlines()]
    assert sums[name] == hashlib.sha256(body).hexdigest()
    flags = {f["id"]: f for f in json.loads(body)["flags"]}
    assert flags[flag_id]["kind"] == "prompt" and flags[flag_id]["author"] == "observer"
    assert abs(flags[flag_id]["media_t"] - seen["t"]) <= 0.5
    assert any(e["action"] == "flag.add" and e["target"] == f"flag:{flag_id}" for e in audit_lines)

    # And the day's results protocol carries them in its notes (withdrawn ones with the reason).
    proto = centre.http("GET", f"/api/protocols?day={centre.today.isoformat()}&specialty=nursing", login="admin")
    notes = "\n".join(proto["notes"])
    assert "подсказка (observer)" in notes and "дверь открыта (observer); отозвана: ошиблась станцией" in notes, notes
    assert "2611001" in notes
