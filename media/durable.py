"""Writing files so that a kill -9 or a power cut leaves either the whole file or none of it."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path


class DiskFullError(OSError):
    """The disk under a recording or a queue has no room left; the message names the path."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path`: temporary file, fsync, rename, fsync the folder."""
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(path.parent).free
            raise DiskFullError(exc.errno, f"disk full writing {path} ({free} bytes free)") from exc
        raise


def append_line(fh, line: str) -> None:  # noqa: ANN001 - a text file opened for append
    """Append one line and make it durable before returning."""
    try:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(exc.errno, f"disk full appending to {fh.name}") from exc
        raise
