"""The upload routes in-process (FastAPI TestClient) with a small configured limit: declared and streamed sizes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.auth import HubUser, current_user
from hub.blobs import BlobStore
from hub.datanets import api, config
from hub.datanets.service import DatanetService
from hub.datanets.spec import DatanetSpec
from hub.db import make_engine, migrate

LIMIT = 2048


def _user(name: str) -> HubUser:
    return HubUser(name=name, admin=False, groups=(), scopes=frozenset({"access:services"}), kind="user")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    saved = config.settings.model_dump()
    config.configure(max_upload_bytes=LIMIT)
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    service = DatanetService(
        engine,
        BlobStore(tmp_path / "blobs"),
        lambda name: to_checksum_address(keccak(name.encode())[-20:]),
        upload_dir=tmp_path / "uploads",
    )
    service.create(_user("owner"), DatanetSpec(name="limits", schema="text"))
    app = FastAPI()
    app.include_router(api.router)
    app.state.runtime = SimpleNamespace(extras={"datanets": service})
    app.dependency_overrides[current_user] = lambda: _user("owner")
    try:
        with TestClient(app) as test_client:
            yield test_client
    finally:
        config.configure(saved)
        engine.dispose()


def test_declared_length_over_the_limit_is_413(client: TestClient) -> None:
    answer = client.post(
        "/api/datanets/limits/files",
        params={"filename": "notes.txt"},
        content=b"short",
        headers={"Content-Length": str(2 * 1024**3)},
    )
    assert answer.status_code == 413 and str(LIMIT) in answer.json()["detail"]


def test_chunked_body_over_the_limit_is_413_and_leaves_no_temp_file(client: TestClient, tmp_path: Path) -> None:
    def body() -> Iterator[bytes]:
        for i in range(10):
            yield f"paragraph {i} ".encode() * 40 + b"\n\n"

    answer = client.post("/api/datanets/limits/files", params={"filename": "notes.txt"}, content=body())
    assert answer.status_code == 413
    assert list((tmp_path / "uploads").iterdir()) == []


def test_rows_body_over_the_limit_is_413(client: TestClient) -> None:
    rows = [{"text": f"row {i} " + "x" * 100} for i in range(40)]
    answer = client.post("/api/datanets/limits/rows", content=json.dumps({"rows": rows}))
    assert answer.status_code == 413


def test_upload_within_the_limit_is_stored_by_digest(client: TestClient, tmp_path: Path) -> None:
    answer = client.post(
        "/api/datanets/limits/files", params={"filename": "../../notes.txt"}, content=b"One.\n\nTwo paragraphs.\n"
    )
    assert answer.status_code == 201, answer.text
    submission = answer.json()
    assert submission["filename"] == "notes.txt" and submission["rows"] == 2
    digest = submission["file_digest"]
    assert (tmp_path / "blobs" / digest[:2] / digest[2:4] / digest).read_bytes() == b"One.\n\nTwo paragraphs.\n"
    assert list((tmp_path / "uploads").iterdir()) == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid UTF-8 JSON"),
        (b'{"rows": "nope"}', 400, '{"rows": [{...}, ...]}'),
        (b'{"rows": []}', 400, "no rows found"),
    ],
)
def test_malformed_row_bodies(client: TestClient, body: bytes, status: int, message: str) -> None:
    answer = client.post("/api/datanets/limits/rows", content=body)
    assert answer.status_code == status and message in answer.json()["detail"]
