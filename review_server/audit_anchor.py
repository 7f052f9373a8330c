"""Anchors of the audit chain outside the database: the chain's head (last row's number and hash), signed.

The hash chain (audit.py) shows that no row was changed, removed or moved, but only within what the database
still holds: whoever can write to it can cut rows off the end, or rewrite a row and re-hash every row after
it, and the chain checks again. An anchor is a statement "on this date the chain had row N with hash H", signed
with the server's Ed25519 key (signing.py) and kept where the database's writer cannot change it:

- once a day, `osce server audit anchor` (systemd/osce-audit-anchor.timer) writes `<day>.json` and its raw
  signature `<day>.sig` into `audit_anchor_dir` (default: `<data dir>/audit-anchors`), each created once
  (O_EXCL) and made read-only; point the setting at a write-once mount or copy the files away;
- every export package carries the head at export time in its signed manifest (`audit_anchor`), so each
  recipient holds one too (`osce verify` prints it).

`osce server audit verify` checks every anchor in the folder: signed by the server's key, and row N of the chain
still there with hash H. A cut-off tail or a re-hashed rewrite before the last anchor fails with the anchor named.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from .audit import GENESIS
from .models import AuditEvent
from .signing import fingerprint

FORMAT = "osce-audit-anchor/1"
MAX_ANCHOR_BYTES = 4096


def head(s: Session) -> dict[str, Any]:
    """The chain's last row now: {"seq", "hash", "at"} (seq 0 and the genesis hash for an empty chain)."""
    last = s.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq, hash_ = (last[0], last[1]) if last else (0, GENESIS)
    return {"seq": seq, "hash": hash_, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def folder_of(config: Any) -> Path:
    from .signing import data_dir

    return Path(config.audit_anchor_dir) if config.audit_anchor_dir else data_dir(config) / "audit-anchors"


def publish(s: Session, key: Ed25519PrivateKey, folder: Path, day: dt.date | None = None) -> Path | None:
    """Write today's anchor (`<day>.json` + `<day>.sig`), each file created once and read-only; None if the day
    has one already (an anchor is never rewritten)."""
    day = day or dt.datetime.now(dt.UTC).date()
    folder.mkdir(parents=True, exist_ok=True)
    body_path, sig_path = folder / f"{day.isoformat()}.json", folder / f"{day.isoformat()}.sig"
    if body_path.exists():
        return None
    anchor = {"format": FORMAT, "day": day.isoformat(), "key_sha256": fingerprint(key), **head(s)}
    body = json.dumps(anchor, sort_keys=True).encode("utf-8") + b"\n"
    for path, data in ((sig_path, key.sign(body)), (body_path, body)):  # the body last: it marks the day done
        _write_once(path, data)
    return body_path


def _write_once(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def check(s: Session, key: Ed25519PrivateKey | None, folder: Path) -> tuple[int, list[str]]:
    """(anchors checked, problems): each anchor signed by the server's `key`, its row still in the chain with its
    hash."""
    problems: list[str] = []
    checked = 0
    anchors = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not anchors:
        return 0, problems
    if key is None:
        return 0, [f"{len(anchors)} anchor(s) in {folder} but the server's signing key is missing"]
    public: Ed25519PublicKey = key.public_key()
    for body_path in anchors:
        name = body_path.name
        try:
            body = _read_small(body_path)
            sig = _read_small(body_path.with_suffix(".sig"))
            public.verify(sig, body)
            anchor = json.loads(body)
            seq, hash_ = int(anchor["seq"]), str(anchor["hash"])
        except InvalidSignature:
            problems.append(f"anchor {name}: signature does not match (not made by this server's key, or altered)")
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"anchor {name}: unreadable ({exc})")
            continue
        checked += 1
        if seq == 0:
            continue
        row = s.execute(select(AuditEvent.hash).where(AuditEvent.seq == seq)).first()
        if row is None:
            problems.append(f"anchor {name}: row {seq} of the audit chain is gone (rows cut off the end?)")
        elif row[0] != hash_:
            problems.append(f"anchor {name}: row {seq} has hash {row[0]}, the anchor says {hash_} (rewritten?)")
    return checked, problems


def _read_small(path: Path) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(MAX_ANCHOR_BYTES + 1)
    if len(data) > MAX_ANCHOR_BYTES:
        raise ValueError(f"larger than {MAX_ANCHOR_BYTES} bytes")
    return data
