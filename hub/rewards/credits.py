"""What the paid records of an epoch credit to whom: model owners, contributors, the treasury (splits as frozen at
record time), and the epoch's totals for AttributionLedger.commitEpoch."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from hub.keys.wallets import UserWallet
from hub.ledger.contracts import EpochTotals
from hub.rewards.models import InferenceRecordRow


@dataclass
class Credit:
    as_owner: int = 0
    as_contributor: int = 0
    as_protocol: int = 0

    @property
    def amount(self) -> int:
        return self.as_owner + self.as_contributor + self.as_protocol


def epoch_credits(
    rows: list[InferenceRecordRow], treasury: str, payout_of: dict[str, str]
) -> tuple[dict[str, Credit], EpochTotals]:
    """Per-account credits and the epoch's totals from its paid records (splits as frozen at record time)."""
    credits: dict[str, Credit] = {}
    owner_fees = contributor_fees = protocol_fees = 0

    def credit(account: str) -> Credit:
        return credits.setdefault(payout_of.get(account, account), Credit())

    for row in rows:
        doc = row.attribution
        owner, unattributed = int(doc["owner"]["amount"]), int(doc["unattributed"])
        protocol = int(doc["protocol"])
        if doc["unattributed_to"] == "owner":
            owner += unattributed
        else:
            protocol += unattributed
        credit(doc["owner"]["address"]).as_owner += owner
        credit(treasury).as_protocol += protocol
        owner_fees, protocol_fees = owner_fees + owner, protocol_fees + protocol
        for part in doc["contributors"]:
            credit(part["address"]).as_contributor += int(part["amount"])
            contributor_fees += int(part["amount"])
    fees = sum(row.fee for row in rows)
    if owner_fees + contributor_fees + protocol_fees != fees:
        raise RuntimeError(f"epoch credits {owner_fees}+{contributor_fees}+{protocol_fees} differ from fees {fees}")
    totals = EpochTotals(len(rows), sum(row.tokens for row in rows), fees, owner_fees, contributor_fees, protocol_fees)
    return {account: c for account, c in sorted(credits.items()) if c.amount > 0}, totals


def payout_addresses(session: Session) -> dict[str, str]:
    """Custodial address → linked payout address, for users who linked one."""
    query = select(UserWallet.address, UserWallet.payout_address).where(UserWallet.payout_address.is_not(None))  # type: ignore[union-attr]
    return {address: payout for address, payout in session.exec(query)}
