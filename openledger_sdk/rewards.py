"""Your OPEN rewards: `ol.rewards.pending()` and `ol.rewards.claim()`.

    p = ol.rewards.pending()      # p.claimable (Decimal OPEN), p.claimable_wei (exact), p.epochs (what each paid you)
    ol.rewards.claim()            # the platform submits your claim (it pays the gas); returns what was paid
    ol.rewards.proof()            # the Merkle proof(s) to claim yourself from RewardDistributor.claim

Rewards are settled per epoch: every inference's fee is split between the model owner, the data contributors the
attribution named, and the protocol; at the end of an epoch the platform commits the cumulative totals as a Merkle
root on chain, and a claim pays the difference between your total and what you already claimed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openledger_sdk.client import Client

WEI = Decimal(10**18)


def _open(wei: int) -> Decimal:
    return Decimal(wei) / WEI


@dataclass(frozen=True)
class Pending:
    """What you can claim now (at the distributor's current root) and what each epoch credited you."""

    claimable_wei: int
    root: str | None
    epoch: int | None
    accounts: list[dict[str, Any]]
    epochs: list[dict[str, Any]]

    @property
    def claimable(self) -> Decimal:
        return _open(self.claimable_wei)

    def __str__(self) -> str:
        return f"{self.claimable.normalize():f} OPEN claimable (epoch {self.epoch})"


@dataclass(frozen=True)
class ClaimResult:
    """`paid_wei`: what the claims that were mined paid; `claims`: one entry per address (status, tx hash)."""

    paid_wei: int
    claims: list[dict[str, Any]]

    @property
    def paid(self) -> Decimal:
        return _open(self.paid_wei)


class Rewards:
    """`ol.rewards`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def pending(self, address: str | None = None) -> Pending:
        """Your claimable rewards (or those of any `address`)."""
        params = {"address": address} if address else None
        answer = self._client.request("GET", "platform", "api/rewards/pending", params=params)
        return Pending(int(answer["claimable"]), answer["root"], answer["epoch"], answer["accounts"], answer["epochs"])

    def proof(self, address: str | None = None) -> list[dict[str, Any]]:
        """Per account: `cumulative`, `root` and `proof`, the arguments of RewardDistributor.claim."""
        params = {"address": address} if address else None
        return self._client.request("GET", "platform", "api/rewards/proof", params=params)

    def claim(self, address: str | None = None, wait_s: float = 30) -> ClaimResult:
        """Claim everything claimable (for your addresses, or for `address`); waits up to `wait_s` for the chain."""
        body: dict[str, Any] = {"wait_s": wait_s}
        if address:
            body["address"] = address
        answer = self._client.request("POST", "platform", "api/rewards/claim", json=body)
        return ClaimResult(int(answer.get("paid", "0")), answer["claims"])

    def records(self, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """The inference records you paid for, newest first: `records` (request_id, model, tokens, fee in base units,
        charge_status, epoch) and `total`; page with `offset`."""
        params = {"limit": limit, "offset": offset}
        return self._client.request("GET", "platform", "api/rewards/records", params=params)

    def settle_now(self, wait_s: float = 60) -> dict[str, Any]:
        """Admins (instructors running a workshop): close the current epoch and settle it now, instead of waiting for
        the epoch to end. Returns the settlement report (status, epoch, totals)."""
        return self._client.request("POST", "platform", "api/admin/settle", json={"wait_s": wait_s})
