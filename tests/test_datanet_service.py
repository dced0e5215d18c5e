"""The datanet service on a SQLite file, without the hub: transactions, races, curation, versions, the outbox."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from sqlmodel import Session, select

import hub.datanets.service as service_module
from hub.blobs import BlobStore
from hub.datanets import config
from hub.datanets.chain import RegistryWriter
from hub.datanets.demo_data import DEMO_NAME, demo_rows, seed_demo_datanet
from hub.datanets.models import DatanetRow, DatanetVersion, Submission
from hub.datanets.service import DatanetError, DatanetService
from hub.datanets.spec import DatanetSpec
from hub.db import make_engine, migrate
from hub.ledger.tx import PreparedCall
from hub.relay.outbox import OutboxEntry
from openledger_sdk.datanets import verify_row

QA = {"prompt": "str", "response": "str"}


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False


ALICE, BOB, CAROL, ADMIN = User("alice"), User("bob"), User("carol"), User("root", admin=True)


def address(name: str) -> str:
    return to_checksum_address(keccak(name.encode())[-20:])


class FakeRegistry:
    """DatanetRegistry's write side: PreparedCalls, as the real wrapper returns them."""

    def create_datanet(self, datanet_id: str, owner: str, metadata_hash: str) -> PreparedCall:
        return PreparedCall("DatanetRegistry", "createDatanet", "0x" + "12" * 20, f"0x01{datanet_id[2:]}")

    def publish_version(self, datanet_id: str, version: int, root: str, rows: int, counts_root: str) -> PreparedCall:
        return PreparedCall("DatanetRegistry", "publishVersion", "0x" + "12" * 20, f"0x02{root[2:]}{version:04x}")


