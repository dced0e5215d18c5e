"""Claims against the RewardDistributor's current root: what an address may claim, its proof, and the claim itself.

claimable = cumulative earnings in the epoch whose payouts root is on chain now − what the contract says the address
already claimed. Claims are sent by the platform operator (anyone may claim for an address; the tokens always go to
the address), so claiming needs no gas from the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from hub.keys.wallets import UserWallet
from hub.ledger.contracts import Ledger
from hub.relay.outbox import OPERATOR, OutboxEntry, enqueue
from hub.rewards.models import EpochStatus, RewardCredit, RewardEpoch
from hub.rewards.trees import cumulative_totals, payouts_tree


@dataclass(frozen=True)
class ClaimState:
    account: str
    root: str  # the distributor's root now (0x00.. before the first settlement)
    epoch: int | None  # the epoch that root belongs to
    cumulative: int  # earned up to that epoch
    claimed: int  # already paid out by the contract
    proof: list[str]

    @property
    def claimable(self) -> int:
        return max(self.cumulative - self.claimed, 0)

    def view(self) -> dict[str, Any]:
        return {
            "address": self.account,
            "cumulative": str(self.cumulative),
            "claimed": str(self.claimed),
            "claimable": str(self.claimable),
            "root": self.root,
            "epoch": self.epoch,
            "proof": self.proof,
        }


def user_accounts(session: Session, username: str) -> list[str]:
    """Where a user's rewards may sit: the custodial address, and the linked payout address if any."""
    wallet = session.get(UserWallet, username)
    if wallet is None:
        return []
    return [wallet.address] + ([wallet.payout_address] if wallet.payout_address else [])


def claim_state(session: Session, ledger: Ledger, account: str) -> ClaimState:
    root = "0x" + ledger.distributor.merkle_root().hex()
    # The latest epoch with this root (an epoch of free inferences only can repeat the previous root).
    query = select(RewardEpoch).where(RewardEpoch.payouts_root == root).order_by(RewardEpoch.number.desc())  # type: ignore[attr-defined]
    epoch = session.exec(query).first()
    cumulative, proof = 0, []
    if epoch is not None:
        cumulative = cumulative_totals(session, epoch.number).get(account, 0)
        if cumulative:
            proof = payouts_tree(session, epoch).get_proof([account, cumulative])
    claimed = ledger.distributor.cumulative_claimed(account)
    return ClaimState(account, root, epoch.number if epoch else None, cumulative, claimed, proof)


def pending_view(session: Session, ledger: Ledger, accounts: list[str]) -> dict[str, Any]:
    """Claimable now per account, and what each epoch credited them (`in_root`: part of the claimable root)."""
    states = [claim_state(session, ledger, account) for account in accounts]
    root_epoch = states[0].epoch if states else None
    query = (
        select(RewardCredit, RewardEpoch.status)
        .join(RewardEpoch, RewardEpoch.number == RewardCredit.epoch)  # type: ignore[arg-type]
        .where(RewardCredit.account.in_(accounts))  # type: ignore[attr-defined]
        .order_by(RewardCredit.epoch, RewardCredit.account)
    )
    epochs = [
        {
            "epoch": credit.epoch,
            "status": status,
            "address": credit.account,
            "amount": str(credit.amount),
            "as_owner": str(credit.as_owner),
            "as_contributor": str(credit.as_contributor),
            "as_protocol": str(credit.as_protocol),
            "in_root": root_epoch is not None and credit.epoch <= root_epoch and status != EpochStatus.FAILED,
        }
        for credit, status in session.exec(query)
    ]
    return {
        "root": states[0].root if states else None,
        "epoch": root_epoch,
        "claimable": str(sum(state.claimable for state in states)),
        "accounts": [state.view() for state in states],
        "epochs": epochs,
    }


def enqueue_claim(session: Session, ledger: Ledger, state: ClaimState) -> OutboxEntry:
    """The claim of `state.account` at `state.root`, by the operator; keyed so a repeated request adds nothing."""
    call = ledger.distributor.claim(state.account, state.cumulative, state.root, state.proof)
    ref = f"{state.account}:{state.cumulative}:{state.root}"
    entry = enqueue(session, call, signer=OPERATOR, kind="rewards.claim", ref=ref)
    session.flush()
    return entry
