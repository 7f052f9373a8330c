"""Oversized and slow requests against the real server's sockets: bodies over the limits (declared and chunked),
huge headers, request lines and cookies, huge mark batches, contradictory framing (request smuggling), and
slowloris (many connections sending their headers a byte at a time), which must be dropped after the
configured idle_timeout_s while a normal request is still answered promptly."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time

import pytest

from .conftest import BODY_TIMEOUT_S, IDLE_TIMEOUT_S, MAX_FRAGMENT, MAX_JSON, MAX_MARK_BATCH, Stand, mark_event

CATEGORY = "oversized and slow requests"


def _status(raw: bytes) -> int:
    return int(raw.split(b"\r\n", 1)[0].split()[1]) if raw.startswith(b"HTTP/1.") else 0


def _raw(stand: Stand, data: bytes, timeout: float = 10.0, then_send: bytes = b"") -> bytes:
    """Send bytes as they are and read the answer until the server closes (or the timeout)."""
    with socket.create_connection((stand.host, stand.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if then_send:
                sock.sendall(then_send)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused and closed before taking everything: what we want
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return out


def _answer(stand: Stand, head: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send only a request head; return the first whole answer (head and body) and how long it took."""
    start = time.monotonic()
    with socket.create_connection((stand.host, stand.port), timeout=timeout) as sock:
        sock.sendall(head)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        length = next((int(line.split(b":")[1]) for line in out.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(out.split(b"\r\n\r\n", 1)[-1]) < length:
            out += sock.recv(65536)
        return out, time.monotonic() - start


BODY_ROUTES = [
    ("POST", "/api/specialties", "admin"),
    ("POST", "/api/marks", "S1"),
    ("POST", "/login", None),
    ("POST", "/api/users", "admin"),
    ("POST", "/api/checklist-versions", "admin"),
]


def _auth(stand: Stand, who: str | None) -> dict[str, str]:
    if who is None:
        return {}
    return stand.station(who) if who.startswith("S") else stand.user(who)


@pytest.mark.parametrize(("method", "path", "who"), BODY_ROUTES)
def test_declared_body_over_the_limit_is_413_before_it_is_read(stand: Stand, method: str, path: str,
                                                               who: str | None) -> None:
    headers = {**_auth(stand, who), "Content-Type": "application/json", "Content-Length": str(100 * MAX_JSON)}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    # Only the head is sent: the answer must come without the server waiting for 6 MB.
    raw, took = _answer(stand, f"{method} {path} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
    assert _status(raw) == 413 and b'"where": "body"' in raw, raw[:300]
    assert took < 2


@pytest.mark.parametrize(("method", "path", "who"), BODY_ROUTES)
def test_chunked_body_over_the_limit_is_413(stand: Stand, method: str, path: str, who: str | None) -> None:
    headers = {**_auth(stand, who), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    piece = b'{"a": "' + b"x" * 8000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(MAX_JSON // 8000 + 4)) + b"0\r\n\r\n"
    raw = _raw(stand, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n".encode(),
               then_send=chunks)
    assert _status(raw) in (400, 403, 413), raw[:300]  # 413, or the CSRF/login check refusing first
    assert stand.alive()


def test_fragment_over_the_limit_is_413_before_it_is_read(stand: Stand) -> None:
    head = (f"PUT /api/recordings/rec-big/tracks/cam0/fragments/1 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {stand.tokens['S1']}\r\nX-Content-SHA256: {'0' * 64}\r\n"
            f"Content-Length: {MAX_FRAGMENT + 1}\r\n\r\n")
    raw, took = _answer(stand, head.encode())
    assert _status(raw) == 413 and took < 2, raw[:300]


def test_tus_upload_over_the_limit_and_a_patch_past_its_length(stand: Stand) -> None:
    from .conftest import tus_metadata

    tus = {**stand.station("S1"), "Tus-Resumable": "1.0.0"}
    meta = tus_metadata(sha256="a" * 64, recording="rec-big", track="cam0", seq="1", kind="media")
    big = stand.request("POST", "/api/tus", {**tus, "Upload-Length": str(MAX_FRAGMENT + 1), "Upload-Metadata": meta})
    assert big.status == 413
    huge = stand.request("POST", "/api/tus", {**tus, "Upload-Length": "9" * 40, "Upload-Metadata": meta})
    assert huge.status in (400, 413)
    made = stand.request("POST", "/api/tus", {**tus, "Upload-Length": "10", "Upload-Metadata": meta})
    assert made.status == 201
    over = stand.request("PATCH", made.headers["Location"], {**tus, "Upload-Offset": "0",
                                                             "Content-Type": "application/offset+octet-stream"},
                         b"x" * 11)
    assert over.status == 400
    head = stand.request("HEAD", made.headers["Location"], tus)
    assert head.headers["Upload-Offset"] == "0"


@pytest.mark.parametrize("size", [MAX_MARK_BATCH + 1, 20 * MAX_MARK_BATCH])
def test_huge_json_arrays_of_marks_are_413(stand: Stand, size: int) -> None:
    if size * 400 < MAX_JSON:
        events = [mark_event("att-big", "S1", 1 + i % 50) for i in range(size)]
    else:  # many tiny elements, under the byte limit but over the batch limit
        events = [0] * min(size, MAX_JSON // 3)  # type: ignore[list-item]
    body = json.dumps({"events": events}).encode()
    reply = stand.request("POST", "/api/marks", {**stand.station("S1"), "Content-Type": "application/json"}, body)
    assert reply.status == 413, (reply.status, reply.body[:200])
    marks = stand.request("GET", "/api/attempts/att-big/marks", stand.user("archivist"))
    assert marks.status == 404  # nothing of the batch was stored (the attempt was never created)


def test_deeply_nested_json_is_400_not_a_crash(stand: Stand) -> None:
    body = b'{"events": ' + b"[" * (MAX_JSON - 20) + b"}"
    reply = stand.request("POST", "/api/marks", {**stand.station("S1"), "Content-Type": "application/json"}, body)
    assert reply.status == 400
    assert stand.alive()


HEADER_ATTACKS = {
    "one 64 KiB header": lambda: f"X-Big: {'a' * 65536}\r\n",
    "10 000 small headers": lambda: "".join(f"X-H{i}: v\r\n" for i in range(10_000)),
    "64 KiB cookie": lambda: f"Cookie: osce_session={'a' * 65536}\r\n",
    "64 KiB authorization": lambda: f"Authorization: Bearer osce_st_{'a' * 65536}\r\n",
    "64 KiB tus metadata": lambda: f"Upload-Metadata: filename {'QUFB' * 16384}\r\n",
}


@pytest.mark.parametrize("kind", sorted(HEADER_ATTACKS))
def test_huge_headers_are_refused_and_the_server_lives(stand: Stand, kind: str) -> None:
    raw = _raw(stand, f"GET /api/me HTTP/1.1\r\nHost: x\r\n{HEADER_ATTACKS[kind]()}Connection: close\r\n\r\n".encode())
    assert _status(raw) in (400, 413, 431) or raw == b"", raw[:200]
    assert stand.alive()


def test_a_huge_request_line_is_refused(stand: Stand) -> None:
    raw = _raw(stand, f"GET /api/recordings/{'a' * 100_000} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert _status(raw) in (400, 414) or raw == b"", raw[:200]
    assert stand.alive()


SMUGGLING = {
    "two content-lengths": "Content-Length: 4\r\nContent-Length: 40\r\n",
    "content-length and chunked": "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
    "obfuscated transfer-encoding": "Transfer-Encoding: xchunked\r\n",
    "negative content-length": "Content-Length: -1\r\n",
    "content-length with a sign": "Content-Length: +4\r\n",
    "content-length not a number": "Content-Length: 4x\r\n",
    "space before the colon": "Content-Length : 4\r\n",
    "bare LF line endings": None,
}


@pytest.mark.parametrize("kind", sorted(SMUGGLING))
def test_contradictory_framing_is_refused(stand: Stand, kind: str) -> None:
    """Request smuggling: framing two parsers could read differently is a 400, and the tail never runs as a
    second request on the connection."""
    tail = b"GET /api/users HTTP/1.1\r\nHost: x\r\n\r\n"
    if SMUGGLING[kind] is None:
        data = b"POST /api/marks HTTP/1.1\nHost: x\nContent-Length: 4\n\n{}  " + tail
    else:
        data = (f"POST /api/marks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"{SMUGGLING[kind]}\r\n").encode() + b"0\r\n\r\n" + tail
    raw = _raw(stand, data, timeout=5)
    statuses = [int(line.split()[1]) for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.")]
    assert statuses and statuses[0] in (400, 401, 501), raw[:300]
    assert 200 not in statuses and 403 not in statuses[1:], raw[:500]  # no second request reached /api/users


# --- slow requests ------------------------------------------------------------------------------------


def _closed_by_server(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return data == b"" or data.startswith(b"HTTP/1.1 4")


def test_slowloris_connections_are_dropped_and_others_are_still_served(stand: Stand) -> None:
    """300 connections trickle their headers one byte every 0.3 s and 50 send nothing at all. Meanwhile a
    normal request is answered promptly each time; after idle_timeout_s every slow one is gone."""
    slow = [socket.create_connection((stand.host, stand.port), timeout=5) for _ in range(300)]
    silent = [socket.create_connection((stand.host, stand.port), timeout=5) for _ in range(50)]
    stop = threading.Event()
    opened = time.monotonic()
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000

    def trickle() -> None:
        for i in range(len(head)):
            for sock in slow:
                with contextlib.suppress(OSError):  # dropped already
                    sock.send(head[i:i + 1])
            if stop.wait(0.3):
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        latencies = []
        while time.monotonic() - opened < IDLE_TIMEOUT_S - 0.5:
            start = time.monotonic()
            assert stand.request("GET", "/health", timeout=5).status == 200
            latencies.append(time.monotonic() - start)
            time.sleep(0.2)
        assert latencies and max(latencies) < 1.5, latencies  # a loaded 2-core CI box, not a benchmark
        deadline = opened + IDLE_TIMEOUT_S + 3
        dropped = [_closed_by_server(s, max(0.1, deadline - time.monotonic())) for s in slow + silent]
        elapsed = time.monotonic() - opened
        assert all(dropped), f"{dropped.count(False)} of {len(dropped)} still open after {elapsed:.1f} s"
        assert elapsed < IDLE_TIMEOUT_S + 3.5
    finally:
        stop.set()
        thread.join(5)
        for sock in slow + silent:
            sock.close()
    assert stand.request("GET", "/health").status == 200


def test_a_connection_idle_between_requests_is_closed_too(stand: Stand) -> None:
    with socket.create_connection((stand.host, stand.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        assert _closed_by_server(sock, IDLE_TIMEOUT_S + 3)
        assert IDLE_TIMEOUT_S - 1 < time.monotonic() - start < IDLE_TIMEOUT_S + 3


def test_slow_bodies_do_not_stop_the_server_answering(stand: Stand) -> None:
    """50 requests whose bodies arrive a byte at a time hold their own connection, nobody else's."""
    socks = []
    for _ in range(50):
        sock = socket.create_connection((stand.host, stand.port), timeout=5)
        sock.sendall(f"POST /api/marks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {stand.tokens['S1']}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode())
        socks.append(sock)
    try:
        for _ in range(5):
            start = time.monotonic()
            assert stand.request("GET", "/health", timeout=5).status == 200
            assert time.monotonic() - start < 1.0
            for sock in socks:
                sock.send(b" ")
            time.sleep(0.1)
    finally:
        for sock in socks:
            sock.close()
    assert stand.alive()


def test_a_body_slower_than_the_deadline_is_408_and_others_are_still_served(stand: Stand) -> None:
    """Request heads, then bodies slower than body_timeout_s: a JSON mark batch and a login form a byte every
    0.2 s (each byte prompt, the whole too slow), and a fragment PUT that stalls after its first bytes. Each is
    answered 408 (where: body, Connection: close) at the deadline, while other requests are answered."""
    token = stand.tokens["S1"]
    heads = {
        "json": f"POST /api/marks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        "form": "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: 1000\r\n\r\nlogin=",
        "fragment": f"PUT /api/recordings/rec-slow/tracks/cam0/fragments/0 HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {token}\r\nX-Content-SHA256: {'0' * 64}\r\n"
                    "Content-Length: 1000\r\n\r\n0123456789",
    }
    socks = {name: socket.create_connection((stand.host, stand.port), timeout=5) for name in heads}
    answers: dict[str, bytes] = {}
    took: dict[str, float] = {}
    start = time.monotonic()
    try:
        for name, sock in socks.items():
            sock.sendall(heads[name].encode())
        while len(took) < len(socks) and time.monotonic() - start < BODY_TIMEOUT_S + 4:
            pending = [s for n, s in socks.items() if n not in took]
            readable, _, _ = select.select(pending, [], [], 0.2)
            for name, sock in socks.items():
                if sock in readable:
                    answers[name] = answers.get(name, b"") + sock.recv(65536)
                    if b"\r\n\r\n" in answers[name] or not answers[name]:
                        took.setdefault(name, time.monotonic() - start)
                elif name != "fragment" and name not in took:
                    sock.send(b"a")  # the trickle: one more byte of the body
            assert stand.request("GET", "/health", timeout=5).status == 200  # others are still served
        for name, sock in socks.items():  # the 408's body may follow its head in a later segment
            with contextlib.suppress(OSError):
                while answers.get(name) and not answers[name].endswith(b"}"):
                    if not (chunk := sock.recv(65536)):
                        break
                    answers[name] += chunk
    finally:
        for sock in socks.values():
            sock.close()
    for name, raw in answers.items():
        assert _status(raw) == 408, (name, raw[:300])
        assert b"connection: close" in raw.lower(), (name, raw[:300])
        body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        assert body == {"error": f"the request body did not arrive within {BODY_TIMEOUT_S} s", "where": "body"}
    assert sorted(took) == sorted(heads), (took, answers)
    assert all(BODY_TIMEOUT_S - 0.5 < t < BODY_TIMEOUT_S + 1.5 for t in took.values()), took
    reply = stand.json_request("POST", "/api/marks", {"events": []}, stand.station("S1"))
    assert reply.status != 408 and stand.alive(), reply.body
