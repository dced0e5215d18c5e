"""The three adapter tiers: disk (a directory per adapter id), a CPU LRU cache with a byte budget, and S device slots.

Disk -> CPU loads run on prefetch worker threads, so the scheduler never waits on file I/O: it asks for the
adapters of the requests at the head of its queue and admits them once they are in CPU memory. CPU -> device
copies (`DeviceSlots.install`) run on the scheduler thread between forward passes, the only thread that touches
the slot tensors.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch

from hub.openlora.adapter_format import CONFIG_FILE, AdapterWeights, read_peft_adapter
from hub.openlora.errors import AdapterLoadError
from hub.openlora.lora_batch import LoRALayers

log = logging.getLogger(__name__)

AdapterResolver = Callable[[str], Path | None]
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")


def valid_adapter_id(adapter_id: str) -> bool:
    """Ids are directory names (optionally `owner/name`): no path tricks like `..` or absolute paths."""
    return bool(_ID.match(adapter_id)) and ".." not in adapter_id


def directory_resolver(adapters_dir: str | Path) -> AdapterResolver:
    """Resolve `adapter_id` to `adapters_dir/adapter_id` when it holds an adapter_config.json."""
    root = Path(adapters_dir)

    def resolve(adapter_id: str) -> Path | None:
        if not valid_adapter_id(adapter_id):
            return None
        path = root / adapter_id
        return path if (path / CONFIG_FILE).is_file() else None

    return resolve


def directory_lister(adapters_dir: str | Path) -> Callable[[], list[str]]:
    """List adapter ids under `adapters_dir` (one level, or `owner/name`)."""
    root = Path(adapters_dir)

    def list_ids() -> list[str]:
        if not root.is_dir():
            return []
        found = {p.parent.relative_to(root).as_posix() for p in root.glob("*/" + CONFIG_FILE)}
        found |= {p.parent.relative_to(root).as_posix() for p in root.glob("*/*/" + CONFIG_FILE)}
        return sorted(i for i in found if valid_adapter_id(i))

    return list_ids


class TierStats:
    """Counters of where admitted requests found their adapter, plus loads, failures and evictions."""

    FIELDS = ("device_hits", "cpu_hits", "disk_loads", "load_failures", "cpu_evictions", "slot_evictions")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)

    def add(self, field: str, n: int = 1) -> None:
        with self._lock:
            self._counts[field] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class CpuCache:
    """LRU over adapters in CPU memory, evicting least recently used ones to stay within `budget_bytes`."""

    def __init__(self, budget_bytes: int, stats: TierStats) -> None:
        self.budget_bytes = budget_bytes
        self._stats = stats
        self._items: OrderedDict[str, AdapterWeights] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, adapter_id: str) -> AdapterWeights | None:
        with self._lock:
            item = self._items.get(adapter_id)
            if item is not None:
                self._items.move_to_end(adapter_id)
            return item

    def put(self, weights: AdapterWeights) -> bool:
        """Insert (evicting LRU entries as needed); False when the adapter alone exceeds the budget."""
        with self._lock:
            self._pop(weights.adapter_id)
            if weights.nbytes > self.budget_bytes:
                return False
            while self._items and self._bytes + weights.nbytes > self.budget_bytes:
                self._pop(next(iter(self._items)))
                self._stats.add("cpu_evictions")
            self._items[weights.adapter_id] = weights
            self._bytes += weights.nbytes
            return True

    def remove(self, adapter_id: str) -> bool:
        with self._lock:
            return self._pop(adapter_id)

    def _pop(self, adapter_id: str) -> bool:
        item = self._items.pop(adapter_id, None)
        if item is None:
            return False
        self._bytes -= item.nbytes
        return True

    def __contains__(self, adapter_id: str) -> bool:
        with self._lock:
            return adapter_id in self._items

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._items)


class AdapterStore:
    """Disk tier + CPU tier + background prefetch. Thread-safe."""

    def __init__(
        self,
        resolve: AdapterResolver,
        module_shapes: dict[str, tuple[int, int]],
        *,
        max_rank: int,
        dtype: torch.dtype,
        cpu_cache_bytes: int,
        list_ids: Callable[[], list[str]] | None = None,
        workers: int = 1,
        max_ready: int = 64,
        on_event: Callable[[], None] | None = None,
        on_load_seconds: Callable[[float], None] | None = None,
    ) -> None:
        self._resolve = resolve
        self._list_ids = list_ids
        self._shapes = module_shapes
        self._max_rank = max_rank
        self._dtype = dtype
        self.stats = TierStats()
        self.cpu = CpuCache(cpu_cache_bytes, self.stats)
        self._registered: dict[str, Path] = {}  # runtime registrations (admin load with an explicit path)
        self._lock = threading.Lock()
        self._inflight: set[str] = set()
        # Fresh loads handed to the scheduler even if the CPU cache could not keep them (a tiny budget must not
        # stall progress); bounded so abandoned prefetches cannot pile up.
        self._ready: OrderedDict[str, AdapterWeights] = OrderedDict()
        self._max_ready = max_ready
        self._failures: dict[str, AdapterLoadError] = {}
        self._on_event = on_event or (lambda: None)
        self._on_load_seconds = on_load_seconds or (lambda s: None)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._worker, name=f"openlora-prefetch-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    # -- disk tier -------------------------------------------------------------------------------------------
    def path_for(self, adapter_id: str) -> Path | None:
        with self._lock:
            path = self._registered.get(adapter_id)
        if path is not None:
            return path
        return self._resolve(adapter_id) if valid_adapter_id(adapter_id) else None

    def exists(self, adapter_id: str) -> bool:
        return adapter_id in self.cpu or self.path_for(adapter_id) is not None

    def register(self, adapter_id: str, path: Path) -> None:
        if not valid_adapter_id(adapter_id):
            raise ValueError(f"invalid adapter id {adapter_id!r}")
        with self._lock:
            self._registered[adapter_id] = path

    def unregister(self, adapter_id: str) -> None:
        with self._lock:
            self._registered.pop(adapter_id, None)

    def known_ids(self) -> list[str]:
        ids = set(self.cpu.ids())
        with self._lock:
            ids |= set(self._registered)
        if self._list_ids is not None:
            ids |= set(self._list_ids())
        return sorted(ids)

    def load_from_disk(self, adapter_id: str) -> AdapterWeights:
        """Read and validate the adapter now (caller's thread); raises AdapterLoadError."""
        path = self.path_for(adapter_id)
        if path is None:
            raise AdapterLoadError(adapter_id, "no adapter with this id on disk")
        start = time.perf_counter()
        weights = read_peft_adapter(adapter_id, path, self._shapes, max_rank=self._max_rank, dtype=self._dtype)
        self._on_load_seconds(time.perf_counter() - start)
        self.stats.add("disk_loads")
        return weights

    # -- CPU tier and prefetch -------------------------------------------------------------------------------
    def prefetch(self, adapter_id: str) -> None:
        """Start loading disk -> CPU in the background unless it is there already or on its way."""
        with self._lock:
            if adapter_id in self._inflight or adapter_id in self._ready or adapter_id in self._failures:
                return
            if adapter_id in self.cpu:
                return
            self._inflight.add(adapter_id)
        self._queue.put(adapter_id)

    def take(self, adapter_id: str) -> tuple[AdapterWeights, str] | None:
        """The adapter if it is in CPU memory, with the tier it came from ("cpu" hit or fresh "disk" load)."""
        with self._lock:
            fresh = self._ready.pop(adapter_id, None)
        if fresh is not None:
            return fresh, "disk"
        cached = self.cpu.get(adapter_id)
        return (cached, "cpu") if cached is not None else None

    def take_failure(self, adapter_id: str) -> AdapterLoadError | None:
        """The error of the last failed load, consumed once (a later request retries the disk)."""
        with self._lock:
            return self._failures.pop(adapter_id, None)

    def pending(self, adapter_id: str) -> bool:
        with self._lock:
            return adapter_id in self._inflight

    def store(self, weights: AdapterWeights) -> None:
        self.cpu.put(weights)

    def evict(self, adapter_id: str) -> bool:
        with self._lock:
            self._ready.pop(adapter_id, None)
        return self.cpu.remove(adapter_id)

    def _worker(self) -> None:
        while True:
            adapter_id = self._queue.get()
            if adapter_id is None:
                return
            try:
                weights = self.load_from_disk(adapter_id)
            except AdapterLoadError as exc:
                self.stats.add("load_failures")
                with self._lock:
                    self._failures[adapter_id] = exc
                    self._inflight.discard(adapter_id)
            except Exception as exc:  # never let a bad file kill the worker
                log.exception("unexpected error loading adapter %s", adapter_id)
                self.stats.add("load_failures")
                with self._lock:
                    self._failures[adapter_id] = AdapterLoadError(adapter_id, f"{type(exc).__name__}: {exc}")
                    self._inflight.discard(adapter_id)
            else:
                self.cpu.put(weights)
                with self._lock:
                    self._ready[adapter_id] = weights
                    while len(self._ready) > self._max_ready:
                        self._ready.popitem(last=False)
                    self._inflight.discard(adapter_id)
            self._on_event()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=5)


