"""Prometheus metrics of one engine, in their own registry (several engines can live in one process, e.g. tests)."""

from __future__ import annotations

from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Histogram buckets (seconds, or sequences for the batch size).
LOAD_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH = (1, 2, 4, 8, 16, 32, 64, 128)
TTFT_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STEP_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


class EngineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Every metric goes into this engine's registry: bind it once, so each declaration is name, help, labels.
        counter, gauge, histogram = (partial(kind, registry=self.registry) for kind in (Counter, Gauge, Histogram))
        self.requests = counter("openlora_requests", "Finished requests", ["model", "status"])
        self.tier_hits = counter("openlora_adapter_cache_hits", "Where admitted requests found their adapter", ["tier"])
        self.load_seconds = histogram("openlora_adapter_load_seconds", "Disk -> CPU adapter load time", buckets=LOAD_S)
        self.batch_size = histogram("openlora_batch_size", "Sequences per forward pass", ["phase"], buckets=BATCH)
        self.generated_tokens = counter("openlora_generated_tokens", "Completion tokens", ["model"])
        self.prompt_tokens = counter("openlora_prompt_tokens", "Prompt tokens", ["model"])
        self.ttft = histogram("openlora_time_to_first_token_seconds", "Submit to first token", buckets=TTFT_S)
        self.step_seconds = histogram(
            "openlora_step_seconds", "Scheduler iteration time (tokens/s = batch size / step time)", buckets=STEP_S
        )
        self.waiting = gauge("openlora_waiting_requests", "Requests queued")
        self.running = gauge("openlora_running_requests", "Sequences being decoded")
        self.tokens_per_second = gauge(
            "openlora_tokens_per_second", "Generated tokens per second over the last few seconds"
        )
        self.cpu_cache_bytes = gauge("openlora_cpu_cache_bytes", "Bytes held by the CPU adapter tier")
        self.resident_adapters = gauge("openlora_resident_adapters", "Adapters in device slots")

    def render(self) -> bytes:
        return generate_latest(self.registry)
