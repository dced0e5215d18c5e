"""Measurements shared by the OpenLoRA benchmark's systems: latency percentiles, throughput, CPU time, peak RSS."""

from __future__ import annotations

import resource
from typing import Any


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]


def summarize(records: list[dict], t0: float) -> dict[str, Any]:
    """records: arrival (abs), first (abs), finish (abs), tokens."""
    tokens = sum(r["tokens"] for r in records)
    end = max(r["finish"] for r in records)
    ttft = [r["first"] - r["arrival"] for r in records]
    tpot = [(r["finish"] - r["first"]) / (r["tokens"] - 1) for r in records if r["tokens"] > 1]
    return {
        "requests": len(records),
        "tokens": tokens,
        "makespan_s": end - t0,
        "throughput_tok_s": tokens / (end - t0),
        "ttft_p50_s": pct(ttft, 50),
        "ttft_p99_s": pct(ttft, 99),
        "tpot_p50_s": pct(tpot, 50),
        "tpot_p99_s": pct(tpot, 99),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time of this process (all threads): with `makespan_s`, shows whether other tenants starved a run."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def add_cpu(out: dict[str, Any], cpu_start: float) -> None:
    out["cpu_s"] = cpu_seconds() - cpu_start
    out["cpu_per_wall"] = out["cpu_s"] / out["makespan_s"]
