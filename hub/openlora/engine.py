"""The OpenLoRA engine: one base model, thousands of adapters, one scheduler. The API and benchmarks use this."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.openlora.adapter_store import (
    AdapterResolver,
    AdapterStore,
    DeviceSlots,
    directory_lister,
    directory_resolver,
    valid_adapter_id,
)
from hub.openlora.config import EngineConfig
from hub.openlora.errors import ContextLengthError, EngineError, InvalidRequestError, ModelNotFoundError
from hub.openlora.metrics import EngineMetrics
from hub.openlora.request import Completion, GenerationRequest, RequestHandle
from hub.openlora.runner import ModelRunner
from hub.openlora.sampling import SamplingParams
from hub.openlora.scheduler import Scheduler

log = logging.getLogger(__name__)


class OpenLoRAEngine:
    def __init__(
        self,
        model_dir: str | Path,
        *,
        adapters_dir: str | Path | None = None,
        resolve_adapter_path: AdapterResolver | None = None,
        list_adapters: Callable[[], list[str]] | None = None,
        config: EngineConfig | None = None,
        model_name: str | None = None,
        start: bool = True,
    ) -> None:
        self.config = config or EngineConfig()
        self.config.validate()
        self.model_dir = Path(model_dir)
        self.base_model_id = model_name or self.model_dir.name
        if resolve_adapter_path is None:
            resolve_adapter_path = directory_resolver(adapters_dir) if adapters_dir else (lambda _id: None)
        if list_adapters is None and adapters_dir:
            list_adapters = directory_lister(adapters_dir)
        self.created = int(time.time())
        self.metrics = EngineMetrics()
        self.runner = ModelRunner(self.model_dir, self.config)
        self.tokenizer = self.runner.tokenizer
        self.store = AdapterStore(
            resolve_adapter_path,
            self.runner.lora.shapes(),
            max_rank=self.config.max_lora_rank,
            dtype=self.runner.dtype,
            cpu_cache_bytes=self.config.cpu_cache_bytes,
            list_ids=list_adapters,
            workers=self.config.prefetch_workers,
            max_ready=max(2 * self.config.max_slots, 8),
            on_event=self._on_store_event,
            on_load_seconds=self.metrics.load_seconds.observe,
        )
        self.slots = DeviceSlots(self.runner.lora, self.store.stats)
        self.scheduler = Scheduler(self.runner, self.store, self.slots, self.metrics, self.config)
        self._started = False
        if start:
            self.start()

    def _on_store_event(self) -> None:
        self.metrics.cpu_cache_bytes.set(self.store.cpu.used_bytes)
        self.scheduler.notify()

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        if not self._started:
            self.scheduler.start()
            self._started = True

    def close(self) -> None:
        if self._started:
            self.scheduler.stop()
            self._started = False
        self.store.close()

    def __enter__(self) -> OpenLoRAEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def max_seq_len(self) -> int:
        return self.runner.max_seq_len

    # -- models ----------------------------------------------------------------------------------------------
    def resolve_model(self, model: str) -> str | None:
        """The adapter id for `model` (None for the base model); ModelNotFoundError if unknown."""
        if model == self.base_model_id:
            return None
        if valid_adapter_id(model) and self.store.exists(model):
            return model
        raise ModelNotFoundError(model)

    def list_models(self) -> list[dict[str, Any]]:
        resident = self.slots.resident()
        cached = set(self.store.cpu.ids())
        models = [{"id": self.base_model_id, "parent": None, "tier": "device", "max_model_len": self.max_seq_len}]
        for adapter_id in self.store.known_ids():
            tier = "device" if adapter_id in resident else "cpu" if adapter_id in cached else "disk"
            models.append(
                {"id": adapter_id, "parent": self.base_model_id, "tier": tier, "max_model_len": self.max_seq_len}
            )
        return models

    # -- prompts ---------------------------------------------------------------------------------------------
    def encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            return list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        if not all(isinstance(t, int) and 0 <= t < self.runner.vocab_size for t in prompt):
            raise InvalidRequestError("prompt token ids must be integers within the vocabulary")
        return list(prompt)

    def chat_prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidRequestError(f"the base model {self.base_model_id} has no chat template: use /v1/completions")
        try:
            return chat_template_ids(self.tokenizer, messages)
        except Exception as exc:  # template errors (bad roles etc.) are the client's
            raise InvalidRequestError(f"could not apply the chat template: {exc}") from exc

    # -- generation ------------------------------------------------------------------------------------------
    def submit(self, model: str, prompt: str | list[int], params: SamplingParams | None = None) -> RequestHandle:
        """Queue a request; the handle streams its events (sync or async, depending on the calling context)."""
        params = params or SamplingParams()
        params.validate()
        if any(not 0 <= token < self.runner.vocab_size for token, _ in params.logit_bias):
            raise InvalidRequestError(
                f"logit_bias keys must be token ids of this model's vocabulary (0 to {self.runner.vocab_size - 1})",
                code="invalid_value",
                param="logit_bias",
            )
        adapter_id = self.resolve_model(model)
        prompt_ids = self.encode(prompt)
        if not prompt_ids:
            raise InvalidRequestError("the prompt is empty")
        max_tokens = params.max_tokens
        if len(prompt_ids) >= self.max_seq_len or (
            max_tokens is not None and len(prompt_ids) + max_tokens > self.max_seq_len
        ):
            raise ContextLengthError(self.max_seq_len, len(prompt_ids), max_tokens or 1)
        request = GenerationRequest(model=model, adapter_id=adapter_id, prompt_ids=prompt_ids, params=params)
        return self.scheduler.submit(request)

    def generate(self, model: str, prompt: str | list[int], params: SamplingParams | None = None) -> Completion:
        """Blocking convenience wrapper (call it outside an event loop)."""
        return self.submit(model, prompt, params).result()

    # -- admin -----------------------------------------------------------------------------------------------
    def load_adapter(self, adapter_id: str, path: str | Path | None = None) -> dict[str, Any]:
        """Load an adapter into the CPU tier now (registering `path` for it if given) and report it."""
        if not valid_adapter_id(adapter_id):
            raise InvalidRequestError(f"invalid adapter id {adapter_id!r}")
        if adapter_id == self.base_model_id:
            raise InvalidRequestError("that id is the base model's")
        if path is not None:
            self.store.register(adapter_id, Path(path))
        elif self.store.path_for(adapter_id) is None:
            raise ModelNotFoundError(adapter_id)
        start = time.perf_counter()
        try:
            weights = self.store.load_from_disk(adapter_id)
        except EngineError:
            if path is not None:
                self.store.unregister(adapter_id)
            raise
        seconds = time.perf_counter() - start
        self.scheduler.call(lambda: self.slots.evict(adapter_id)).result()  # a re-load replaces a stale device copy
        self.store.store(weights)
        self.metrics.cpu_cache_bytes.set(self.store.cpu.used_bytes)
        return {"id": adapter_id, "rank": weights.rank, "bytes": weights.nbytes, "load_seconds": seconds, "tier": "cpu"}

    def warm(self, model: str) -> dict[str, Any]:
        """Load a served model's adapter into the CPU tier if it is not cached yet (no request, no charge): what
        deploying a published model means. ModelNotFoundError for an unknown model, AdapterLoadError if it fails."""
        adapter_id = self.resolve_model(model)
        if adapter_id is None:
            return {"id": self.base_model_id, "tier": "device", "loaded": True}
        if adapter_id in self.slots.resident():
            return {"id": adapter_id, "tier": "device", "loaded": True}
        if adapter_id not in self.store.cpu:
            self.store.store(self.store.load_from_disk(adapter_id))
            self.metrics.cpu_cache_bytes.set(self.store.cpu.used_bytes)
        return {"id": adapter_id, "tier": "cpu", "loaded": True}

    def unload_adapter(self, adapter_id: str) -> dict[str, Any]:
        """Drop the adapter from the device and CPU tiers (and forget a runtime path). Files on disk stay."""
        if adapter_id == self.base_model_id:
            raise InvalidRequestError("the base model cannot be unloaded")
        was_known = self.store.exists(adapter_id)
        in_slot = self.scheduler.call(lambda: self.slots.evict(adapter_id)).result()
        in_cpu = self.store.evict(adapter_id)
        self.store.unregister(adapter_id)
        if not (was_known or in_slot or in_cpu):
            raise ModelNotFoundError(adapter_id)
        self.metrics.cpu_cache_bytes.set(self.store.cpu.used_bytes)
        return {
            "id": adapter_id,
            "evicted_from_device": in_slot,
            "evicted_from_cpu": in_cpu,
            "still_on_disk": self.store.exists(adapter_id),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "tiers": self.store.stats.snapshot(),
            "cpu_cache_bytes": self.store.cpu.used_bytes,
            "cpu_cache_budget": self.store.cpu.budget_bytes,
            "resident": self.slots.resident(),
            "waiting": self.scheduler.waiting_count,
            "running": len(self.scheduler.running),
            "kv_pool_bytes": self.runner.kv.nbytes(),
            "lora_slot_bytes": self.runner.lora.nbytes(),
        }


def chat_template_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    """The prompt ids of `messages` under the tokenizer's chat template, ready for the assistant's answer."""
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = out["input_ids"] if hasattr(out, "keys") else out  # transformers 5 returns a BatchEncoding
    return [int(t) for t in ids]
