"""One user's actions against another's: a stranger's wrong passwords must slow the stranger, never lock the
account's owner out (throttling per account and address, with a growing delay); one address trying many
accounts meets its own ceiling; X-Forwarded-For counts only from a configured trusted proxy.

Each client is a distinct loopback address (127.0.0.x): the server sees them as different machines. The proxy
here is 127.0.0.9 (`trusted_proxies`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Stand
from .servers import own_server

CATEGORY = "one user against another"
PROXY = "127.0.0.9"
CONFIG = (
    "login_max_failures_per_account = 5\nlogin_max_failures_per_ip = 20\nlogin_window_s = 900\n"
    f'trusted_proxies = ["{PROXY}"]\n'
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    """Past the free failures the next try waits 30 s: longer than any of these tests."""
    with own_server(Path(tmp_path_factory.mktemp("lockout")), "sqlite", CONFIG + "login_delay_s = 30\n") as stand:
        yield stand


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    """The first wait is 2 s, doubling."""
    with own_server(Path(tmp_path_factory.mktemp("lockout-2s")), "sqlite", CONFIG + "login_delay_s = 2\n") as stand:
        yield stand


def _fail(server: Stand, login: str, times: int, source: str, headers: dict[str, str] | None = None) -> None:
    for _ in range(times):
        reply = server.login(login, "wrong password!", source=source, headers=headers)
        assert reply.status == 401, reply.body


def test_a_strangers_wrong_passwords_do_not_lock_the_owner_out(server: Stand) -> None:
    """Case 8 of issue 16: five wrong passwords for examiner2, then the owner's right one was refused."""
    _fail(server, "examiner2", 5, "127.0.0.2")
    assert server.login("examiner2", source="127.0.0.2").status == 429  # the stranger waits
    owner = server.login("examiner2", source="127.0.0.3")
    assert owner.status == 200, owner.body


def test_the_strangers_wait_grows_and_the_right_password_waits_too(quick: Stand) -> None:
    server = quick
    _fail(server, "observer", 5, "127.0.0.4")
    first = server.login("observer", source="127.0.0.4")
    assert first.status == 429 and first.headers["Retry-After"] in ("1", "2")
    time.sleep(2.2)
    _fail(server, "observer", 1, "127.0.0.4")  # allowed again after the wait, and wrong once more
    second = server.login("observer", source="127.0.0.4")
    assert second.status == 429 and int(second.headers["Retry-After"]) >= 3  # doubled: about 4 s
    assert server.login("observer", source="127.0.0.5").status == 200  # the owner, elsewhere, is not slowed


def test_one_address_trying_many_accounts_meets_its_ceiling(server: Stand) -> None:
    for i in range(20):
        assert server.login(f"nobody{i}", "wrong password!", source="127.0.0.6").status == 401
    assert server.login("archivist", source="127.0.0.6").status == 429  # even the right password, from there
    assert server.login("archivist", source="127.0.0.7").status == 200


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(server: Stand) -> None:
    """Behind no trusted proxy, X-Forwarded-For is the client's own text: a new address per attempt must not
    buy it new attempts."""
    for i in range(20):
        spoof = {"X-Forwarded-For": f"10.9.{i}.1"}
        assert server.login(f"ghost{i}", "wrong password!", source="127.0.0.8", headers=spoof).status == 401
    assert server.login("admin", source="127.0.0.8", headers={"X-Forwarded-For": "10.9.99.1"}).status == 429


def test_behind_the_trusted_proxy_each_client_is_its_own_address(server: Stand) -> None:
    """Two clients behind the centre's proxy: one client's failures slow that client only; an address the
    client prepended itself is not taken (the proxy's own entry, the rightmost, is)."""
    stranger = {"X-Forwarded-For": "10.1.1.1"}
    _fail(server, "examiner", 5, PROXY, stranger)
    assert server.login("examiner", source=PROXY, headers=stranger).status == 429
    prepended = {"X-Forwarded-For": "10.7.7.7, 10.1.1.1"}  # the client wrote 10.7.7.7; the proxy saw 10.1.1.1
    assert server.login("examiner", source=PROXY, headers=prepended).status == 429
    owner = server.login("examiner", source=PROXY, headers={"X-Forwarded-For": "10.2.2.2"})
    assert owner.status == 200, owner.body
