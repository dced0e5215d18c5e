"""Merkle trees byte-compatible with OpenZeppelin's StandardMerkleTree (`@openzeppelin/merkle-tree`).

Leaves are `keccak256(keccak256(abi.encode(types, value)))` (double hashing keeps a leaf from ever being a valid
inner node), leaves are sorted by hash, inner nodes hash the sorted pair, and the tree is stored as a flat array
(root at 0, leaves at the end) — so roots, proofs, multiproofs and `dump()` output match the npm package and
verify on-chain with OpenZeppelin's `MerkleProof`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_hash.auto import keccak

Hash = bytes  # 32 bytes


class MerkleError(ValueError):
    """Invalid input to a Merkle tree operation; the message says what."""


def _to_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    text = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise MerkleError(f"not a hex string: {value!r}") from None


def to_hex(value: bytes) -> str:
    return "0x" + value.hex()


def _normalize(abi_type: str, value: Any) -> Any:
    """Accept what JSON and the npm package accept: decimal/hex strings for integers, hex strings for bytes."""
    if abi_type.endswith("]"):
        inner = abi_type[: abi_type.rindex("[")]
        return [_normalize(inner, item) for item in value]
    if abi_type.startswith(("uint", "int")) and isinstance(value, str):
        return int(value, 0)
    if abi_type.startswith("bytes") and isinstance(value, str):
        return _to_bytes(value)
    return value


def _jsonable(value: Any) -> Any:
    """The inverse of `_normalize`, for `dump()`: big integers as decimal strings, bytes as 0x hex."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return to_hex(bytes(value))
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def standard_leaf_hash(types: Sequence[str], value: Sequence[Any]) -> Hash:
    if len(types) != len(value):
        raise MerkleError(f"leaf has {len(value)} values for {len(types)} types")
    try:
        encoded = abi_encode(list(types), [_normalize(t, v) for t, v in zip(types, value, strict=True)])
    except Exception as err:  # eth_abi raises several unrelated types for bad values
        raise MerkleError(f"cannot encode leaf {value!r} as {list(types)}: {err}") from None
    return keccak(keccak(encoded))


def standard_node_hash(a: Hash, b: Hash) -> Hash:
    return keccak(a + b) if a <= b else keccak(b + a)


def process_proof(leaf: Hash, proof: Sequence[str | bytes]) -> Hash:
    node = leaf
    for sibling in proof:
        node = standard_node_hash(node, _check_node(_to_bytes(sibling)))
    return node


def verify(root: str | bytes, leaf_values: Sequence[Any], types: Sequence[str], proof: Sequence[str | bytes]) -> bool:
    """True if `leaf_values` (encoded as `types`) is in the tree with `root`, by `proof`."""
    return process_proof(standard_leaf_hash(types, leaf_values), proof) == _to_bytes(root)


@dataclass(frozen=True)
class MultiProof:
    leaves: list[Any]
    proof: list[str]
    proof_flags: list[bool]


def process_multi_proof(leaves: Sequence[Hash], proof: Sequence[str | bytes], proof_flags: Sequence[bool]) -> Hash:
    proof_nodes = [_check_node(_to_bytes(p)) for p in proof]
    if len(proof_nodes) < proof_flags.count(False):
        raise MerkleError("invalid multiproof format")
    if len(leaves) + len(proof_nodes) != len(proof_flags) + 1:
        raise MerkleError("provided leaves and multiproof are not compatible")
    stack = list(leaves)
    for flag in proof_flags:
        a = stack.pop(0)
        b = stack.pop(0) if flag else proof_nodes.pop(0)
        stack.append(standard_node_hash(a, b))
    return stack.pop() if stack else proof_nodes.pop(0)


def _check_node(node: bytes) -> bytes:
    if len(node) != 32:
        raise MerkleError(f"Merkle tree nodes must be 32 bytes, got {len(node)}")
    return node


def _sibling(i: int) -> int:
    return i - 1 if i % 2 == 0 else i + 1


def _parent(i: int) -> int:
    return (i - 1) // 2


