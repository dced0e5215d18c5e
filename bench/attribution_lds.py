"""LDS (linear datamodeling score, TRAK) of the attribution index on small retrains (see attribution_eval.py)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.attribution_facts import (
    MODES,
    REFERENCE,
    mode_attributors,
    modes_setting,
    paraphrases,
    planted_facts,
    tokens,
    train,
    trained_modes,
    training_rows,
)
from bench.attribution_stats import lds_per_query, lds_summary, paired_bootstrap, verdict
from openledger_sdk.modelfactory.attribution_index import AttributionIndex, example_losses, gradient_rows, score
from openledger_sdk.modelfactory.attribution_query import Attributor
from openledger_sdk.modelfactory.data import IGNORE, Example, collate


def query_losses(model: Any, examples: list[Example], pad_id: int) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return example_losses(model, collate(examples, pad_id)).numpy()


def lds_queries(trained: Any, facts: list[dict[str, Any]]) -> list[Example]:
    """Two queries per fact, wording by wording: its paraphrased questions and answers (never trained on), the answers
    teacher-forced."""
    queries = []
    for wording in range(2):
        for fact in facts:
            prompt, answer = paraphrases(fact)[wording]
            p, o, _ = tokens(trained, prompt, answer)
            queries.append(Example(None, "", p + o, [IGNORE] * len(p) + o, o))
    return queries


def by_wording(per_query: np.ndarray, seed: int) -> dict[str, Any]:
    """LDS of each paraphrase wording's queries (`lds_queries` lists them wording by wording)."""
    halves = np.split(per_query, 2)
    return {f"wording_{w + 1}": lds_summary(half, seed) for w, half in enumerate(halves)}


def query_projections(attributor: Attributor, queries: list[Example]) -> list[torch.Tensor]:
    out = []
    for q in queries:
        n_prompt = sum(1 for label in q.labels if label == IGNORE)
        out.append(attributor.projection(q.input_ids[:n_prompt], q.response_ids))
    return out


def query_scores(attributor: Attributor, queries: list[Example]) -> dict[str, np.ndarray]:
    """τ(q, i) for every query and training row [queries, n]: raw TRAK scores and normalised gradient scores."""
    projections = query_projections(attributor, queries)
    return {
        "trak_raw": np.stack([score(attributor.index, q).numpy() for q in projections]),
        "normalised_gradient": np.stack([attributor.gradient_scores(q).numpy() for q in projections]),
    }


def training_gradients(trained: Any, index: AttributionIndex) -> tuple[torch.Tensor, torch.Tensor]:
    """(Φ [n, dim], C [m, dim]): every training row's projected LoRA gradient at the final adapter, float32, not
    preconditioned (the same projection as `index`, so Φ_i · q is the plain gradient dot product), and the rows whose
    Gram is the index's curvature H = CᵀC, drawn as `build_index` drew them (`gradient_rows`, same seed and batches)."""
    meta = index.meta
    with torch.enable_grad():
        return gradient_rows(
            trained.model, trained.train_examples, meta["layout"], index.projector(),
            batch_size=meta.get("batch_size", 8), pad_id=trained.pad_id, seed=meta["projection"]["seed"],
            draws=meta.get("curvature_draws", 0),
        )  # fmt: skip


def gradient_features(
    trained: Any, reference: Attributor, queries: list[Example]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Φ, C, Q [queries, dim]): `training_gradients` and the queries' raw projected gradients, float32."""
    phi, curvature = training_gradients(trained, reference.index)
    return phi, curvature, torch.stack(query_projections(reference, queries)).to(torch.float32)


def tracin_scores(phi: torch.Tensor, queries: torch.Tensor) -> np.ndarray:
    """The gradient-dot baseline (TracIn at the final checkpoint): τ(q, i) = g_q · g_i, no preconditioner [q, n]."""
    return (queries @ phi.T).numpy()


def trak_scores(phi: torch.Tensor, queries: torch.Tensor, damping: float, curvature: torch.Tensor | None = None):
    """τ(q, i) = q (H + λI)⁻¹ Φ_i with H = CᵀC (C = `curvature` rows; Φ when None: TRAK's empirical ΦᵀΦ) and
    λ = damping · trace(H) / min(n, dim): the index's preconditioner, derived again here so that other dampings and
    curvatures are scored on the same retrains (large damping tends to TracIn) [q, n]."""
    phi64 = phi.to(torch.float64)
    rows = phi64 if curvature is None else curvature.to(torch.float64)
    gram = rows.T @ rows
    lam = damping * float(torch.trace(gram)) / min(phi.shape)
    solved = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=torch.float64), queries.to(torch.float64).T)
    return (phi64 @ solved).T.numpy()


