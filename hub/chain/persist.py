"""The embedded anvil's state on disk, written so that a crash at any instant leaves a loadable file.

anvil's own `--state-interval` rewrites the file in place every few seconds: a kill in between loses up to that much,
and a kill during the write leaves a torn file. Instead the chain service asks anvil for its state
(`anvil_dumpState`) whenever a new block appeared, and replaces the file atomically (temp file, fsync, rename, fsync
of the folder). Then it writes the block number that dump contains to a marker beside it, which the relay reads:
a write counts as confirmed only once its block is in the file (hub.relay.finality.PersistedFinality).
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass
from pathlib import Path

from hub.chain.anvil import rpc_call
from hub.relay.finality import marker_path
from openledger_sdk.files import write_atomically


@dataclass
class StatePersister:
    rpc_url: str
    state_file: Path
    persisted_block: int = -1
    dumps: int = 0
    last_dump_s: float = 0.0  # seconds the last dump took (RPC + write), for /health
    dumped_at: float = 0.0  # time.monotonic() of the last dump

    def head(self) -> tuple[int, str]:
        block = rpc_call(self.rpc_url, "eth_getBlockByNumber", ["latest", False])
        assert isinstance(block, dict)
        return int(block["number"], 16), str(block["hash"])

    def persist_if_new(self, every: float = 5.0) -> bool:
        """Dump when the head moved since the last dump, and every `every` seconds anyway (state changed without a
        block: anvil_setBalance from the faucet); True when it wrote one."""
        number, _ = self.head()
        if number == self.persisted_block and time.monotonic() - self.dumped_at < every:
            return False
        self.persist()
        return True

    def persist(self) -> int:
        """Dump anvil's state now; the block number it holds at least."""
        started = time.perf_counter()
        number, block_hash = self.head()  # read first: the dump that follows holds this block or a later one
        dumped = rpc_call(self.rpc_url, "anvil_dumpState", timeout=60)
        state = gzip.decompress(bytes.fromhex(str(dumped).removeprefix("0x")))  # --load-state reads plain JSON
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.state_file, state)
        # After the state: a crash between the two leaves the marker behind the file, never ahead of it.
        write_atomically(marker_path(self.state_file), json.dumps({"block": number, "hash": block_hash}).encode())
        self.persisted_block = number
        self.dumps += 1
        self.last_dump_s = time.perf_counter() - started
        self.dumped_at = time.monotonic()
        return number
