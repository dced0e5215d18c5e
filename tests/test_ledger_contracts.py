"""The five contracts through the Python wrappers on a real anvil: roles, duplicates, epochs, Merkle claims."""

from __future__ import annotations

import pytest
from eth_account import Account

from hub.ledger.contracts import EpochTotals
from hub.ledger.errors import ContractRevert, InsufficientFundsError
from hub.ledger.tx import build_transaction, send_call, sign
from openledger_sdk.ledger import InferenceRecord, build_payouts_tree, build_records_tree, derive_id
from tests import ledger_fixtures
from tests.ledger_fixtures import LedgerEnv

anvil_node = ledger_fixtures.anvil_node
ledger_env = ledger_fixtures.ledger_env

H = lambda text: derive_id("test", text)  # noqa: E731 - a bytes32 per name
ZERO = b"\x00" * 32
OPEN = 10**18


def reverts(name: str):
    """pytest.raises for a ContractRevert with this decoded custom error name."""
    return pytest.raises(ContractRevert, match=rf"reverted with {name}\(")


def test_token_metadata_and_minter_role(ledger_env: LedgerEnv) -> None:
    token, env = ledger_env.ledger.token, ledger_env
    assert token.metadata() == ("OpenLedger", "OPEN", 18)
    token.send(token.mint(env.outsider.address, 5 * OPEN), env.operator)
    assert token.balance_of(env.outsider.address) == 5 * OPEN
    with reverts("AccessControlUnauthorizedAccount") as info:
        token.send(token.mint(env.outsider.address, 1), env.outsider)
    assert info.value.error_args["account"] == env.outsider.address
    assert info.value.error_args["neededRole"] == bytes.fromhex(
        "9f2df0fed2c77648de5860a4cc508cd0818c85b8b8a1ab4ceeef8d981c8956a6"
    )  # keccak256("MINTER_ROLE")


def test_datanet_create_publish_versions(ledger_env: LedgerEnv) -> None:
    datanets, env = ledger_env.ledger.datanets, ledger_env
    receipt = datanets.send(datanets.create_datanet(H("dn1"), env.outsider.address, H("meta")), env.operator)
    (created,) = datanets.decode_events("DatanetCreated", receipt)
    assert created["args"]["owner"] == env.outsider.address
    with reverts("DatanetExists"):
        datanets.send(datanets.create_datanet(H("dn1"), env.outsider.address, H("meta")), env.operator)
    with reverts("AccessControlUnauthorizedAccount"):
        datanets.send(datanets.create_datanet(H("dn2"), env.outsider.address, H("meta")), env.outsider)
    datanets.send(datanets.publish_version(H("dn1"), 1, H("root1"), 10, H("counts1")), env.operator)
    datanets.send(datanets.publish_version(H("dn1"), 3, H("root3"), 12, H("counts3")), env.operator)
    for stale in (3, 2):
        with reverts("VersionNotIncreasing") as info:
            datanets.send(datanets.publish_version(H("dn1"), stale, H("x"), 1, H("x")), env.operator)
        assert info.value.error_args["latestVersion"] == 3
    with reverts("UnknownDatanet"):
        datanets.send(datanets.publish_version(H("nope"), 1, H("x"), 1, H("x")), env.operator)
    assert datanets.get_datanet(H("dn1")).latest_version == 3
    version = datanets.get_version(H("dn1"), 3)
    assert (version.merkle_root, version.row_count, version.contributor_counts_root) == (H("root3"), 12, H("counts3"))
    with reverts("UnknownVersion"):
        datanets.get_version(H("dn1"), 2)
    published = datanets.events("VersionPublished", datanet_id=H("dn1"))
    assert [event["args"]["version"] for event in published] == [1, 3]


def test_model_registry_duplicate_id(ledger_env: LedgerEnv) -> None:
    models, env = ledger_env.ledger.models, ledger_env
    call = models.register_model(
        H("model"), env.outsider.address, H("base"), [H("v1"), H("v2")], H("manifest"), H("adapter"), 25 * 10**15
    )
    models.send(call, env.operator)
    model = models.get_model(H("model"))
    assert model.datanet_version_roots == (H("v1"), H("v2"))
    assert (model.owner, model.price_per_1k_tokens, model.manifest_hash) == (
        env.outsider.address,
        25 * 10**15,
        H("manifest"),
    )
    with reverts("ModelExists") as info:
        models.send(call, env.operator)
    assert info.value.already_done and info.value.error_args["modelId"] == H("model")
    models.send(models.set_price(H("model"), 1), env.operator)
    assert models.get_model(H("model")).price_per_1k_tokens == 1
    with reverts("UnknownModel"):
        models.get_model(H("other"))


