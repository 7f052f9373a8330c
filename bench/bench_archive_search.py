"""Archive search over 1,000,000 attempts in PostgreSQL: p50/p95 of typical queries against a primary-key
lookup measured in the same run, through the same path (Database.run + review_server.search).

    eval "$(bash scripts/services.sh)"; .venv/bin/python bench/bench_archive_search.py [--attempts N] [--runs N]

Data is made in SQL with generate_series in a fresh schema (dropped afterwards unless --keep): 500 exam
days, 60 stations, 15 tasks, 5 specialties, 200,000 candidates, N attempts each with one mark event
(300 examiners) and one score (10 % not final). Target: p95 ≤ 50 ms for every query.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, select, text  # noqa: E402

from review_server.db import Database  # noqa: E402
from review_server.migrations import upgrade  # noqa: E402
from review_server.models import Attempt  # noqa: E402
from review_server.search import Query, search  # noqa: E402

DAY0 = dt.date(2025, 1, 1)
DAYS = 500

FILL = """
INSERT INTO specialties (id, code, name) SELECT g, 'SP' || g, 'Specialty ' || g FROM generate_series(1, 5) g;
INSERT INTO tasks (id, code, title, specialty_id) SELECT g, 'T' || g, 'Task ' || g, 1 + (g - 1) % 5
  FROM generate_series(1, 15) g;
INSERT INTO stations (id, code, name, specialty_id, task_id, created_at)
  SELECT g, 'S' || g, 'Room ' || g, 1 + ((g - 1) % 15) % 5, 1 + (g - 1) % 15, now() FROM generate_series(1, 60) g;
INSERT INTO exam_days (id, day, title, created_at) SELECT g, DATE '2025-01-01' + (g - 1), '', now()
  FROM generate_series(1, 500) g;
INSERT INTO candidates (id, accreditation_number, specialty_id, created_at)
  SELECT g, (26000000 + g)::text, 1 + g % 5, now() FROM generate_series(1, 200000) g;
INSERT INTO checklist_versions (id, sha256, version, title, source, created_at)
  VALUES (1, repeat('ab', 32), '1', 'bench', '', now());
INSERT INTO attempts (id, station_id, exam_day_id, candidate_id, task_id, created_at)
  SELECT 'A' || lpad(g::text, 8, '0'), 1 + g % 60, 1 + (g * 500 / :n), 1 + g % 200000, 1 + (g % 60) % 15, now()
  FROM generate_series(0, :n - 1) g;
INSERT INTO mark_events (event_id, attempt_id, station_id, examiner, kind, checklist_hash, wall_time, seq,
                         received_at, source)
  SELECT md5(g::text)::uuid::text, 'A' || lpad(g::text, 8, '0'), 'S' || (1 + g % 60), 'ex' || ((g * 7) % 300),
         'finalise', repeat('ab', 32), '2026-06-01T09:00:00Z', 1, now(), 'bench'
  FROM generate_series(0, :n - 1) g;
INSERT INTO scores (attempt_id, checklist_version_id, percent, passed, final, computed_at)
  SELECT 'A' || lpad(g::text, 8, '0'), 1, (g * 37) % 101, (g * 37) % 101 >= 70, g % 10 <> 0, now()
  FROM generate_series(0, :n - 1) g;
