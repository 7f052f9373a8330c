"""`osce demo`: the whole system on embedded defaults, on this one machine.

Prepares a folder (default ./demo-data, emptied first): a review server on SQLite with local media storage,
demo accounts (one random password for all, in <dir>/password), three stations with tokens, examiners
assigned to every station, the exam day's schedule (three candidates rotating through CPR, an intramuscular
injection and blood pressure) and one agent configuration per station (synthetic cameras and microphone; the
CPR room has a second camera from above and CPR analysis). The injection room films with a real RTSP camera when
GStreamer's RTSP server is installed (`--rtsp` insists, `--no-rtsp` declines): the stand-in of media/rtsp_server.py
sends an H.265 main stream, recorded by stream copy, its own A-law microphone, the station's sound, and an H.264
sub-stream that the observation room plays. Then it runs ``osce server run`` and three ``osce agent run`` as child
processes (logs in <dir>/*.log), prints the URLs and logins, and stops them all on Ctrl-C (agents first, so that
they close their recordings; then the server; the camera last).

The server and the agents are separate programs: this module only writes their configuration files and
starts them; it imports nothing of station_agent.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from checklists.loader import DATA_DIR
from media.rtsp_server import RtspServer, available, free_tcp_port

ROOT = Path(__file__).resolve().parent.parent
STATIONS = (  # code, name, checklist, candidate order offset
    ("st1", "Станция 1 — СЛР", "01_basic_cpr_adult"),
    ("st2", "Станция 2 — в/м инъекция", "02_im_injection_gluteal"),
    ("st3", "Станция 3 — измерение АД", "03_blood_pressure"),
)
CANDIDATES = ("2611001", "2611002", "2611003")
DEMO_ROOMS = {"st1": "101", "st2": "102", "st3": "103"}  # shown on the pictures with the centre (ident.py)
DEMO_CENTRE = ('centre_region = "77 г. Москва"\ncentre_code = "ППЭ 0001"\n'
               'centre_name = "Демо-центр аккредитации"\n')
RTSP_STATION = "st2"  # the room that films with an RTSP camera when the stand-in can run
CAMERA_LOGIN = ("operator", "demo-camera")  # the stand-in camera's login (a demo value, in the agent's password file)
ACCOUNTS = (("admin", "admin"), ("examiner1", "examiner"), ("examiner2", "examiner"), ("observer", "observer"),
            ("archivist", "archivist"))
STOP_WAIT_S = 15.0


@dataclass
class DemoSettings:
    folder: Path = Path("demo-data")
    host: str = "127.0.0.1"
    port: int = 8080
    agent_ports: tuple[int, int, int] = (8091, 8092, 8093)
    marking_ports: tuple[int, int, int] = (8101, 8102, 8103)
    start_in_s: float = 40.0  # the first attempts begin this long after the demo starts
    reading_s: int = 20
    performing_s: int = 90
    changeover_s: int = 20
    width: int = 640
    height: int = 360
    argon2_memory_kib: int = 65536
    # Extra synthetic-source parameters per station code for its first camera, e.g. {"st3": "freeze_after_s=6"}
    # (media/sources/synthetic.py faults): to show the grid's health warnings.
    camera_faults: dict[str, str] = field(default_factory=dict)
    rtsp: bool | None = None  # the injection room on a real RTSP camera; None: when GStreamer's server is installed


@dataclass
class AgentInfo:
    station: str
    name: str
    folder: Path
    http_url: str
    marking_url: str
    pins: dict[str, str] = field(default_factory=dict)  # examiner -> the tablet PIN the server issued for the day

    @property
    def journal(self) -> Path:
        return self.folder / "data" / "marks.db"


@dataclass
class Demo:
    settings: DemoSettings
    folder: Path
    password: str
    url: str
    agents: list[AgentInfo]
    day: list[dict[str, Any]]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    camera: RtspServer | None = None  # the RTSP room's camera (started before the agents, stopped after them)
    restarts: list[tuple[str, int]] = field(default_factory=list)  # (child, exit status) of each restart
    stopping: bool = False

    # -- running ---------------------------------------------------------------------------------
    def start(self, wait_s: float = 60.0) -> None:
        """Start the server (and the RTSP room's camera), wait until it answers, then the agents."""
        if self.camera is not None:
            self.camera.start()
        self._spawn("server", ["server", "run", "--config", str(self.folder / "server.toml")])
        deadline = time.monotonic() + wait_s
        while not self._healthy():
            if self.processes["server"].poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start; see {self.folder / 'server.log'}")
            time.sleep(0.2)
        for agent in self.agents:
            self._spawn(f"agent-{agent.station}", ["agent", "run", "--config", str(agent.folder / "agent.toml")])

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}  # a native crash shows its stack
        # A session of its own: Ctrl-C reaches only this process, which then stops the children in order.
        self.processes[name] = subprocess.Popen([sys.executable, "-m", "osce_cli", *args], cwd=ROOT, stdout=log,
                                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def supervise(self) -> str | None:
        """Restart an agent that has exited, as systemd does in a room (Restart=always): it resumes its attempt
        as a new part. Returns why the demo cannot go on (the server has exited), else None."""
        if self.stopping:
            return None
        server = self.processes.get("server")
        if server is not None and server.poll() is not None:
            return f"the server exited with {server.returncode}; see {self.folder / 'server.log'}"
        for agent in self.agents:
            name = f"agent-{agent.station}"
            p = self.processes.get(name)
            if p is not None and p.poll() is not None:
                self.restarts.append((name, p.returncode))
                print(f"osce demo: {name} exited with {p.returncode} (see {self.folder / (name + '.log')}); "
                      "restarting it", file=sys.stderr, flush=True)
                self._spawn(name, ["agent", "run", "--config", str(agent.folder / "agent.toml")])
        return None

    def supervise_in_background(self, every_s: float = 0.5) -> threading.Event:
        """`supervise` on a thread until the returned event is set (for callers without their own loop)."""
        done = threading.Event()

        def loop() -> None:
            while not done.wait(every_s):
                self.supervise()

        threading.Thread(target=loop, name="demo-supervisor", daemon=True).start()
        return done

    def stop(self) -> None:
        """SIGINT to the agents, then to the server; SIGKILL what is still running after STOP_WAIT_S."""
        self.stopping = True
        agents = [name for name in self.processes if name != "server"]
        for group in (agents, [n for n in self.processes if n == "server"]):
            for name in group:
                if self.processes[name].poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        self.processes[name].send_signal(signal.SIGINT)
            deadline = time.monotonic() + STOP_WAIT_S
            for name in group:
                p = self.processes[name]
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        if self.camera is not None:
            self.camera.stop()

    def banner(self) -> str:
        s = self.settings
        marking = [f"{a.marking_url} ({a.name}): " + ", ".join(f"{login} PIN {pin}" for login, pin in a.pins.items())
                   for a in self.agents]
        clocks = ", ".join(a.http_url for a in self.agents)
        first = self.day[0]["reading_starts_at"] if self.day else "?"
        return "\n".join([
            "",
            f"OSCE demo is running (files and logs in {self.folder}).",
            f"Password for every account below: {self.password}   (also in {self.folder / 'password'})",
            f"  observation room (live grid, marking):  {self.url}/live   login examiner1, examiner2, observer",
            f"  review server:                          {self.url}/       admin, archivist (search, export)",
            f"  marking pages (tablets, PINs issued by the server for today, also in {self.folder / 'tablet-pins'}):",
            *(f"      {line}" for line in marking),
            f"  room clock pages:                       {clocks}",
            f"The first attempts start at {first} (in about {s.start_in_s:.0f} s); each attempt: reading "
            f"{s.reading_s} s, performing {s.performing_s} s. Recordings upload to the server as they are made.",
            *([f"  {RTSP_STATION} films with a real RTSP camera (GStreamer's server as the stand-in, "
               f"{self.camera.url(RTSP_STATION + '-main')}): H.265 recorded by copy, its own microphone as the "
               "room's sound, its H.264 sub-stream in the observation room."] if self.camera is not None else []),
            "Ctrl-C stops everything.",
        ])


# -- preparing ---------------------------------------------------------------------------------------
def schedule(start: dt.datetime, s: DemoSettings) -> list[dict[str, Any]]:
    """Each candidate does each station's task once, all stations in step."""
    out = []
    slot_s = s.reading_s + s.performing_s + s.changeover_s
    for slot in range(len(CANDIDATES)):
        for i, (code, _name, checklist) in enumerate(STATIONS):
            out.append({"attempt_id": f"demo-{code}-{slot + 1}", "candidate": CANDIDATES[(i + slot) % len(CANDIDATES)],
                        "station_id": code, "checklist": checklist,
                        "reading_starts_at": (start + dt.timedelta(seconds=slot * slot_s)).isoformat(),
                        "reading_s": s.reading_s, "performing_s": s.performing_s})
    return out


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _agent_toml(n: int, code: str, name: str, checklist: str, folder: Path, s: DemoSettings, url: str,
                camera: RtspServer | None = None) -> str:
    fault = f",{s.camera_faults[code]}" if code in s.camera_faults else ""
    cameras = [f"synthetic:skew_ppm=40,jitter_ms=3,label={code}{fault}"]
    microphone = f"synthetic:skew_ppm=200,jitter_ms=3,seed={n}"
    camera_keys = ""
    if camera is not None:  # a ceiling IP camera: its login from a file, its sub-stream for the live view
        (folder / "camera-password").write_text(CAMERA_LOGIN[1] + "\n", encoding="utf-8")
        (folder / "camera-password").chmod(0o600)
        cameras, microphone = [camera.url(f"{code}-main")], "camera:0"
        camera_keys = (f'user = {_toml_str(CAMERA_LOGIN[0])}\npassword_file = {_toml_str(folder / "camera-password")}'
                       f'\nsub_stream = {_toml_str(camera.url(f"{code}-sub"))}\n')
    cpr = ""
    if checklist == "01_basic_cpr_adult":
        # The CPR room: a second camera from above over a manikin's chest pushed at 110/min in cycles of 30 with
        # short pauses, which the CPR analysis reads, live and after the attempt. Sensor noise (sigma 2 grey levels)
        # as a real camera has: health tells a still scene from a frozen picture by it.
        cameras.append(f"synthetic:skew_ppm=-30,jitter_ms=3,seed=9,label={code} top,cpr_rate=110,cpr_pause_s=2.5,"
                       "noise=2")
        cpr = "\n[cpr]\nanalysis = true\nlive = true\ncamera = 1\n"
    cams = "".join(f"[[cameras]]\nsource = {_toml_str(c)}\n{camera_keys if i == 0 else ''}\n"
                   for i, c in enumerate(cameras))
    return f"""[station]
id = {_toml_str(code)}
name = {_toml_str(name)}

[server]
url = {_toml_str(url)}
token_file = {_toml_str(folder / "token")}

{cams}[microphone]
source = {_toml_str(microphone)}

[video]
width = {s.width}
height = {s.height}

[storage]
data_dir = {_toml_str(folder / "data")}
reserve_mb = 200

[exam]
checklist = {_toml_str(DATA_DIR / (checklist + ".yaml"))}
marking = true
marking_port = {s.marking_ports[n - 1]}

[http]
host = "127.0.0.1"
port = {s.agent_ports[n - 1]}
{cpr}"""


def prepare(s: DemoSettings) -> Demo:
    """Write everything the demo runs on into an emptied folder; return how to reach it."""
    from . import audit, auth
    from .config import load_config
    from .day_import import import_day
    from .db import Database
    from .models import ExamDay, ExaminerAssignment, Station, User
    from .tablet_credentials import issue_for_assigned

    folder = s.folder.resolve()
    camera = _rtsp_camera(s)
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "server").mkdir(parents=True)
    url = f"http://{s.host}:{s.port}"
    database_url = "sqlite:///" + str(folder / "server" / "osce.db")
    (folder / "server.toml").write_text(f"""database_url = {_toml_str(database_url)}
media_dir = {_toml_str(folder / "server" / "media")}
host = {_toml_str(s.host)}
port = {s.port}
insecure_cookies = true   # plain http on localhost only
schedule_file = {_toml_str(folder / "day.json")}
argon2_memory_kib = {s.argon2_memory_kib}
{DEMO_CENTRE}""", encoding="utf-8")
    cfg = load_config(folder / "server.toml")
    auth.configure_passwords(cfg.argon2_time_cost, cfg.argon2_memory_kib, cfg.argon2_parallelism)
    logging.disable(logging.INFO)  # alembic would print its plugins and every migration step
    try:
        from .migrations import upgrade

        upgrade(cfg.database_url, "head")
    finally:
        logging.disable(logging.NOTSET)

    password = "demo-" + secrets.token_hex(6)
    (folder / "password").write_text(password + "\n", encoding="utf-8")
    (folder / "password").chmod(0o600)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=s.start_in_s)
    day = schedule(start, s)
    (folder / "day.json").write_text(json.dumps({"attempts": day}, ensure_ascii=False, indent=1), encoding="utf-8")

    db = Database(cfg.database_url)
    agents = []
    try:
        with db.transaction() as session:
            for login, role in ACCOUNTS:
                auth.add_user(session, login, password, role, "")
                audit.append(session, "demo", audit.USER_ADD, login, {"role": role})
            examiners = session.scalars(select(User).where(User.role == "examiner")).all()
            for n, (code, name, checklist) in enumerate(STATIONS, start=1):
                station = Station(code=code, name=name, room=DEMO_ROOMS[code])
                session.add(station)
                session.flush()
                token, row = auth.issue_station_token(session, station)
                audit.append(session, "demo", audit.STATION_ADD, code)
                audit.append(session, "demo", audit.STATION_TOKEN_ISSUE, code, {"token_id": row.id})
                for user in examiners:
                    session.add(ExaminerAssignment(user_id=user.id, station_id=station.id, exam_day_id=None))
                agent_dir = folder / f"agent-{code}"
                agent_dir.mkdir()
                (agent_dir / "token").write_text(token + "\n", encoding="utf-8")
                (agent_dir / "token").chmod(0o600)
                (agent_dir / "agent.toml").write_text(
                    _agent_toml(n, code, name, checklist, agent_dir, s, url,
                                camera if code == RTSP_STATION else None), encoding="utf-8")
                agents.append(AgentInfo(code, name, agent_dir, f"http://127.0.0.1:{s.agent_ports[n - 1]}/",
                                        f"http://127.0.0.1:{s.marking_ports[n - 1]}/"))
            # the day, its candidates, tasks and checklist versions: the protocol and scores see the attempts
            report = import_day(session, {"attempts": day}, "nursing", "Сестринское дело", "Демонстрационный день",
                                "demo", timezone=cfg.timezone)
            # The commission's tablet PINs for the day, as `osce server tablet issue` gives them to an admin.
            exam_day = session.get(ExamDay, report.exam_day_id)
            for agent in agents:
                agent.pins = {login: pin for login, pin, _ in
                              issue_for_assigned(session, cfg, agent.station, exam_day.day, "demo")}
    finally:
        db.dispose()
    pins = folder / "tablet-pins"
    pins.touch(mode=0o600)  # the PINs are never readable by others, not even for a moment
    pins.write_text("".join(f"{a.station} {login} {pin}\n" for a in agents for login, pin in a.pins.items()),
                    encoding="utf-8")
    return Demo(s, folder, password, url, agents, day, camera=camera)


