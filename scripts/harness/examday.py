"""A whole exam day under faults, with real processes: `osce server run` and N `osce agent run` (synthetic
cameras and microphones), each agent talking to the server through its own TCP proxy that can be cut.
Two examiners per station mark through the agent's tablet API while the attempts run and sign off; one
correction per station goes through the server's API. Faults come from a seeded schedule.

Used by tests/examday/test_examday.py (short, in CI), bench/examday.py (long; prints the README table) and
bench/centre_load.py.
Checks at the end, from the server's database and API against what the stations hold and what the
examiners were told was stored: recordings complete, no fragment or mark lost or doubled, scores,
protocol and export right.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from checklists.loader import load_checklist
from checklists.scoring import score
from media.manifest import MANIFEST_NAME, read_manifest
from media.rtsp_server import RtspServer

from .agent import build_clock_step_shim, set_clock_step
from .netcut import CutProxy
from .ports import free_port

ROOT = Path(__file__).resolve().parents[2]
OSCE = [sys.executable, "-m", "osce_cli"]
STEMS = ["01_basic_cpr_adult", "02_im_injection_gluteal", "03_blood_pressure"]
PASSWORD = "examday-" + uuid.uuid4().hex[:8]
EXAMINERS = ("examiner1", "examiner2")  # the commission of every station; their tablet PINs come from the server
MEASURE_S = 20.0  # after a fault ends, how long its effects are watched
FAULT_KINDS = ("agent_kill", "server_kill", "network_cut", "camera_freeze", "mic_silent", "disk_full", "clock_step")
SYNTHETIC_FAULTS = ("camera_freeze", "mic_silent")  # made by the synthetic sources' configuration
CAMERA_USER, CAMERA_PASSWORD = "operator", "Kam3ra:room"
MARK_OFFSET_TOLERANCE_S = 3.0  # a mark's offset into the recording against when it was made (pre-roll, warm-up)


def event_id(key: str) -> str:
    """A UUID4-shaped id derived from the key: a retried mark carries the same id (the idempotency key)."""
    return str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16], version=4))


@dataclass
class Plan:
    stations: int = 3
    candidates: int = 3
    reading_s: int = 4
    performing_s: int = 20
    changeover_s: int = 6
    start_in_s: float = 20.0
    width: int = 320
    height: int = 180
    fps: int = 10
    seed: int = 1
    faults: tuple[str, ...] = FAULT_KINDS
    fault_s: float = 8.0  # how long a cut, a silence, a frozen picture or a full disk lasts
    viewers: int = 1  # observers watching each station's live picture
    # The first N stations film with a real RTSP camera (GStreamer's server, media/rtsp_server.py): an H.265 main
    # stream recorded by copy, its A-law microphone as the station's sound, an H.264 sub-stream for the live view,
    # a login from a password file. The frozen-camera and silent-microphone faults go to synthetic stations.
    rtsp_stations: int = 0

    @property
    def slot_s(self) -> int:
        return self.reading_s + self.performing_s + self.changeover_s

    @property
    def circuits(self) -> int:
        return (self.stations + 2) // 3

    @property
    def slots(self) -> int:
        """As many as the largest circuit has candidates (each visits each of its stations once)."""
        return max(3, -(-self.candidates // self.circuits))

    @property
    def day_s(self) -> float:
        return self.start_in_s + self.slot_s * self.slots


@dataclass
class Fault:
    kind: str
    station: int  # index; -1 for the server
    at_s: float  # seconds after the harness started
    duration_s: float = 0.0
    recovered_s: float | None = None  # from the fault's end to media flowing again from that station
    live_outage_s: float | None = None
    detected_s: float | None = None  # health faults: from start to the agent's warning
    into_s: float = 0.0  # seconds into the attempt (the synthetic sources count from their opening)
    step_s: float = 0.0  # clock_step: by how much the station's system clock is stepped


@dataclass
class Station:
    index: int
    code: str
    folder: Path
    token: str
    proxy: CutProxy
    http_port: int
    marking_port: int
    disk_mount: Path | None = None
    clock_file: Path | None = None  # the clock-step shim's file: the agent runs with its system clock steppable
    pins: dict[str, str] = field(default_factory=dict)  # examiner -> tablet PIN the server issued for this station
    proc: subprocess.Popen[bytes] | None = None
    live: list[float] = field(default_factory=list)  # arrival times of live media messages (harness clock)
    problems: list[tuple[float, str]] = field(default_factory=list)  # (time, the agent's health problems)
    downtime_s: float = 0.0


class ExamDay:
    def __init__(self, root: Path, plan: Plan) -> None:
        self.root, self.plan = root, plan
        self.rng = random.Random(plan.seed)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen[bytes] | None = None
        self.clock_shim: Path | None = None
        self.stations: list[Station] = []
        self.faults: list[Fault] = []
        self.acked: dict[str, dict[str, Any]] = {}  # event_id -> event, for every mark a station acknowledged
        self.corrections: dict[str, dict[str, Any]] = {}
        self.schedule: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.start_at = dt.datetime.now(dt.UTC)
        self.log_lines: list[str] = []
        self.checklists = {stem: load_checklist(ROOT / "checklists" / "data" / f"{stem}.yaml") for stem in STEMS}
        self.cameras: RtspServer | None = None  # the RTSP stations' cameras

    # ------------------------------------------------------------------ setup

    def now(self) -> float:
        return time.monotonic() - self.t0

    def log(self, text: str) -> None:
        line = f"[{self.now():7.1f}] {text}"
        self.log_lines.append(line)
        print(line, file=sys.stderr, flush=True)

    def osce(self, *args: str) -> str:
        done = subprocess.run([*OSCE, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"osce {' '.join(args)}: {done.stderr.strip()[-800:]}")
        return done.stdout

    def setup(self) -> None:
        p, root = self.plan, self.root
        (root / "server").mkdir(parents=True, exist_ok=True)
        self.cfg = root / "server.toml"
        self.cfg.write_text(
            f'database_url = "sqlite:///{root}/server/osce.db"\nmedia_dir = "server/media"\nport = {self.port}\n'
            'insecure_cookies = true\nschedule_file = "day.json"\n'
            "argon2_time_cost = 1\nargon2_memory_kib = 8192\nargon2_parallelism = 1\n",  # TEST-ONLY cost
            encoding="utf-8",
        )
        self.osce("server", "db", "upgrade", "--config", str(self.cfg))
        (root / "password").write_text(PASSWORD + "\n", encoding="utf-8")
        for login, role in (("admin", "admin"), ("examiner1", "examiner"), ("examiner2", "examiner"),
                            ("observer", "observer"), ("archivist", "archivist")):
            self.osce("server", "user", "add", login, "--role", role, "--password-file", str(root / "password"),
                      "--config", str(self.cfg))
        if p.rtsp_stations:  # before the day's clock starts: the stand-in takes a couple of seconds to come up
            mounts: dict[str, dict[str, Any]] = {}
            for code in (f"st{i + 1}" for i in range(p.rtsp_stations)):
                mounts[f"{code}-main"] = {"video": "h265", "audio": "alaw", "width": p.width, "height": p.height,
                                          "fps": p.fps, "key_int": p.fps, "bitrate_kbps": 400}
                mounts[f"{code}-sub"] = {"width": 320, "height": 180, "fps": p.fps, "key_int": p.fps,
                                         "bitrate_kbps": 200}
            self.cameras = RtspServer(mounts, user=CAMERA_USER, password=CAMERA_PASSWORD).start()
        self.start_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=p.start_in_s)
        self.t0 = time.monotonic()
        for i in range(p.stations):
            code = f"st{i + 1}"
            folder = root / f"agent-{code}"
            folder.mkdir(parents=True, exist_ok=True)
            token = self.osce("server", "station", "add", code, "--name", f"Станция {i + 1}",
                              "--config", str(self.cfg)).strip().splitlines()[-1]
            st = Station(i, code, folder, token, CutProxy(self.port, port=free_port()), free_port(), free_port())
            self.stations.append(st)
        # Stations form circuits of three (one per task); a circuit's candidates rotate through its stations,
        # so that each candidate does each task once (a second attempt at a task would be a re-take).
        candidates = [f"26{self.plan.seed:02d}{n + 1:03d}" for n in range(p.candidates)]
        for slot in range(p.slots):
            for st in self.stations:
                group = [c for i, c in enumerate(candidates) if i % p.circuits == st.index // 3]
                if slot >= len(group):
                    continue
                cand = group[(st.index % 3 + slot) % len(group)]
                begins = self.start_at + dt.timedelta(seconds=slot * p.slot_s)
                self.schedule.append({
                    "attempt_id": f"ed-{st.code}-{slot + 1}", "candidate": cand, "station_id": st.code,
                    "checklist": STEMS[st.index % 3], "reading_starts_at": begins.isoformat(),
                    "reading_s": p.reading_s, "performing_s": p.performing_s,
                })
        (root / "day.json").write_text(json.dumps({"attempts": self.schedule}, indent=1), encoding="utf-8")
        self.osce("server", "schedule", "import", str(root / "day.json"), "--specialty", "nursing",
                  "--specialty-name", "Сестринское дело", "--title", "exam day simulation", "--config", str(self.cfg))
        self._issue_tablet_pins()
        self._plan_faults()
        if "clock_step" in p.faults:
            self.clock_shim = build_clock_step_shim(root)
        for st in self.stations:
            self._write_agent_config(st)

    def _issue_tablet_pins(self) -> None:
        """The commission, as an admin sets it up before the day: both examiners assigned to every station, and a
        tablet PIN per examiner and station for the day, issued by the server (`osce server tablet issue`)."""
        from review_server.db import Database
        from review_server.models import ExamDay, ExaminerAssignment, User
        from review_server.models import Station as StationRow

        db = Database(f"sqlite:///{self.root}/server/osce.db")
        try:
            def assign(s):  # type: ignore[no-untyped-def]
                for login in EXAMINERS:
                    uid = s.scalar(select(User.id).where(User.login == login))
                    for st in self.stations:
                        sid = s.scalar(select(StationRow.id).where(StationRow.code == st.code))
                        s.add(ExaminerAssignment(user_id=uid, station_id=sid, exam_day_id=None))
                return s.scalar(select(ExamDay.day).order_by(ExamDay.id.desc()))

            day = db.run(assign)
        finally:
            db.dispose()
        for st in self.stations:
            issued = self.osce("server", "tablet", "issue", "--station", st.code, "--day", day.isoformat(), "--json",
                               "--config", str(self.cfg))
            st.pins = {row["login"]: row["pin"] for row in map(json.loads, issued.splitlines())}

    def _plan_faults(self) -> None:
        """One fault of each kind, at seeded moments inside the attempts' performing phases."""
        p = self.plan
        slots = p.slots
        spread = [k for k in p.faults if k != "clock_step"]
        for n, kind in enumerate(p.faults):  # spread over the day, one station at a time
            station = -1 if kind == "server_kill" else n % p.stations
            if kind in SYNTHETIC_FAULTS and 0 <= station < p.rtsp_stations < p.stations:
                station = p.rtsp_stations + station % (p.stations - p.rtsp_stations)
            # the clock step goes mid-day, into an attempt that other faults may also hit
            slot = spread.index(kind) * slots // len(spread) if kind in spread else slots // 2
            # early enough in performing that the station is still recording when the fault is over
            into = p.reading_s + self.rng.uniform(2.0, max(2.5, p.performing_s - p.fault_s - 10.0))
            at = p.start_in_s + slot * p.slot_s + into
            duration = 0.0 if kind in ("agent_kill", "server_kill", "clock_step") else p.fault_s
            step = self.rng.choice((-1, 1)) * self.rng.uniform(20.0, 90.0) if kind == "clock_step" else 0.0
            self.faults.append(Fault(kind, station, at, duration, into_s=into, step_s=round(step, 1)))
        self.faults.sort(key=lambda f: f.at_s)

    def _write_agent_config(self, st: Station) -> None:
        p = self.plan
        cam = f"synthetic:label={st.code},seed={st.index + 1}"
        mic = f"synthetic:seed={st.index + 1}"
        camera_extra = ""
        if st.index < p.rtsp_stations:
            assert self.cameras is not None
            (st.folder / "camera.pw").write_text(CAMERA_PASSWORD + "\n", encoding="utf-8")
            cam, mic = self.cameras.url(f"{st.code}-main"), "camera:0"
            camera_extra = (f'user = "{CAMERA_USER}"\npassword_file = "camera.pw"\n'
                            f'sub_stream = "{self.cameras.url(f"{st.code}-sub")}"\n')
        for f in self.faults:
            if f.station == st.index and f.kind == "camera_freeze":
                cam += f",freeze_after_s={f.into_s:.1f},freeze_for_s={f.duration_s:.1f}"
            if f.station == st.index and f.kind == "mic_silent":
                mic += f",mute_after_s={f.into_s:.1f},mute_for_s={f.duration_s:.1f}"
        if any(f.station == st.index and f.kind == "clock_step" for f in self.faults):
            st.clock_file = st.folder / "clock-step"
            set_clock_step(st.clock_file, 0)
        data_dir = st.folder / "data"
        if any(f.station == st.index and f.kind == "disk_full" for f in self.faults):
            data_dir = st.folder / "disk"
            data_dir.mkdir(exist_ok=True)
            mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400m", "tmpfs", str(data_dir)],
                                   capture_output=True, text=True)
            if mount.returncode != 0:
                raise RuntimeError(f"the disk-full fault needs a small filesystem: mount tmpfs: {mount.stderr}")
            st.disk_mount = data_dir
        (st.folder / "token").write_text(st.token + "\n", encoding="utf-8")
        (st.folder / "agent.toml").write_text(f"""
[station]
id = "{st.code}"
name = "Станция {st.index + 1}"

[server]
url = "http://127.0.0.1:{st.proxy.port}"
token_file = "token"

[[cameras]]
source = "{cam}"
{camera_extra}
[microphone]
source = "{mic}"

[video]
width = {p.width}
height = {p.height}
fps = {p.fps}

[storage]
data_dir = "{data_dir}"
reserve_mb = 100

[exam]
checklist = "{ROOT}/checklists/data/{STEMS[st.index % 3]}.yaml"
marking = true
marking_port = {st.marking_port}

[http]
host = "127.0.0.1"
port = {st.http_port}

[health]
frozen_s = 2
silence_s = 3
""", encoding="utf-8")

    # ------------------------------------------------------------------ processes

    def start_server(self) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        self.server = subprocess.Popen([*OSCE, "server", "run", "--config", str(self.cfg)], cwd=self.root,
                                       stdout=log, stderr=log)

    def start_agent(self, st: Station) -> None:
        log = open(st.folder / "agent.log", "ab")  # noqa: SIM115
        env = dict(os.environ)
        if st.clock_file is not None:
            env.update(LD_PRELOAD=str(self.clock_shim), OSCE_CLOCK_STEP_FILE=str(st.clock_file))
        st.proc = subprocess.Popen([*OSCE, "agent", "run", "--config", str(st.folder / "agent.toml")],
                                   cwd=st.folder, stdout=log, stderr=log, env=env)

    async def wait_http(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status < 500:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not answer within {timeout} s")
                await asyncio.sleep(0.2)

    def stop_all(self) -> None:
        for proc in [st.proc for st in self.stations] + [self.server]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [st.proc for st in self.stations] + [self.server]:
            if proc is not None:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for st in self.stations:
            if st.disk_mount is not None:
                subprocess.run(["umount", "-l", str(st.disk_mount)], capture_output=True)
        if self.cameras is not None:
            self.cameras.stop()

    # ------------------------------------------------------------------ the day

    async def run(self) -> None:
        self.start_server()
        await self.wait_http(self.url + "/health")
        for st in self.stations:
            await st.proxy.start()
            self.start_agent(st)
        for st in self.stations:
            await self.wait_http(f"http://127.0.0.1:{st.http_port}/healthz")
        self.log(f"server and {len(self.stations)} agents up; day starts at +{self.plan.start_in_s:.0f} s")
        end = max(self.plan.day_s, max((f.at_s + f.duration_s + MEASURE_S + 2 for f in self.faults), default=0)) + 5
        tasks = [asyncio.create_task(self._faults())]
        tasks += [asyncio.create_task(self._viewer(st, end)) for st in self.stations for _ in range(self.plan.viewers)]
        tasks += [asyncio.create_task(self._examiners(st, end)) for st in self.stations]
        tasks += [asyncio.create_task(self._health(st, end)) for st in self.stations]
        await asyncio.sleep(max(0.0, end - self.now()))
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, Exception) and not isinstance(r, asyncio.CancelledError):
                raise r
        self.log("day over; waiting for the stations to drain")
        await self._drain()

    async def _faults(self) -> None:
        for f in self.faults:
            await asyncio.sleep(max(0.0, f.at_s - self.now()))
            who = "server" if f.station < 0 else self.stations[f.station].code
            self.log(f"fault {f.kind} at {who}")
            if f.kind == "agent_kill":
                st = self.stations[f.station]
                assert st.proc is not None
                st.proc.kill()
                st.proc.wait()
                await asyncio.sleep(2.0)
                self.start_agent(st)
                st.downtime_s += 2.0
                f.duration_s = 2.0
            elif f.kind == "server_kill":
                assert self.server is not None
                self.server.kill()
                self.server.wait()
                await asyncio.sleep(3.0)
                self.start_server()
                f.duration_s = 3.0
            elif f.kind == "network_cut":
                proxy = self.stations[f.station].proxy
                await proxy.cut()
                await asyncio.sleep(f.duration_s)
                await proxy.restore()
            elif f.kind == "disk_full":
                asyncio.create_task(self._fill_disk(self.stations[f.station], f.duration_s))
            elif f.kind == "clock_step":  # for good, as NTP or a technician would step it
                clock_file = self.stations[f.station].clock_file
                assert clock_file is not None
                set_clock_step(clock_file, f.step_s)
            # camera_freeze and mic_silent are in the synthetic sources' configuration (seeded times)
            asyncio.create_task(self._measure(f))

    async def _fill_disk(self, st: Station, seconds: float) -> None:
        assert st.disk_mount is not None
        filler = st.disk_mount / "filler.bin"
        free = shutil.disk_usage(st.disk_mount).free
        with open(filler, "wb") as fh:  # leave 50 MB: under the 100 MB reserve
            fh.truncate(0)
            block = b"\0" * (1 << 20)
            for _ in range(max(0, free - 50 * (1 << 20)) >> 20):
                fh.write(block)
        await asyncio.sleep(seconds)
        filler.unlink()

    async def _measure(self, f: Fault) -> None:
        """After the fault ends: how long until media flows again, the longest live gap, the warning delay."""
        end = f.at_s + f.duration_s
        stations = self.stations if f.station < 0 else [self.stations[f.station]]
        await asyncio.sleep(max(0.0, end + MEASURE_S - self.now()))
        recovered, outage = [], []
        for st in stations:
            after = [t for t in st.live if t >= end]
            if after:
                recovered.append(after[0] - end)
            window = [f.at_s - 1] + [t for t in st.live if f.at_s - 1 <= t <= end + MEASURE_S] + [end + MEASURE_S]
            outage.append(max(b - a for a, b in zip(window, window[1:], strict=False)))
        f.recovered_s = max(recovered) if len(recovered) == len(stations) else None
        f.live_outage_s = max(outage)
        words = {"camera_freeze": ("frozen", "застыл"), "mic_silent": ("silen", "тишин"), "disk_full": ("disk", "диск")}
        if f.kind in words:  # when the agent's health report said so, and when it stopped saying so
            st = stations[0]
            flagged = [t for t, text in st.problems if t >= f.at_s and any(w in text.lower() for w in words[f.kind])]
            if flagged:
                f.detected_s = flagged[0] - f.at_s
                clear = [t for t, text in st.problems if t > flagged[0] and t >= end
                         and not any(w in text.lower() for w in words[f.kind])]
                if f.kind != "disk_full":  # a full disk stops the recording: its recovery is media flowing again
                    f.recovered_s = clear[0] - end if clear else None

    async def _health(self, st: Station, end: float) -> None:
        """The agent's health report every half second, as the observation room reads it."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while self.now() < end:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, ValueError):
                    async with http.get(f"http://127.0.0.1:{st.http_port}/api/health",
                                        headers={"Authorization": f"Bearer {st.token}"}) as r:
                        st.problems.append((self.now(), json.dumps((await r.json()).get("problems"),
                                                                   ensure_ascii=False)))
                await asyncio.sleep(0.5)

    async def _session(self, http: aiohttp.ClientSession, login: str) -> str:
        """Sign in through the login form (as a browser does); returns the CSRF token."""
        async with http.get(self.url + "/login") as r:
            page = await r.text()
        csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        async with http.post(self.url + "/login", data={"login": login, "password": PASSWORD, "csrf_token": csrf},
                             allow_redirects=False) as r:
            if r.status not in (302, 303):
                raise RuntimeError(f"login {login}: {r.status} {await r.text()}")
        async with http.get(self.url + "/api/me") as r:
            return (await r.json()).get("csrf_token", csrf)

    async def _viewer(self, st: Station, end: float) -> None:
        """An observer watching the station's live camera over the WebSocket; reconnects when cut."""
        while self.now() < end:
            try:
                async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                    await self._session(http, "observer")
                    async with http.ws_connect(f"{self.url.replace('http', 'ws')}/api/live/{st.code}/cam0/ws",
                                               heartbeat=5) as ws:
                        async for msg in ws:
                            if msg.type == aiohttp.WSMsgType.BINARY:
                                st.live.append(self.now())
            except (aiohttp.ClientError, OSError, RuntimeError, IndexError, TimeoutError):
                pass
            await asyncio.sleep(0.5)

    async def _examiners(self, st: Station, end: float) -> None:
        """Two examiners on the station's tablet API: every item marked during performing, then finalised."""
        done_attempts: set[str] = set()
        seen: set[str] = set()
        while self.now() < end:
            try:
                await self._mark_current(st, done_attempts)
            except (aiohttp.ClientError, OSError, TimeoutError, KeyError, ValueError) as exc:
                # the agent may be down or restarting: the examiners try again
                text = f"{st.code} marking: {type(exc).__name__}: {exc}"[:300]
                if text not in seen:
                    seen.add(text)
                    self.log(text)
            await asyncio.sleep(1.0)

    async def _mark_current(self, st: Station, done_attempts: set[str]) -> None:
        base = f"http://127.0.0.1:{st.marking_port}"
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(
            f"http://127.0.0.1:{st.http_port}/api/status", headers={"Authorization": f"Bearer {st.token}"}
        ) as r:
            status = await r.json()
            if status.get("phase") != "performing":
                return
        # Examiners mark as the candidate goes: every item by 60 % of the performing time, in checklist order.
        share = min(1.0, (1.0 - float(status.get("remaining_s", 0.0)) / self.plan.performing_s) / 0.6)
        for examiner, pin in st.pins.items():
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=timeout) as http:
                async with http.post(base + "/api/login", json={"examiner": examiner, "pin": pin}) as r:
                    if r.status != 200:
                        return
                async with http.get(base + "/api/state") as r:
                    state = await r.json()
                attempt = state.get("attempt_id")
                if not attempt or f"{attempt}/{examiner}" in done_attempts:
                    continue
                cl = self.checklists[STEMS[st.index % 3]]
                rng = random.Random(f"{self.plan.seed}/{attempt}")  # both examiners decide the same
                items = cl.item_numbers
                due = items[:max(1, round(share * len(items)))]
                for item in items:
                    ev = {"event_id": event_id(f"{attempt}/{examiner}/{item}"),
                          "kind": "mark", "item": item, "done": rng.random() < 0.85}
                    if item in due and ev["event_id"] not in self.acked:
                        await self._post_event(http, base, ev, attempt, examiner)
                if len(due) < len(items):
                    continue
                fin = {"event_id": event_id(f"{attempt}/{examiner}/finalise"),
                       "kind": "finalise"}
                await self._post_event(http, base, fin, attempt, examiner)
                done_attempts.add(f"{attempt}/{examiner}")

    async def _post_event(self, http: aiohttp.ClientSession, base: str, ev: dict[str, Any], attempt: str,
                          examiner: str) -> None:
        async with http.post(base + "/api/events", json=ev) as r:
            if r.status >= 300:
                raise ValueError(f"{r.status} {await r.text()}")
            offset = (await r.json())["event"].get("recording_offset_s")
        self.acked[ev["event_id"]] = {**ev, "attempt_id": attempt, "examiner": examiner, "offset_s": offset,
                                      "made_at": time.time()}

    async def _drain(self, timeout: float = 180) -> None:
        """Until every station's upload queue and marks are empty."""
        deadline, quiet_since = time.monotonic() + timeout, None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while True:
                pending, states = 0, {}
                for st in self.stations:
                    try:
                        async with http.get(f"http://127.0.0.1:{st.http_port}/api/health",
                                            headers={"Authorization": f"Bearer {st.token}"}) as r:
                            health = await r.json()
                            up = states[st.code] = health["upload"]
                            pending += health["recording"] is not None  # its last fragments are still to come
                            pending += int(up["queue"]["length"])
                            pending += int(up["uploader"]["marks_pending"])
                    except (aiohttp.ClientError, OSError, TimeoutError, KeyError, ValueError):
                        pending += 1
                if pending:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > 5.0:  # empty for 5 s: nothing is on its way either
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stations still hold {pending} unsent items after {timeout} s: "
                                       + json.dumps(states, ensure_ascii=False, default=str)[:3000])
                await asyncio.sleep(1.0)

    # ------------------------------------------------------------------ checks

    def verify(self) -> dict[str, Any]:
        from review_server.db import Database
        from review_server.models import Attempt, Fragment, MarkEvent, Recording

        db = Database(f"sqlite:///{self.root}/server/osce.db")
        try:
            with db.transaction() as s:
                server_frags = {(r.key, f.track, f.seq): f.sha256 for r, f in
                                s.execute(select(Recording, Fragment).join(Fragment))}
                duplicates = s.scalar(select(func.count()).select_from(
                    select(MarkEvent.event_id).group_by(MarkEvent.event_id).having(func.count() > 1).subquery()))
                server_marks = set(s.scalars(select(MarkEvent.event_id)))
                spans: dict[str, float] = defaultdict(float)
                for att, frag in s.execute(select(Attempt.id, Fragment).join(Recording, Recording.attempt_id
                                                                               == Attempt.id).join(Fragment)):
                    if frag.track == "cam0" and frag.kind == "media" and frag.end_s is not None:
                        spans[att] += frag.end_s - (frag.start_s or 0.0)
        finally:
            db.dispose()
        local, lost_frags, lost_bytes, media_s, lost_list = 0, 0, 0, 0.0, []
        rtsp: dict[str, dict[str, Any]] = {}  # what the RTSP stations recorded: codec, sound, parts
        for st in self.stations:
            data_dir = st.disk_mount or st.folder / "data"
            for manifest in data_dir.rglob(MANIFEST_NAME):
                m = read_manifest(manifest.parent)
                key = m.header.get("recording_id")
                if st.index < self.plan.rtsp_stations:
                    seen = rtsp.setdefault(st.code, {"parts": 0, "codecs": set(), "audio": set(), "problems": []})
                    track = m.header["tracks"][0]
                    seen["parts"] += 1
                    seen["codecs"].add(track["video"]["codec"])
                    seen["audio"].add((track["audio"] or {}).get("source"))
                    seen["problems"] += [e["message"] for e in m.events if e["event"] != "source_damaged"]
                for frag in m.fragments:
                    local += 1
                    if server_frags.get((key, frag.track, frag.seq)) != frag.sha256:
                        lost_frags += 1
                        lost_bytes += frag.size
                        lost_list.append(f"{manifest.parent.relative_to(self.root)} {frag.track} {frag.seq}")
                    if frag.track == "cam0" and frag.kind == "media" and frag.end is not None:
                        media_s += frag.end - (frag.start or 0.0)
        lost_marks = sorted(set(self.acked) - server_marks)
        # A mark sits on the timeline where it was made, also on a station whose clock was stepped.
        reading = {a["attempt_id"]: dt.datetime.fromisoformat(a["reading_starts_at"]).timestamp()
                   for a in self.schedule}
        misplaced = {}
        for key, ev in self.acked.items():
            made_s = ev["made_at"] - reading[ev["attempt_id"]]
            if ev["offset_s"] is not None and abs(ev["offset_s"] - made_s) > MARK_OFFSET_TOLERANCE_S:
                misplaced[key] = {"offset_s": ev["offset_s"], "made_s": round(made_s, 3)}
        taken_up = {}  # a stepped station's agent takes the step up between attempts, and logs it
        for f in self.faults:
            if f.kind == "clock_step":
                st = self.stations[f.station]
                taken_up[st.code] = "the system clock was stepped by" in (st.folder / "agent.log").read_text(
                    encoding="utf-8", errors="replace")
        expected_s = self.plan.reading_s + self.plan.performing_s
        short, gaps_s = {}, 0.0
        for a in self.schedule:  # media on the server plus the gaps the station logged cover the attempt
            st = next(s for s in self.stations if s.code == a["station_id"])
            log_path = (st.disk_mount or st.folder / "data") / "recordings" / a["attempt_id"] / "attempt.jsonl"
            gaps = sum(json.loads(line)["seconds"] for line in log_path.read_text(encoding="utf-8").splitlines()
                       if '"gap"' in line) if log_path.exists() else 0.0
            gaps_s += gaps
            covered = spans.get(a["attempt_id"], 0.0) + gaps
            if abs(covered - expected_s) > 2.0:
                short[a["attempt_id"]] = {"media_s": round(spans.get(a["attempt_id"], 0.0), 1), "gaps_s": gaps}
        return {
            "stations": len(self.stations),
            "attempts": len(self.schedule),
            "media_hours": round(media_s / 3600, 3),
            "fragments_local": local,
            "fragments_lost": lost_frags,
            "bytes_lost": lost_bytes,
            "fragments_lost_list": lost_list[:20],
            "marks_acknowledged": len(self.acked),
            "marks_lost": len(lost_marks),
            "mark_duplicates": duplicates,
            "marks_misplaced": dict(list(misplaced.items())[:20]),
            "marks_misplaced_count": len(misplaced),
            "clock_steps_taken_up": taken_up,
            "attempts_off_duration": short,
            "gaps_logged_s": round(gaps_s, 1),
            "expected_attempt_s": expected_s,
            "faults": [f.__dict__ for f in self.faults],
            "rtsp_stations": {code: {**v, "codecs": sorted(v["codecs"]), "audio": sorted(map(str, v["audio"]))}
                              for code, v in rtsp.items()},
        }

    async def check_results(self) -> dict[str, Any]:
        """The protocol's figures against the scores of the marks the examiners made."""
        expected: dict[str, float] = {}
        by_attempt: dict[str, dict[int, bool]] = defaultdict(dict)
        for ev in self.acked.values():
            if ev["kind"] == "mark" and ev["examiner"] == "examiner1":
                by_attempt[ev["attempt_id"]][ev["item"]] = ev["done"]
        for a in self.schedule:
            if a["attempt_id"] in by_attempt:
                expected[a["attempt_id"]] = score(self.checklists[a["checklist"]], by_attempt[a["attempt_id"]]).percent
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await self._session(http, "archivist")
            day = self.start_at.date().isoformat()
            async with http.get(f"{self.url}/api/protocols", params={"day": day, "specialty": "nursing"}) as r:
                proto = await r.json()
                assert r.status == 200, proto
        got: dict[str, float] = {}
        not_final: list[str] = []
        for row in proto["rows"]:
            for cell in row["tasks"].values():
                if cell and cell["attempt_id"] in expected:
                    got[cell["attempt_id"]] = cell["percent"]
                    if not cell["final"]:
                        not_final.append(cell["attempt_id"])
        wrong = {a: (expected[a], got.get(a)) for a in expected if got.get(a) is None
                 or abs(got[a] - expected[a]) > 0.01}
        return {"attempts_scored": len(expected), "protocol_wrong": wrong, "protocol_not_final": not_final}

    def export_and_verify(self) -> dict[str, Any]:
        """An archivist's export of every attempt of the day, checked with `osce verify`."""
        from review_server.db import Database
        from review_server.models import ExportRequest, ExportRequestAttempt

        db = Database(f"sqlite:///{self.root}/server/osce.db")
        try:
            with db.transaction() as s:
                req = ExportRequest(number="ED-1", request_date=dt.date.today(), requester="Минздрав (simulation)",
                                    subject="every attempt of the simulated day", created_by="archivist")
                s.add(req)
                s.flush()
                for a in self.schedule:
                    s.add(ExportRequestAttempt(request_id=req.id, attempt_id=a["attempt_id"]))
                request_id = req.id
        finally:
            db.dispose()
        out = self.root / "export.zip"
        self.osce("server", "export", "--request", str(request_id), "--out", str(out), "--config", str(self.cfg))
        report = subprocess.run([*OSCE, "verify", str(out), "--config", str(self.cfg)], cwd=ROOT, capture_output=True,
                                text=True, timeout=300)
        return {"export_bytes": out.stat().st_size, "export_verified": report.returncode == 0,
                "verify_output": report.stdout[-400:] + report.stderr[-400:]}


