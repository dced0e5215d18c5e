"""LDS (linear datamodeling score, TRAK) of the attribution index on small retrains (see attribution_eval.py)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.attribution_facts import (
    MODES,
    REFERENCE,
    mode_attributors,
    modes_setting,
    paraphrase,
    planted_facts,
    tokens,
    train,
    trained_modes,
    training_rows,
)
from bench.attribution_stats import lds_per_query, lds_summary, paired_bootstrap, verdict
from openledger_sdk.modelfactory.attribution_index import (
    example_losses,
    score,
)
from openledger_sdk.modelfactory.attribution_query import Attributor
from openledger_sdk.modelfactory.data import IGNORE, Example, collate


def query_losses(model: Any, examples: list[Example], pad_id: int) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return example_losses(model, collate(examples, pad_id)).numpy()


def query_scores(attributor: Attributor, queries: list[Example]) -> dict[str, np.ndarray]:
    """τ(q, i) for every query and training row [queries, n]: raw TRAK scores and normalised gradient scores."""
    raw, normalised = [], []
    for q in queries:
        n_prompt = sum(1 for label in q.labels if label == IGNORE)
        proj = attributor.projection(q.input_ids[:n_prompt], q.response_ids)
        raw.append(score(attributor.index, proj).numpy())
        normalised.append(attributor.gradient_scores(proj).numpy())
    return {"trak_raw": np.stack(raw), "normalised_gradient": np.stack(normalised)}


def evaluate_lds(
    args: argparse.Namespace, base: str, work: Path, epochs: int | None = None, dropout: float | None = None
) -> dict[str, Any]:
    epochs = epochs or args.lds_epochs
    dropout = args.lora_dropout if dropout is None else dropout
    facts = planted_facts(args.lds_contributors, args.facts, args.seed + 1)
    rows = training_rows(facts)
    full, indexes = trained_modes(base, rows, work / f"lds-full-{epochs}-{dropout}", args, epochs, dropout)
    queries = []
    for fact in facts:
        prompt, answer = paraphrase(fact)
        p, o, _ = tokens(full, prompt, answer)
        queries.append(Example(None, "", p + o, [IGNORE] * len(p) + o, o))
    taus = {mode: query_scores(a, queries) for mode, a in mode_attributors(full, indexes).items()}
    rng = np.random.default_rng(args.seed)
    n = len(rows)
    masks, losses = [], []
    started = time.perf_counter()
    for r in range(args.lds_retrains):
        keep = np.zeros(n, dtype=bool)
        keep[rng.choice(n, n // 2, replace=False)] = True
        subset = [row for row, k in zip(rows, keep, strict=True) if k]
        model = train(base, subset, work / f"lds-{epochs}-{dropout}-{r}", args, index=False, epochs=epochs,
                      dropout=dropout)  # fmt: skip
        losses.append(query_losses(model.model, queries, model.pad_id))
        masks.append(keep)
        del model
    retrain_seconds = time.perf_counter() - started
    masks_m, losses_m = np.stack(masks).astype(np.float64), np.stack(losses)  # [retrains, n], [retrains, queries]
    per_query = {mode: {name: lds_per_query(tau, masks_m, losses_m) for name, tau in by_name.items()}
                 for mode, by_name in taus.items()}  # fmt: skip
    modes = {mode: {name: lds_summary(v, rng) for name, v in by_name.items()} for mode, by_name in per_query.items()}
    comparison: dict[str, Any] = {}
    for mode in (m for m in MODES if m != REFERENCE):
        for name in ("trak_raw", "normalised_gradient"):
            pair = paired_bootstrap(per_query[REFERENCE][name], per_query[mode][name], args.seed)
            comparison.setdefault(mode, {})[name] = {**pair, **verdict([pair["ci95"]], args.margin)}
    return {
        "training_rows": n, "queries": len(queries), "retrains": args.lds_retrains, "subset": "random 50%",
        "retrain_seconds": round(retrain_seconds, 1), "epochs": epochs, "lora_dropout": dropout,
        "reported_index": args.report_mode, **modes[args.report_mode],
        "index_modes": {"modes": modes, "settings": modes_setting(indexes), f"vs_{REFERENCE}": comparison},
    }  # fmt: skip
