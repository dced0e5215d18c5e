"""Statistics of the attribution harness: ranking metrics, paired bootstrap intervals, exact McNemar, Spearman, LDS."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def rank_metrics(results: list[dict[str, Any]]) -> dict[str, Any]:
    if not results:
        return {}
    p1 = np.mean([r["top1"] == r["owner"] for r in results])
    mrr = np.mean([reciprocal_rank(r) for r in results])
    return {"queries": len(results), "precision_at_1": round(float(p1), 4), "mrr": round(float(mrr), 4)}


def reciprocal_rank(record: dict[str, Any]) -> float:
    return 1.0 / (record["ranking"].index(record["owner"]) + 1) if record["owner"] in record["ranking"] else 0.0


def paired_bootstrap(a: Sequence[float], b: Sequence[float], seed: int, rounds: int = 4000) -> dict[str, Any]:
    """Mean of b − a over paired items, with a bootstrap 95% interval (items resampled)."""
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    return {"diff": round(float(diff.mean()), 4), "ci95": bootstrap_ci(diff, seed, rounds)}


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict[str, Any]:
    """Two-sided exact McNemar test on paired hits: only the queries where the two indexes disagree count."""
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = only_a + only_b
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n if n else 1.0
    return {"only_reference": only_a, "only_mode": only_b, "p_value": round(min(1.0, 2 * tail), 4)}


def verdict(intervals: Sequence[Sequence[float]], margin: float) -> dict[str, bool]:
    """From paired 95% intervals of (mode − reference): is the mode significantly worse (an interval wholly below
    0), and is it non-inferior (every interval's low end above −margin)?"""
    return {
        "significantly_worse": any(high < 0 for _low, high in intervals),
        "non_inferior_at_margin": all(low >= -margin for low, _high in intervals),
    }


def compare_rankings(reference: list[dict], mode: list[dict], seed: int, margin: float) -> dict[str, Any]:
    """mode − reference on precision@1 (bootstrap interval + exact McNemar) and MRR, query by query."""
    hits = [[r["top1"] == r["owner"] for r in records] for records in (reference, mode)]
    p1 = {**paired_bootstrap(*hits, seed), **mcnemar_exact(*hits)}
    mrr = paired_bootstrap([reciprocal_rank(r) for r in reference], [reciprocal_rank(r) for r in mode], seed + 1)
    return {"precision_at_1": p1, "mrr": mrr, **verdict([p1["ci95"], mrr["ci95"]], margin)}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def lds_per_query(tau: np.ndarray, masks: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """Spearman, per query, between Σ_{i∈S} τ(q, i) and the −loss of the model retrained on S."""
    predicted = masks @ tau.T  # [retrains, queries]
    return np.array([spearman(predicted[:, j], -losses[:, j]) for j in range(tau.shape[0])])


def bootstrap_ci(values: Sequence[float], seed: int, rounds: int = 4000) -> list[float]:
    """95% percentile-bootstrap interval of the mean of `values` (items resampled with replacement)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("a bootstrap interval needs at least one value")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(rounds, data.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return [round(float(low), 4), round(float(high), 4)]


def lds_summary(per_query: np.ndarray, seed: int) -> dict[str, Any]:
    """Mean LDS over queries with its bootstrap 95% interval (queries resampled)."""
    return {"lds": round(float(np.mean(per_query)), 4), "ci95": bootstrap_ci(per_query, seed)}
