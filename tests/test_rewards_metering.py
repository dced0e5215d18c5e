"""record_inference on a SQLite file (no chain): the record row, its attribution document and leaf, idempotency,
"per_record" mode's outbox row in the caller's transaction, epoch credits, and the SDK's verify() on a local tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils import to_checksum_address
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.db import make_engine, migrate, session_scope
from hub.keys.wallets import UserWallet
from hub.relay.outbox import OutboxEntry
from hub.rewards.config import RewardSettings
from hub.rewards.credits import epoch_credits
from hub.rewards.metering import MeteringError, record_inference
from hub.rewards.models import InferenceRecordRow
from hub.rewards.trees import leaf_of
from openledger_sdk.attribution import Explanation, attribution_hash
from openledger_sdk.ledger.records import build_records_tree, derive_id

PAYER = to_checksum_address("0x" + "11" * 20)
OWNER = to_checksum_address("0x" + "22" * 20)
ALICE = to_checksum_address("0x" + "a1" * 20)
BOB = to_checksum_address("0x" + "b0" * 20)
TREASURY = to_checksum_address("0x" + "70" * 20)
LEDGER = to_checksum_address("0x" + "3c" * 20)
SETTINGS = RewardSettings(platform_fee="0.000000000000001", owner_percent=50, contributors_percent=40,
                          protocol_percent=10, contributor_cap_percent=50)  # fmt: skip


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'rewards.sqlite'}")
    migrate(engine)
    with session_scope(engine) as session:
        session.add(UserWallet(username="payer", address=PAYER, encrypted_key="not used here"))
    return engine


def record(session: Session, request_id: str = "req-1", **overrides: object) -> InferenceRecordRow:
    values: dict = {
        "request_id": request_id,
        "model": "support-bot",
        "model_owner": OWNER.lower(),
        "payer": "payer",
        "prompt_tokens": 1500,
        "completion_tokens": 500,
        "price_per_1k_wei": 10**15,
        "price_out_per_1k_wei": 3 * 10**15,
        "adapter": "alice/support-bot",
        "shares": {ALICE: 3, BOB: 1.0},
        "top_examples": [{"datanet": "faq", "version": 2, "row_id": 17, "score": 0.75}],
        "settings": SETTINGS,
    }
    return record_inference(session, **(values | overrides))


def test_record_row_holds_the_fee_split_and_a_leaf_the_sdk_can_recompute(engine: Engine) -> None:
    with session_scope(engine) as session:
        row = record(session)
        session.flush()
        row_id = row.id
    with Session(engine) as session:
        row = session.get(InferenceRecordRow, row_id)
        assert row is not None
        # 1500 × 0.001/1k + 500 × 0.003/1k = 0.0015 + 0.0015 OPEN, plus the platform fee of 1000 base units
        fee = 3 * 10**15 + 1000
        assert row.fee == fee and row.tokens == 2000 and row.payer_address == PAYER and row.model_owner == OWNER
        doc = row.attribution
        assert doc["owner"] == {"address": OWNER, "amount": str(fee // 2)}
        pool = fee * 4 // 10
        # alice 3/4 of the pool is over the 50% cap: capped at 1/2, bob's 1/4 grows to the other 1/2
        assert [(c["address"], c["weight"], c["amount"]) for c in doc["contributors"]] == [
            (ALICE, "3", str(pool // 2)),
            (BOB, "1.0", str(pool // 2)),
        ]
        assert int(doc["protocol"]) + int(doc["unattributed"]) + int(doc["owner"]["amount"]) + pool == fee
        assert row.record_id == "0x" + derive_id("inference", "req-1").hex()
        assert row.model_id == "0x" + derive_id("model", "support-bot").hex()
        assert row.attribution_hash == "0x" + attribution_hash(doc).hex()
        assert row.charge_status == "open" and row.epoch is None


def test_same_request_again_returns_the_stored_row_and_a_different_one_is_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        first = record(session)
        session.flush()
        first_id = first.id
        assert record(session) is first
    with session_scope(engine) as session:
        assert record(session).id == first_id
        with pytest.raises(MeteringError, match="already recorded with other values"):
            record(session, completion_tokens=501)
    with Session(engine) as session:
        assert len(session.exec(select(InferenceRecordRow)).all()) == 1


def test_bad_inputs_are_refused_with_the_reason(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(MeteringError, match="payer 'nobody' has no platform wallet yet"):
            record(session, payer="nobody")
        with pytest.raises(MeteringError, match="model_owner 'me' is not an Ethereum address"):
            record(session, model_owner="me")
        with pytest.raises(MeteringError, match="not an Ethereum address"):
            record(session, shares={"alice": 1})
        with pytest.raises(MeteringError, match="plain JSON"):
            record(session, top_examples=[{"score": float("nan")}])
        with pytest.raises(MeteringError, match="prompt_tokens must be a non-negative integer"):
            record(session, prompt_tokens=-1)
        with pytest.raises(MeteringError, match="request_id"):
            record(session, request_id=" ")
        assert not session.new  # nothing was added


def test_per_record_mode_enqueues_record_inference_in_the_same_transaction(engine: Engine) -> None:
    per_record = SETTINGS.model_copy(update={"record_mode": "per_record"})
    with Session(engine) as session, pytest.raises(MeteringError, match="needs the AttributionLedger address"):
        record(session, settings=per_record)
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        record(session, settings=per_record, attribution_ledger=LEDGER)
        raise RuntimeError("the caller's transaction fails")
    with Session(engine) as session:
        assert session.exec(select(OutboxEntry)).all() == [] and session.exec(select(InferenceRecordRow)).all() == []
    with session_scope(engine) as session:
        record_id = record(session, settings=per_record, attribution_ledger=LEDGER).record_id
    with Session(engine) as session:
        (entry,) = session.exec(select(OutboxEntry)).all()
        (stored,) = session.exec(select(InferenceRecordRow)).all()
        assert (entry.kind, entry.ref, entry.function, entry.target) == (
            "inference.record",
            stored.record_id,
            "recordInference",
            LEDGER,
        )
        assert stored.outbox_id == entry.id and record_id[2:] in entry.calldata.lower()


def test_epoch_credits_route_shares_to_accounts_and_add_up(engine: Engine) -> None:
    to_owner = SETTINGS.model_copy(update={"unattributed_to": "owner"})
    with session_scope(engine) as session:
        rows = [record(session), record(session, "req-2", shares={}), record(session, "req-3", settings=to_owner)]
        session.flush()
        payout = to_checksum_address("0x" + "99" * 20)
        credits, totals = epoch_credits(rows, TREASURY, {BOB: payout})
        fees = sum(row.fee for row in rows)
        assert totals.fees == fees == totals.owner_fees + totals.contributor_fees + totals.protocol_fees
        assert sum(credit.amount for credit in credits.values()) == fees
        assert BOB not in credits and credits[payout].as_contributor > 0  # a linked payout address replaces bob's
        unattributed = [int(row.attribution["unattributed"]) for row in rows]
        owner = sum(int(row.attribution["owner"]["amount"]) for row in rows) + unattributed[2]
        assert credits[OWNER].as_owner == owner and totals.records == 3 and totals.tokens == 6000


def test_sdk_verify_accepts_the_record_and_rejects_any_change(engine: Engine) -> None:
    with session_scope(engine) as session:
        rows = [record(session, f"req-{i}") for i in range(5)]
        session.flush()
        tree = build_records_tree(leaf_of(row) for row in rows)
        row = rows[3]
        proof = tree.get_proof(leaf_of(row).leaf_values())
        view = {
            "request_id": row.request_id,
            "record_id": row.record_id,
            "model_id": row.model_id,
            "payer_address": row.payer_address,
            "tokens": row.tokens,
            "fee": str(row.fee),
            "attribution": row.attribution,
            "epoch": 1,
            "proof": {"chain_records_root": tree.root, "proof": proof},
        }
    assert Explanation(view).verify()
    assert not Explanation(view).verify(proof=[proof[0][:-1] + ("0" if proof[0][-1] != "0" else "1"), *proof[1:]])
    richer = view | {"attribution": view["attribution"] | {"protocol": str(int(view["attribution"]["protocol"]) + 1)}}
    assert not Explanation(richer).verify()  # a changed split no longer hashes to the leaf
    assert not Explanation(view | {"fee": str(int(view["fee"]) + 1)}).verify()
    assert not Explanation(view | {"request_id": "req-0"}).verify()  # the record id is derived from the request id
    with pytest.raises(Exception, match="not in an epoch committed on chain yet"):
        Explanation(view | {"proof": None}).verify()