def _records(n: int, salt: str) -> list[InferenceRecord]:
    return [
        InferenceRecord(derive_id("inference", f"{salt}-{i}"), H("model"), "0x" + "12" * 20, 100 + i, 10**15, H(str(i)))
        for i in range(n)
    ]


def test_record_inference_once_per_id(ledger_env: LedgerEnv) -> None:
    attribution, env = ledger_env.ledger.attribution, ledger_env
    record = _records(1, "single")[0]
    attribution.send(attribution.record_inference(record), env.operator)
    assert attribution.is_recorded(record.record_id)
    # The stored leaf is the leaf the epoch tree holds: a per-record write and an epoch root agree.
    assert attribution.get_record_leaf(record.record_id) == record.leaf_hash()
    with reverts("RecordExists") as info:
        attribution.send(attribution.record_inference(record), env.operator)
    assert info.value.already_done
    with reverts("AccessControlUnauthorizedAccount"):
        attribution.send(attribution.record_inference(_records(1, "other")[0]), env.outsider)


def test_commit_epoch_once(ledger_env: LedgerEnv) -> None:
    attribution, env = ledger_env.ledger.attribution, ledger_env
    records = _records(5, "epoch7")
    root = build_records_tree(records).root
    totals = EpochTotals(records=5, tokens=510, fees=5 * 10**15, owner_fees=10**15, contributor_fees=3 * 10**15,
                         protocol_fees=10**15)  # fmt: skip
    receipt = attribution.send(attribution.commit_epoch(7, root, H("payouts"), totals, "blob://epoch-7"), env.operator)
    (event,) = attribution.decode_events("EpochCommitted", receipt)
    assert event["args"]["epoch"] == 7
    epoch = attribution.get_epoch(7)
    assert (epoch.records_root.hex(), epoch.totals, epoch.uri) == (root[2:], totals, "blob://epoch-7")
    assert attribution.latest_epoch() == 7
    with reverts("EpochAlreadyCommitted") as info:
        attribution.send(attribution.commit_epoch(7, root, H("payouts"), totals, "again"), env.operator)
    assert info.value.error_args == {"epoch": 7} and info.value.already_done
    bad = EpochTotals(5, 510, 5, 1, 1, 1)
    with reverts("TotalsMismatch"):
        attribution.send(attribution.commit_epoch(8, root, H("payouts"), bad, ""), env.operator)
    with reverts("AccessControlUnauthorizedAccount"):
        attribution.send(attribution.commit_epoch(9, root, H("payouts"), totals, ""), env.outsider)
    with reverts("UnknownEpoch"):
        attribution.get_epoch(8)


