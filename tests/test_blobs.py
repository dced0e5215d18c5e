"""The content-addressed blob store: local directory and an fsspec URL (memory://)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from hub.blobs import BlobError, BlobNotFound, BlobStore


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return BlobStore(tmp_path / "blobs")
    return BlobStore(f"memory://blobs-{uuid.uuid4().hex}")


def test_put_bytes_names_the_blob_by_its_sha256(store: BlobStore) -> None:
    blob = store.put_bytes(b"hello datanets")
    assert blob.digest == hashlib.sha256(b"hello datanets").hexdigest()
    assert blob.size == 14
    assert store.exists(blob.digest)
    assert store.get(blob.digest) == b"hello datanets"
    assert store.size(blob.digest) == 14
    assert store.path(blob.digest).endswith(f"/{blob.digest[:2]}/{blob.digest[2:4]}/{blob.digest}")


def test_same_bytes_twice_is_one_blob(store: BlobStore) -> None:
    first = store.put_bytes(b"x" * 1000)
    second = store.put_stream([b"x" * 500, b"x" * 500])
    assert first == second
    assert store.get(first.digest) == b"x" * 1000


def test_put_file_streams_large_files(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    data = bytes(range(256)) * 20_000  # 5 MB: several chunks
    source.write_bytes(data)
    blob = store.put_file(source)
    assert blob.digest == hashlib.sha256(data).hexdigest()
    assert b"".join(store.iter_chunks(blob.digest)) == data


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.put_bytes(b"one")

    def failing():
        yield b"partial"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        store.put_stream(failing())
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


@pytest.mark.parametrize("digest", ["../../etc/passwd", "ab/cd", "A" * 64, "0" * 63, "", "g" * 64])
def test_digests_are_validated_before_becoming_paths(store: BlobStore, digest: str) -> None:
    with pytest.raises(BlobError):
        store.exists(digest)
    with pytest.raises(BlobError):
        store.open(digest)


def test_missing_blob(store: BlobStore) -> None:
    missing = "0" * 64
    assert not store.exists(missing)
    with pytest.raises(BlobNotFound):
        store.get(missing)
    with pytest.raises(BlobNotFound):
        store.size(missing)


def test_local_path_only_for_local_stores(tmp_path: Path) -> None:
    local = BlobStore(tmp_path / "blobs")
    blob = local.put_bytes(b"abc")
    assert local.local_path(blob.digest).read_bytes() == b"abc"
    remote = BlobStore(f"memory://blobs-{uuid.uuid4().hex}")
    assert remote.local_path(remote.put_bytes(b"abc").digest) is None
