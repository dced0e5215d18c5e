"""What the machine computes natively: shared by training (the attribution index's precision) and serving."""

from __future__ import annotations

import torch


def native_bfloat16(device_type: str) -> bool:
    """Whether `device_type` computes bf16 matmuls in hardware (GPUs with bf16; CPUs with AMX or AVX512-BF16)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":  # the CPU probes are private helpers of torch.cpu: absent means "not known to"
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False
