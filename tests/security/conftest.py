"""The security pass: a real `osce server run` process on a free port, attacked over real sockets.

One server for the whole session (SQLite, a temporary folder, cheap Argon2 for speed). The database is seeded
before the server starts: one user per role, stations S1 and S2 with tokens, the examiner assigned to S1 only
(examiner2 to S2). Station marks are signed by their examiner's tablet key, as an agent's are
(tests/mark_signing.py: the credentials are issued by the server's own code).
Then S1 and S2 each upload a real fMP4 recording and send marks for their own attempt through the API, so that
the attacks have something real to aim at. A test that changes shared state (revoking a token, say) makes its
own station.

Each test module with a CATEGORY counts each of its test cases as one attack; the terminal summary prints
"security pass: N attacks tried, M held" and the counts per category. An xfail is an attack that got through:
tried, not held.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from scripts.harness.ports import free_port as _free_port
from tests.mark_signing import Signer

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
ROLES = ("admin", "examiner", "observer", "archivist")
IDLE_TIMEOUT_S = 3  # the server's idle_timeout_s: slow (slowloris) connections are dropped after this
BODY_TIMEOUT_S = 2  # the server's body_timeout_s: a body not received whole within this is answered 408
MAX_JSON = 64 * 1024
MAX_FRAGMENT = 2 * 1024 * 1024
MAX_MARK_BATCH = 200
CHECKLIST_HASH = "c" * 64


# --- raw HTTP -------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        try:
            return str(self.json().get("error", ""))
        except (ValueError, AttributeError):
            return ""

    def cookies(self) -> dict[str, str]:
        out = {}
        for header in self.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            out[name.strip()] = rest.split(";", 1)[0].strip('"')
        return out


@dataclass
class Stand:
    """The running server and what was seeded into it."""

    host: str
    port: int
    dir: Path
    db_url: str
    media_dir: Path
    proc: subprocess.Popen[bytes]
    tokens: dict[str, str] = field(default_factory=dict)  # station code -> bearer token
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)  # role -> (cookie, csrf)
    recordings: dict[str, dict[str, Any]] = field(default_factory=dict)  # station -> {key, attempt, fragments}
    signer: Signer | None = None

    # -- requests --

    def request(self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes | None = None,
                timeout: float = 15.0, source: str | None = None) -> Reply:
        """One request on a fresh connection, the target sent byte for byte (no normalisation). `source`: the
        client's own address (any 127.x.y.z: distinct clients as the server sees them)."""
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: close"]
        headers = dict(headers or {})
        if body is not None and "Content-Length" not in headers and "Transfer-Encoding" not in headers:
            headers["Content-Length"] = str(len(body))
        head += [f"{k}: {v}" for k, v in headers.items()]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + (body or b"")
        bind = (source, 0) if source else None
        with socket.create_connection((self.host, self.port), timeout=timeout, source_address=bind) as sock:
            sock.sendall(raw)
            resp = http.client.HTTPResponse(sock, method=method)
            resp.begin()
            data = resp.read() if method != "HEAD" else b""
            return Reply(resp.status, resp.headers, data)

    def json_request(self, method: str, target: str, obj: Any, headers: dict[str, str] | None = None) -> Reply:
        body = json.dumps(obj).encode()
        return self.request(method, target, {"Content-Type": "application/json", **(headers or {})}, body)

    def user(self, role: str, *, csrf: bool = True) -> dict[str, str]:
        cookie, token = self.sessions[role]
        out = {"Cookie": f"osce_session={cookie}"}
        if csrf:
            out["X-CSRF-Token"] = token
        return out

    def station(self, code: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[code]}"}

    def login(self, login: str, password: str = PASSWORD, cookie: str = "", source: str | None = None,
              headers: dict[str, str] | None = None) -> Reply:
        """The JSON login, as a browser script does it: GET /login for the double-submit token, then POST."""
        form = self.request("GET", "/login", source=source)
        token = form.headers["X-CSRF-Token"]
        cookies = f"osce_login_csrf={token}" + (f"; {cookie}" if cookie else "")
        body = json.dumps({"login": login, "password": password}).encode()
        return self.request("POST", "/login", {"Content-Type": "application/json", "X-CSRF-Token": token,
                                               "Cookie": cookies, **(headers or {})}, body, source=source)

    def put_fragment(self, station: str, key: str, track: str, seq: int, data: bytes, attempt: str | None = None,
                     sha: str | None = None) -> Reply:
        query = f"?attempt_id={attempt}" if attempt else ""
        headers = {**self.station(station), "X-Content-SHA256": sha or hashlib.sha256(data).hexdigest()}
        return self.request("PUT", f"/api/recordings/{key}/tracks/{track}/fragments/{seq}{query}", headers, data)

    def post_marks(self, station: str, events: list[dict[str, Any]], sign: bool = True) -> Reply:
        """As the station's agent sends them: each event signed by its examiner's tablet key (tests/mark_signing.py),
        unless `sign` is False."""
        if sign:
            if self.signer is None:
                self.signer = Signer(self.db)
            events = self.signer.sign(station, events)
        return self.json_request("POST", "/api/marks", {"events": events}, self.station(station))

    # -- direct looks at the server's state (read-only, for assertions) --

    def db(self, fn: Any) -> Any:
        from review_server.db import Database

        database = Database(self.db_url)
        try:
            return database.run(fn)
        finally:
            database.dispose()

    def schedule(self, station: str, *attempts: str) -> None:
        """Put attempts on the exam day's schedule for `station`, as `osce server schedule import` does
        (review_server/day_import.py): a station sends marks and media only for its own scheduled attempts."""
        schedule_attempts(self.db_url, [(a, station) for a in attempts])

    def config(self) -> Path:
        return self.dir / "server.toml"

    def osce(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The real `osce` command (a separate process) with this server's configuration where it takes one."""
        return subprocess.run([sys.executable, "-m", "osce_cli", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)

    def media_files(self) -> set[Path]:
        return {p for p in self.media_dir.rglob("*") if p.is_file()}

    def alive(self) -> bool:
        return self.proc.poll() is None and self.request("GET", "/health", timeout=5).status == 200


# The stand's exam day is today (the centre's time zone): examiners' tablet credentials sign only on their day, and
# the station's roster lists today's credentials.
SCHEDULE_DAY = f"{dt.datetime.now(zoneinfo.ZoneInfo('Europe/Moscow')).date().isoformat()}T09:00:00+00:00"


def schedule_attempts(db_url: str, pairs: list[tuple[str, str]]) -> None:
    """(attempt, station) pairs onto one exam day through the schedule import's own code."""
    from review_server.day_import import import_day
    from review_server.db import Database

    entries = [{"attempt_id": a, "candidate": "26" + hashlib.sha256(a.encode()).hexdigest()[:6], "station_id": st,
                "checklist": "01_basic_cpr_adult", "reading_starts_at": SCHEDULE_DAY} for a, st in pairs]
    database = Database(db_url)
    try:
        database.run(lambda s: import_day(s, {"attempts": entries}, "nursing", "Сестринское дело", "security pass",
                                          "cli:security-pass"))
    finally:
        database.dispose()


def mark_event(attempt: str, station: str, item: int = 1, **extra: Any) -> dict[str, Any]:
    """A mark by the station's examiner (S2's: examiner2, who is assigned there; elsewhere: examiner)."""
    return {"event_id": str(uuid.uuid4()), "attempt_id": attempt, "station_id": station,
            "examiner": "examiner2" if station == "S2" else "examiner",
            "kind": "mark", "item": item, "done": True, "rating": None, "reason": None,
            "checklist_hash": CHECKLIST_HASH, "wall_time": "2026-06-01T09:30:00+00:00", "recording_offset_s": 1.0,
            "seq": item} | extra


def tus_metadata(**meta: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode('utf-8', 'surrogatepass')).decode()}" for k, v in meta.items())


# --- real fMP4 -------------------------------------------------------------------------------------


def encode_fmp4(seconds: float = 2.0, fps: int = 10, size: int = 64, shade: int = 0) -> list[bytes]:
    """[init, fragment 1, fragment 2, ...]: a real H.264 fMP4 made by PyAV and cut by media.fragments."""
    import av
    import numpy as np

    from media.fragments import BoxSplitter

    parts: list[bytes] = []
    sink = BoxSplitter(parts.append, parts.append)
    out = av.open(sink, "w", format="mp4", options={"movflags": "empty_moov+default_base_moof+frag_keyframe"})
    stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "g": str(fps)})
    stream.width = stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, fps)
    for i in range(int(seconds * fps)):
        img = np.full((size, size, 3), (shade + i * 9) % 255, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    assert sink.error is None and len(parts) >= 3 and parts[0][4:8] == b"ftyp"
    return parts


# --- the server process -----------------------------------------------------------------------------


def _seed(db_url: str) -> dict[str, str]:
    """Users, stations with tokens, the examiner's assignment; returns station code -> token."""
    from sqlalchemy import select

    from review_server import auth
    from review_server.db import Database
    from review_server.migrations import upgrade
    from review_server.models import ExaminerAssignment, Station, User

    upgrade(db_url)
    auth.configure_passwords(1, 8, 1)
    database = Database(db_url)

    def make(s):  # type: ignore[no-untyped-def]
        for role in ROLES:
            auth.add_user(s, role, PASSWORD, role)
        auth.add_user(s, "examiner2", PASSWORD, "examiner")
        tokens = {}
        for code in ("S1", "S2"):
            st = Station(code=code, name=code)
            s.add(st)
            s.flush()
            tokens[code] = auth.issue_station_token(s, st)[0]
        for login, code in (("examiner", "S1"), ("examiner2", "S2")):
            uid = s.scalar(select(User.id).where(User.login == login))
            sid = s.scalar(select(Station.id).where(Station.code == code))
            s.add(ExaminerAssignment(user_id=uid, station_id=sid, exam_day_id=None))
        return tokens

    try:
        tokens = database.run(make)
    finally:
        database.dispose()
    schedule_attempts(db_url, [("att-s1", "S1"), ("att-s2", "S2")])
    return tokens


def server_config(db_url: str, media: Path, extra: str = "") -> str:
    """The security pass's server.toml: small limits, short timeouts, cheap Argon2 (TEST-ONLY cost); a key in
    `extra` replaces the default line for it."""
    lines = [
        f'database_url = "{db_url}"', f'media_dir = "{media}"', "insecure_cookies = true",
        f"max_json_bytes = {MAX_JSON}", f"max_fragment_bytes = {MAX_FRAGMENT}", f"max_mark_batch = {MAX_MARK_BATCH}",
        f"idle_timeout_s = {IDLE_TIMEOUT_S}", f"body_timeout_s = {BODY_TIMEOUT_S}",
        "argon2_time_cost = 1", "argon2_memory_kib = 8", "argon2_parallelism = 1",
    ]
    given = {line.split("=", 1)[0].strip() for line in extra.splitlines() if "=" in line}
    return "\n".join(line for line in lines if line.split("=", 1)[0].strip() not in given) + "\n" + extra


def start_server(folder: Path, db_url: str, extra_config: str = "", tokens: dict[str, str] | None = None) -> Stand:
    """`osce server run` on a free port with server_config(extra_config), once /health answers. The database
    must be migrated and seeded already. Stop it with stop_server."""
    media = folder / "media"
    config = folder / "server.toml"
    config.write_text(server_config(db_url, media, extra_config), encoding="utf-8")
    port = _free_port()
    log = (folder / "server.log").open("ab")
    cmd = [sys.executable, "-m", "osce_cli", "server", "run", "--host", "127.0.0.1", "--port", str(port),
           "--config", str(config)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    log.close()
    server = Stand("127.0.0.1", port, folder, db_url, media, proc, tokens=dict(tokens or {}))
    deadline = time.monotonic() + 30
    while True:
        try:
            if server.request("GET", "/health", timeout=2).status == 200:
                return server
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            raise AssertionError("the server did not answer within 30 s: "
                                 + (folder / "server.log").read_text(errors="replace")[-3000:])
        time.sleep(0.1)


def stop_server(server: Stand) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def stand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    folder = tmp_path_factory.mktemp("security-server")
    db_url = f"sqlite:///{folder / 'osce.db'}"
    tokens = _seed(db_url)
    server = start_server(folder, db_url, "login_max_failures_per_ip = 100000\n", tokens)
    try:
        for role in (*ROLES, "examiner2"):
            reply = server.login(role)
            assert reply.status == 200, reply.body
            server.sessions[role] = (reply.cookies()["osce_session"], reply.json()["csrf_token"])
        for shade, (code, key, attempt) in enumerate((("S1", "rec-s1", "att-s1"), ("S2", "rec-s2", "att-s2"))):
            parts = encode_fmp4(shade=100 * shade + 7)  # each station's own pictures, so its own hashes
            for seq, data in enumerate(parts):
                assert server.put_fragment(code, key, "cam0", seq, data, attempt).status == 201
            events = [mark_event(attempt, code, item) for item in (1, 2, 3)]
            assert server.post_marks(code, events).status == 200
            hashes = [hashlib.sha256(p).hexdigest() for p in parts]
            server.recordings[code] = {"key": key, "attempt": attempt, "hashes": hashes, "parts": parts,
                                       "events": [e["event_id"] for e in events]}
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def fmp4() -> list[bytes]:
    return encode_fmp4()


@pytest.fixture
def new_station(stand: Stand) -> Any:
    """Make a fresh station through the admin API (for tests that change it); returns (code, token, token_id)."""
    counter = iter(range(1, 10_000))

    def make() -> tuple[str, str, int]:
        code = f"X{uuid.uuid4().hex[:8]}{next(counter)}"
        admin = stand.user("admin")
        assert stand.json_request("POST", "/api/stations", {"code": code}, admin).status == 201
        issued = stand.request("POST", f"/api/stations/{code}/tokens", admin)
        assert issued.status == 201, issued.body
        data = issued.json()
        stand.tokens[code] = data["token"]
        return code, data["token"], data["token_id"]

    return make


def export_package(stand: Stand, attempts: list[str], out: Path) -> Path:
    """An archivist's export of `attempts` through the API (request, selection, export, download) into `out`."""
    arch = stand.user("archivist")
    req = stand.json_request("POST", "/api/export-requests",
                             {"number": f"SEC-{uuid.uuid4().hex[:6]}", "date": "2026-07-01", "requester": "суд"}, arch)
    assert req.status == 201, req.body
    rid = req.json()["id"]
    sel = stand.json_request("POST", f"/api/export-requests/{rid}/attempts", {"attempt_ids": attempts}, arch)
    assert sel.status == 200, sel.body
    made = stand.request("POST", f"/api/export-requests/{rid}/exports", arch)
    assert made.status == 201, made.body
    got = stand.request("GET", made.json()["url"], stand.user("archivist", csrf=False))
    assert got.status == 200
    out.write_bytes(got.body)
    return out


@dataclass
class Package:
    """A genuine export package of the stand, and the centre's key as GET /api/export-key publishes it."""

    zip: Path
    centre_pem: Path


@pytest.fixture(scope="session")
def package(stand: Stand, tmp_path_factory: pytest.TempPathFactory) -> Package:
    folder = tmp_path_factory.mktemp("package")
    key = stand.request("GET", "/api/export-key")
    assert key.status == 200
    (folder / "centre.pem").write_bytes(key.body)
    return Package(export_package(stand, ["att-s1"], folder / "genuine.zip"), folder / "centre.pem")


@dataclass
class Measured:
    returncode: int
    stdout: str
    stderr: str
    max_rss_mb: float
    cpu_s: float
    timed_out: bool


def run_measured(args: list[str], *, memory_mb: int = 1024, timeout: float = 60) -> Measured:
    """Run `osce ARGS` as its own process with its address space capped at `memory_mb` (so that a parser that
    would eat the machine fails inside its cap instead), killed after `timeout`; its own peak memory and CPU."""
    import resource
    import tempfile
    import threading

    limit = memory_mb * 1024 * 1024

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "osce_cli", *args], cwd=ROOT, stdout=out, stderr=err,
                                preexec_fn=cap)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timed_out = not timer.is_alive()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                        usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, timed_out)


