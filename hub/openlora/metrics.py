"""Prometheus metrics of one engine, in their own registry (several engines can live in one process, e.g. tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class EngineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("openlora_requests", "Finished requests", ["model", "status"], registry=r)
        self.tier_hits = Counter(
            "openlora_adapter_cache_hits", "Where admitted requests found their adapter", ["tier"], registry=r
        )
        self.load_seconds = Histogram(
            "openlora_adapter_load_seconds",
            "Disk -> CPU adapter load time",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.batch_size = Histogram(
            "openlora_batch_size",
            "Sequences per forward pass",
            ["phase"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.generated_tokens = Counter("openlora_generated_tokens", "Completion tokens", ["model"], registry=r)
        self.prompt_tokens = Counter("openlora_prompt_tokens", "Prompt tokens", ["model"], registry=r)
        self.ttft = Histogram(
            "openlora_time_to_first_token_seconds",
            "Submit to first token",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.step_seconds = Histogram(
            "openlora_step_seconds",
            "Scheduler iteration time (tokens/s = batch size / step time)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r,
        )
        self.waiting = Gauge("openlora_waiting_requests", "Requests queued", registry=r)
        self.running = Gauge("openlora_running_requests", "Sequences being decoded", registry=r)
        self.tokens_per_second = Gauge(
            "openlora_tokens_per_second", "Generated tokens per second over the last few seconds", registry=r
        )
        self.cpu_cache_bytes = Gauge("openlora_cpu_cache_bytes", "Bytes held by the CPU adapter tier", registry=r)
        self.resident_adapters = Gauge("openlora_resident_adapters", "Adapters in device slots", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
