"""Export package throughput against a raw copy of the same bytes, in the same run, with the export's peak memory.

Media: random bytes in fragment-sized files (0.25–2 MiB, as 2 s fMP4 fragments of one camera are), registered
as recordings (two tracks per attempt) in a SQLite database and stored in LocalStorage, then selected by one
export request. Random bytes are not video: this measures the package writer (read from media storage, SHA-256
per file, CRC-32 and ZIP framing, SHA-256 of the whole package, write, fsync), not anything about the media.
The first package of a run is checked (not timed) by `osce verify` and by Info-ZIP's `unzip -t`.

- export: `review_server.export.run_export` in a child process (gather, write the ZIP, fsync, record, audit);
  its peak memory is the child's VmHWM over the export alone (reset through /proc/self/clear_refs first);
- copy: the same files, in the package's order, concatenated into one file with copy_file_range (what `cp`
  uses: the kernel copies, nothing is looked at), then one fsync, in a child process.

Both read from the page cache when the media fits in memory (it is written just before) and both end with an
fsync, so the figure is the writer's cost beside the disk's. Target: ratio export/copy >= 0.8 (medians).

    .venv/bin/python bench/bench_export.py                       # 5 GiB of media, 3 repeats
    .venv/bin/python bench/bench_export.py --quick               # 50 MB, 1 repeat
    OSCE_BENCH_EXPORT_MB=1024 .venv/bin/python bench/bench_export.py --workdir /tmp/osce-bench-export
The media is generated once per --workdir and reused while its size is the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT, Child, log, median, parse_args, report, workdir

TARGET_RATIO = 0.8
FRAG_MIN, FRAG_MAX = 256 * 1024, 2 * 1024 * 1024
FRAGS_PER_TRACK = 150  # five minutes of 2 s fragments per camera
TRACKS = ("cam0", "cam1")


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def generate(root: Path, size: int) -> dict[str, Any]:
    """Media of `size` bytes (at least) as fragments of recordings, rows for them, one export request."""
    import datetime as dt

    import numpy as np

    from review_server.db import Database
    from review_server.migrations import upgrade
    from review_server.models import Attempt, ExportRequest, ExportRequestAttempt, Fragment, Recording, Station
    from review_server.storage import LocalStorage

    meta_file = root / "media.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        if meta["target"] == size:
            log(f"reusing {meta['bytes'] / 1e9:.2f} GB of media in {root}")
            upgrade(meta["db_url"])  # the schema may have moved on since it was generated
            return meta
        raise SystemExit(f"{root} holds media for another size; use another --workdir")
    server = root / "server"
    db_url = f"sqlite:///{server / 'osce.db'}"
    upgrade(db_url)
    storage = LocalStorage(server / "media")
    rng = np.random.default_rng(7)
    db = Database(db_url)
    total, files, attempt_ids = 0, [], []
    with db.transaction() as s:
        st = Station(code="S1", name="bench")
        s.add(st)
        s.flush()
        n = 0
        while total < size:
            n += 1
            attempt_id = f"B{n:05d}"
            s.add(Attempt(id=attempt_id, station_id=st.id))
            s.flush()
            rec = Recording(key=f"rec-{attempt_id}", station_id=st.id, attempt_id=attempt_id)
            s.add(rec)
            s.flush()
            for track in TRACKS:
                for seq in range(FRAGS_PER_TRACK + 1):
                    if total >= size and seq > 0:
                        break
                    blob = rng.bytes(1024 if seq == 0 else int(rng.integers(FRAG_MIN, FRAG_MAX)))
                    sha = hashlib.sha256(blob).hexdigest()
                    path = storage.path_for(sha)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(blob)  # stored as LocalStorage.put would (one fsync for all, below)
                    s.add(Fragment(recording_id=rec.id, track=track, kind="init" if seq == 0 else "media", seq=seq,
                                   sha256=sha, size=len(blob), start_s=None if seq == 0 else 2.0 * (seq - 1),
                                   end_s=None if seq == 0 else 2.0 * seq))
                    total += len(blob)
                    files.append(str(path))
            attempt_ids.append(attempt_id)
            log(f"generated {total / 1e9:.2f} GB")
        req = ExportRequest(number="BENCH-1", request_date=dt.date(2026, 7, 1), requester="bench", created_by="bench")
        s.add(req)
        s.flush()
        s.add_all(ExportRequestAttempt(request_id=req.id, attempt_id=a) for a in attempt_ids)
        request_id = req.id
    db.dispose()
    os.sync()  # nothing of the generation left to write back while the runs are timed
    meta = {"target": size, "bytes": total, "files": len(files), "db_url": db_url,
            "media": str(server / "media"), "request_id": request_id}
    meta_file.write_text(json.dumps(meta))
    return meta


def package_order(meta: dict[str, Any]) -> list[str]:
    """The media files in the order the package holds them (attempt, recording, track, seq)."""
    from sqlalchemy import select

    from review_server.db import Database
    from review_server.models import Fragment, Recording
    from review_server.storage import LocalStorage

    storage = LocalStorage(meta["media"])
    db = Database(meta["db_url"])
    with db.transaction() as s:
        rows = s.execute(
            select(Fragment.sha256)
            .join(Recording, Recording.id == Fragment.recording_id)
            .order_by(Recording.attempt_id, Recording.key, Fragment.track, Fragment.seq)
        ).all()
    db.dispose()
    return [str(storage.path_for(r.sha256)) for r in rows]


def child_copy(list_file: str, out: str) -> None:
    files = Path(list_file).read_text().splitlines()
    t0 = time.perf_counter()
    copied = 0
    with open(out, "wb") as dst:
        for name in files:
            with open(name, "rb") as src:
                left = os.fstat(src.fileno()).st_size
                while left:
                    n = os.copy_file_range(src.fileno(), dst.fileno(), left)
                    if n == 0:
                        break
                    left -= n
                    copied += n
        os.fsync(dst.fileno())
    print(json.dumps({"wall": time.perf_counter() - t0, "bytes": copied}), flush=True)


def child_export(db_url: str, media: str, request_id: str) -> None:
    from review_server.config import ServerConfig
    from review_server.db import Database
    from review_server.export import run_export
    from review_server.storage import LocalStorage

    # The package's writing against a plain copy: the identification videos' encoding (burn_in.py) is another job.
    cfg = ServerConfig(database_url=db_url, media_dir=Path(media), export_identified_video=False)
    db = Database(db_url)
    storage = LocalStorage(cfg.media_dir)
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS from here on: the export alone
    rss0 = status_kb("VmRSS")
    t0 = time.perf_counter()
    pkg = run_export(db, storage, cfg, int(request_id), "bench")
    wall = time.perf_counter() - t0
    hwm = status_kb("VmHWM")
    db.dispose()
    print(json.dumps({"wall": wall, "rss0_mb": rss0 / 1024, "hwm_mb": hwm / 1024, "package": pkg}), flush=True)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    default_mb = 50 if args.quick else 5 * 1024
    size = int(float(os.environ.get("OSCE_BENCH_EXPORT_MB", default_mb)) * 1024 * 1024)
    root = workdir(args, "export")
    meta = generate(root, size)
    files = package_order(meta)
    list_file = root / "files.txt"
    list_file.write_text("\n".join(files) + "\n")
    out_dir = root / "out"
    out_dir.mkdir(exist_ok=True)
    exports = Path(meta["media"]).parent / "exports"
    me = str(Path(__file__).resolve())
    rows, copies, exp_runs, verified = [], [], [], None
    for i in range(args.repeats):
        copy_out = out_dir / "copy.bin"
        run = Child([sys.executable, me, "_copy", str(list_file), str(copy_out)], cwd=ROOT).wait()
        c = json.loads(run.stdout.strip().splitlines()[-1]) | {"cpu": run.cpu}
        assert c["bytes"] == meta["bytes"], (c["bytes"], meta["bytes"])
        copy_out.unlink()
        copies.append(c)
        log(f"run {i + 1}: copy {meta['bytes'] / c['wall'] / 1e6:.0f} MB/s")
        run = Child([sys.executable, me, "_export", meta["db_url"], meta["media"], str(meta["request_id"])],
                    cwd=ROOT).wait()
        e = json.loads(run.stdout.strip().splitlines()[-1]) | {"cpu": run.cpu}
        zip_path = exports / e["package"]["file_name"]
        if verified is None:  # once: the package is complete and intact (reads it all again, not timed)
            from review_server.package import verify
            from review_server.signing import load_existing, public_pem

            server_key = load_existing(Path(meta["media"]).resolve().parent)
            assert server_key is not None, "the export made no signing key"
            rep = verify(zip_path, public_pem(server_key))
            unzip = subprocess.run(["unzip", "-tqq", str(zip_path)], capture_output=True, text=True)
            verified = rep.ok and unzip.returncode == 0  # and Info-ZIP reads it: every CRC-32, ZIP64 offsets
            if not verified:
                log(f"package does not verify: {rep.problems[:3]} unzip: {unzip.stdout[-300:]}")
        zip_path.unlink()
        for extra in exports.glob(e["package"]["file_name"] + ".*"):
            extra.unlink()
        exp_runs.append(e)
        log(f"run {i + 1}: export {meta['bytes'] / e['wall'] / 1e6:.0f} MB/s, peak RSS {e['hwm_mb']:.0f} MB")
        gb = meta["bytes"] / 1e9
        rows.append([i + 1, meta["bytes"] / c["wall"] / 1e6, meta["bytes"] / e["wall"] / 1e6, c["cpu"] / gb,
                     e["cpu"] / gb, e["hwm_mb"], e["hwm_mb"] - e["rss0_mb"], e["package"]["size"] / 1e6])
    copy_mb_s = meta["bytes"] / median([c["wall"] for c in copies]) / 1e6
    export_mb_s = meta["bytes"] / median([e["wall"] for e in exp_runs]) / 1e6
    ratio = export_mb_s / copy_mb_s
    peak = max(e["hwm_mb"] for e in exp_runs)
    growth = max(e["hwm_mb"] - e["rss0_mb"] for e in exp_runs)
    gb = meta["bytes"] / 1e9
    copy_cpu, export_cpu = median([c["cpu"] for c in copies]) / gb, median([e["cpu"] for e in exp_runs]) / gb
    rows.append(["median", copy_mb_s, export_mb_s, copy_cpu, export_cpu, peak, growth, rows[-1][-1]])
    print(f"media: {meta['bytes'] / 1e9:.2f} GB in {meta['files']} files; target ratio >= {TARGET_RATIO}; "
          f"ratio {ratio:.3f} {'OK' if ratio >= TARGET_RATIO else 'BELOW TARGET'}")
    headers = ["run", "copy MB/s", "export MB/s", "copy CPU s/GB", "export CPU s/GB", "peak RSS MB",
               "RSS growth MB", "package MB"]
    report("export", headers, rows, {
        "media_bytes": meta["bytes"], "files": meta["files"], "repeats": args.repeats,
        "copy_mb_s": round(copy_mb_s, 1), "export_mb_s": round(export_mb_s, 1), "ratio": round(ratio, 4),
        "copy_cpu_s_per_gb": round(copy_cpu, 3), "export_cpu_s_per_gb": round(export_cpu, 3),
        "target_ratio": TARGET_RATIO, "export_peak_rss_mb": round(peak, 1),
        "export_rss_growth_mb": round(growth, 1), "package_verified": verified,
    })


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_copy":
        child_copy(*sys.argv[2:4])
    elif len(sys.argv) > 1 and sys.argv[1] == "_export":
        child_export(*sys.argv[2:5])
    else:
        main()