@pytest.fixture
def engine(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def runtime(engine, tmp_path: Path) -> SimpleNamespace:
    deployment = SimpleNamespace(ledger=SimpleNamespace(datanets=FakeRegistry()))
    return SimpleNamespace(engine=engine, extras={"ledger": deployment}, blobs=BlobStore(tmp_path / "blobs"))


def make_service(runtime: SimpleNamespace) -> DatanetService:
    return DatanetService(runtime.engine, runtime.blobs, address, RegistryWriter(runtime))


@pytest.fixture
def service(runtime: SimpleNamespace) -> DatanetService:
    return make_service(runtime)


def qa(i: int) -> dict[str, str]:
    return {"prompt": f"Question number {i} about datanets?", "response": f"Answer {i}: rows are hashed and versioned."}


def create(service: DatanetService, name: str = "qa-set", owner: User = ALICE, **extra) -> dict:
    return service.create(owner, DatanetSpec(name=name, schema=QA, **extra))


def test_create_enqueues_the_registry_write_in_the_same_transaction(service: DatanetService, engine) -> None:
    info = create(service, tags=["Demo", "qa"], license="cc-by-4.0")
    assert info["license"] == "CC-BY-4.0" and info["tags"] == ["demo", "qa"]
    assert info["owner_address"] == address("alice")
    with Session(engine) as session:
        entries = session.exec(select(OutboxEntry)).all()
    assert [(e.kind, e.ref, e.signer) for e in entries] == [("datanet.create", info["chain_id"], "operator")]
    with pytest.raises(DatanetError) as taken:
        create(service)
    assert taken.value.status == 409


def test_a_failed_publish_leaves_no_outbox_row(service: DatanetService, engine, monkeypatch) -> None:
    create(service, approval="auto")
    service.contribute_rows(BOB, "qa-set", [qa(1)])

    def broken_commit(self) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(Session, "commit", broken_commit)
    with pytest.raises(RuntimeError):
        service.publish(ALICE, "qa-set")
    monkeypatch.undo()
    with Session(engine) as session:
        assert [e.kind for e in session.exec(select(OutboxEntry))] == ["datanet.create"]
    version = service.publish(ALICE, "qa-set")
    assert version["version"] == 1 and version["chain"]["status"] == "pending"


def test_rejected_upload_stores_nothing(service: DatanetService, engine, tmp_path: Path) -> None:
    create(service)
    service.contribute_rows(BOB, "qa-set", [qa(1)])
    with pytest.raises(DatanetError) as refused:
        service.contribute_rows(CAROL, "qa-set", [qa(2), qa(1), {"prompt": "only"}, qa(2)])
    detail = refused.value.detail
    assert refused.value.status == 422 and detail["bad_lines"] == [2, 3, 4]
    duplicate = detail["errors"][0]
    assert duplicate["kind"] == "duplicate" and duplicate["owner"] == "bob" and duplicate["row_id"] == 1
    with Session(engine) as session:
        assert len(session.exec(select(DatanetRow)).all()) == 1
        assert len(session.exec(select(Submission)).all()) == 1


def test_concurrent_same_row_from_two_processes_exactly_one_wins(runtime: SimpleNamespace, monkeypatch) -> None:
    # Two service instances stand for two platform processes: separate locks and indexes, one database.
    first, second = make_service(runtime), make_service(runtime)
    create(first)
    barrier = threading.Barrier(2, timeout=10)
    original = service_module.near_duplicates

    def both_checked_then_write(*args, **kwargs):
        barrier.wait()  # both uploads passed every check before either writes
        return original(*args, **kwargs)

    monkeypatch.setattr(service_module, "near_duplicates", both_checked_then_write)
    results: dict[str, object] = {}

    def upload(service: DatanetService, user: User) -> None:
        try:
            results[user.name] = service.contribute_rows(user, "qa-set", [qa(7)])
        except DatanetError as err:
            results[user.name] = err

    threads = [threading.Thread(target=upload, args=pair) for pair in ((first, BOB), (second, CAROL))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    errors = [r for r in results.values() if isinstance(r, DatanetError)]
    winners = [r for r in results.values() if isinstance(r, dict)]
    assert len(winners) == 1 and len(errors) == 1
    assert errors[0].status == 422
    assert errors[0].detail["errors"][0]["owner"] == winners[0]["contributor"]


def test_curation_permissions_and_reasons(service: DatanetService) -> None:
    create(service, validators=["carol"])
    submission = service.contribute_rows(BOB, "qa-set", [qa(1)])
    assert submission["status"] == "pending"
    for outsider in (BOB, ADMIN):
        with pytest.raises(DatanetError) as denied:
            service.review(outsider, "qa-set", submission["id"], True, "")
        assert denied.value.status == 403
    with pytest.raises(DatanetError, match="needs a reason"):
        service.review(CAROL, "qa-set", submission["id"], False, " ")
    rejected = service.review(CAROL, "qa-set", submission["id"], False, "answers must cite a source")
    assert rejected["status"] == "rejected" and rejected["reviewed_by"] == "carol"
    assert service.submissions(BOB, "qa-set")[0]["reason"] == "answers must cite a source"
    # A rejected row leaves the datanet, so someone else may contribute it.
    again = service.contribute_rows(CAROL, "qa-set", [qa(1)])
    assert service.review(ALICE, "qa-set", again["id"], True, "")["status"] == "approved"
    with pytest.raises(DatanetError) as late:
        service.review(ALICE, "qa-set", submission["id"], True, "")
    assert late.value.status == 409


def test_submissions_are_private_to_their_contributor_and_curators(service: DatanetService) -> None:
    create(service)
    mine = service.contribute_rows(BOB, "qa-set", [qa(1)])
    service.contribute_rows(CAROL, "qa-set", [qa(2)])
    assert [s["contributor"] for s in service.submissions(BOB, "qa-set")] == ["bob"]
    assert [s["contributor"] for s in service.submissions(ALICE, "qa-set")] == ["bob", "carol"]
    with pytest.raises(DatanetError) as denied:
        service.submission_rows(CAROL, "qa-set", mine["id"])
    assert denied.value.status == 403
    assert service.submission_rows(ALICE, "qa-set", mine["id"])[0]["data"] == qa(1)


def test_private_datanets(service: DatanetService) -> None:
    create(service, name="secret", visibility="private", members=["carol"])
    create(service, name="open")
    assert [d["name"] for d in service.search(BOB)] == ["open"]
    assert [d["name"] for d in service.search(CAROL)] == ["open", "secret"]
    assert {d["name"] for d in service.search(ADMIN)} == {"open", "secret"}
    for call in (
        lambda: service.get(BOB, "secret"),
        lambda: service.contribute_rows(BOB, "secret", [qa(1)]),
        lambda: service.versions(BOB, "secret"),
        lambda: service.submissions(BOB, "secret"),
    ):
        with pytest.raises(DatanetError) as hidden:
            call()
        assert hidden.value.status == 404
    assert service.contribute_rows(CAROL, "secret", [qa(1)])["status"] == "pending"


def test_search_by_text_and_tags(service: DatanetService) -> None:
    create(service, name="medical-qa", summary="Clinical questions", tags=["health", "qa"])
    create(service, name="code-review", description="Pull request comments", tags=["code"])
    assert [d["name"] for d in service.search(BOB, "clinical")] == ["medical-qa"]
    assert [d["name"] for d in service.search(BOB, "pull request")] == ["code-review"]
    assert [d["name"] for d in service.search(BOB, "", ["qa", "health"])] == ["medical-qa"]
    assert service.search(BOB, "", ["qa", "code"]) == []
    assert [d["name"] for d in service.search(ALICE, "", (), mine=True)] == ["code-review", "medical-qa"]


def test_publish_versions_and_proofs(service: DatanetService) -> None:
    create(service, approval="auto")
    with pytest.raises(DatanetError) as empty:
        service.publish(ALICE, "qa-set")
    assert empty.value.status == 409
    service.contribute_rows(BOB, "qa-set", [qa(i) for i in range(5)])
    service.contribute_rows(CAROL, "qa-set", [qa(i) for i in range(5, 8)])
    with pytest.raises(DatanetError) as not_owner:
        service.publish(BOB, "qa-set")
    assert not_owner.value.status == 403
    v1 = service.publish(ALICE, "qa-set")
    assert v1["version"] == 1 and v1["row_count"] == 8
    assert {c["user"]: c["rows"] for c in v1["contributor_counts"]} == {"bob": 5, "carol": 3}
    with pytest.raises(DatanetError, match="nothing changed"):
        service.publish(ALICE, "qa-set")
    proof = service.proof(BOB, "qa-set", 1, 6)
    assert proof["row"]["_contributor"] == address("carol")
    assert verify_row(proof["row"], proof["proof"], v1["merkle_root"])
    service.contribute_rows(BOB, "qa-set", [qa(9)])
    v2 = service.publish(ALICE, "qa-set")
    assert v2["version"] == 2 and v2["merkle_root"] != v1["merkle_root"]
    assert [v["version"] for v in service.versions(CAROL, "qa-set")] == [1, 2]
    # A fresh process rebuilds the tree from the snapshot in the blob store.
    fresh = DatanetService(service.engine, service.blobs, address)
    assert fresh.proof(BOB, "qa-set", "latest", 6)["proof"] == service.proof(BOB, "qa-set", 2, 6)["proof"]
    # Without the stored tree (an older version, a lost blob) the tree is rebuilt from the snapshot's columns.
    for version in (1, 2):
        with Session(service.engine) as session:
            row = session.exec(select(DatanetVersion).where(DatanetVersion.version == version)).one()
            row.tree_digest = None
            session.add(row)
            session.commit()
    rebuilt = DatanetService(service.engine, service.blobs, address)
    assert rebuilt.proof(BOB, "qa-set", 2, 6)["proof"] == service.proof(BOB, "qa-set", 2, 6)["proof"]
    with pytest.raises(DatanetError) as missing:
        service.proof(BOB, "qa-set", 1, 9)
    assert missing.value.status == 404


def test_near_duplicate_index_survives_a_restart(runtime: SimpleNamespace) -> None:
    service = make_service(runtime)
    create(service)
    service.contribute_rows(BOB, "qa-set", [qa(1)])
    restarted = make_service(runtime)
    restarted.rebuild_indexes()
    near = dict(qa(1), response=qa(1)["response"] + "!")
    with pytest.raises(DatanetError) as refused:
        restarted.contribute_rows(CAROL, "qa-set", [near])
    assert refused.value.detail["errors"][0]["kind"] == "near_duplicate"
    assert refused.value.detail["errors"][0]["owner"] == "bob"


def test_changed_minhash_settings_recompute_signatures(runtime: SimpleNamespace, monkeypatch) -> None:
    service = make_service(runtime)
    create(service)
    service.contribute_rows(BOB, "qa-set", [qa(1)])
    monkeypatch.setattr(config, "settings", config.DatanetSettings(near_dup_num_perm=64))
    restarted = make_service(runtime)
    restarted.rebuild_indexes()
    with Session(runtime.engine) as session:
        assert len(session.exec(select(DatanetRow.minhash)).first()) == 64 * 4
    with pytest.raises(DatanetError):
        restarted.contribute_rows(CAROL, "qa-set", [dict(qa(1), response=qa(1)["response"] + "!")])


def test_demo_datanet_seeds_once(runtime: SimpleNamespace) -> None:
    runtime.extras["datanets"] = make_service(runtime)
    created = seed_demo_datanet(runtime)
    assert created["status"] == "created" and created["rows"] == len(demo_rows()) >= 300
    assert seed_demo_datanet(runtime)["status"] == "exists"
    counts = runtime.extras["datanets"].version(BOB, DEMO_NAME, 1)["contributor_counts"]
    assert sorted(c["user"] for c in counts) == ["ada", "demo", "grace"]


def test_versions_published_before_the_ledger_was_up_are_enqueued_later(runtime: SimpleNamespace, engine) -> None:
    ledger = runtime.extras.pop("ledger")
    service = make_service(runtime)
    create(service, approval="auto")
    service.contribute_rows(BOB, "qa-set", [qa(1)])
    assert service.publish(ALICE, "qa-set")["chain"]["status"] == "off"
    assert service.sync_chain() == 0
    runtime.extras["ledger"] = ledger
    assert service.sync_chain() == 1
    assert service.sync_chain() == 0  # idempotent
    with Session(engine) as session:
        assert [e.kind for e in session.exec(select(OutboxEntry).order_by(OutboxEntry.id))] == [
            "datanet.create",
            "datanet.publish",
        ]
    assert service.version(ALICE, "qa-set", 1)["chain"]["status"] == "pending"
