"""Media storage: the same tests against the local folder and S3 (moto's server mode, standing in for MinIO)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from review_server.config import ServerConfig
from review_server.storage import (
    HashMismatch,
    InvalidKey,
    LocalStorage,
    MediaStorage,
    NotFound,
    S3Storage,
    storage_from_config,
)
from scripts.harness.ports import free_port as _free_port


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real HTTP S3 endpoint: moto's server mode, started in this process on a free port."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> MediaStorage:
    if request.param == "local":
        return LocalStorage(tmp_path / "media")
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3Storage(
        f"osce-{tmp_path.name.lower().replace('_', '-')}"[:63],
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        create_bucket=True,
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_get_by_hash(storage: MediaStorage) -> None:
    data = b"\x00fragment\xff" * 1000
    key = storage.put(data, sha(data))
    assert key == sha(data)
    assert storage.exists(key) and storage.size(key) == len(data)
    assert storage.get(key) == data
    stream = storage.open(key)
    try:
        assert stream.read() == data
    finally:
        stream.close()


def test_put_from_a_stream(storage: MediaStorage) -> None:
    data = bytes(range(256)) * 5000  # over one copy chunk
    assert storage.put(io.BytesIO(data), sha(data)) == sha(data)
    assert storage.get(sha(data)) == data


def test_wrong_hash_stores_nothing(storage: MediaStorage) -> None:
    data, other = b"real bytes", b"claimed bytes"
    with pytest.raises(HashMismatch) as info:
        storage.put(data, sha(other))
    assert info.value.actual == sha(data) and info.value.size == len(data)
    assert not storage.exists(sha(other)) and not storage.exists(sha(data))


def test_never_rewritten(storage: MediaStorage) -> None:
    data = b"written once"
    storage.put(data, sha(data))
    assert storage.put(data, sha(data)) == sha(data)  # same bytes again: fine, nothing changes
    assert storage.get(sha(data)) == data


@pytest.mark.parametrize("key", ["../../etc/passwd", "A" * 64, "0" * 63, "", "0" * 64 + "/x", "media/" + "0" * 64])
def test_keys_must_be_hashes(storage: MediaStorage, key: str) -> None:
    with pytest.raises(InvalidKey):
        storage.put(b"x", key)
    with pytest.raises(InvalidKey):
        storage.get(key)
    with pytest.raises(InvalidKey):
        storage.exists(key)


def test_missing_and_delete(storage: MediaStorage) -> None:
    missing = "f" * 64
    assert not storage.exists(missing)
    with pytest.raises(NotFound):
        storage.get(missing)
    with pytest.raises(NotFound):
        storage.size(missing)
    data = b"to be deleted"
    storage.put(data, sha(data))
    storage.delete(sha(data))
    assert not storage.exists(sha(data))
    storage.delete(sha(data))  # missing is not an error


def test_local_layout_and_no_temp_files_left(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "m")
    data = b"layout"
    store.put(data, sha(data))
    with pytest.raises(HashMismatch):
        store.put(b"bad", sha(data + b"!"))
    h = sha(data)
    assert (tmp_path / "m" / h[:2] / h[2:4] / h).read_bytes() == data
    assert list((tmp_path / "m" / ".tmp").iterdir()) == []


def test_s3_wrong_hash_never_reaches_the_bucket(s3_endpoint: str) -> None:
    store = S3Storage(
        "osce-probe", endpoint_url=s3_endpoint, access_key_id="k", secret_access_key="s", create_bucket=True
    )
    with pytest.raises(HashMismatch):
        store.put(b"abc", sha(b"abd"))
    listed = store.client.list_objects_v2(Bucket="osce-probe").get("Contents", [])
    assert listed == []
    store.put(b"abc", sha(b"abc"))
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket="osce-probe")["Contents"]]
    assert keys == ["media/" + sha(b"abc")]


def test_backend_is_chosen_by_config(tmp_path: Path, s3_endpoint: str) -> None:
    local = storage_from_config(ServerConfig(media_dir=tmp_path / "m"))
    assert isinstance(local, LocalStorage)
    cfg = ServerConfig(
        media_backend="s3",
        s3_endpoint_url=s3_endpoint,
        s3_bucket="osce-from-config",
        s3_create_bucket=True,
        s3_access_key_id="k",
        s3_secret_access_key="s",
    )
    s3 = storage_from_config(cfg)
    assert isinstance(s3, S3Storage)
    s3.put(b"cfg", sha(b"cfg"))
    assert s3.get(sha(b"cfg")) == b"cfg"


async def test_the_app_stores_and_serves_fragments_through_s3(config: ServerConfig, s3_endpoint: str) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from review_server.app import create_app
    from scripts.harness.fmp4_bytes import media_bytes

    from .conftest import Api, World

    store = S3Storage(
        "osce-app", endpoint_url=s3_endpoint, access_key_id="k", secret_access_key="s", create_bucket=True
    )
    app = create_app(config, storage=store)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        world = World(Api(client, app))
        data = media_bytes(1100)
        headers = {**world.headers("station"), "X-Content-SHA256": sha(data)}
        resp = await client.put("/api/recordings/r1/tracks/cam1/fragments/1", data=data, headers=headers)
        assert resp.status == 201
        wrong = {**headers, "X-Content-SHA256": sha(b"nope")}
        assert (await client.put("/api/recordings/r1/tracks/cam1/fragments/2", data=data, headers=wrong)).status == 422
        got = await client.get(f"/api/media/{sha(data)}", headers=world.headers("observer"))
        assert got.status == 200 and await got.read() == data
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket="osce-app")["Contents"]]
    assert keys == ["media/" + sha(data)]
