"""Which device slot a waiting request's adapter gets: already resident, copied in from the CPU tier now, or not
ready yet (still loading, or every slot pinned). A failed load fails only that adapter's requests."""

from __future__ import annotations

import logging

from hub.openlora.adapter_store import AdapterStore, DeviceSlots
from hub.openlora.errors import AdapterLoadError, EngineError
from hub.openlora.metrics import EngineMetrics
from hub.openlora.request import GenerationRequest

log = logging.getLogger(__name__)


class SlotAssigner:
    def __init__(self, store: AdapterStore, slots: DeviceSlots, metrics: EngineMetrics) -> None:
        self.store = store
        self.slots = slots
        self.metrics = metrics

    def slot_for(self, req: GenerationRequest, failed: dict[str, EngineError]) -> int | None | bool | EngineError:
        """The device slot for the request's adapter (None: base model); True: not ready; an error: load failed."""
        adapter = req.adapter_id
        if adapter is None:
            return None
        failure = failed.get(adapter) or self.store.take_failure(adapter)
        if failure is not None:
            failed[adapter] = failure
            return failure
        slot = self.slots.lookup(adapter)
        if slot is not None:
            self.tier_hit("device")
            return slot
        if not self.slots.has_room():
            return True
        got = self.store.take(adapter)
        if got is None:
            self.store.prefetch(adapter)
            return True
        weights, tier = got
        try:
            slot = self.slots.install(weights)
        except Exception as exc:  # e.g. device out of memory: fail this adapter's requests, not the engine
            log.exception("copying adapter %s to a device slot failed", adapter)
            failed[adapter] = AdapterLoadError(adapter, f"copy to the device failed: {type(exc).__name__}: {exc}")
            return failed[adapter]
        if slot is None:
            return True
        self.tier_hit(tier)
        self.metrics.resident_adapters.set(len(self.slots.resident()))
        return slot

    def tier_hit(self, tier: str) -> None:
        if tier in ("device", "cpu"):
            self.store.stats.add(f"{tier}_hits")
        self.metrics.tier_hits.labels(tier).inc()
