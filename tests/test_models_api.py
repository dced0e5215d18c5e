"""Models through the real hub: a tiny ModelFactory model trained on a published datanet version and published with
the SDK; list/get/download, the ModelRegistry record on-chain, price changes, unlisting, every bad input (nothing
stored), and the adapter catalog the OpenLoRA service reads."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from sqlalchemy import func
from sqlmodel import Session, select

from hub.blobs import BlobStore
from hub.db import make_engine
from hub.models.catalog import UnknownModelError, price_table, resolve_adapter
from hub.models.models import PublishedModel
from hub.models.validation import INCOMPLETE
from hub.relay.outbox import OutboxEntry
from openledger_sdk import connect
from openledger_sdk.modelfactory import TrainedModel
from openledger_sdk.modelfactory.manifest import MANIFEST_FILE, file_sha256, manifest_hash, read_manifest
from tests.hub_harness import RunningHub
from tests.tiny_model import shared_tiny_model, train_tiny_adapter

pytestmark = pytest.mark.e2e
torch.set_num_threads(2)

API = "/services/platform/api/models"
SUFFIX = uuid.uuid4().hex[:6]
ADAPTER = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


def unique(name: str) -> str:
    return f"{name}-{SUFFIX}"


@pytest.fixture(scope="module")
def tokens(platform: RunningHub) -> dict[str, str]:
    return {name: platform.ensure_user(name) for name in ("mdl-alice", "mdl-bob")}


@pytest.fixture(scope="module")
def alice(platform: RunningHub, tokens: dict[str, str]):
    return connect(platform.url, tokens["mdl-alice"])


@pytest.fixture(scope="module")
def as_alice(platform: RunningHub, tokens: dict[str, str]):
    with platform.as_token(tokens["mdl-alice"]) as client:
        yield client


@pytest.fixture(scope="module")
def as_bob(platform: RunningHub, tokens: dict[str, str]):
    with platform.as_token(tokens["mdl-bob"]) as client:
        yield client


@pytest.fixture(scope="module")
def base_dir(platform: RunningHub) -> Path:
    """The tiny base model, installed where the platform keeps its converted base models."""
    return platform.install_base_model(shared_tiny_model(), unique("tiny-llama"))


@pytest.fixture(scope="module")
def training_version(alice) -> dict[str, Any]:
    dn = alice.datanets.create(unique("model-qa"), schema={"prompt": str, "response": str}, approval="auto")
    dn.contribute([{"prompt": f"What is fact {i}?", "response": f"Fact {i} is about LoRA rank {i}."} for i in range(8)])
    return dn.publish()


@pytest.fixture(scope="module")
def trained(
    platform: RunningHub, alice, base_dir: Path, training_version: dict, tmp_path_factory: pytest.TempPathFactory
) -> TrainedModel:
    platform.fund("mdl-alice", "1")  # training on the hub is paid in OPEN
    return train_tiny_adapter(base_dir, training_version, alice, tmp_path_factory.mktemp("trained") / "model")


@pytest.fixture(scope="module")
def published(alice, trained: TrainedModel) -> dict[str, Any]:
    return alice.models.publish(trained, unique("tiny-bot"), "0.25")


def sql_counts(platform: RunningHub) -> tuple[int, int]:
    """(model rows, outbox rows) in the platform's database."""
    engine = make_engine(platform.settings.database_url)
    try:
        with Session(engine) as session:
            models = session.exec(select(func.count()).select_from(PublishedModel)).one()
            outbox = session.exec(select(func.count()).select_from(OutboxEntry)).one()
        return models, outbox
    finally:
        engine.dispose()


def ledger(platform: RunningHub):
    from hub.ledger.contracts import Ledger
    from hub.ledger.deploy import connect as connect_chain
    from hub.ledger.deploy import deployments_dir

    settings = platform.settings
    record = json.loads((deployments_dir(settings.data_dir, settings.chain.chain_id) / "deployments.json").read_text())
    w3 = connect_chain(settings.chain_rpc_url, settings.chain.chain_id)
    return Ledger.at(w3, settings.chain.chain_id, record["contracts"])


def wait_for(read: Callable[[], dict], key: Callable[[dict], dict], timeout: float = 60) -> dict:
    """Poll `read()` until the chain status `key(record)` is confirmed (failing fast on failed)."""
    record = read()
    deadline = time.monotonic() + timeout
    while key(record)["status"] != "confirmed" and time.monotonic() < deadline:
        assert key(record)["status"] not in ("failed", "off"), key(record)
        time.sleep(0.5)
        record = read()
    assert key(record)["status"] == "confirmed", key(record)
    return record