def fmp4_bytes(parts: list[bytes]) -> bytes:
    buf = io.BytesIO()
    for p in parts:
        buf.write(p)
    return buf.getvalue()


# --- counting attacks ----------------------------------------------------------------------------------

_CATEGORY = pytest.StashKey[dict[str, str]]()
_OUTCOME = pytest.StashKey[dict[str, bool]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    categories = config.stash.setdefault(_CATEGORY, {})
    for item in items:
        module = getattr(item, "module", None)
        category = getattr(module, "CATEGORY", None)
        if category:
            categories[item.nodeid] = category


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _config
    if config is None or report.nodeid not in config.stash.get(_CATEGORY, {}):
        return
    outcomes = config.stash.setdefault(_OUTCOME, {})
    if report.failed or (report.skipped and hasattr(report, "wasxfail")):
        outcomes[report.nodeid] = False
    elif report.when == "call" and report.passed and outcomes.get(report.nodeid, True):
        outcomes[report.nodeid] = not hasattr(report, "wasxfail")  # an xpass (non-strict) held


_config: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    categories = config.stash.get(_CATEGORY, {})
    outcomes = config.stash.get(_OUTCOME, {})
    if not outcomes:
        return
    per: dict[str, list[int]] = {}
    for nodeid, held in outcomes.items():
        counts = per.setdefault(categories[nodeid], [0, 0])
        counts[0] += 1
        counts[1] += int(held)
    tried, held = sum(c[0] for c in per.values()), sum(c[1] for c in per.values())
    terminalreporter.section("security pass")
    terminalreporter.write_line(f"security pass: {tried} attacks tried, {held} held")
    for category, (t, h) in sorted(per.items()):
        terminalreporter.write_line(f"  {category}: {t} tried, {h} held")
