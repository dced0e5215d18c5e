"""GPU slots: each GPU split into `slots_per_gpu` shares, handed out to user servers.

The allocation table lives in a JSON file so that it survives a hub restart and so that several
processes (a hub and an admin script, or the race tests) agree on it. Every operation takes a
thread lock and an exclusive `flock` on a side lock file, re-reads the table, changes it and
writes it back atomically, so two concurrent spawns can never be given the same slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .inventory import GPUDevice

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass(frozen=True)
class Slot:
    """Share number `share` (0-based) of `shares` equal shares of one GPU."""

    device: GPUDevice
    share: int = 0
    shares: int = 1

    @property
    def key(self) -> str:
        """Identity of the slot in the allocation table."""
        return f"{self.device.cuda_id}#{self.share}"

    @property
    def fraction(self) -> float:
        """The part of the GPU's memory this slot may use, rounded down so that the shares never add up to more
        than the whole GPU."""
        return math.floor(10_000 / self.shares) / 10_000

    def env(self) -> dict[str, str]:
        """Environment for the user server that owns this slot."""
        env = {
            "CUDA_VISIBLE_DEVICES": self.device.cuda_id,
            # nvidia-smi numbers GPUs in PCI bus order, CUDA by default fastest first: make an index mean the same.
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "OPENLEDGER_DEVICE": "cuda",
        }
        if self.shares > 1:
            # Read by the kernel for torch.cuda.set_per_process_memory_fraction(); CUDA itself cannot split a GPU.
            env["OPENLEDGER_GPU_FRACTION"] = f"{self.fraction:g}"
        return env

    def describe(self) -> str:
        name = f" ({self.device.name})" if self.device.name else ""
        share = f", share {self.share + 1}/{self.shares}" if self.shares > 1 else ""
        return f"GPU {self.device.cuda_id}{name}{share}"

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device.to_dict(), "share": self.share, "shares": self.shares}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Slot:
        return cls(GPUDevice.from_dict(data["device"]), int(data["share"]), int(data["shares"]))


# One thread lock per lock file, shared by every allocator of this process: flock alone excludes other
# processes and other open file descriptions, the thread lock keeps threads from queueing in the kernel.
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(str(path), threading.Lock())


class SlotAllocator:
    """Hands out GPU slots to owners (one slot per owner), persisted in `state_file`."""

    def __init__(self, devices: Sequence[GPUDevice], slots_per_gpu: int, state_file: str | os.PathLike[str]) -> None:
        if slots_per_gpu < 1:
            raise ValueError(f"slots_per_gpu must be at least 1, not {slots_per_gpu}")
        keys = [device.cuda_id for device in devices]
        if len(set(keys)) != len(keys):
            raise ValueError(f"the same GPU is listed twice: {keys}")
        self.devices: tuple[GPUDevice, ...] = tuple(devices)
        self.slots_per_gpu = slots_per_gpu
        self.state_file = Path(state_file).absolute()
        self.lock_file = self.state_file.with_name(self.state_file.name + ".lock")
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _thread_lock(self.lock_file)

    @property
    def capacity(self) -> int:
        """How many servers can hold a slot at once."""
        return len(self.devices) * self.slots_per_gpu

    # --- public operations, each one atomic across threads and processes ---

    def allocate(self, owner: str) -> Slot | None:
        """The owner's slot: the one it already holds, else a free share of the least-loaded GPU; None if all
        slots are taken."""
        with self._locked() as table:
            if owner in table:
                return table[owner]
            slot = self._pick_free(table)
            if slot is None:
                return None
            table[owner] = slot
            self._write(table)
            return slot

    def release(self, owner: str) -> Slot | None:
        """Free the owner's slot; returns it, or None if the owner held none."""
        with self._locked() as table:
            slot = table.pop(owner, None)
            if slot is not None:
                self._write(table)
            return slot

    def adopt(self, owner: str, slot: Slot) -> bool:
        """Record that `owner` runs on `slot` (a server found running after a hub restart). False when another
        owner holds that slot, in which case nothing changes."""
        with self._locked() as table:
            holder = next((name for name, held in table.items() if held.key == slot.key), None)
            if holder is not None and holder != owner:
                return False
            if table.get(owner) != slot:
                table[owner] = slot
                self._write(table)
            return True

    def allocations(self) -> dict[str, Slot]:
        """Owner -> slot, as stored now."""
        with self._locked() as table:
            return dict(table)

    def reconcile(self, active_owners: Iterable[str]) -> list[str]:
        """Drop the allocations of owners that are no longer running (after a hub restart); returns them."""
        active = set(active_owners)
        with self._locked() as table:
            stale = sorted(owner for owner in table if owner not in active)
            for owner in stale:
                del table[owner]
            if stale:
                self._write(table)
            return stale

    # --- internals ---

    def _pick_free(self, table: dict[str, Slot]) -> Slot | None:
        used: dict[str, set[int]] = {}
        for slot in table.values():
            used.setdefault(slot.device.cuda_id, set()).add(slot.share)
        best: tuple[int, int] | None = None  # (load, position in the inventory)
        for position, device in enumerate(self.devices):
            taken = used.get(device.cuda_id, set())
            has_free = any(share not in taken for share in range(self.slots_per_gpu))
            if has_free and (best is None or len(taken) < best[0]):
                best = (len(taken), position)
        if best is None:
            return None
        device = self.devices[best[1]]
        taken = used.get(device.cuda_id, set())
        share = next(share for share in range(self.slots_per_gpu) if share not in taken)
        return Slot(device, share, self.slots_per_gpu)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Slot]]:
        """Hold both locks and yield the table as stored now; callers write it back with `_write`."""
        with self._lock:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield self._read()
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    def _read(self) -> dict[str, Slot]:
        try:
            raw = self.state_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            entries = data["allocations"]
            if not isinstance(entries, dict):
                raise TypeError("allocations is not an object")
        except (ValueError, KeyError, TypeError) as err:
            # Writes are atomic, so this is a hand edit gone wrong: keep the file for inspection, start empty
            # rather than refuse every spawn.
            aside = self.state_file.with_name(f"{self.state_file.name}.corrupt-{int(time.time())}")
            os.replace(self.state_file, aside)
            log.error(
                "GPU slot table %s is unreadable (%s); moved it to %s and started empty", self.state_file, err, aside
            )
            return {}
        table = {}
        for owner, entry in entries.items():
            try:
                table[owner] = Slot.from_dict(entry)
            except (KeyError, TypeError, ValueError) as err:
                log.error("dropping unreadable GPU slot entry for %s in %s: %s", owner, self.state_file, err)
        return table

    def _write(self, table: dict[str, Slot]) -> None:
        data = {
            "version": STATE_VERSION,
            "allocations": {owner: slot.to_dict() for owner, slot in sorted(table.items())},
        }
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=f".{self.state_file.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.state_file)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # Make the rename itself durable, so a power cut cannot bring back an older table.
        dir_fd = os.open(self.state_file.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- one allocator per state file per process, shared by all spawners of a hub ---

_SHARED: dict[str, SlotAllocator] = {}
_SHARED_GUARD = threading.RLock()


def shared_allocator(state_file: str | os.PathLike[str], create: Callable[[Path], SlotAllocator]) -> SlotAllocator:
    """The process-wide allocator for `state_file`, made by `create(path)` the first time it is asked for.

    `create` runs once (under a lock), which is where a hub detects its GPUs and reconciles the table.
    """
    path = Path(state_file).absolute()
    with _SHARED_GUARD:
        allocator = _SHARED.get(str(path))
        if allocator is None:
            allocator = create(path)
            _SHARED[str(path)] = allocator
        return allocator


def clear_shared_allocators() -> None:
    """Forget the shared allocators (the next spawner re-detects and reconciles, as a restarted hub would)."""
    with _SHARED_GUARD:
        _SHARED.clear()
