"""Compiled contracts committed in hub/ledger/artifacts/ (written by `node hub/ledger/compile.mjs`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
CONTRACT_NAMES = ("OpenToken", "DatanetRegistry", "ModelRegistry", "AttributionLedger", "RewardDistributor")
# Deployed after the five (hub.governance.deploy): OPEN holders' votes, the governor, its timelock, the parameters.
GOVERNANCE_NAMES = ("GovernanceToken", "GovernanceTimelock", "OpenLedgerGovernor", "ProtocolParameters")
ALL_NAMES = CONTRACT_NAMES + GOVERNANCE_NAMES


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    sources_hash: str


@cache
def load_artifact(name: str) -> Artifact:
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no artifact {path}: run `node hub/ledger/compile.mjs`") from None
    return Artifact(name, data["abi"], data["bytecode"], data["deployedBytecode"], data["sourcesHash"])


def sources_hash() -> str:
    """The hash of the sources and settings the committed artifacts were built from (one compile for all)."""
    hashes = {load_artifact(name).sources_hash for name in ALL_NAMES}
    if len(hashes) != 1:
        raise RuntimeError("artifacts come from different compiles: run `node hub/ledger/compile.mjs`")
    return hashes.pop()


@dataclass(frozen=True)
class ErrorAbi:
    name: str
    types: list[str]
    names: list[str]


def _canonical_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_canonical_type(component) for component in item["components"])
        return f"({inner}){item['type'][5:]}"
    return item["type"]


@cache
def error_abis() -> dict[bytes, ErrorAbi]:
    """Every custom error of every contract (OpenZeppelin's included), by 4-byte selector, plus Error/Panic."""
    errors = {
        keccak(b"Error(string)")[:4]: ErrorAbi("Error", ["string"], ["message"]),
        keccak(b"Panic(uint256)")[:4]: ErrorAbi("Panic", ["uint256"], ["code"]),
    }
    for name in ALL_NAMES:
        for item in load_artifact(name).abi:
            if item["type"] != "error":
                continue
            types = [_canonical_type(arg) for arg in item["inputs"]]
            selector = keccak(f"{item['name']}({','.join(types)})".encode())[:4]
            errors[selector] = ErrorAbi(
                item["name"], types, [arg["name"] or f"arg{i}" for i, arg in enumerate(item["inputs"])]
            )
    return errors


def decode_error(data: bytes) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) of revert data, or None when the selector is unknown or the data malformed."""
    error = error_abis().get(data[:4])
    if error is None:
        return None
    try:
        values = abi_decode(error.types, data[4:])
    except Exception:  # noqa: BLE001 - malformed revert data is reported as unknown, not as a crash
        return None
    values = [to_checksum_address(v) if t == "address" else v for t, v in zip(error.types, values, strict=True)]
    return error.name, dict(zip(error.names, values, strict=True))
