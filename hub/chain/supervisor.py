"""Keeps the embedded anvil alive and its state on disk: restarts it when it dies (with back-off), dumps its state
after every new block (hub.chain.persist), and says how it is doing for the chain service's /health.

It takes a `start` callable that returns a running AnvilNode, so how anvil is started (ports, sockets, sandbox) stays
in hub.chain.anvil.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.chain.anvil import AnvilError, AnvilNode, start_anvil
from hub.chain.persist import StatePersister
from hub.settings import Settings

log = logging.getLogger("hub.chain")


@dataclass
class SupervisorStatus:
    state: str = "starting"  # starting | running | restarting | stopped
    message: str = ""
    restarts: int = 0
    since: float = field(default_factory=time.time)

    def set(self, state: str, message: str = "") -> None:
        self.state, self.message, self.since = state, message, time.time()


class AnvilSupervisor:
    def __init__(
        self,
        start: Callable[[], AnvilNode],
        persister: Callable[[AnvilNode], StatePersister] | None = None,
        poll_interval: float = 0.1,
        max_backoff: float = 30.0,
    ) -> None:
        self._start = start
        self._make_persister = persister
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.node: AnvilNode | None = None
        self.persister: StatePersister | None = None
        self.status = SupervisorStatus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start anvil now (its errors raise to the caller: a first start that fails is a configuration problem),
        then watch it in a thread."""
        self._launch()
        self._thread = threading.Thread(target=self._watch, name="anvil-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        node = self.node
        if node is not None and node.process.poll() is None:
            self._persist_quietly()  # the last blocks, before anvil goes
            node.stop()
        self.status.set("stopped")

    @property
    def healthy(self) -> bool:
        return self.status.state == "running" and self.node is not None and self.node.process.poll() is None

    def as_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"anvil": self.status.state, "restarts": self.status.restarts}
        if self.status.message:
            answer["anvil_message"] = self.status.message
        if self.persister is not None:
            answer |= {"persisted_block": self.persister.persisted_block, "last_dump_s": self.persister.last_dump_s}
        return answer

    def _launch(self) -> None:
        self.node = self._start()
        if self._make_persister is not None:
            self.persister = self._make_persister(self.node)
            self.persister.persist()  # the marker matches the chain that is running now
        self.status.set("running")

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stop.wait(self.poll_interval):
            node = self.node
            if node is not None and node.process.poll() is None:
                self._persist_quietly()
                continue
            code = node.process.returncode if node is not None else None
            self.status.set("restarting", f"anvil exited with code {code}; restarting in {backoff:.0f} s")
            log.error("chain: %s", self.status.message)
            if self._stop.wait(backoff):
                return
            try:
                self._launch()
            except (AnvilError, OSError) as err:
                backoff = min(backoff * 2, self.max_backoff)
                self.status.set("restarting", f"anvil did not start again ({err}); next try in {backoff:.0f} s")
                log.error("chain: %s", self.status.message)
                self.node = None
                continue
            self.status.restarts += 1
            backoff = 1.0
            log.warning("chain: anvil restarted (restart %d)", self.status.restarts)

    def _persist_quietly(self) -> None:
        if self.persister is None:
            return
        try:
            self.persister.persist_if_new()
        except Exception as err:  # noqa: BLE001 - anvil may be dying this instant: the watch loop sees it next
            log.debug("chain: state dump failed: %s", err)


def embedded_anvil(settings: Settings) -> AnvilSupervisor:
    """The supervisor of the embedded chain: anvil loads the last state file written here at every (re)start."""
    state_file = settings.data_dir / "chain" / "anvil-state.json"

    def start() -> AnvilNode:
        load = ["--load-state", str(state_file)] if state_file.exists() else []
        return start_anvil(
            settings.chain.anvil_port,
            chain_id=settings.chain.chain_id,
            log_file=settings.data_dir / "logs" / "anvil.log",
            ipc_path=Path(settings.anvil_rpc_url),  # reachable only through this socket (hub.chain.anvil)
            extra_args=load,
        )

    return AnvilSupervisor(
        start,
        persister=lambda node: StatePersister(node.rpc_url, state_file),
        max_backoff=settings.chain.restart_max_backoff,
    )
