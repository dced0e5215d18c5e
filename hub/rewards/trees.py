"""An epoch's two Merkle trees rebuilt from SQL (only roots are stored), and the cumulative totals behind payouts.

Settled epochs never change, so a rebuilt tree is cached by (epoch, root) and checked against the stored root.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from sqlmodel import Session, select

from hub.rewards.models import WITH_PAYOUTS, ChargeStatus, InferenceRecordRow, RewardCredit, RewardEpoch
from openledger_sdk.ledger.records import InferenceRecord, build_payouts_tree, build_records_tree
from openledger_sdk.merkle import StandardMerkleTree

CACHE_SIZE = 8


def leaf_of(row: InferenceRecordRow) -> InferenceRecord:
    return InferenceRecord(row.record_id, row.model_id, row.payer_address, row.tokens, row.fee, row.attribution_hash)


def paid_records(session: Session, epoch: int) -> list[InferenceRecordRow]:
    query = select(InferenceRecordRow).where(
        InferenceRecordRow.epoch == epoch, InferenceRecordRow.charge_status == ChargeStatus.PAID
    )
    return list(session.exec(query.order_by(InferenceRecordRow.id)))


def cumulative_totals(session: Session, up_to_epoch: int) -> dict[str, int]:
    """Every account's earnings over the epochs with payouts up to and including `up_to_epoch`."""
    query = (
        select(RewardCredit)
        .join(RewardEpoch, RewardEpoch.number == RewardCredit.epoch)  # type: ignore[arg-type]
        .where(RewardCredit.epoch <= up_to_epoch, RewardEpoch.status.in_(WITH_PAYOUTS))  # type: ignore[attr-defined]
    )
    totals: dict[str, int] = {}
    for credit in session.exec(query):
        totals[credit.account] = totals.get(credit.account, 0) + credit.amount
    return totals


class TreeCache:
    """A few recently used trees, keyed by (kind, epoch, root); a rebuilt tree must have the stored root."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._trees: OrderedDict[tuple[str, int, str], StandardMerkleTree] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, kind: str, epoch: int, root: str, build: Callable[[], StandardMerkleTree]) -> StandardMerkleTree:
        key = (kind, epoch, root.lower())
        with self._lock:
            if key in self._trees:
                self._trees.move_to_end(key)
                return self._trees[key]
        tree = build()
        if tree.root.lower() != root.lower():
            raise RuntimeError(f"the {kind} tree of epoch {epoch} rebuilt from SQL has root {tree.root}, not {root}")
        with self._lock:
            self._trees[key] = tree
            while len(self._trees) > self.size:
                self._trees.popitem(last=False)
        return tree


CACHE = TreeCache()


def records_tree(session: Session, epoch: RewardEpoch) -> StandardMerkleTree:
    assert epoch.records_root is not None
    build = lambda: build_records_tree(leaf_of(row) for row in paid_records(session, epoch.number))  # noqa: E731
    return CACHE.get("records", epoch.number, epoch.records_root, build)


def payouts_tree(session: Session, epoch: RewardEpoch) -> StandardMerkleTree:
    assert epoch.payouts_root is not None
    build = lambda: build_payouts_tree(cumulative_totals(session, epoch.number))  # noqa: E731
    return CACHE.get("payouts", epoch.number, epoch.payouts_root, build)
