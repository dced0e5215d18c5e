"""openledger_sdk.merkle against @openzeppelin/merkle-tree (npm), run through tests/merkle_vectors.mjs."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from openledger_sdk.ledger import (
    PAYOUT_LEAF_TYPES,
    RECORD_LEAF_TYPES,
    InferenceRecord,
    build_payouts_tree,
    build_records_tree,
    derive_id,
)
from openledger_sdk.merkle import MerkleError, StandardMerkleTree, process_proof, standard_leaf_hash, verify

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "merkle_vectors.mjs"


def _payout_values(n: int, rng: random.Random) -> list[list[str]]:
    # Mixed-case (checksummed) and lowercase addresses; amounts up to 2^200 as decimal strings, as JSON carries them.
    values = []
    for i in range(n):
        address = "0x" + rng.randbytes(20).hex()
        values.append([to_checksum_address(address) if i % 2 else address, str(rng.getrandbits(200))])
    return values


def _record_values(n: int, rng: random.Random) -> list[list[str]]:
    return [
        ["0x" + rng.randbytes(32).hex(), "0x" + rng.randbytes(32).hex(), "0x" + rng.randbytes(20).hex(),
         str(rng.randrange(1, 4096)), str(rng.getrandbits(90)), "0x" + rng.randbytes(32).hex()]
        for _ in range(n)
    ]  # fmt: skip


def _cases() -> list[dict]:
    rng = random.Random(1612)
    cases = []
    for n in (1, 2, 3, 7, 100):
        multi = sorted(rng.sample(range(n), min(n, 3)))
        cases.append({"types": list(PAYOUT_LEAF_TYPES), "values": _payout_values(n, rng), "multi": multi})
    cases.append({"types": list(RECORD_LEAF_TYPES), "values": _record_values(7, rng), "multi": [0, 6]})
    duplicated = _payout_values(4, rng)
    cases.append({"types": list(PAYOUT_LEAF_TYPES), "values": duplicated + [duplicated[1]], "multi": [0, 2]})
    cases.append(
        {"types": ["string", "bool", "bytes"], "values": [["a", True, "0x01"], ["bb", False, "0x"]], "multi": []}
    )
    return cases


@pytest.fixture(scope="module")
def vectors() -> list[tuple[dict, dict]]:
    cases = _cases()
    done = subprocess.run(
        ["node", str(SCRIPT)], input=json.dumps(cases), capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return list(zip(cases, json.loads(done.stdout), strict=True))


def test_matches_npm_tree_roots_proofs_and_dump(vectors: list[tuple[dict, dict]]) -> None:
    for case, expected in vectors:
        tree = StandardMerkleTree.of(case["values"], case["types"])
        assert tree.root == expected["root"], f"{len(case['values'])} leaves"
        assert tree.dump() == expected["dump"]
        for i, proof in enumerate(expected["proofs"]):
            assert tree.get_proof(i) == proof
            assert verify(tree.root, case["values"][i], case["types"], proof)
        multi = tree.get_multi_proof(case["multi"])
        assert multi.leaves == [list(leaf) for leaf in expected["multiproof"]["leaves"]]
        assert multi.proof == expected["multiproof"]["proof"]
        assert multi.proof_flags == expected["multiproof"]["proofFlags"]
        assert tree.verify_multi_proof(multi)


def test_load_of_npm_dump_round_trips(vectors: list[tuple[dict, dict]]) -> None:
    for case, expected in vectors:
        loaded = StandardMerkleTree.load(expected["dump"])
        assert loaded.root == expected["root"]
        assert loaded.get_proof(len(case["values"]) - 1) == expected["proofs"][-1]


def test_proofs_by_value_and_rejections() -> None:
    values = [["0x" + f"{i:040x}", i * 10**18] for i in range(1, 6)]
    tree = StandardMerkleTree.of(values, PAYOUT_LEAF_TYPES)
    assert tree.get_proof(values[3]) == tree.get_proof(3)
    proof = tree.get_proof(2)
    assert not verify(tree.root, [values[2][0], values[2][1] + 1], PAYOUT_LEAF_TYPES, proof)
    assert not verify(tree.root, values[2], PAYOUT_LEAF_TYPES, proof[:-1])
    assert process_proof(standard_leaf_hash(PAYOUT_LEAF_TYPES, values[2]), proof) == tree.root_bytes
    with pytest.raises(MerkleError, match="not in tree"):
        tree.get_proof(["0x" + "ab" * 20, 1])
    with pytest.raises(MerkleError, match="non-zero"):
        StandardMerkleTree.of([], PAYOUT_LEAF_TYPES)
    with pytest.raises(MerkleError, match="cannot encode"):
        StandardMerkleTree.of([["not an address", 1]], PAYOUT_LEAF_TYPES)
    tampered = tree.dump()
    tampered["tree"][1] = "0x" + "00" * 32
    with pytest.raises(MerkleError, match="invalid"):
        StandardMerkleTree.load(tampered)


def test_ledger_trees_are_order_independent_and_validated() -> None:
    records = [
        InferenceRecord(
            derive_id("inference", str(i)), derive_id("model", "m"), "0x" + "11" * 20, i, i * 7, b"\x01" * 32
        )
        for i in range(10)
    ]
    assert build_records_tree(records).root == build_records_tree(reversed(records)).root
    assert records[0].leaf_hash() == build_records_tree(records).leaf_hash(records[0].leaf_values())
    with pytest.raises(ValueError, match="duplicate record"):
        build_records_tree(records + records[:1])
    payouts = {"0x" + "22" * 20: 5, "0x" + "33" * 20: 7}
    assert build_payouts_tree(payouts).root == build_payouts_tree(dict(reversed(payouts.items()))).root
    with pytest.raises(ValueError, match="twice"):
        build_payouts_tree({"0x" + "aa" * 20: 1, "0x" + "AA" * 20: 2})
    with pytest.raises(ValueError, match="kind"):
        derive_id("a:b", "x")


def test_sdk_ledger_pieces_import_neither_web3_nor_torch() -> None:
    imports = "import sys, openledger_sdk.merkle, openledger_sdk.ledger\n"
    code = imports + "print(sorted({'web3', 'torch'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