def post_model(
    client: httpx.Client, folder: Path, name: str, price: str = "0.1", skip: tuple[str, ...] = (), **fields: str
) -> httpx.Response:
    """The multipart request ol.models.publish sends, built by hand so that bad variants can be sent too."""
    names = [MANIFEST_FILE, *sorted(read_manifest(folder)["files"])]
    names += sorted(p.name for p in folder.iterdir() if p.name not in names)  # extra files a variant added
    files = [("files", (n, (folder / n).read_bytes(), "application/octet-stream")) for n in names if n not in skip]
    return client.post(API, data={"name": name, "price_per_1k_tokens": price, **fields}, files=files)


def variant(trained: TrainedModel, tmp_path: Path, edit: Callable[[Path, dict], None], seal: bool = True) -> Path:
    """A copy of the trained model folder with `edit(folder, manifest)` applied. `seal`: re-hash the listed files and
    the manifest as ModelFactory does (but keep an edited `adapter_sha256`), so only the edit itself is wrong."""
    folder = trained.save(tmp_path / "variant")
    manifest = read_manifest(folder)
    edit(folder, manifest)
    if seal:
        manifest["files"] = {filename: file_sha256(folder / filename) for filename in manifest["files"]}
        manifest["manifest_hash"] = manifest_hash(manifest)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder


# Publish, read, download --------------------------------------------------------------------------------------------
def test_publish_through_the_sdk_records_everything(published: dict, trained: TrainedModel, training_version) -> None:
    manifest = read_manifest(trained.path)
    assert published["name"] == unique("tiny-bot") and published["owner"] == "mdl-alice"
    assert published["price_per_1k_tokens"] == "0.25"
    assert published["price_per_1k_tokens_wei"] == str(25 * 10**16)
    assert published["manifest_hash"] == trained.manifest_hash == manifest["manifest_hash"]
    assert published["adapter_sha256"] == file_sha256(trained.path / ADAPTER)
    assert published["base_model"]["name"] == unique("tiny-llama")
    assert published["datanets"] == [
        {"name": training_version["datanet"], "version": 1, "root": training_version["merkle_root"]}
    ]
    assert set(published["files"]) == {MANIFEST_FILE, *manifest["files"]}
    for filename, entry in published["files"].items():
        assert entry["digest"] == file_sha256(trained.path / filename)
    assert published["manifest"] == manifest and published["listed"] is True
    assert published["chain"]["status"] in ("pending", "signed", "sent", "confirmed")


def test_list_get_and_download_round_trip(
    platform: RunningHub, alice, as_bob: httpx.Client, published: dict, trained: TrainedModel
) -> None:
    name = published["name"]
    assert name in [m["name"] for m in alice.models.list()]
    assert [m["name"] for m in alice.models.list(mine=True)] == [name]
    assert [m["name"] for m in alice.models.list(base=unique("tiny-llama"))] == [name]
    assert as_bob.get(API, params={"mine": True}).json() == []
    assert [m["name"] for m in as_bob.get(API, params={"owner": "mdl-alice"}).json()] == [name]
    assert alice.models.get(name)["id"] == alice.models.get(str(published["id"]))["id"] == published["id"]
    assert as_bob.get(f"{API}/nope-{SUFFIX}").status_code == 404
    with platform.admin() as service:  # the admin service's token: services (OpenLoRA replicas) download too
        assert service.get("/services/platform/api/me").json()["kind"] == "service"
        for filename in published["files"]:
            for client in (as_bob, service):
                answer = client.get(f"{API}/{name}/files/{filename}")
                assert answer.status_code == 200, answer.text
                assert answer.content == (trained.path / filename).read_bytes()
                assert answer.headers["x-content-sha256"] == published["files"][filename]["digest"]
    missing = as_bob.get(f"{API}/{name}/files/secrets.txt")
    assert missing.status_code == 404 and "has no file" in missing.json()["detail"]


def test_registry_record_appears_on_chain(platform: RunningHub, alice, published: dict, trained) -> None:
    record = wait_for(lambda: alice.models.get(published["name"]), lambda r: r["chain"])
    assert record["chain"]["tx_hash"].startswith("0x")
    on_chain = ledger(platform).models.get_model(record["chain"]["model_id"])
    assert on_chain.owner == record["owner_address"] == alice.wallet.address
    assert on_chain.manifest_hash.hex() == trained.manifest_hash
    assert on_chain.adapter_hash.hex() == record["adapter_sha256"]
    assert on_chain.base_model_hash.hex() == read_manifest(trained.path)["base_model"]["weights_sha256"]
    assert ["0x" + root.hex() for root in on_chain.datanet_version_roots] == [d["root"] for d in record["datanets"]]
    assert on_chain.price_per_1k_tokens == 25 * 10**16


