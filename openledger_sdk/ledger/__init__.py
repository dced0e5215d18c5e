"""Ledger data shared by the platform and notebooks: leaf layouts, deterministic ids, epoch and payout trees.

Pure Python (eth-abi, eth-hash); chain access itself lives in the platform (`hub.ledger`).
"""

from openledger_sdk.ledger.records import (
    PAYOUT_LEAF_TYPES,
    RECORD_LEAF_TYPES,
    InferenceRecord,
    build_payouts_tree,
    build_records_tree,
    derive_id,
    to_bytes32,
)

__all__ = [
    "PAYOUT_LEAF_TYPES",
    "RECORD_LEAF_TYPES",
    "InferenceRecord",
    "build_payouts_tree",
    "build_records_tree",
    "derive_id",
    "to_bytes32",
]
