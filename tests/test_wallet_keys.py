"""Custodial keys without the hub: encryption at rest, wallets made once per user, EIP-712 payout links, the faucet's
guards, and a user's custodial key signing through the relay."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from sqlmodel import Session, select

from hub.db import session_scope
from hub.keys.faucet import FaucetRefusedError, require_dev_chain, to_wei, top_up_eth
from hub.keys.link import LinkError, LinkRequest, verify_link
from hub.keys.store import WalletKeyError, WalletKeyStore, wallet_key_file
from hub.keys.wallets import UserWallet, ensure_wallet, wallet_account
from hub.relay.outbox import OutboxEntry, OutboxStatus, enqueue, user_signer
from hub.relay.signers import KeyRing
from hub.relay.worker import SignerWorker, relay_web3
from openledger_sdk.wallet import link_typed_data
from tests import ledger_fixtures
from tests.ledger_fixtures import LedgerEnv
from tests.test_relay_worker import FAST, all_done, new_engine, run_until

anvil_node = ledger_fixtures.anvil_node
ledger_env = ledger_fixtures.ledger_env

CHAIN, DISTRIBUTOR = 31337, "0x" + "ab" * 20


def test_wallet_key_file_is_private_and_round_trips(tmp_path: Path) -> None:
    store = WalletKeyStore.for_data_dir(tmp_path)
    path = wallet_key_file(tmp_path)
    assert path == tmp_path / "secrets" / "wallet.key" and stat.S_IMODE(path.stat().st_mode) == 0o600
    token = store.encrypt(b"\x01" * 32)
    assert "01" * 32 not in token
    assert WalletKeyStore.for_data_dir(tmp_path).decrypt(token) == b"\x01" * 32  # same key file, same key
    with pytest.raises(WalletKeyError, match="does not decrypt with .*was the wallet key file replaced"):
        WalletKeyStore.for_data_dir(tmp_path / "other").decrypt(token)
    path.write_text("not a key")
    with pytest.raises(WalletKeyError, match="does not hold a Fernet key"):
        WalletKeyStore(path)
    with pytest.raises(WalletKeyError, match="not found"):
        WalletKeyStore(tmp_path / "missing.key", create=False)


def test_wallet_made_once_per_user_and_encrypted(tmp_path: Path) -> None:
    engine, store = new_engine(tmp_path), WalletKeyStore.for_data_dir(tmp_path)
    results: list[UserWallet] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_wallet(engine, "alice", store))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({wallet.address for wallet in results}) == 1  # concurrent first uses agree on one wallet
    alice = ensure_wallet(engine, "alice", store)
    assert alice.address == results[0].address != ensure_wallet(engine, "bob", store).address
    account = wallet_account(alice, store)
    assert account.address == alice.address and account.key.hex().removeprefix("0x") not in alice.encrypted_key
    with Session(engine) as session:
        assert session.get(UserWallet, "alice").reward_address == alice.address  # no payout linked yet


def signed_link(account, username: str = "alice", nonce: int = 0, expiry: int | None = None, payout: str = "",
                chain_id: int = CHAIN) -> LinkRequest:  # fmt: skip  # noqa: ANN001
    """A link request signed by `account` (for its own address unless `payout` names another)."""
    payout = payout or account.address
    expiry = expiry if expiry is not None else int(time.time()) + 300
    typed = link_typed_data(chain_id, DISTRIBUTOR, username, payout, nonce, expiry)
    signature = account.sign_message(encode_typed_data(full_message=typed)).signature
    return LinkRequest(payout, nonce, expiry, "0x" + bytes(signature).hex())


def verify(request: LinkRequest, username: str = "alice", nonce: int = 0) -> str:
    return verify_link(
        request, username=username, expected_nonce=nonce, chain_id=CHAIN, verifying_contract=DISTRIBUTOR,
        now=time.time(),
    )  # fmt: skip


def test_payout_link_signature_checks() -> None:
    owner, other = Account.create(), Account.create()
    assert verify(signed_link(owner)) == owner.address
    forged = signed_link(other, payout=owner.address)  # another key claims the owner's address
    with pytest.raises(LinkError, match=f"the signature was made by {other.address}, not by the payout address"):
        verify(forged)
    with pytest.raises(LinkError, match="the signature was made by 0x"):
        verify(signed_link(owner, username="bob"))  # alice cannot use bob's link
    with pytest.raises(LinkError, match="the signature was made by 0x"):
        verify(signed_link(owner, chain_id=1))  # another chain's domain
    with pytest.raises(LinkError, match="stale link nonce 0: the current one is 1"):
        verify(signed_link(owner), nonce=1)
    with pytest.raises(LinkError, match="expired"):
        verify(signed_link(owner, expiry=int(time.time()) - 1))
    with pytest.raises(LinkError, match="more than 24 h ahead"):
        verify(signed_link(owner, expiry=int(time.time()) + 3 * 86400))
    with pytest.raises(LinkError, match="not a valid 65-byte hex"):
        verify(LinkRequest(owner.address, 0, int(time.time()) + 60, "0x1234"))
    with pytest.raises(LinkError, match="is not an Ethereum address"):
        verify(LinkRequest("alice", 0, int(time.time()) + 60, "0x"))


def test_faucet_guards(ledger_env: LedgerEnv) -> None:
    geth = SimpleNamespace(client_version="Geth/v1.14.0-stable", eth=SimpleNamespace(chain_id=161201))
    with pytest.raises(FaucetRefusedError, match="only runs on a local dev chain .* Geth on chain id 161201"):
        require_dev_chain(geth)
    assert require_dev_chain(ledger_env.ledger.w3).startswith("anvil")
    assert to_wei("1.5", "OPEN", 10) == 15 * 10**17
    for bad in ("-1", "11", "nan", "lots"):
        with pytest.raises(FaucetRefusedError, match="OPEN amount"):
            to_wei(bad, "OPEN", 10)
    fresh = Account.create().address
    assert top_up_eth(ledger_env.ledger.w3, fresh, 2 * 10**18) == 2 * 10**18
    assert top_up_eth(ledger_env.ledger.w3, fresh, 10**18) == 2 * 10**18  # never lowers a balance


def test_custodial_key_signs_through_the_relay(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    """A write signed by a user's own custodial key (here an OPEN approve) goes through the same relay."""
    engine, store = new_engine(tmp_path), WalletKeyStore.for_data_dir(tmp_path)
    carol = ensure_wallet(engine, "carol", store)
    top_up_eth(ledger_env.ledger.w3, carol.address, 10**18)
    token, spender = ledger_env.ledger.token, ledger_env.outsider.address
    with session_scope(engine) as session:
        enqueue(session, token.approve(spender, 5), signer=user_signer("carol"), kind="approve", ref="carol-1")
    keyring = KeyRing(engine, ledger_env.operator, store)
    assert keyring("operator") is ledger_env.operator and keyring(user_signer("nobody")) is None
    account = keyring(user_signer("carol"))
    worker = SignerWorker(engine, relay_web3(ledger_env.node.rpc_url), account, user_signer("carol"), CHAIN, FAST)
    run_until(worker, all_done(engine))
    assert token.view("allowance", carol.address, spender) == 5
    with Session(engine) as session:
        (row,) = session.exec(select(OutboxEntry)).all()
    assert row.status == OutboxStatus.CONFIRMED and row.signer == "user:carol"
