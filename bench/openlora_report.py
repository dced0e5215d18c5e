"""The OpenLoRA benchmark's report: which CPU the numbers come from, each system's numbers over repeated rounds,
and the issue's targets checked on this run.

The host is shared, so one run of a system can be slowed by other work. Every round runs all systems of a
configuration back to back; a ratio is taken within each round (engine / baseline of the same round) and the
target is checked on the median over rounds, with the spread beside it. Tokens per CPU-second (`cpu_s` covers
all threads of the system's process) are reported too: they are less sensitive to CPU time taken by others."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path
from typing import Any

# Flags that decide which matmul kernels run: bf16 / AMX units (the server's dtype), AVX-512 (oneDNN's float32).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
TARGETS = {"peft_swap": 5.0, "peft_mixed": 2.0, "base": 0.85}
MAX_DROP_N16_TO_N1000 = 0.2


def cpu_description() -> dict[str, Any]:
    """The CPU's model name, the flags that matter for the engine's kernels, and what PyTorch makes of them."""
    import torch

    from openledger_sdk.hardware import native_bfloat16

    model, flags, family = platform.processor() or "unknown", set(), {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
            elif key.strip() in ("cpu family", "model"):  # the generation, where a VM shows a generic name
                family["cpu_family" if key.strip() == "cpu family" else "model_number"] = value.strip()
    return {
        "model": model,
        **family,
        "cpus": os.cpu_count(),
        "flags": [f for f in CPU_FLAGS if f in flags],
        "native_bf16": native_bfloat16("cpu"),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn": torch.backends.mkldnn.is_available(),
    }


def _runs(results: list[dict], system: str, n: int, s: float) -> dict[int, dict]:
    return {
        r.get("round", 0): r
        for r in results
        if (r["system"], r["n_adapters"], r["zipf"]) == (system, n, s) and "throughput_tok_s" in r
    }


def _spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def summary(results: list[dict]) -> list[dict[str, Any]]:
    """Per system and configuration: throughput (wall clock) and tokens per CPU-second over the rounds."""
    out = []
    for key in sorted({(r["system"], r["n_adapters"], r["zipf"]) for r in results}):
        runs = list(_runs(results, *key).values())
        if runs:
            row = {"system": key[0], "n_adapters": key[1], "zipf": key[2]}
            row["throughput_tok_s"] = _spread([r["throughput_tok_s"] for r in runs])
            row["tok_per_cpu_s"] = _spread([r["tokens"] / r["cpu_s"] for r in runs])
            out.append(row)
    return out


def _ratio(results: list[dict], n: int, s: float, baseline: str, target: float) -> dict[str, Any] | None:
    ours, base = _runs(results, "engine", n, s), _runs(results, baseline, n, s)
    rounds = sorted(set(ours) & set(base))
    if not rounds:
        return None
    wall = [ours[k]["throughput_tok_s"] / base[k]["throughput_tok_s"] for k in rounds]
    cpu = [(ours[k]["tokens"] / ours[k]["cpu_s"]) / (base[k]["tokens"] / base[k]["cpu_s"]) for k in rounds]
    ratio = statistics.median(wall)
    return {
        "ratio": ratio,
        "per_round": wall,
        "ratio_per_cpu_s": statistics.median(cpu),
        "target": target,
        "met": ratio >= target,
    }


def targets(results: list[dict]) -> dict[str, Any]:
    """The issue's targets at N=100 (ratios of the same round, median over rounds) and the N=16 -> 1000 drop."""
    checks: dict[str, Any] = {}
    for s in sorted({r["zipf"] for r in results}):
        c: dict[str, Any] = {}
        for baseline, target in TARGETS.items():
            ratio = _ratio(results, 100, s, baseline, target)
            if ratio is not None:
                c[f"n100_vs_{baseline}"] = ratio
        t16, t1000 = (_runs(results, "engine", n, s) for n in (16, 1000))
        if t16 and t1000:
            drop = 1 - statistics.median(r["throughput_tok_s"] for r in t1000.values()) / statistics.median(
                r["throughput_tok_s"] for r in t16.values()
            )
            c["drop_n16_to_n1000"] = {"drop": drop, "target": MAX_DROP_N16_TO_N1000, "met": drop <= 0.2}
        checks[f"zipf_{s}"] = c
    return checks
