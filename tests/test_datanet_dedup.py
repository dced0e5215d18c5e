"""Near-duplicate detection (MinHash + LSH), the ingest checks, snapshots and Merkle proofs."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash

from hub.datanets.canonical import row_text
from hub.datanets.config import DatanetSettings
from hub.datanets.dedup import MinHasher, NearDupIndex, normalise, similarity
from hub.datanets.ingest import check_rows, near_duplicates
from hub.datanets.parsing import FileRejected, ParsedRow
from hub.datanets.schema import RowSchema
from hub.datanets.snapshots import SnapshotRow, build_snapshot, load_tree, read_leaves, rows_tree, tree_bytes
from openledger_sdk.datanets import (
    canonical_json,
    row_hash,
    verify_contributor_count,
    verify_row,
)

QA = RowSchema.parse({"prompt": "str", "response": "str"})
LIMITS = DatanetSettings()
HASHER = MinHasher(LIMITS.near_dup_num_perm, LIMITS.near_dup_shingle)
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20


@pytest.mark.parametrize("text", ["", "ab", "hello world, a sentence about datanets", "ünïcödé 🎉 and emoji"])
def test_batch_signatures_equal_datasketch(text: str) -> None:
    reference = MinHash(num_perm=HASHER.num_perm, seed=HASHER.seed, scheme="affine32", hashfunc=lambda v: v)
    reference.update_batch(HASHER.shingle_hashes(text).tolist())
    assert np.array_equal(HASHER.signatures([text])[0], reference.hashvalues)


def test_batch_equals_one_by_one() -> None:
    texts = [f"row number {i} says something about LoRA rank {i * 7}" for i in range(500)]
    batch = HASHER.signatures(texts)
    assert all(np.array_equal(batch[i], HASHER.signatures([t])[0]) for i, t in enumerate(texts[:20]))
    assert np.array_equal(HASHER.from_bytes(HASHER.to_bytes(batch[3])), batch[3])


def test_similarity_separates_near_from_different() -> None:
    a, b, c = HASHER.signatures(
        [
            normalise("The owner approves each submission and writes a reason when rejecting one."),
            normalise("The owner approves each submission and writes a reason when rejecting one!"),
            normalise("Adapters are batched together in one forward pass on the shared GPU."),
        ]
    )
    assert similarity(a, b) > 0.85
    assert similarity(a, c) < 0.2


def test_index_add_query_remove() -> None:
    index = NearDupIndex(HASHER, 0.85)
    first, near, other = HASHER.signatures(
        [
            normalise("Publishing freezes the approved rows into a Parquet snapshot."),
            normalise("Publishing freezes the approved rows into a parquet snapshot"),
            normalise("A completely different sentence about custodial wallets."),
        ]
    )
    index.add(b"k1", first)
    assert [key for key, _ in index.query(near)] == [b"k1"]
    assert index.query(other) == []
    index.remove(b"k1")
    assert index.query(near) == [] and len(index) == 0


def _parsed(*rows: dict) -> list[ParsedRow]:
    return [ParsedRow(i, row) for i, row in enumerate(rows, start=1)]


def test_check_rows_reports_every_bad_row_and_self_duplicates() -> None:
    good = {"prompt": "What is a datanet?", "response": "A versioned, licensed dataset."}
    rows, problems = check_rows(
        _parsed(good, {"prompt": "x"}, dict(good), {"prompt": "y", "response": "z" * 70_000}, {"response": 1}),
        QA,
        LIMITS,
    )
    assert [r.line for r in rows] == [1]
    assert rows[0].canonical == canonical_json(good) and rows[0].digest == row_hash(good)
    assert [(p.line, p.kind) for p in problems] == [
        (2, "invalid"),
        (3, "duplicate"),
        (4, "too_large"),
        (5, "invalid"),
    ]
    assert problems[1].error == "duplicate of line 1 in this upload"


def test_check_rows_limits_rows_per_upload() -> None:
    limits = DatanetSettings(max_rows_per_upload=2)
    rows = [{"prompt": f"q{i}", "response": "a"} for i in range(3)]
    with pytest.raises(FileRejected, match="more than 2 rows"):
        check_rows(_parsed(*rows), QA, limits)


def test_snapshot_columns_are_ignored_on_reupload() -> None:
    row = {"prompt": "p", "response": "r", "_row_id": 3, "_contributor": ALICE, "_row_hash": "0x00"}
    rows, problems = check_rows(_parsed(row), QA, LIMITS)
    assert problems == [] and rows[0].data == {"prompt": "p", "response": "r"}


def test_near_duplicates_against_index_and_inside_the_upload() -> None:
    base = "Every row is hashed with keccak256 over its canonical JSON encoding."
    index = NearDupIndex(HASHER, LIMITS.near_dup_threshold)
    existing = row_text({"prompt": "Why hash rows?", "response": base})
    index.add(b"existing", HASHER.signatures([normalise(existing)])[0])
    rows, problems = check_rows(
        _parsed(
            {"prompt": "Why hash rows?", "response": base.replace(".", "!")},  # near the indexed row
            {"prompt": "Tell me about LoRA rank", "response": "Small ranks such as 8 or 16 are usually enough here."},
            {"prompt": "Tell me about LoRA rank", "response": "Small ranks such as 8 or 16 are usually enough here!"},
            {"prompt": "short", "response": "tiny"},  # under near_dup_min_chars: exact dedup only
        ),
        QA,
        LIMITS,
    )
    assert problems == []
    near, added = near_duplicates(rows, index, HASHER, LIMITS)
    assert [(p.line, p.key) for p in near] == [(1, b"existing"), (3, None)]
    assert "line 2 in this upload" in near[1].error
    assert rows[3].signature is None
    assert added == [rows[1].digest] and len(index) == 2  # only line 2 is new and long enough


def _snapshot_rows() -> list[SnapshotRow]:
    rows = []
    for i in range(1, 12):
        data = {"prompt": f"question {i}", "response": f"answer {i}"}
        rows.append(
            SnapshotRow(i * 10, "0x" + row_hash(data).hex(), ALICE if i % 3 else BOB, canonical_json(data).decode())
        )
    return rows


def test_snapshot_parquet_has_row_ids_contributors_and_hashes() -> None:
    snapshot = build_snapshot(_snapshot_rows(), QA)
    table = pq.read_table(io.BytesIO(snapshot.parquet))
    assert table.column_names == ["_row_id", "_contributor", "prompt", "response", "_row_hash"]
    assert table.num_rows == 11 and table.column("_row_id").to_pylist()[:3] == [10, 20, 30]
    assert dict(snapshot.counts) == {ALICE: 8, BOB: 3}
    assert rows_tree(read_leaves(io.BytesIO(snapshot.parquet))).root == snapshot.merkle_root


def test_every_snapshot_row_verifies_and_a_changed_one_does_not() -> None:
    snapshot = build_snapshot(_snapshot_rows(), QA)
    table = pq.read_table(io.BytesIO(snapshot.parquet)).to_pylist()
    for i, row in enumerate(table):
        assert verify_row(row, snapshot.tree.get_proof(i), snapshot.merkle_root)
    proof = snapshot.tree.get_proof(0)
    assert not verify_row({**table[0], "response": "changed"}, proof, snapshot.merkle_root)
    assert not verify_row({**table[0], "_contributor": BOB}, proof, snapshot.merkle_root)
    assert not verify_row({**table[0], "_row_id": 11}, proof, snapshot.merkle_root)
    assert not verify_row(table[0], snapshot.tree.get_proof(1), snapshot.merkle_root)


def test_contributor_counts_verify() -> None:
    snapshot = build_snapshot(_snapshot_rows(), QA)
    for i, (address, rows) in enumerate(snapshot.counts):
        proof = snapshot.counts_tree.get_proof(i)
        assert verify_contributor_count(address, rows, proof, snapshot.counts_root)
        assert not verify_contributor_count(address, rows + 1, proof, snapshot.counts_root)


def test_root_does_not_depend_on_input_order() -> None:
    rows = _snapshot_rows()
    assert build_snapshot(rows, QA).merkle_root == build_snapshot(rows[::-1], QA).merkle_root


def test_stored_tree_loads_without_a_rebuild() -> None:
    tree = build_snapshot(_snapshot_rows(), QA).tree
    loaded = load_tree(tree_bytes(tree), tree.root)
    assert [loaded.get_proof(i) for i in range(len(tree))] == [tree.get_proof(i) for i in range(len(tree))]
    with pytest.raises(ValueError, match="root"):
        load_tree(tree_bytes(tree), "0x" + "00" * 32)
