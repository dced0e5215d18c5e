"""publish() and ol.models against a stand-in models API that records what it receives.

The real platform endpoint (blob store + ModelRegistry through the relay) does not exist yet; it is tested end to
end once it does. Here we check what the SDK sends and what it refuses to send.
"""

from __future__ import annotations

import shutil
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from openledger_sdk import Client, OpenLedgerError
from openledger_sdk.modelfactory import IndexSettings, LoraSettings, TrainedModel, finetune
from openledger_sdk.modelfactory.errors import FinetuneError, IncompleteModelError
from openledger_sdk.modelfactory.manifest import read_manifest
from openledger_sdk.modelfactory.publish import publish
from tests.test_modelfactory_train import FakeClient, FakeDatanet
from tests.tiny_model import shared_tiny_model

torch.set_num_threads(1)  # shared CPUs: OpenMP threads under contention run slower than one


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Form fields and files of a multipart/form-data body (stdlib parser: python-multipart is not installed)."""
    message = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        if filename is not None:
            assert name == "files"
            files[filename] = payload
        else:
            fields[name] = payload.decode()
    return fields, files


def make_app(received: list[dict]) -> FastAPI:
    app = FastAPI()
    models: dict[str, dict] = {}

    @app.post("/services/platform/api/models")
    async def create(request: Request) -> dict:
        fields, files = parse_multipart(request.headers["content-type"], await request.body())
        name = fields["name"]
        if name in models:
            raise HTTPException(409, f"a model named {name!r} exists")
        received.append({**fields, "files": files, "auth": request.headers.get("authorization")})
        models[name] = {"id": len(models) + 1, "name": name, "price_per_1k_tokens": fields["price_per_1k_tokens"],
                        "manifest_hash": fields["manifest_hash"], "status": "registering"}  # fmt: skip
        return models[name]

    @app.get("/services/platform/api/models")
    def list_models(mine: bool = False) -> list[dict]:
        return list(models.values())

    @app.get("/services/platform/api/models/{name}")
    def get_model(name: str) -> dict:
        if name not in models:
            raise HTTPException(404, f"no model {name!r}")
        return models[name]

    return app


@pytest.fixture
def hub() -> tuple[Client, list[dict]]:
    received: list[dict] = []
    client = Client("http://testserver", "user-token")
    client._http = TestClient(make_app(received), base_url="http://testserver",
                              headers={"Authorization": "token user-token"})  # fmt: skip
    return client, received


QUICK = {"lora": LoraSettings(r=2, alpha=4), "epochs": 1, "batch_size": 2, "max_len": 32, "eval_split": 0,
         "index": IndexSettings(dim=64), "progress": False}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """Trained on a (stand-in) published datanet version, as the platform requires."""
    data = [{"_row_id": i, "_contributor": f"0x{i + 1:040x}", "prompt": f"q{i}", "response": f"a{i}"} for i in range(6)]
    return finetune(str(shared_tiny_model()), datanet="support-chats", client=FakeClient(FakeDatanet(data)),
                    output_dir=tmp_path_factory.mktemp("pub"), **QUICK)  # fmt: skip


def test_publish_uploads_every_file_with_the_manifest_hash(hub, trained: TrainedModel) -> None:
    client, received = hub
    record = client.models.publish(trained, "tiny-bot", 0.25)
    assert record == {"id": 1, "name": "tiny-bot", "price_per_1k_tokens": "0.25",
                      "manifest_hash": trained.manifest_hash, "status": "registering"}  # fmt: skip
    (upload,) = received
    assert upload["auth"] == "token user-token" and upload["price_per_1k_tokens"] == "0.25"
    assert upload["manifest_hash"] == read_manifest(trained.path)["manifest_hash"]
    assert set(upload["files"]) == {
        "manifest.json",
        "adapter_model.safetensors",
        "adapter_config.json",
        "attribution_index.safetensors",
        "attribution_index.json",
        "span_index.safetensors",
        "span_index.json",
    }
    for name, content in upload["files"].items():
        assert content == (trained.path / name).read_bytes()
    assert client.models.list() == [record]
    assert client.models.get("tiny-bot") == record
    with pytest.raises(OpenLedgerError, match="404: no model 'nope'"):
        client.models.get("nope")
    # A saved folder publishes the same way; the platform's refusal comes back as its message.
    with pytest.raises(OpenLedgerError, match="409: a model named 'tiny-bot' exists"):
        publish(client, trained.path, "tiny-bot", "0.25")
    assert publish(client, str(trained.path), "tiny-bot-2", "1e-3")["price_per_1k_tokens"] == "0.001"


@pytest.mark.parametrize(
    ("name", "price", "message"),
    [
        ("Tiny Bot", 1, "model name 'Tiny Bot' must be"),
        ("", 1, "model name '' must be"),
        ("tiny", -1, "price_per_1k_tokens must be >= 0"),
        ("tiny", "free", "price_per_1k_tokens must be a number"),
        ("tiny", float("nan"), "price_per_1k_tokens must be >= 0"),
    ],
)
def test_bad_name_or_price_is_refused_before_upload(hub, trained, name, price, message) -> None:
    client, received = hub
    with pytest.raises(FinetuneError, match=message):
        publish(client, trained, name, price)
    assert received == []


def test_changed_or_incomplete_models_are_refused(hub, trained: TrainedModel, tmp_path: Path) -> None:
    client, received = hub
    copy = trained.save(tmp_path / "copy")
    (copy / "attribution_index.json").write_text("{}")
    with pytest.raises(IncompleteModelError, match="attribution_index.json does not match"):
        publish(client, copy, "tampered", 1)
    shutil.rmtree(copy)
    with pytest.raises(IncompleteModelError, match="no manifest.json"):
        publish(client, tmp_path, "empty", 1)
    no_index = finetune(str(shared_tiny_model()), rows=[{"text": "a b c d"}, {"text": "e f g h"}], epochs=1,
                        max_len=16, eval_split=0, index=False, output_dir=tmp_path / "noindex",
                        progress=False)  # fmt: skip
    with pytest.raises(IncompleteModelError, match="without its attribution index"):
        publish(client, no_index, "no-index", 1)
    rows_only = finetune(str(shared_tiny_model()), rows=[{"prompt": "q", "response": "a"}] * 1,
                         output_dir=tmp_path / "rows", **QUICK)  # fmt: skip
    with pytest.raises(IncompleteModelError, match="trained on rows passed in directly"):
        publish(client, rows_only, "rows-only", 1)
    assert received == []
