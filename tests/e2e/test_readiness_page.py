"""The readiness page in Debian's Chromium, run end to end: `osce server run` and four `osce agent run` as processes,
each room with its own trouble, and a fifth station with no agent at all.

- st1: a synthetic camera and the real PulseAudio microphone (the null sink `room`'s monitor, under
  /tmp/osce-audio.lock): green while a tone plays in the room, then red "silent" once it stops;
- st2: a second camera that does not exist (red), then, while an attempt runs, the agent refuses (red, with why);
- st3: its data on a 40 MB tmpfs while the server's schedule plans an hour of recording for it (red: disk);
- st4: its system clock stepped 5 s ahead by the clock-step shim (red: clock);
- st5: no agent (red: offline, after the server's claim time-out, set short here).

Screenshots of each step are kept (in $OSCE_SCREENSHOT_DIR when set, else the test's folder); the act is
downloaded as a PDF and read back."""

from __future__ import annotations

import datetime as dt
import fcntl
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from media.calibration import ffmpeg_exe
from scripts.harness.agent import Daemon, build_clock_step_shim, set_clock_step, write_config
from scripts.harness.browser import chromium
from scripts.harness.ports import free_port
from scripts.harness.review import CHEAP_PASSWORDS, ROOT, add_session, add_station, migrated_database
from scripts.harness.wait import wait_for