def _rtsp_camera(s: DemoSettings) -> RtspServer | None:
    """The injection room's camera (not started yet), or None when the demo runs without one."""
    reason = available() if s.rtsp is not False else "not asked for"
    if reason is not None:
        if s.rtsp:
            raise RuntimeError(f"osce demo --rtsp: {reason}")
        return None
    main = {"video": "h265", "audio": "alaw", "sound": "ticks", "width": s.width, "height": s.height,
            "key_int": 25, "bitrate_kbps": 1200}
    sub = {"width": 320, "height": 180, "key_int": 25, "bitrate_kbps": 300}
    mounts: dict[str, dict[str, Any]] = {f"{RTSP_STATION}-main": main, f"{RTSP_STATION}-sub": sub}
    # A fixed port: its URL is written into the agent's configuration now, so a start retry must not move it.
    return RtspServer(mounts, port=free_tcp_port(), user=CAMERA_LOGIN[0], password=CAMERA_LOGIN[1])


def register(sub: Any) -> None:
    """`osce demo [--dir D] [--port P] [--start-in S] ...` (see osce_cli.py)."""
    d = DemoSettings()
    p = sub.add_parser("demo", help="run the review server and three station agents on this machine (the demo)")
    p.add_argument("--dir", type=Path, default=d.folder, help=f"working folder, emptied first (default {d.folder})")
    p.add_argument("--port", type=int, default=d.port, help=f"the review server's port (default {d.port})")
    p.add_argument("--agent-ports", type=_three, default=d.agent_ports, metavar="P1,P2,P3",
                   help="the agents' HTTP ports (default 8091,8092,8093)")
    p.add_argument("--marking-ports", type=_three, default=d.marking_ports, metavar="P1,P2,P3",
                   help="the tablet marking pages' ports (default 8101,8102,8103)")
    p.add_argument("--start-in", type=float, default=d.start_in_s, help="seconds until the first attempts begin")
    p.add_argument("--reading", type=int, default=d.reading_s, help="reading phase, seconds")
    p.add_argument("--performing", type=int, default=d.performing_s, help="performing phase, seconds")
    p.add_argument("--changeover", type=int, default=d.changeover_s, help="between attempts, seconds")
    p.add_argument("--rtsp", action=argparse.BooleanOptionalAction, default=None,
                   help=f"{RTSP_STATION} on a real RTSP camera (GStreamer's RTSP server as the stand-in); default: "
                        "when it is installed")
    p.set_defaults(func=lambda a: run(DemoSettings(
        folder=a.dir, port=a.port, agent_ports=a.agent_ports, marking_ports=a.marking_ports, start_in_s=a.start_in,
        reading_s=a.reading, performing_s=a.performing, changeover_s=a.changeover, rtsp=a.rtsp)))


def _three(text: str) -> tuple[int, int, int]:
    import argparse

    try:
        a, b, c = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"three ports separated by commas, not {text!r}") from None
    return a, b, c


def run(s: DemoSettings) -> int:
    """`osce demo`: prepare, start, print the URLs and logins, and run until Ctrl-C (or a child dies)."""
    demo = prepare(s)
    stopping = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        demo.start()
        print(demo.banner(), flush=True)
        while not stopping:
            if (why := demo.supervise()) is not None:
                print(f"osce demo: {why}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        print("osce demo: stopping…", flush=True)
        return 0
    finally:
        demo.stop()
