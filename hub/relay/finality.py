"""When a mined transaction counts as final: the relay marks an outbox row confirmed only at or below `final_block()`.

- `PersistedFinality`: the embedded anvil keeps its chain in memory; a block is final once the chain service wrote a
  state dump that contains it (hub.chain.persist writes a marker next to the state file after each dump).
- `TagFinality`: a real L2's `safe` or `finalized` block tag.
- `DepthFinality`: the head minus N confirmations (0: the head itself; dev chains run by someone else).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from web3 import Web3

from hub.settings import Settings


class Finality(Protocol):
    def final_block(self, w3: Web3) -> int:
        """The highest block number that counts as final now (-1: none yet)."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class DepthFinality:
    confirmations: int = 0

    def final_block(self, w3: Web3) -> int:
        return w3.eth.block_number - self.confirmations

    def describe(self) -> str:
        return f"{self.confirmations} confirmation(s) below the head"


@dataclass(frozen=True)
class TagFinality:
    tag: str  # "safe" | "finalized"

    def final_block(self, w3: Web3) -> int:
        return int(w3.eth.get_block(self.tag)["number"])  # type: ignore[arg-type]

    def describe(self) -> str:
        return f"the node's {self.tag!r} block"


@dataclass(frozen=True)
class PersistedFinality:
    """Blocks in the embedded anvil's last state dump on disk (read from the marker the chain service writes)."""

    marker: Path

    def final_block(self, w3: Web3) -> int:
        try:
            return int(json.loads(self.marker.read_text())["block"])
        except (FileNotFoundError, ValueError, KeyError):
            return -1  # nothing on disk yet: nothing is final

    def describe(self) -> str:
        return f"the embedded chain's state on disk ({self.marker})"


def marker_path(state_file: Path) -> Path:
    """Where the chain service notes the newest block of the state file at `state_file`."""
    return state_file.with_name(state_file.name + ".block")


def choose_finality(mode: str, confirmations: int, embedded_state: Path | None, w3: Web3 | None = None) -> Finality:
    """The finality for settings `chain.finality` / `chain.confirmations`; `embedded_state` is the embedded anvil's
    state file (None for an external RPC). `auto`: the embedded chain's disk, a dev node's head (minus confirmations),
    else the `safe` tag."""
    if mode in ("safe", "finalized"):
        return TagFinality(mode)
    if mode == "latest":
        return DepthFinality(confirmations)
    if embedded_state is not None:
        return PersistedFinality(marker_path(embedded_state))
    client = ""
    if w3 is not None:
        try:
            client = w3.client_version.lower()
        except Exception:  # noqa: BLE001 - unknown node: assume a real chain
            client = ""
    if client.startswith(("anvil", "hardhat", "ganache")) or confirmations:
        return DepthFinality(confirmations)
    return TagFinality("safe")


def settings_finality(settings: Settings, w3: Web3 | None = None) -> Finality:
    """The finality the settings ask for (the embedded chain's state file when there is no `chain.rpc_url`)."""
    embedded = None if settings.chain.rpc_url else settings.data_dir / "chain" / "anvil-state.json"
    return choose_finality(settings.chain.finality, settings.chain.confirmations, embedded, w3)