"""


def timed(db: Database, fn: Callable[..., object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        db.run(fn)
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("OSCE_TEST_PG_URL"), help="PostgreSQL URL (OSCE_TEST_PG_URL)")
    ap.add_argument("--attempts", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=100, help="timed runs per query")
    ap.add_argument("--keep", action="store_true", help="keep the bench schema")
    args = ap.parse_args()
    if not args.url:
        sys.exit('no PostgreSQL URL: eval "$(bash scripts/services.sh)" or --url')
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(args.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.url}{'&' if '?' in args.url else '?'}options={quote(f'-csearch_path={schema}')}"
    try:
        t0 = time.perf_counter()
        upgrade(url)
        db = Database(url)
        with db.engine.begin() as conn:
            for stmt in FILL.split(";\n"):
                if stmt.strip():
                    conn.execute(text(stmt).bindparams(n=args.attempts) if ":n" in stmt else text(stmt))
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        fill_s = time.perf_counter() - t0
        print(f"{args.attempts:,} attempts (+ mark events, scores) made and analysed in {fill_s:.1f} s")
        rnd = random.Random(1)

        def day(i: int) -> dt.date:
            return DAY0 + dt.timedelta(days=i)

        def q(**kw: object) -> Callable[[], Query]:
            return lambda: Query(**kw)  # type: ignore[arg-type]

        queries: dict[str, Callable[[], Query]] = {
            "one exam day": lambda: Query(date_from=(d := day(rnd.randrange(DAYS))), date_to=d),
            "month + specialty": lambda: Query(
                date_from=(d := day(rnd.randrange(DAYS - 31))),
                date_to=d + dt.timedelta(days=30),
                specialty=f"SP{rnd.randint(1, 5)}",
            ),
            "quarter + station": lambda: Query(
                date_from=(d := day(rnd.randrange(DAYS - 92))),
                date_to=d + dt.timedelta(days=91),
                station=f"S{rnd.randint(1, 60)}",
            ),
            "task + result=failed": lambda: Query(task=f"T{rnd.randint(1, 15)}", result="failed"),
            "accreditation number": lambda: Query(number=str(26000000 + rnd.randint(1, 200000))),
            "examiner": lambda: Query(examiner=f"ex{rnd.randrange(300)}"),
            "examiner + month": lambda: Query(
                examiner=f"ex{rnd.randrange(300)}",
                date_from=(d := day(rnd.randrange(DAYS - 31))),
                date_to=d + dt.timedelta(days=30),
            ),
            "not final, page 1": q(result="not_final"),
            "year, page 20": lambda: Query(
                date_from=(d := day(rnd.randrange(DAYS - 366))), date_to=d + dt.timedelta(days=365), page=20
            ),
        }
        ids = [f"A{rnd.randrange(args.attempts):08d}" for _ in range(args.runs)]
        it = iter(ids * 2)
        timed(db, lambda s: s.scalar(select(Attempt).where(Attempt.id == next(it))), args.runs)  # warm-up
        base = timed(db, lambda s: s.scalar(select(Attempt).where(Attempt.id == next(it))), args.runs)
        b50 = statistics.median(base)
        results = {"pk lookup (baseline)": {"p50_ms": b50, "p95_ms": pct(base, 95), "rows": 1}}
        print(f"{'query':<24} {'p50 ms':>8} {'p95 ms':>8} {'p50/base':>9} {'rows':>5}")
        print(f"{'pk lookup (baseline)':<24} {b50:8.2f} {pct(base, 95):8.2f} {1:9.1f} {1:>5}")
        for name, make in queries.items():
            rows: list[int] = []

            def run(s, make=make, rows=rows):  # type: ignore[no-untyped-def]
                rows.append(len(search(s, make())["attempts"]))

            timed(db, run, 5)  # warm-up
            rows.clear()
            t = timed(db, run, args.runs)
            p50, p95 = statistics.median(t), pct(t, 95)
            results[name] = {"p50_ms": p50, "p95_ms": p95, "ratio_p50": p50 / b50, "rows": statistics.median(rows)}
            flag = "" if p95 <= 50 else "  > 50 ms"
            print(f"{name:<24} {p50:8.2f} {p95:8.2f} {p50 / b50:9.1f} {statistics.median(rows):>5.0f}{flag}")
        worst = max(v["p95_ms"] for k, v in results.items())
        print(f"worst p95 {worst:.1f} ms (target ≤ 50 ms): {'OK' if worst <= 50 else 'MISSED'}")
        line = {
            "bench": "archive_search",
            "date": dt.datetime.now(dt.UTC).isoformat(),
            "attempts": args.attempts,
            "runs": args.runs,
            "fill_s": fill_s,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "results": results,
        }
        print("BENCH_JSON " + json.dumps(line, ensure_ascii=False))
        db.dispose()
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