def table(result: dict[str, Any]) -> str:
    """The README's table: one line per fault, then the totals."""
    lines = ["| fault | station | at (s) | lasted (s) | longest live outage (s) | warned after (s) "
             "| recovered after (s) |", "|---|---|---|---|---|---|---|"]
    for f in result["faults"]:
        def fmt(v: float | None) -> str:
            return "—" if v is None else f"{v:.1f}"
        who = "server" if f["station"] < 0 else f"st{f['station'] + 1}"
        kind = f"{f['kind']} ({f['step_s']:+.1f} s)" if f["kind"] == "clock_step" else f["kind"]
        lines.append(f"| {kind} | {who} | {f['at_s']:.0f} | {f['duration_s']:.0f} | {fmt(f['live_outage_s'])} "
                     f"| {fmt(f['detected_s'])} | {fmt(f['recovered_s'])} |")
    lines.append("")
    lines.append(f"stations {result['stations']}, attempts {result['attempts']}, media {result['media_hours']} h "
                 f"(cam0), fragments {result['fragments_local']}: lost {result['fragments_lost']} "
                 f"({result['bytes_lost']} B); marks {result['marks_acknowledged']}: lost {result['marks_lost']}, "
                 f"duplicates {result['mark_duplicates']}, "
                 f"misplaced on the timeline {result['marks_misplaced_count']}; "
                 "attempts off the phase time by more than allowed: "
                 f"{len(result['attempts_off_duration'])}")
    return "\n".join(lines)


async def simulate(root: Path, plan: Plan) -> dict[str, Any]:
    day = ExamDay(root, plan)
    day.setup()
    try:
        await day.run()
        result = day.verify()
        result.update(await day.check_results())
        result.update(day.export_and_verify())
        result["log"] = day.log_lines
        (root / "result.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
        return result
    finally:
        for st in day.stations:
            if st.proxy.server is not None:
                await st.proxy.cut()
        day.stop_all()


if __name__ == "__main__":  # python -m scripts.harness.examday ROOT
    r = asyncio.run(simulate(Path(sys.argv[1]), Plan()))
    print(table(r))
    print(json.dumps({k: v for k, v in r.items() if k != "log"}, indent=1, default=str))
    os._exit(0)