def test_cumulative_claims(ledger_env: LedgerEnv) -> None:
    ledger, env = ledger_env.ledger, ledger_env
    token, distributor = ledger.token, ledger.distributor
    alice, bob = Account.create().address, Account.create().address
    token.send(token.mint(distributor.address, 100 * OPEN), env.operator)  # dev-chain funding by mint

    first = build_payouts_tree({alice: 3 * OPEN, bob: 1 * OPEN})
    distributor.send(distributor.set_root(first.root, ZERO), env.operator)
    with reverts("RootMismatch"):  # compare-and-swap: a stale settlement cannot overwrite the root
        distributor.send(distributor.set_root(H("late"), ZERO), env.operator)

    # Anyone (the outsider here) submits; the tokens go to the account.
    proof = first.get_proof([alice, 3 * OPEN])
    receipt = distributor.send(distributor.claim(alice, 3 * OPEN, first.root, proof), env.outsider)
    (claimed,) = distributor.decode_events("Claimed", receipt)
    assert claimed["args"]["amount"] == 3 * OPEN
    assert token.balance_of(alice) == 3 * OPEN and distributor.cumulative_claimed(alice) == 3 * OPEN
    with reverts("NothingToClaim"):  # the second claim pays nothing
        distributor.send(distributor.claim(alice, 3 * OPEN, first.root, proof), env.outsider)
    assert token.balance_of(alice) == 3 * OPEN

    second = build_payouts_tree({alice: 5 * OPEN, bob: 4 * OPEN})
    distributor.send(distributor.set_root(second.root, first.root), env.operator)
    with reverts("RootMismatch") as info:  # a proof built against the old root
        distributor.send(distributor.claim(bob, 1 * OPEN, first.root, first.get_proof(1)), env.outsider)
    assert info.value.error_args == {"expectedRoot": first.root_bytes, "currentRoot": second.root_bytes}
    assert "RewardDistributor.claim reverted with RootMismatch(expectedRoot=0x" in str(info.value)
    with reverts("InvalidProof"):  # claiming more than the tree says
        distributor.send(
            distributor.claim(alice, 6 * OPEN, second.root, second.get_proof([alice, 5 * OPEN])), env.outsider
        )
    distributor.send(distributor.claim(alice, 5 * OPEN, second.root, second.get_proof([alice, 5 * OPEN])), env.outsider)
    assert token.balance_of(alice) == 5 * OPEN  # paid only the difference: 2 OPEN
    bob_proof = second.get_proof([bob, 4 * OPEN])
    distributor.send(distributor.claim(bob, 4 * OPEN, second.root, bob_proof), env.outsider)
    assert token.balance_of(bob) == 4 * OPEN


def test_fund_by_transfer_from_and_underfunded_claim(ledger_env: LedgerEnv) -> None:
    ledger, env = ledger_env.ledger, ledger_env
    token, distributor = ledger.token, ledger.distributor
    token.send(token.mint(env.operator.address, 2 * OPEN), env.operator)
    with reverts("ERC20InsufficientAllowance"):  # fund without approve: the token's error comes through decoded
        distributor.send(distributor.fund(OPEN), env.operator)
    token.send(token.approve(distributor.address, OPEN), env.operator)
    before = token.balance_of(distributor.address)
    distributor.send(distributor.fund(OPEN), env.operator)
    assert token.balance_of(distributor.address) == before + OPEN

    carol = Account.create().address
    tree = build_payouts_tree({carol: before + 2 * OPEN})
    distributor.send(distributor.set_root(tree.root, distributor.merkle_root()), env.operator)
    with reverts("InsufficientFunding"):
        distributor.send(distributor.claim(carol, before + 2 * OPEN, tree.root, tree.get_proof(0)), env.outsider)


def test_prepared_call_signed_elsewhere_and_unfunded_signer(ledger_env: LedgerEnv) -> None:
    """What the relay will do: store to/data, build the tx with its own nonce, sign, persist, broadcast."""
    ledger, env = ledger_env.ledger, ledger_env
    call = ledger.datanets.create_datanet(H("relayed"), env.outsider.address, H("meta"))
    assert call.to == ledger.datanets.address and call.data.startswith("0x")
    w3 = ledger.w3
    tx = build_transaction(w3, call, env.operator.address, nonce=w3.eth.get_transaction_count(env.operator.address))
    signed = sign(env.operator, tx)
    assert w3.eth.send_raw_transaction(signed.raw_transaction) == signed.hash
    assert w3.eth.wait_for_transaction_receipt(signed.hash)["status"] == 1
    assert ledger.datanets.get_datanet(H("relayed")).owner == env.outsider.address

    poor = Account.create()
    with pytest.raises(InsufficientFundsError, match=f"signer {poor.address} cannot pay for gas"):
        send_call(w3, ledger.token.approve(env.outsider.address, 1), poor)


def test_revert_mined_without_estimate_is_decoded(ledger_env: LedgerEnv) -> None:
    """A transaction sent with a fixed gas limit (as a relay may) that reverts on-chain still names its error."""
    attribution, env = ledger_env.ledger.attribution, ledger_env
    record = _records(1, "mined")[0]
    attribution.send(attribution.record_inference(record), env.operator)
    with reverts("RecordExists") as info:
        attribution.send(attribution.record_inference(record), env.operator, gas=300_000)
    assert info.value.tx_hash is not None and info.value.already_done
