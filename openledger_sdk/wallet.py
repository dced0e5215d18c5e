"""Your platform wallet: `ol.wallet.address`, `ol.wallet.balance()`, `ol.wallet.link(account)`.

The platform keeps a custodial key for every user (made on first use). To receive rewards at an address you control
instead, link it: `ol.wallet.link(account)` signs an EIP-712 message with `account` (an eth_account LocalAccount you
hold, e.g. `Account.from_key(...)`) on your machine; only the signature is sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address

from openledger_sdk.errors import OpenLedgerError

if TYPE_CHECKING:
    from openledger_sdk.client import Client

DOMAIN_NAME = "OpenLedger"
DOMAIN_VERSION = "1"
LINK_TYPE = "LinkPayoutAddress"
LINK_FIELDS = [
    {"name": "username", "type": "string"},
    {"name": "payout", "type": "address"},
    {"name": "nonce", "type": "uint256"},
    {"name": "expiry", "type": "uint256"},
]
LINK_TTL = 600  # seconds a link signature stays valid
WEI = Decimal(10**18)


def link_typed_data(
    chain_id: int, verifying_contract: str, username: str, payout: str, nonce: int, expiry: int
) -> dict[str, Any]:
    """The EIP-712 message that links `payout` to `username` (the platform checks the same structure)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            LINK_TYPE: LINK_FIELDS,
        },
        "primaryType": LINK_TYPE,
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": int(chain_id),
            "verifyingContract": to_checksum_address(verifying_contract),
        },
        "message": {"username": username, "payout": to_checksum_address(payout), "nonce": int(nonce), "expiry": expiry},
    }


@dataclass(frozen=True)
class Balance:
    """OPEN (reward token) and ETH (gas) balances of an address; `*_wei` are the exact integer amounts."""

    address: str
    open_wei: int
    eth_wei: int

    @property
    def open(self) -> Decimal:
        return Decimal(self.open_wei) / WEI

    @property
    def eth(self) -> Decimal:
        return Decimal(self.eth_wei) / WEI

    def __str__(self) -> str:
        return f"{self.open.normalize():f} OPEN, {self.eth.normalize():f} ETH at {self.address}"


class Wallet:
    """The calling user's platform wallet (`ol.wallet`)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._address: str | None = None

    def __repr__(self) -> str:
        return f"<openledger_sdk.Wallet {self._address or '(not loaded)'}>"

    def info(self) -> dict[str, Any]:
        """Everything the platform knows: address, balances, payout address, link nonce and EIP-712 domain."""
        info = self._client.request("GET", "platform", "api/wallet")
        self._address = info["address"]
        return info

    @property
    def address(self) -> str:
        """Your custodial address on the platform's chain (created on first use; it never changes)."""
        if self._address is None:
            self.info()
        assert self._address is not None
        return self._address

    @property
    def payout_address(self) -> str | None:
        """The linked address rewards are paid to, or None (then they go to `address`)."""
        return self.info()["payout_address"]

    def balance(self) -> Balance:
        info = self.info()
        if info["balances"] is None:
            raise OpenLedgerError(info.get("chain_error") or "the platform could not read balances", 503)
        return Balance(info["address"], int(info["balances"]["OPEN"]), int(info["balances"]["ETH"]))

    def link(self, account: Any, ttl: int = LINK_TTL) -> str:
        """Link `account.address` as your payout address, proven by `account`'s EIP-712 signature; returns it."""
        from eth_account.messages import encode_typed_data  # here, not at import: most notebooks never link

        info = self.info()
        link = info["link"]
        expiry = int(time.time()) + ttl
        typed = link_typed_data(
            link["domain"]["chainId"],
            link["domain"]["verifyingContract"],
            info["user"],
            account.address,
            link["nonce"],
            expiry,
        )
        signed = account.sign_message(encode_typed_data(full_message=typed))
        answer = self._client.request(
            "POST",
            "platform",
            "api/wallet/link",
            json={
                "payout": typed["message"]["payout"],
                "nonce": link["nonce"],
                "expiry": expiry,
                "signature": "0x" + bytes(signed.signature).hex(),
            },
        )
        return answer["payout_address"]
