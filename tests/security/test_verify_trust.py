"""Trust: a check must not trust what it checks. `osce verify` took the key a package carries as the key that
matters, so a package whose protocol was changed and re-signed with a fresh key verified OK; it must name the
signer's key, check it against the centre's published key (given, or the server's own with --config) and fail
without one unless told plainly to trust the package's own. The audit chain, checked only against itself, let a
database writer cut rows off its end or rewrite a row and re-hash the rest; its signed daily anchor, kept outside
the database, must catch both."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .conftest import Package, Stand

CATEGORY = "trust"


def members(zpath: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zpath) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write_zip(zpath: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return zpath


def forge(genuine: Path, out: Path) -> tuple[Path, str]:
    """The genuine package with protocol.csv changed, its manifest and SHA256SUMS redone and signed with a fresh
    key that it carries as public_key.pem: consistent in itself. Returns the ZIP and the forger's fingerprint."""
    from review_server.signing import fingerprint, public_pem

    files = members(genuine)
    key = Ed25519PrivateKey.generate()
    files["protocol.csv"] = files["protocol.csv"].replace("не сдано".encode(), "сдано".encode()) + b"forged,1\n"
    files["public_key.pem"] = public_pem(key)
    manifest = json.loads(files["manifest.json"])
    for f in manifest["files"]:
        if f["path"] in ("protocol.csv", "public_key.pem"):
            f["sha256"], f["size"] = hashlib.sha256(files[f["path"]]).hexdigest(), len(files[f["path"]])
    manifest["public_key_sha256"] = fingerprint(key)
    files["manifest.json"] = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True).encode() + b"\n"
    files["manifest.sig"] = key.sign(files["manifest.json"])
    sums = [(f["sha256"], f["path"]) for f in manifest["files"]]
    sums += [(hashlib.sha256(files[n]).hexdigest(), n) for n in ("manifest.json", "manifest.sig")]
    files["SHA256SUMS"] = "".join(f"{sha}  {path}\n" for sha, path in sums).encode()
    return write_zip(out, files), fingerprint(key)


def centre_fingerprint(package: Package) -> str:
    from review_server.signing import fingerprint, load_public_pem

    return fingerprint(load_public_pem(package.centre_pem.read_bytes()))


def test_a_resigned_package_does_not_verify_without_the_centres_key(stand: Stand, package: Package,
                                                                    tmp_path: Path) -> None:
    forged, forger = forge(package.zip, tmp_path / "forged.zip")
    plain = stand.osce("verify", str(forged))
    assert plain.returncode == 1, plain.stdout + plain.stderr
    assert "package: FAILED" in plain.stdout and "no trusted key" in plain.stdout
    assert f"signed by key sha256: {forger}" in plain.stdout  # whose key signed it, said plainly
    pinned = stand.osce("verify", str(forged), "--public-key", str(package.centre_pem))
    assert pinned.returncode == 1 and "signature does not match" in pinned.stdout
    assert forger in pinned.stdout and centre_fingerprint(package) in pinned.stdout
    # Only when asked outright is the package's own key taken, and then with a warning.
    trusting = stand.osce("verify", str(forged), "--trust-embedded-key")
    assert trusting.returncode == 0 and "package: OK" in trusting.stdout
    assert f"checked against key sha256: {forger} (the package's own key" in trusting.stdout
    assert "WARNING" in trusting.stderr
    # The control: the genuine package with the centre's published key.
    genuine = stand.osce("verify", str(package.zip), "--public-key", str(package.centre_pem))
    assert genuine.returncode == 0 and "package: OK" in genuine.stdout, genuine.stdout


def test_the_servers_own_key_from_its_configuration_catches_a_forgery(stand: Stand, package: Package,
                                                                      tmp_path: Path) -> None:
    forged, forger = forge(package.zip, tmp_path / "forged.zip")
    genuine = stand.osce("verify", str(package.zip), "--config", str(stand.config()))
    assert genuine.returncode == 0, genuine.stdout + genuine.stderr
    assert f"checked against key sha256: {centre_fingerprint(package)} (the server's key" in genuine.stdout
    bad = stand.osce("verify", str(forged), "--config", str(stand.config()))
    assert bad.returncode == 1 and "signature does not match" in bad.stdout and forger in bad.stdout, bad.stdout


@pytest.fixture
def chain_copy(stand: Stand, package: Package, tmp_path: Path) -> Path:
    """A copy of the stand's database and a server config for it, sharing the stand's signing key (its data
    folder) and writing anchors into a folder of its own. Returns the config."""
    src = sqlite3.connect(stand.db_url.removeprefix("sqlite:///"))
    dst = sqlite3.connect(tmp_path / "copy.db")
    src.backup(dst)
    src.close()
    dst.close()
    cfg = tmp_path / "server.toml"
    cfg.write_text(f'database_url = "sqlite:///{tmp_path / "copy.db"}"\nmedia_dir = "{stand.media_dir}"\n'
                   f'audit_anchor_dir = "{tmp_path / "anchors"}"\n'
                   "argon2_time_cost = 1\nargon2_memory_kib = 8\nargon2_parallelism = 1\n", encoding="utf-8")
    return cfg


def _verify_chain(stand: Stand, cfg: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = stand.osce("server", "audit", "verify", "--config", str(cfg))
    return done.returncode, json.loads(done.stdout or "{}")


def test_cutting_rows_off_the_audit_chain_is_caught_by_its_anchor(stand: Stand, chain_copy: Path) -> None:
    anchored = stand.osce("server", "audit", "anchor", "--config", str(chain_copy))
    assert anchored.returncode == 0, anchored.stdout + anchored.stderr
    assert _verify_chain(stand, chain_copy)[0] == 0  # the control: the chain matches its anchor
    db = sqlite3.connect(chain_copy.parent / "copy.db")
    last = db.execute("SELECT max(seq) FROM audit_events").fetchone()[0]
    db.execute("DELETE FROM audit_events WHERE seq > ?", (last - 3,))  # the deletions' own records, say
    db.commit()
    db.close()
    code, out = _verify_chain(stand, chain_copy)
    assert code == 1 and out["ok"] is False, out
    assert any(f"row {last} of the audit chain is gone" in p for p in out["anchor_problems"]), out


def test_rewriting_a_row_and_rehashing_the_rest_is_caught_by_the_anchor(stand: Stand, chain_copy: Path) -> None:
    from review_server.audit import row_hash
    from review_server.db import Database
    from review_server.models import AuditEvent

    assert stand.osce("server", "audit", "anchor", "--config", str(chain_copy)).returncode == 0
    database = Database(f"sqlite:///{chain_copy.parent / 'copy.db'}")

    def rewrite(s):  # type: ignore[no-untyped-def]
        rows = s.query(AuditEvent).order_by(AuditEvent.seq).all()
        prev = rows[1].prev_hash
        for ev in rows[1:]:  # row 2 gets another actor; every later row is re-hashed to match
            if ev.seq == 2:
                ev.actor = "user:someone-else"
            ev.prev_hash, ev.hash = prev, row_hash(prev, ev.seq, ev.at, ev.actor, ev.action, ev.target, ev.details)
            prev = ev.hash
            s.flush()

    try:
        database.run(rewrite)
    finally:
        database.dispose()
    code, out = _verify_chain(stand, chain_copy)
    assert out["first_bad_seq"] is None  # the chain alone checks: only the anchor can tell
    assert code == 1 and any("(rewritten?)" in p for p in out["anchor_problems"]), out