class StandardMerkleTree:
    """`StandardMerkleTree.of([[addr, amount], ...], ["address", "uint256"])`, then `.root`, `.get_proof(i)`."""

    def __init__(self, tree: list[Hash], values: list[tuple[Any, int]], leaf_encoding: list[str]) -> None:
        self._tree = tree
        self._values = values  # (value, tree index), in input order
        self.leaf_encoding = leaf_encoding
        self._lookup = {tree[tree_index]: i for i, (_, tree_index) in enumerate(values)}

    @classmethod
    def of(
        cls, values: Sequence[Sequence[Any]], leaf_encoding: Sequence[str], sort_leaves: bool = True
    ) -> StandardMerkleTree:
        if not values:
            raise MerkleError("Expected non-zero number of leaves")
        types = list(leaf_encoding)
        hashed = [(standard_leaf_hash(types, value), i) for i, value in enumerate(values)]
        if sort_leaves:
            hashed.sort(key=lambda item: item[0])  # stable, like Array.prototype.sort in the npm package
        size = 2 * len(hashed) - 1
        tree: list[Hash] = [b""] * size
        for leaf_index, (leaf, _) in enumerate(hashed):
            tree[size - 1 - leaf_index] = leaf
        for i in range(size - 1 - len(hashed), -1, -1):
            tree[i] = standard_node_hash(tree[2 * i + 1], tree[2 * i + 2])
        tree_index = [0] * len(values)
        for leaf_index, (_, value_index) in enumerate(hashed):
            tree_index[value_index] = size - 1 - leaf_index
        return cls(tree, [(list(value), tree_index[i]) for i, value in enumerate(values)], types)

    @property
    def root(self) -> str:
        return to_hex(self._tree[0])

    @property
    def root_bytes(self) -> bytes:
        return self._tree[0]

    def __len__(self) -> int:
        return len(self._values)

    def at(self, index: int) -> list[Any]:
        return self._values[index][0]

    def entries(self) -> list[tuple[int, list[Any]]]:
        return [(i, value) for i, (value, _) in enumerate(self._values)]

    def leaf_hash(self, value: Sequence[Any]) -> Hash:
        return standard_leaf_hash(self.leaf_encoding, value)

    def leaf_lookup(self, value: Sequence[Any]) -> int:
        index = self._lookup.get(self.leaf_hash(value))
        if index is None:
            raise MerkleError("Leaf is not in tree")
        return index

    def _value_index(self, leaf: int | Sequence[Any]) -> int:
        index = leaf if isinstance(leaf, int) else self.leaf_lookup(leaf)
        if not 0 <= index < len(self._values):
            raise MerkleError("Index out of bounds")
        return index

    def get_proof(self, leaf: int | Sequence[Any]) -> list[str]:
        """Sibling hashes from the leaf up (by value index in input order, or by value)."""
        tree_index = self._values[self._value_index(leaf)][1]
        proof = []
        while tree_index > 0:
            proof.append(to_hex(self._tree[_sibling(tree_index)]))
            tree_index = _parent(tree_index)
        return proof

    def get_multi_proof(self, leaves: Sequence[int | Sequence[Any]]) -> MultiProof:
        indices = sorted((self._values[self._value_index(leaf)][1] for leaf in leaves), reverse=True)
        if len(set(indices)) != len(indices):
            raise MerkleError("Cannot prove duplicated index")
        stack = list(indices)
        proof: list[str] = []
        flags: list[bool] = []
        while stack and stack[0] > 0:
            j = stack.pop(0)
            s, p = _sibling(j), _parent(j)
            if stack and s == stack[0]:
                flags.append(True)
                stack.pop(0)
            else:
                flags.append(False)
                proof.append(to_hex(self._tree[s]))
            stack.append(p)
        if not indices:
            proof.append(to_hex(self._tree[0]))
        by_hash = {self._tree[tree_index]: value for value, tree_index in self._values}
        return MultiProof([by_hash[self._tree[i]] for i in indices], proof, flags)

    def verify(self, leaf: int | Sequence[Any], proof: Sequence[str | bytes]) -> bool:
        value = self.at(self._value_index(leaf)) if isinstance(leaf, int) else leaf
        return process_proof(self.leaf_hash(value), proof) == self._tree[0]

    def verify_multi_proof(self, multiproof: MultiProof) -> bool:
        leaves = [self.leaf_hash(value) for value in multiproof.leaves]
        return process_multi_proof(leaves, multiproof.proof, multiproof.proof_flags) == self._tree[0]

    def dump(self) -> dict[str, Any]:
        """The npm package's `standard-v1` format (JSON-ready: integers as decimal strings)."""
        return {
            "format": "standard-v1",
            "leafEncoding": list(self.leaf_encoding),
            "tree": [to_hex(node) for node in self._tree],
            "values": [{"value": _jsonable(value), "treeIndex": index} for value, index in self._values],
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> StandardMerkleTree:
        if data.get("format") != "standard-v1":
            raise MerkleError(f"Unknown format {data.get('format')!r}")
        if "leafEncoding" not in data:
            raise MerkleError("Expected leaf encoding")
        tree = [_check_node(_to_bytes(node)) for node in data["tree"]]
        values = [(list(item["value"]), int(item["treeIndex"])) for item in data["values"]]
        loaded = cls(tree, values, list(data["leafEncoding"]))
        loaded.validate()
        return loaded

    def validate(self) -> None:
        """Raise MerkleError unless every value sits at its leaf and every inner node hashes its children."""
        size = len(self._tree)
        for value, tree_index in self._values:
            is_leaf = 0 <= tree_index < size and 2 * tree_index + 1 >= size
            if not is_leaf or self._tree[tree_index] != self.leaf_hash(value):
                raise MerkleError("Merkle tree does not contain the expected value")
        for i in range(size):
            left, right = 2 * i + 1, 2 * i + 2
            if right >= size:
                if left < size:
                    raise MerkleError("Merkle tree is invalid")
            elif self._tree[i] != standard_node_hash(self._tree[left], self._tree[right]):
                raise MerkleError("Merkle tree is invalid")
        if size == 0:
            raise MerkleError("Merkle tree is invalid")
