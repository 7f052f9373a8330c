"""The server's Ed25519 key for signing export packages: made on first use, kept in the data folder (0600).

The data folder is the parent of `media_dir` (demo: demo-data/server/); the key is `keys/export-ed25519.pem`.
The public key is included in every package and published at `GET /api/export-key`; its fingerprint is the
SHA-256 of the 32 raw public-key bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE = Path("keys") / "export-ed25519.pem"


def data_dir(config) -> Path:
    """Where the server keeps its own files beside the media folder (keys, export packages)."""
    return Path(config.media_dir).resolve().parent


def load_or_create(folder: Path) -> Ed25519PrivateKey:
    """The signing key in `folder`, created (mode 0600, never overwritten) if there is none yet."""
    path = Path(folder) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile: use theirs
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return loaded


def load_existing(folder: Path) -> Ed25519PrivateKey | None:
    """The signing key in `folder`, or None if the server has made none yet (nothing is created)."""
    if not (Path(folder) / KEY_FILE).exists():
        return None
    return load_or_create(folder)


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key
