"""Media storage: one interface, two backends (local folder, S3-compatible object storage).

Media is addressed by the SHA-256 of its bytes and written once. The key is derived only from the
hex hash, never from a name a client sent, so no path traversal is possible. `put` verifies the hash
before the object becomes visible; an existing object is never overwritten (same key = same bytes).
`delete` exists only for retention; the caller writes the audit record.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from .config import ServerConfig

CHUNK = 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


class StorageError(Exception):
    """Base class for storage failures."""


class InvalidKey(StorageError, ValueError):
    """Not a lowercase hex SHA-256."""


class HashMismatch(StorageError):
    def __init__(self, expected: str, actual: str, size: int) -> None:
        super().__init__(f"content SHA-256 is {actual} ({size} bytes), expected {expected}")
        self.expected, self.actual, self.size = expected, actual, size


class NotFound(StorageError, KeyError):
    pass


def check_key(key: str) -> str:
    if not isinstance(key, str) or not _HEX64.fullmatch(key):
        raise InvalidKey(f"not a lowercase hex SHA-256: {key!r}"[:120])
    return key


class MediaStorage(Protocol):
    def put(self, data: bytes | BinaryIO | Path, expected_sha256: str, verified: bool = False) -> str:
        """Store the bytes if their SHA-256 is `expected_sha256`; return the key (= the hash).

        A Path is a finished, fsynced file the caller gives up (a completed upload): the local
        backend links it into place instead of copying it. `verified` says the caller has just hashed
        exactly these bytes as they were written (the tus receiver does), so a Path need not be re-read."""

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object (close it)."""

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None:
        """Remove the object (retention only; audited by the caller). Missing objects are not an error."""


def _as_stream(data: bytes | BinaryIO) -> BinaryIO:
    return io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data


def _copy_hashing(src: BinaryIO, dst: BinaryIO | None) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            break
        h.update(chunk)
        if dst is not None:
            dst.write(chunk)
        size += len(chunk)
    return h.hexdigest(), size


class LocalStorage:
    """Objects under root/ab/cd/<hash>; written to root/.tmp, fsynced, verified, then linked in place."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes | BinaryIO | Path, expected_sha256: str, verified: bool = False) -> str:
        final = self.path_for(expected_sha256)
        if isinstance(data, Path):
            if not verified:
                with data.open("rb") as fh:
                    actual, size = _copy_hashing(fh, None)
                if actual != expected_sha256:
                    raise HashMismatch(expected_sha256, actual, size)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                with contextlib.suppress(FileExistsError):
                    os.link(data, final)  # no second copy of a large file on the same disk
                _fsync_dir(final.parent)
                return expected_sha256
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
            with data.open("rb") as fh:  # another filesystem: copy as any stream
                return self.put(fh, expected_sha256)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as fh:
                actual, size = _copy_hashing(_as_stream(data), fh)
                fh.flush()
                os.fsync(fh.fileno())
            if actual != expected_sha256:
                raise HashMismatch(expected_sha256, actual, size)
            final.parent.mkdir(parents=True, exist_ok=True)
            # link() fails if the name exists: an atomic "create, never overwrite". If it exists, it
            # holds the same bytes (same hash), so there is nothing to do.
            with contextlib.suppress(FileExistsError):
                os.link(tmp_name, final)
            _fsync_dir(final.parent)
            return expected_sha256
        finally:
            os.unlink(tmp_name)

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path_for(key).open("rb")
        except FileNotFoundError as exc:
            raise NotFound(key) from exc

    def get(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self.path_for(key).stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(key) from exc

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Storage:
    """S3-compatible object storage (MinIO, Ceph RGW, AWS) through boto3; object key = hash (+ prefix).

    The body is spooled and hashed locally before anything is sent, so a wrong hash never reaches the
    bucket; the upload also carries ChecksumSHA256 so the server re-verifies it, and IfNoneMatch='*'
    so an existing object is never overwritten.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "media/",
        create_bucket: bool = False,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )
        if create_bucket:
            try:
                self.client.head_bucket(Bucket=bucket)
            except self.client.exceptions.ClientError:
                self.client.create_bucket(Bucket=bucket)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, data: bytes | BinaryIO | Path, expected_sha256: str, verified: bool = False) -> str:
        # An upload to S3 is a copy anyway: it is hashed on the way whatever `verified` says.
        if isinstance(data, Path):
            with data.open("rb") as fh:
                return self.put(fh, expected_sha256)
        import base64

        from botocore.exceptions import ClientError

        s3key = self._key(expected_sha256)
        with tempfile.SpooledTemporaryFile(max_size=8 * CHUNK) as spool:
            actual, size = _copy_hashing(_as_stream(data), cast(BinaryIO, spool))
            if actual != expected_sha256:
                raise HashMismatch(expected_sha256, actual, size)
            if self.exists(expected_sha256):
                return expected_sha256
            spool.seek(0)
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=s3key,
                    Body=spool,
                    ContentLength=size,
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(actual)).decode(),
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return expected_sha256  # someone stored the same bytes meanwhile
                raise StorageError(f"S3 put {self.bucket}/{s3key}: {code or exc}") from exc
        return expected_sha256

    def open(self, key: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(key) from exc
            raise
        return obj["Body"]  # a StreamingBody: read()/close()

    def get(self, key: str) -> bytes:
        body = self.open(key)
        try:
            return body.read()
        finally:
            body.close()

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise NotFound(key)
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def storage_from_config(cfg: ServerConfig) -> MediaStorage:
    """Build the backend named in a ServerConfig."""
    if cfg.media_backend == "s3":
        key_id, secret = cfg.s3_credentials()
        return S3Storage(
            cfg.s3_bucket,
            endpoint_url=cfg.s3_endpoint_url,
            region=cfg.s3_region,
            access_key_id=key_id,
            secret_access_key=secret,
            create_bucket=cfg.s3_create_bucket,
        )
    return LocalStorage(cfg.media_dir)


__all__ = [
    "HashMismatch",
    "InvalidKey",
    "LocalStorage",
    "MediaStorage",
    "NotFound",
    "S3Storage",
    "StorageError",
    "check_key",
    "storage_from_config",
]
