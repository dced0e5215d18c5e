"""Row hashes: keccak256 of canonical JSON. The definition lives in the SDK so anyone can recompute it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openledger_sdk.datanets import (
    COUNT_LEAF_TYPES,
    META_PREFIX,
    ROW_LEAF_TYPES,
    CanonicalError,
    canonical_json,
    data_fields,
    row_hash,
    row_leaf,
    verify_row,
)

__all__ = [
    "COUNT_LEAF_TYPES",
    "META_PREFIX",
    "ROW_LEAF_TYPES",
    "CanonicalError",
    "canonical_json",
    "data_fields",
    "hex_hash",
    "row_hash",
    "row_leaf",
    "row_text",
    "verify_row",
]


def hex_hash(digest: bytes) -> str:
    return "0x" + digest.hex()


def row_text(row: Mapping[str, Any]) -> str:
    """The row's text for near-duplicate detection: its string values in key order, joined by newlines."""
    return "\n".join(value for _, value in sorted(row.items()) if isinstance(value, str))