STATIONS = {"st1": "Станция 1 — СЛР", "st2": "Станция 2 — в/м инъекция", "st3": "Станция 3 — измерение АД",
            "st4": "Станция 4 — перевязка", "st5": "Станция 5 — резерв"}


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("OSCE_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def audio_lock() -> Iterator[None]:
    """The PulseAudio null sink is one shared room: no other test may play or record sound meanwhile."""
    with open("/tmp/osce-audio.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def room_tone() -> subprocess.Popen[bytes]:
    """A steady 440 Hz tone played into the room (not the calibration clip's 1 kHz beeps: no sync to measure)."""
    info = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True)
    assert info.returncode == 0 and "room" in info.stdout, \
        'PulseAudio with the null sink "room" is needed: eval "$(bash scripts/services.sh)"'
    return subprocess.Popen([ffmpeg_exe(), "-v", "error", "-re", "-f", "lavfi", "-i",
                             "sine=frequency=440:sample_rate=48000", "-af", "volume=0.3", "-f", "pulse", "-device",
                             "room", "readiness-tone"], stdin=subprocess.DEVNULL)


class Server:
    """`osce server run --config` as a child process."""

    def __init__(self, folder: Path, db_url: str, schedule: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cheap = "\n".join(f"{k} = {v}" for k, v in CHEAP_PASSWORDS.items())
        self.config = folder / "server.toml"
        self.config.write_text(f'database_url = "{db_url}"\nmedia_dir = "{folder / "media"}"\nport = {self.port}\n'
                               f'insecure_cookies = true\nschedule_file = "{schedule}"\n'
                               f"readiness_claim_timeout_s = 5\n{cheap}\n", encoding="utf-8")
        self.log = folder / "server.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "osce_cli", "server", "run", "--config",
                                          str(self.config)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._up, 30, "the review server")

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text(errors="replace")
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def agent(folder: Path, code: str, server: Server, token: str, env: dict[str, str] | None = None,
          **config: object) -> Daemon:
    folder.mkdir(parents=True, exist_ok=True)
    path = write_config(folder, extra=f'[server]\nurl = "{server.url}"\n', **config)  # type: ignore[arg-type]
    text = path.read_text(encoding="utf-8").replace('id = "st1"', f'id = "{code}"')
    path.write_text(text.replace('name = "Test station"', f'name = "{STATIONS[code]}"'), encoding="utf-8")
    daemon = Daemon(path)
    daemon.start({"OSCE_STATION_TOKEN": token, **(env or {})})
    return daemon


def section(page: Page, code: str):  # type: ignore[no-untyped-def]
    return page.locator(f'section.station[data-station="{code}"]')


def run_from_page(page: Page, button: str, codes: list[str]) -> None:
    """Press a check button and wait for the page to come back with every station's verdict."""
    page.click(button)
    expect(page.locator("button.run").first).to_be_disabled()
    # The page follows the run and reloads when every check is finished: the buttons come back then.
    expect(page.locator("button.run").first).to_be_enabled(timeout=120_000)
    for code in codes:
        expect(section(page, code).locator("p.verdict.ok, p.verdict.bad")).to_be_visible()


def test_readiness_from_the_page_green_then_each_red(tmp_path: Path, audio_lock: None) -> None:
    db_url = migrated_database(tmp_path / "server" / "osce.db")
    tokens = {code: add_station(db_url, code, name) for code, name in STATIONS.items()}
    cookie = add_session(db_url, "admin", "admin")
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    schedule = tmp_path / "schedule.json"
    schedule.write_text(json.dumps({"attempts": [
        {"attempt_id": f"d1-st3-{i:03d}", "candidate": f"261100{i}", "station_id": "st3",
         "checklist": "short", "reading_starts_at": (start + dt.timedelta(minutes=11 * i)).isoformat(),
         "reading_s": 60, "performing_s": 540} for i in range(6)]}), encoding="utf-8")
    disk = tmp_path / "st3-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(disk)], capture_output=True)
    assert mounted.returncode == 0, f"this test mounts a small tmpfs and needs root: {mounted.stderr!r}"
    shim = build_clock_step_shim(tmp_path)
    step = tmp_path / "clock-step"
    set_clock_step(step, 5.0)
    server = Server(tmp_path / "server", db_url, schedule)
    daemons: list[Daemon] = []
    tone = room_tone()
    out = shots(tmp_path)
    try:
        daemons.append(agent(tmp_path / "st1", "st1", server, tokens["st1"], microphone="pulse"))
        daemons.append(agent(tmp_path / "st2", "st2", server, tokens["st2"], cameras=("synthetic", "/dev/video7")))
        daemons.append(agent(tmp_path / "st3", "st3", server, tokens["st3"], data_dir=disk))
        daemons.append(agent(tmp_path / "st4", "st4", server, tokens["st4"],
                             env={"LD_PRELOAD": str(shim), "OSCE_CLOCK_STEP_FILE": str(step)}))
        with chromium() as browser:
            ctx = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
            name, value = cookie.split("=", 1)
            ctx.add_cookies([{"name": name, "value": value, "url": server.url}])
            page = ctx.new_page()
            page.goto(f"{server.url}/admin/readiness")
            expect(page.locator("h1")).to_have_text("Готовность станций")

            def all_online() -> bool:
                page.reload()
                return page.locator(".link.online").count() == 4

            wait_for(all_online, 30, "the four agents online on the page")
            expect(section(page, "st5").locator(".link")).to_have_text("агент не на связи")
            page.screenshot(path=str(out / "readiness-before.png"), full_page=True)

            # All at once: st1 green, every other station red with its reason.
            run_from_page(page, "button.run[data-stations=all]", list(STATIONS))
            page.screenshot(path=str(out / "readiness-all.png"), full_page=True)
            expect(section(page, "st1").locator("p.verdict")).to_contain_text("✓ Готова")
            st1 = section(page, "st1").locator("table.items")
            expect(st1.locator("tr.bad")).to_have_count(0)
            expect(st1).to_contain_text("порог тишины комнаты -60 дБ")
            expect(st1).to_contain_text("не измерено: метки калибровочного ролика не найдены")
            expect(st1).to_contain_text("SHA-256 каждого совпал на сервере")
            for code, reason in {"st2": "камера не открылась", "st3": "мало места: свободно",
                                 "st4": "больше допустимых ±1 с: проверьте синхронизацию времени станции",
                                 "st5": "агент не забрал задание за 5 с"}.items():
                expect(section(page, code).locator("p.verdict")).to_contain_text("✗ Не готова")
                expect(section(page, code).locator("tr.bad")).to_contain_text(reason)
            expect(section(page, "st2").locator("tr.bad")).to_have_count(1)
            expect(section(page, "st3").locator("tr.bad")).to_contain_text("60 мин записи")
            expect(section(page, "st4").locator("tr.bad")).to_contain_text(re.compile(r"расхождение с сервером "
                                                                                      r"\+(4,9|5,0)\d* с"))

            # The room goes quiet: the same microphone is now red.
            tone.terminate()
            tone.wait(timeout=10)
            time.sleep(1)
            run_from_page(page, "button.run[data-stations=st1]", ["st1"])
            expect(section(page, "st1").locator("tr.bad")).to_contain_text("тишина: уровень -120 дБ ниже порога "
                                                                           "тишины комнаты -60 дБ")
            section(page, "st1").screenshot(path=str(out / "readiness-silent-microphone.png"))

            # An attempt is running in st2: the agent refuses, and says which.
            status, body = daemons[1].request("POST", "/api/attempt/start", {"candidate": "2611009", "attempt_id":
                                                                             "d1-st2-009", "performing_s": 120},
                                              token=tokens["st2"])
            assert status == 200, body
            time.sleep(3)
            run_from_page(page, "button.run[data-stations=st2]", ["st2"])
            expect(section(page, "st2").locator("tr.bad")).to_contain_text("идёт попытка d1-st2-009 (")
            section(page, "st2").screenshot(path=str(out / "readiness-refused.png"))

            # The first run's act: its page and its PDF, with who ran it and each station's reasons.
            page.click("table.history tbody tr:last-child a:text('акт № 1')")
            expect(page.locator("h1")).to_have_text("Акт готовности № 1")
            expect(page.locator("dl.act")).to_contain_text("готовы 1 из 5")
            page.screenshot(path=str(out / "readiness-act.png"), full_page=True)
            with page.expect_download() as info:
                page.click("a.pdf")
            pdf = Path(info.value.path()).read_bytes()
            (out / "readiness-act.pdf").write_bytes(pdf)
            act = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
            for words in ("АКТ № 1", "Проверку провёл: admin", "Итог: готовы 1 из 5 станций",
                          "Станция st1 — Станция 1 — СЛР: ГОТОВА", "Станция st5 — Станция 5 — резерв: НЕ ГОТОВА",
                          "камера не открылась", "мало места", "расхождение с сервером +"):
                assert words in act, (words, act)

            page.goto(f"{server.url}/admin/readiness?lang=en")
            expect(section(page, "st1").locator("tr.bad")).to_contain_text("silence: level -120 dBFS")
            page.screenshot(path=str(out / "readiness-en.png"), full_page=True)
    finally:
        tone.kill()
        for daemon in daemons:
            daemon.stop()
        server.stop()
        subprocess.run(["umount", str(disk)], check=False)
