"""Shared helpers for the benchmarks: child/process CPU, medians, tables, the JSON line."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from media.calibration import ffmpeg_exe

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # scripts/harness: what the benchmarks share with the tests
    sys.path.insert(0, str(ROOT))
OSCE = str(Path(sys.executable).parent / "osce")
FFMPEG = ffmpeg_exe()
# The one place libx264 threading differs between PyAV and the ffmpeg CLI: PyAV opens encoders
# with thread_type=SLICE, which libx264.c maps to x264's sliced threads (also what zerolatency
# asks for); the CLI's default FRAME|SLICE maps to frame threads. `-thread_type slice` matches ours.
FFMPEG_THREADS = ["-threads", "0", "-thread_type", "slice"]


@dataclass
class Run:
    """One finished child process: wall time, its own CPU (from wait4), exit code, output."""

    wall: float
    user: float
    sys: float
    maxrss_mb: float
    returncode: int
    stdout: str
    stderr: str

    @property
    def cpu(self) -> float:
        return self.user + self.sys


class Child:
    """A started child whose CPU is read from its own rusage when reaped (os.wait4), so other
    children running at the same time (a LiveRoom, a parallel recorder) are never counted."""

    def __init__(self, cmd: Sequence[str], cwd: Path | None = None) -> None:
        self.cmd = [str(c) for c in cmd]
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 - closed in wait()
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in wait()
        self.start = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     cwd=cwd)

    def wait(self, check: bool = True) -> Run:
        _, status, usage = os.wait4(self.proc.pid, 0)
        wall = time.monotonic() - self.start
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        outputs = []
        for fh in (self._out, self._err):
            fh.seek(0)
            outputs.append(fh.read().decode("utf-8", "replace"))
            fh.close()
        run = Run(wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024, self.proc.returncode, *outputs)
        if check and run.returncode != 0:
            raise RuntimeError(f"{' '.join(self.cmd)} exited {run.returncode}:\n{run.stderr[-3000:]}")
        return run


def run_child(cmd: Sequence[str], check: bool = True) -> Run:
    return Child(cmd).wait(check)


class ProcessCPU:
    """CPU seconds of this process (all its threads, libx264's included) over a `with` block."""

    def __enter__(self) -> ProcessCPU:
        self.wall0, self.cpu0 = time.monotonic(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="short inputs, one repeat")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (default 3, 1 with --quick)")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new one under /tmp)")
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    return args


def workdir(args: argparse.Namespace, name: str) -> Path:
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return args.workdir
    return Path(tempfile.mkdtemp(prefix=f"osce-{name}-"))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def machine() -> dict[str, Any]:
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "python": platform.python_version(), "ffmpeg": FFMPEG.rsplit("-", 1)[-1],
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(name: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], result: dict[str, Any]) -> None:
    """The human table, then one JSON line (prefixed so it greps out of a log)."""
    print(table(headers, rows))
    print("BENCH_JSON " + json.dumps({"bench": name, **machine(), **result}, separators=(",", ":")), flush=True)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
