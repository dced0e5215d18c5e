"""The contribution pipeline up to the database: type each row, hash it, find duplicates inside the upload and
near duplicates against an index. Nothing here touches SQL; the service adds the exact-duplicate lookup."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from eth_hash.auto import keccak

from hub.datanets.canonical import CanonicalError, canonical_json, row_text
from hub.datanets.config import DatanetSettings
from hub.datanets.dedup import MinHasher, NearDupIndex, normalise
from hub.datanets.parsing import FileRejected, ParsedRow
from hub.datanets.schema import RowError, RowSchema
from openledger_sdk.datanets import META_PREFIX

# Columns of a published snapshot: a re-uploaded (or edited) snapshot contributes its data fields only.
SNAPSHOT_COLUMNS = ("_row_id", "_contributor", "_row_hash")


@dataclass
class Problem:
    """Why one row was refused. `line` is where it is in the upload (1-based)."""

    line: int
    error: str
    kind: str = "invalid"  # invalid | too_large | duplicate | near_duplicate
    row_id: int | None = None  # the existing row it duplicates
    owner: str | None = None  # who contributed that row first
    similarity: float | None = None
    key: Hashable | None = field(default=None, repr=False)  # index key of the near-duplicate, resolved to row_id

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "kind": self.kind, "error": self.error}
        for name in ("row_id", "owner", "similarity"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass
class Candidate:
    """A valid row of the upload, ready to store."""

    line: int
    data: dict[str, Any]
    canonical: bytes
    digest: bytes
    signature: np.ndarray | None = None

    @property
    def hex_hash(self) -> str:
        return "0x" + self.digest.hex()


def check_rows(
    parsed: Iterable[ParsedRow], schema: RowSchema, limits: DatanetSettings
) -> tuple[list[Candidate], list[Problem]]:
    """Typed, hashed rows and the problems of the others; in-upload exact duplicates point at their first line."""
    rows: list[Candidate] = []
    problems: list[Problem] = []
    first_line: dict[bytes, int] = {}
    count = 0
    for item in parsed:
        count += 1
        if count > limits.max_rows_per_upload:
            raise FileRejected(
                f"more than {limits.max_rows_per_upload} rows in one upload: split it into smaller files", 413
            )
        if item.error is not None:
            problems.append(Problem(item.line, item.error))
            continue
        raw = item.raw
        if isinstance(raw, dict) and any(str(key).startswith(META_PREFIX) for key in raw):
            raw = {key: value for key, value in raw.items() if key not in SNAPSHOT_COLUMNS}
        try:
            data = schema.coerce(raw, from_strings=item.from_strings)
            canonical = canonical_json(data)
        except (RowError, CanonicalError) as err:
            problems.append(Problem(item.line, str(err)))
            continue
        if len(canonical) > limits.max_row_bytes:
            problems.append(
                Problem(
                    item.line,
                    f"row is {len(canonical)} bytes as canonical JSON; the limit is {limits.max_row_bytes}",
                    "too_large",
                )
            )
            continue
        digest = keccak(canonical)
        if digest in first_line:
            problems.append(Problem(item.line, f"duplicate of line {first_line[digest]} in this upload", "duplicate"))
            continue
        first_line[digest] = item.line
        rows.append(Candidate(item.line, data, canonical, digest))
    return rows, problems


def near_duplicates(
    rows: list[Candidate], index: NearDupIndex, hasher: MinHasher, limits: DatanetSettings
) -> tuple[list[Problem], list[bytes]]:
    """Rows too similar to an indexed row (Problem.key = that row's key) or to an earlier row of this upload.

    Sets each long-enough row's signature and adds the upload's new rows to `index` as it goes (so later rows are
    checked against earlier ones in one pass); returns the problems and the keys it added, which the caller must
    `index.remove` again if the upload is not committed."""
    eligible = [(row, text) for row in rows if len(text := normalise(row_text(row.data))) >= limits.near_dup_min_chars]
    if not eligible:
        return [], []
    signatures = hasher.signatures([text for _, text in eligible])
    problems: list[Problem] = []
    added: dict[bytes, int] = {}  # key → line, in upload order
    try:
        for (row, _), signature in zip(eligible, signatures, strict=True):
            row.signature = signature
            hits = index.add_unless_near(row.digest, signature)
            if not hits:
                added[row.digest] = row.line
                continue
            key, score = hits[0]
            if key in added:
                error = f"near duplicate (similarity {score:.2f}) of line {added[key]} in this upload"
                problems.append(Problem(row.line, error, "near_duplicate", similarity=round(score, 3)))
            else:
                problems.append(
                    Problem(row.line, "near duplicate", "near_duplicate", similarity=round(score, 3), key=key)
                )
    except BaseException:
        for key in added:
            index.remove(key)
        raise
    return problems, list(added)
