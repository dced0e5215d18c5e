"""Leaf layouts of the on-chain trees; they must match AttributionLedger.recordLeaf and RewardDistributor.claim."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from openledger_sdk.merkle import StandardMerkleTree, standard_leaf_hash

# (account, cumulative amount in OPEN base units): RewardDistributor.claim.
PAYOUT_LEAF_TYPES: tuple[str, ...] = ("address", "uint256")
# (recordId, modelId, user, tokens, fee, attributionHash): AttributionLedger.recordLeaf.
RECORD_LEAF_TYPES: tuple[str, ...] = ("bytes32", "bytes32", "address", "uint256", "uint256", "bytes32")


def to_bytes32(value: bytes | str) -> bytes:
    """32 bytes from bytes or a 0x hex string; anything else is an error, not silently padded."""
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}: {value!r}")
    return raw


def derive_id(kind: str, key: str) -> bytes:
    """A deterministic bytes32 id, e.g. derive_id("inference", request_uuid): retries map to the same on-chain id,
    so the contracts' duplicate checks make writes idempotent."""
    if not kind or ":" in kind:
        raise ValueError(f"id kind must be a non-empty word without ':', got {kind!r}")
    return keccak(f"openledger:{kind}:{key}".encode())


@dataclass(frozen=True)
class InferenceRecord:
    record_id: bytes
    model_id: bytes
    user: str
    tokens: int
    fee: int  # OPEN base units (18 decimals)
    attribution_hash: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "record_id", to_bytes32(self.record_id))
        object.__setattr__(self, "model_id", to_bytes32(self.model_id))
        object.__setattr__(self, "attribution_hash", to_bytes32(self.attribution_hash))
        object.__setattr__(self, "user", to_checksum_address(self.user))
        if self.tokens < 0 or self.fee < 0:
            raise ValueError("tokens and fee must be non-negative")

    def leaf_values(self) -> list:
        return [self.record_id, self.model_id, self.user, self.tokens, self.fee, self.attribution_hash]

    def leaf_hash(self) -> bytes:
        return standard_leaf_hash(RECORD_LEAF_TYPES, self.leaf_values())


def build_records_tree(records: Iterable[InferenceRecord]) -> StandardMerkleTree:
    """The epoch's records tree; input order does not change the root (leaves are sorted by hash)."""
    values = [record.leaf_values() for record in records]
    ids = [value[0] for value in values]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate record ids in one epoch")
    return StandardMerkleTree.of(values, RECORD_LEAF_TYPES)


def build_payouts_tree(cumulative: Mapping[str, int]) -> StandardMerkleTree:
    """Cumulative amounts earned so far per account (not per epoch): a claim pays the difference to what was claimed."""
    totals: dict[str, int] = {}
    for account, amount in cumulative.items():
        if amount < 0:
            raise ValueError(f"negative cumulative amount for {account}")
        checksummed = to_checksum_address(account)
        if checksummed in totals:
            raise ValueError(f"account {checksummed} appears twice (differently cased)")
        totals[checksummed] = amount
    if not totals:
        raise ValueError("a payouts tree needs at least one account")
    return StandardMerkleTree.of([[account, totals[account]] for account in sorted(totals)], PAYOUT_LEAF_TYPES)
