"""A version's frozen form: a Parquet snapshot of the approved rows and the Merkle roots that commit to it.

Rows tree: OpenZeppelin StandardMerkleTree over `(uint256 row_id, bytes32 row_hash, address contributor)` — the row
id says which row, the hash what it contains, the address who is paid for it. Counts tree: the same kind of tree over
`(address contributor, uint256 rows)`, the per-contributor row counts that go on-chain with the root.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from hub.datanets.canonical import COUNT_LEAF_TYPES, ROW_LEAF_TYPES, row_leaf
from hub.datanets.schema import RowSchema
from openledger_sdk.merkle import StandardMerkleTree

_ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
META_FIELDS = [pa.field("_row_id", pa.int64(), False), pa.field("_contributor", pa.string(), False)]
HASH_FIELD = pa.field("_row_hash", pa.string(), False)


@dataclass(frozen=True)
class SnapshotRow:
    row_id: int
    row_hash: str  # 0x hex
    contributor: str  # checksum address
    data: str  # canonical JSON


@dataclass
class Snapshot:
    parquet: bytes
    tree: StandardMerkleTree
    counts_tree: StandardMerkleTree
    counts: list[tuple[str, int]]  # (address, rows), sorted by address

    @property
    def merkle_root(self) -> str:
        return self.tree.root

    @property
    def counts_root(self) -> str:
        return self.counts_tree.root

    @property
    def row_count(self) -> int:
        return len(self.tree)


def arrow_schema(schema: RowSchema) -> pa.Schema:
    data = [pa.field(f.name, _ARROW_TYPES[f.type], f.optional) for f in schema.fields]
    return pa.schema([*META_FIELDS, *data, HASH_FIELD], metadata={"openledger.leaf": json.dumps(ROW_LEAF_TYPES)})


def rows_tree(leaves: Sequence[tuple[int, str, str]]) -> StandardMerkleTree:
    return StandardMerkleTree.of([row_leaf(*leaf) for leaf in leaves], ROW_LEAF_TYPES)


def counts_tree(counts: Sequence[tuple[str, int]]) -> StandardMerkleTree:
    return StandardMerkleTree.of([[address, rows] for address, rows in counts], COUNT_LEAF_TYPES)


def build_snapshot(rows: Sequence[SnapshotRow], schema: RowSchema) -> Snapshot:
    """Parquet bytes (rows in row-id order) and both trees; `rows` must not be empty."""
    ordered = sorted(rows, key=lambda row: row.row_id)
    records: list[dict[str, Any]] = []
    for row in ordered:
        record = json.loads(row.data)
        record["_row_id"] = row.row_id
        record["_contributor"] = row.contributor
        record["_row_hash"] = row.row_hash
        records.append(record)
    table = pa.Table.from_pylist(records, schema=arrow_schema(schema))
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    counts = sorted(Counter(row.contributor for row in ordered).items())
    tree = rows_tree([(row.row_id, row.row_hash, row.contributor) for row in ordered])
    return Snapshot(buffer.getvalue(), tree, counts_tree(counts), counts)


def tree_bytes(tree: StandardMerkleTree) -> bytes:
    """The tree in OpenZeppelin's `standard-v1` dump format, stored next to the snapshot for fast proofs."""
    return json.dumps(tree.dump(), separators=(",", ":")).encode()


def load_tree(data: bytes, root: str) -> StandardMerkleTree:
    """A stored dump back as a tree. The blob is addressed by its digest, so the full re-hash that
    `StandardMerkleTree.load` does (minutes for millions of rows) is skipped; the root is still checked."""
    dump = json.loads(data)
    nodes = [bytes.fromhex(node[2:]) for node in dump["tree"]]
    values = [(list(item["value"]), int(item["treeIndex"])) for item in dump["values"]]
    tree = StandardMerkleTree(nodes, values, list(dump["leafEncoding"]))
    if tree.root != root:
        raise ValueError(f"stored tree has root {tree.root}, the version says {root}")
    return tree


def read_leaves(source: IO[bytes] | str) -> list[tuple[int, str, str]]:
    """The leaves of a snapshot, in file order, read from its bookkeeping columns only."""
    table = pq.read_table(source, columns=["_row_id", "_row_hash", "_contributor"])
    return list(
        zip(
            table.column("_row_id").to_pylist(),
            table.column("_row_hash").to_pylist(),
            table.column("_contributor").to_pylist(),
            strict=True,
        )
    )


def read_row(source: IO[bytes] | str, index: int) -> dict[str, Any]:
    """One snapshot row (by position) as a dict, nulls left out like in the row's canonical form."""
    table = pq.read_table(source)
    row = table.slice(index, 1).to_pylist()[0]
    return {key: value for key, value in row.items() if value is not None}