def random_subsets(n: int, count: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """`count` boolean masks [count, n], each keeping round(fraction · n) rows drawn without replacement."""
    size = round(fraction * n)
    if not 0 < size < n:
        raise ValueError(f"a {fraction} subset of {n} rows must keep some rows and leave some out")
    masks = np.zeros((count, n), dtype=bool)
    for r in range(count):
        masks[r, rng.choice(n, size, replace=False)] = True
    return masks


def retrain_losses(
    base: str,
    rows: list[dict],
    masks: np.ndarray,
    queries: list[Example],
    work: Path,
    args: argparse.Namespace,
    epochs: int,
    dropout: float,
) -> np.ndarray:
    """The query losses [retrains, queries] of a model retrained from scratch on each subset (no index built)."""
    losses = []
    for r, keep in enumerate(tqdm(masks, desc="LDS retrains", disable=not sys.stderr.isatty())):
        subset = [row for row, k in zip(rows, keep, strict=True) if k]
        model = train(base, subset, work / f"lds-{epochs}-{dropout}-{r}", args, index=False, epochs=epochs,
                      dropout=dropout)  # fmt: skip
        losses.append(query_losses(model.model, queries, model.pad_id))
        shutil.rmtree(model.path, ignore_errors=True)
        del model
    return np.stack(losses)


def evaluate_lds(
    args: argparse.Namespace, base: str, work: Path, epochs: int | None = None, dropout: float | None = None
) -> dict[str, Any]:
    epochs = epochs or args.lds_epochs
    dropout = args.lora_dropout if dropout is None else dropout
    args = argparse.Namespace(**{**vars(args), "lr": args.lds_lr})
    facts = planted_facts(args.lds_contributors, args.facts, args.seed + 1)
    rows = training_rows(facts)
    full, indexes = trained_modes(base, rows, work / f"lds-full-{epochs}-{dropout}", args, epochs, dropout)
    queries = lds_queries(full, facts)
    attributors = mode_attributors(full, indexes)
    taus = {mode: query_scores(a, queries) for mode, a in attributors.items()}
    phi, curvature, projected = gradient_features(full, attributors[REFERENCE], queries)
    tracin = tracin_scores(phi, projected)
    rng = np.random.default_rng(args.seed)
    masks = random_subsets(len(rows), args.lds_retrains, args.lds_fraction, rng)
    started = time.perf_counter()
    losses = retrain_losses(base, rows, masks, queries, work, args, epochs, dropout)
    retrain_seconds = time.perf_counter() - started
    masks_f = masks.astype(np.float64)
    per_query = {mode: {name: lds_per_query(tau, masks_f, losses) for name, tau in by_name.items()}
                 for mode, by_name in taus.items()}  # fmt: skip
    modes = {mode: {name: lds_summary(v, args.seed) for name, v in by_name.items()}
             for mode, by_name in per_query.items()}  # fmt: skip
    comparison: dict[str, Any] = {}
    for mode in (m for m in MODES if m != REFERENCE):
        for name in ("trak_raw", "normalised_gradient"):
            pair = paired_bootstrap(per_query[REFERENCE][name], per_query[mode][name], args.seed)
            comparison.setdefault(mode, {})[name] = {**pair, **verdict([pair["ci95"]], args.margin)}
    tracin_per_query = lds_per_query(tracin, masks_f, losses)
    sweep = {str(d): lds_summary(lds_per_query(trak_scores(phi, projected, d, curvature), masks_f, losses), args.seed)
             for d in args.lds_dampings}  # fmt: skip
    damping = full.index.meta["damping"]
    empirical = lds_per_query(trak_scores(phi, projected, damping), masks_f, losses)
    reported = per_query[args.report_mode]["trak_raw"]
    versus = paired_bootstrap(tracin_per_query, reported, args.seed)
    return {
        "training_rows": len(rows), "contributors": args.lds_contributors, "queries": len(queries),
        "query": "each fact's question and answer in two paraphrased wordings (never trained on), answers "
        "teacher-forced",
        "retrains": args.lds_retrains, "subset": f"random {args.lds_fraction:.0%} of the rows",
        "retrain_seconds": round(retrain_seconds, 1), "epochs": epochs, "lr": args.lr, "lora_dropout": dropout,
        "final_epoch_loss": full.metrics["epoch_losses"][-1], "reported_index": args.report_mode,
        **modes[args.report_mode],
        "tracin": {**lds_summary(tracin_per_query, args.seed),
                   "what": "gradient dot product g_q · g_i at the final adapter, float32, same projection, "
                   "no preconditioner (TracIn with one checkpoint)"},
        "trak_raw_minus_tracin": versus,
        "by_wording": {"trak_raw": by_wording(reported, args.seed), "tracin": by_wording(tracin_per_query, args.seed)},
        "curvature": full.index.meta["curvature"],
        "trak_empirical_curvature": {
            **lds_summary(empirical, args.seed),
            "minus_tracin": paired_bootstrap(tracin_per_query, empirical, args.seed),
            "what": f"raw TRAK with TRAK's own curvature H = ΦᵀΦ at damping {damping}, same features and retrains"},
        "damping_sweep": {"what": f"raw TRAK (float32, the index's curvature) at other dampings; the index: {damping}",
                          **sweep},
        "targets": {"trak_raw ci95 above 0": modes[args.report_mode]["trak_raw"]["ci95"][0] > 0,
                    "trak_raw above tracin (paired ci95 above 0)": versus["ci95"][0] > 0},
        "index_modes": {"modes": modes, "settings": modes_setting(indexes), f"vs_{REFERENCE}": comparison},
    }  # fmt: skip
