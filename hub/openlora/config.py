"""Engine settings: sizes of the batch, the adapter tiers and the KV cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EngineConfig:
    max_batch_size: int = 32  # sequences decoded together (KV pool rows)
    # S: adapters resident on the device at once. With S >= max_batch_size no request ever waits for a slot
    # (each running sequence pins one); slot memory is S x rank x (in + out) per targeted module, allocated lazily.
    max_slots: int = 32
    max_lora_rank: int = 16  # slot rank: every adapter is zero-padded to it (a batch only pays its own max rank)
    cpu_cache_bytes: int = 1 << 30  # byte budget of the CPU LRU tier
    max_seq_len: int | None = None  # default: the model's max_position_embeddings
    max_queue: int = 4096  # waiting requests beyond this are refused (503): bounded queue memory
    max_prefill_tokens: int = 2048  # prompt tokens admitted per iteration, so running sequences keep decoding
    kv_initial_len: int = 256  # the KV pool grows (doubling) up to max_seq_len as sequences get longer
    prefetch_workers: int = 1  # threads loading adapters disk -> CPU
    admission_scan: int = 256  # waiting requests inspected per step (bounds scheduler overhead with long queues)
    device: str = "cpu"
    dtype: str = "float32"

    @property
    def torch_dtype(self) -> torch.dtype:
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]
        except KeyError:
            raise ValueError(f"dtype must be float32, bfloat16 or float16, not {self.dtype!r}") from None

    def validate(self) -> None:
        for name in ("max_batch_size", "max_slots", "max_lora_rank", "max_queue", "max_prefill_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.cpu_cache_bytes < 0:
            raise ValueError("cpu_cache_bytes must be >= 0")
        self.torch_dtype  # noqa: B018 - validates the name


def serving_dtype(device: str, dtype: str = "auto") -> str:
    """The engine's dtype: `dtype` as given, or for "auto" bf16 where `device` computes it natively (GPUs with
    bf16, CPUs with AMX / AVX512-BF16: 1.6x the float32 tokens/s on this project's CPUs, bench/openlora_bench.py),
    else float32."""
    from openledger_sdk.hardware import native_bfloat16

    if dtype != "auto":
        return dtype
    return "bfloat16" if native_bfloat16(torch.device(device).type) else "float32"