class DeviceSlots:
    """S device slots holding adapters for the batched LoRA layers. Only the scheduler thread calls this.

    A slot is pinned while a running sequence uses it; eviction picks the least recently used unpinned slot,
    and a request whose adapter is not resident waits while every slot is pinned.
    """

    def __init__(self, layers: LoRALayers, stats: TierStats) -> None:
        self.layers = layers
        self.num_slots = layers.num_slots
        self._stats = stats
        self._slot_of: dict[str, int] = {}
        self._occupant: list[str | None] = [None] * self.num_slots
        self._pins = [0] * self.num_slots
        self._last_used = [0] * self.num_slots
        self._stale = [False] * self.num_slots  # unloaded while pinned: cleared when the last user leaves
        self.ranks: dict[int, int] = {}
        self._tick = 0

    def lookup(self, adapter_id: str) -> int | None:
        return self._slot_of.get(adapter_id)

    def pin(self, slot: int) -> None:
        self._pins[slot] += 1
        self._tick += 1
        self._last_used[slot] = self._tick

    def unpin(self, slot: int) -> None:
        self._pins[slot] -= 1
        if self._pins[slot] == 0 and self._stale[slot]:
            self._clear(slot)

    def has_room(self) -> bool:
        return self._free_slot() is not None

    def _free_slot(self) -> int | None:
        best: int | None = None
        for s in range(self.num_slots):
            if self._occupant[s] is None and self._pins[s] == 0:
                return s
            if self._pins[s] == 0 and (best is None or self._last_used[s] < self._last_used[best]):
                best = s
        return best

    def install(self, weights: AdapterWeights) -> int | None:
        """Copy the adapter into a free (or LRU unpinned) slot; None when every slot is pinned."""
        slot = self._free_slot()
        if slot is None:
            return None
        if self._occupant[slot] is not None:
            self._stats.add("slot_evictions")
            self._clear(slot)
        self.layers.load_slot(slot, weights.modules)
        self._occupant[slot] = weights.adapter_id
        self._slot_of[weights.adapter_id] = slot
        self.ranks[slot] = weights.rank
        self._tick += 1
        self._last_used[slot] = self._tick
        return slot

    def _clear(self, slot: int) -> None:
        occupant = self._occupant[slot]
        if occupant is not None and self._slot_of.get(occupant) == slot:
            del self._slot_of[occupant]
        self.layers.clear_slot(slot)
        self._occupant[slot] = None
        self._stale[slot] = False
        self.ranks.pop(slot, None)

    def evict(self, adapter_id: str) -> bool:
        """Drop the adapter from its slot now, or once its running sequences finish."""
        slot = self._slot_of.pop(adapter_id, None)
        if slot is None:
            return False
        if self._pins[slot] == 0:
            self._clear(slot)
        else:
            self._stale[slot] = True  # new requests will load a fresh copy into another slot
        return True

    def resident(self) -> dict[str, int]:
        return dict(self._slot_of)

    def pinned_count(self) -> int:
        return sum(1 for p in self._pins if p > 0)
