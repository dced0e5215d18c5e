"""Which key signs for a signer name: the platform operator's key file, or a user's custodial wallet."""

from __future__ import annotations

from pathlib import Path

from eth_account.signers.local import LocalAccount
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.keys.store import WalletKeyStore
from hub.keys.wallets import UserWallet, wallet_account
from hub.ledger.keys import KeyFile
from hub.relay.outbox import OPERATOR


def operator_key_file(data_dir: Path) -> Path:
    """The relay operator's key (registrar, attestor, minter), generated at first start; never committed."""
    return data_dir / "secrets" / "relay-operator.key"


def load_operator(data_dir: Path) -> LocalAccount:
    return KeyFile(operator_key_file(data_dir)).load()


class KeyRing:
    """Resolves "operator" to the operator key and "user:<name>" to that user's custodial key."""

    def __init__(self, engine: Engine, operator: LocalAccount, wallets: WalletKeyStore | None) -> None:
        self.engine = engine
        self.operator = operator
        self.wallets = wallets

    def __call__(self, signer: str) -> LocalAccount | None:
        if signer == OPERATOR:
            return self.operator
        kind, _, name = signer.partition(":")
        if kind != "user" or not name or self.wallets is None:
            return None
        with Session(self.engine) as session:
            wallet = session.get(UserWallet, name)
        return wallet_account(wallet, self.wallets) if wallet is not None else None