def test_price_change_is_the_owners_and_goes_on_chain(
    platform: RunningHub, alice, as_alice: httpx.Client, as_bob: httpx.Client, published: dict
) -> None:
    url = f"{API}/{published['name']}"
    refused = as_bob.patch(url, json={"price_per_1k_tokens": "0"})
    assert refused.status_code == 403 and "only the owner" in refused.json()["detail"]
    negative = as_alice.patch(url, json={"price_per_1k_tokens": "-1"})
    assert negative.status_code == 422 and ">= 0" in negative.json()["detail"]
    changed = as_alice.patch(url, json={"price_per_1k_tokens": "0.5"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["price_per_1k_tokens"] == "0.5"
    record = wait_for(lambda: alice.models.get(published["name"]), lambda r: r["chain"]["price_change"])
    assert record["price_per_1k_tokens"] == "0.5"
    assert ledger(platform).models.get_model(record["chain"]["model_id"]).price_per_1k_tokens == 5 * 10**17


# Bad input ----------------------------------------------------------------------------------------------------------
def _set(path: str, value: Any) -> Callable[[Path, dict], None]:
    def edit(folder: Path, manifest: dict) -> None:
        *parents, last = path.split(".")
        target = manifest
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value

    return edit


def _edit_json(filename: str, **changes: Any) -> Callable[[Path, dict], None]:
    def edit(folder: Path, manifest: dict) -> None:
        data = json.loads((folder / filename).read_text())
        (folder / filename).write_text(json.dumps(data | changes))

    return edit


def _flip_adapter_byte(folder: Path, manifest: dict) -> None:
    data = bytearray((folder / ADAPTER).read_bytes())
    data[-1] ^= 0xFF
    (folder / ADAPTER).write_bytes(bytes(data))


def _unknown_base(folder: Path, manifest: dict) -> None:
    manifest["base_model"] = {"id": "mystery-model", "weights_sha256": "0" * 64}
    _edit_json(CONFIG, base_model_name_or_path="mystery-model")(folder, manifest)


def _extra_file(folder: Path, manifest: dict) -> None:
    (folder / "notes.json").write_text("{}")


# case → (edit, reseal the manifest over the edited files?, status, message)
BAD_VARIANTS = {
    "incomplete": (_set("complete", False), True, 400, INCOMPLETE),
    "adapter-bytes": (_flip_adapter_byte, False, 422, f"{ADAPTER} does not match its sha256"),
    "adapter-sha256": (_set("adapter_sha256", "ab" * 32), True, 422, "does not match the adapter sha256"),
    "unknown-version": (_set("datanets.0.version", 99), True, 422, "has no version 99"),
    "wrong-root": (_set("datanets.0.root", "0x" + "ab" * 32), True, 422, "the adapter was trained on other data"),
    "unknown-datanet": (_set("datanets.0.name", "no-such-datanet"), True, 422, "no datanet named 'no-such-datanet'"),
    "no-datanet": (_set("datanets", []), True, 422, "names no datanet version"),
    "direct-rows": (_set("datanets.0.root", None), True, 422, "without a version root"),
    "unknown-base": (_unknown_base, True, 422, "base model 'mystery-model' is not offered"),
    "not-lora": (_edit_json(CONFIG, peft_type="PREFIX_TUNING"), True, 422, "is not a PEFT LoRA config"),
    "unlisted-file": (_extra_file, False, 400, "notes.json is not listed"),
    "edited-manifest": (_set("seed", 12345), False, 422, "was edited after it was sealed"),
}


@pytest.mark.parametrize("case", list(BAD_VARIANTS))
def test_bad_model_files_are_refused_and_nothing_is_stored(
    platform: RunningHub, as_alice: httpx.Client, trained: TrainedModel, published: dict, tmp_path: Path, case: str
) -> None:
    edit, seal, status, message = BAD_VARIANTS[case]
    folder = variant(trained, tmp_path, edit, seal)
    before = sql_counts(platform)
    name = unique(f"bad-{case}")
    answer = post_model(as_alice, folder, name)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert sql_counts(platform) == before
    assert as_alice.get(f"{API}/{name}").status_code == 404
    if case == "adapter-bytes":  # checked before storing: the refused file is not in the blob store either
        assert not BlobStore(platform.settings.blobs_url).exists(file_sha256(folder / ADAPTER))


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("missing-adapter", 400, f"send {ADAPTER}"),
        ("no-manifest", 400, f"send {MANIFEST_FILE}"),
        ("negative-price", 422, "must be a finite number >= 0"),
        ("too-precise-price", 422, "more than 18 decimal places"),
        ("bad-name", 422, "must be 1-64 characters"),
        ("duplicate-name", 409, "exists already"),
        ("base-model-name", 409, "is the name of a base model"),
        ("wrong-manifest-hash", 422, "is not the hash of manifest.json"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_stored(
    platform: RunningHub,
    as_alice: httpx.Client,
    trained: TrainedModel,
    published: dict,
    tmp_path: Path,
    case: str,
    status: int,
    message: str,
) -> None:
    folder, name, price, skip, fields = trained.path, unique(f"bad-{case}"), "0.1", (), {}
    if case == "missing-adapter":
        skip = (ADAPTER,)
    elif case == "no-manifest":
        skip = (MANIFEST_FILE,)
    elif case == "negative-price":
        price = "-0.5"
    elif case == "too-precise-price":
        price = "0.0000000000000000001"
    elif case == "bad-name":
        name = "Tiny Bot"
    elif case == "duplicate-name":
        name = published["name"]
    elif case == "base-model-name":
        name = unique("tiny-llama")
    elif case == "wrong-manifest-hash":
        fields = {"manifest_hash": "cd" * 32}
    before = sql_counts(platform)
    answer = post_model(as_alice, folder, name, price, skip, **fields)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert sql_counts(platform) == before


def test_not_multipart_and_services_are_refused(platform: RunningHub, as_alice: httpx.Client) -> None:
    answer = as_alice.post(API, json={"name": unique("json"), "price_per_1k_tokens": "1"})
    assert answer.status_code == 415 and "multipart/form-data" in answer.json()["detail"]
    with platform.admin() as service:
        answer = service.post(API, data={"name": unique("svc"), "price_per_1k_tokens": "1"})
    assert answer.status_code == 403 and "published by hub users" in answer.json()["detail"]


def test_oversized_content_length_is_refused_before_the_body(platform: RunningHub, tokens: dict) -> None:
    before = sql_counts(platform)
    answer = platform.refused_before_body(
        API,
        tokens["mdl-alice"],
        "multipart/form-data; boundary=xyz",
        64 * 1024**3,
        b'--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nbig\r\n',
    )
    assert "the limit is" in answer
    assert sql_counts(platform) == before


# OpenLoRA's view, progress, unlisting ------------------------------------------------------------------------------
def test_resolve_adapter_materialises_loadable_files(
    platform: RunningHub, alice, published: dict, trained: TrainedModel, base_dir: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with platform.as_service_account():  # as OpenLoRA does: the adapters folder is the services'
        folder = resolve_adapter(platform.settings, published["name"])
    assert folder == platform.settings.data_dir / "adapters" / published["name"]
    for filename in (ADAPTER, CONFIG, MANIFEST_FILE):
        assert (folder / filename).read_bytes() == (trained.path / filename).read_bytes()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith((".tmp-", ".stale-"))]
    with platform.as_service_account():
        (folder / ".openledger-adapter").write_text("stale")  # a copy of something else: replaced, not trusted
        assert resolve_adapter(platform.settings, published["name"]) == folder
    assert (folder / ".openledger-adapter").read_text() == published["adapter_sha256"]

    ids = torch.tensor([[1, 2, 3, 4, 5]])
    logits = []
    for adapter in (folder, trained.path):
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter).eval()
        with torch.no_grad():
            logits.append(model(input_ids=ids).logits)
    torch.testing.assert_close(logits[0], logits[1], rtol=0, atol=0)

    engine = make_engine(platform.settings.database_url)
    try:
        prices = price_table(engine, base=unique("tiny-llama"))
    finally:
        engine.dispose()
    assert prices == {published["name"]: Decimal(alice.models.get(published["name"])["price_per_1k_tokens"])}
    with pytest.raises(UnknownModelError):
        resolve_adapter(platform.settings, f"nope-{SUFFIX}")


def test_progress_counts_published_models(platform: RunningHub, published: dict) -> None:
    with platform.admin() as admin:
        table = admin.get("/services/platform/api/admin/progress", params={"users": "mdl-alice,mdl-bob"}).json()
    assert table["mdl-alice"]["models"] == 1 and table["mdl-bob"]["models"] == 0


def test_unlisting_is_the_owners_and_hides_the_model(
    platform: RunningHub, alice, as_alice: httpx.Client, as_bob: httpx.Client, published: dict
) -> None:
    name = published["name"]
    refused = as_bob.delete(f"{API}/{name}")
    assert refused.status_code == 403 and "only the owner" in refused.json()["detail"]
    answer = as_alice.delete(f"{API}/{name}")
    assert answer.status_code == 200 and answer.json()["listed"] is False
    assert name not in [m["name"] for m in alice.models.list()]
    assert as_bob.get(f"{API}/{name}").status_code == 404
    assert as_bob.get(f"{API}/{name}/files/{ADAPTER}").status_code == 404
    assert alice.models.get(name)["listed"] is False  # the owner still sees it
    with pytest.raises(UnknownModelError):
        resolve_adapter(platform.settings, name)
    manifest = [("files", (MANIFEST_FILE, b"{}", "application/json"))]
    taken = as_alice.post(API, data={"name": name, "price_per_1k_tokens": "1"}, files=manifest)  # the name stays taken
    assert taken.status_code == 409 and "exists already" in taken.json()["detail"]
