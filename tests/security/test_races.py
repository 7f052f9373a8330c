"""Races on limits and counters: hundreds of requests whose bodies arrive only after every head is in, so that
each one passes any check made before its body was read, and all are inside the server at once. On SQLite and
on PostgreSQL (whose READ COMMITTED transactions do not serialise the way SQLite's IMMEDIATE ones do).

Login: at most the free failures of one (account, address) are ever compared, and at most the per-address
ceiling over many accounts; the rest are 429 before their password is looked at."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Stand
from .servers import late_bodies, login_request, own_server

CATEGORY = "races on limits and counters"
FREE, CEILING, PARALLEL = 5, 20, 300
CONFIG = (f"login_max_failures_per_account = {FREE}\nlogin_max_failures_per_ip = {CEILING}\nlogin_window_s = 900\n"
          "login_delay_s = 60\n"  # past the free failures, the next try waits a minute: longer than the test
          "body_timeout_s = 60\n")  # every body is held back until all heads are in: that can take seconds


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    with own_server(Path(tmp_path_factory.mktemp(f"races-{request.param}")), request.param, CONFIG) as stand:
        yield stand


def test_parallel_logins_for_one_account_are_counted_before_the_password(server: Stand) -> None:
    """`also` of issue 16 (and case 7's pattern on the server): 300 parallel wrong passwords for one account."""
    requests = [login_request(server, "examiner2", f"guess number {i:04d}", "127.0.1.1") for i in range(PARALLEL)]
    outcome = Counter(late_bodies(server, requests, "127.0.1.1"))
    assert outcome[401] <= FREE and outcome[200] == 0, outcome  # compared: at most the free failures
    assert outcome[429] >= PARALLEL - FREE, outcome
    assert server.login("examiner2", source="127.0.1.2").status == 200  # the owner, elsewhere, gets in


def test_parallel_logins_over_many_accounts_meet_the_address_ceiling(server: Stand) -> None:
    requests = [login_request(server, f"nobody{i}", "wrong password!", "127.0.1.3") for i in range(PARALLEL)]
    outcome = Counter(late_bodies(server, requests, "127.0.1.3"))
    assert outcome[401] <= CEILING and outcome[429] >= PARALLEL - CEILING, outcome


def test_a_throttled_flood_writes_one_audit_row_per_burst(server: Stand) -> None:
    """`also` of issue 16: every throttled login appended an audit row, so anyone could grow the log."""
    from sqlalchemy import func, select

    from review_server.models import AuditEvent

    def rows() -> int:
        return server.db(lambda s: s.scalar(select(func.count()).select_from(AuditEvent)))

    for _ in range(FREE):
        assert server.login("observer", "wrong password!", source="127.0.1.4").status == 401
    before = rows()
    requests = [login_request(server, "observer", "wrong password!", "127.0.1.4") for _ in range(100)]
    outcome = Counter(late_bodies(server, requests, "127.0.1.4"))
    assert outcome[429] == 100, outcome
    assert rows() - before <= 1, rows() - before  # one row for the burst; its 100 refusals are counted
    from review_server.throttle import burst_count

    assert server.db(lambda s: burst_count(s, "login-throttled:127.0.1.4")) == 100
