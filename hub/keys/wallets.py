"""Custodial wallets: a key per hub user, created on first use, encrypted at rest, with an optional payout address."""

from __future__ import annotations

from datetime import UTC, datetime

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, Text

from hub.keys.store import WalletKeyStore


def utcnow() -> datetime:
    return datetime.now(UTC)  # aware: sqlmodel's datetime columns store and return UTC


class UserWallet(SQLModel, table=True):
    __tablename__ = "user_wallet"

    username: str = Field(primary_key=True, max_length=255)
    address: str = Field(max_length=42, unique=True)
    encrypted_key: str = Field(sa_type=Text)  # Fernet token of the 32-byte private key; never leaves the platform
    payout_address: str | None = Field(default=None, max_length=42)  # where rewards go when set (EIP-712 linked)
    link_nonce: int = 0  # a link signature must carry this value; it grows with each link, so none can be replayed
    linked_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def reward_address(self) -> str:
        """Where this user's rewards are paid: the linked payout address, else the custodial one."""
        return self.payout_address or self.address


def ensure_wallet(engine: Engine, username: str, store: WalletKeyStore) -> UserWallet:
    """The user's wallet, created (and committed, in its own transaction) on first use."""
    with Session(engine, expire_on_commit=False) as session:
        wallet = session.get(UserWallet, username)
        if wallet is not None:
            return wallet
        account = Account.create()
        wallet = UserWallet(username=username, address=account.address, encrypted_key=store.encrypt(account.key))
        session.add(wallet)
        try:
            session.commit()
        except IntegrityError:
            # Two first requests at once: the other one's wallet won; use it.
            session.rollback()
            wallet = session.get(UserWallet, username)
            if wallet is None:
                raise
        return wallet


def wallet_account(wallet: UserWallet, store: WalletKeyStore) -> LocalAccount:
    """The decrypted key of a wallet (for signing in the relay)."""
    account = Account.from_key(store.decrypt(wallet.encrypted_key))
    if account.address != wallet.address:
        raise ValueError(f"the stored key of {wallet.username!r} does not match its address {wallet.address}")
    return account
