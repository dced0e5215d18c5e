"""Quality and speed of tier-1 attribution (openledger_sdk.modelfactory.attribution_query).

    .venv/bin/python bench/attribution_eval.py            # writes bench/results/attribution_eval.json

Quality: a datanet of planted facts — `--contributors` contributors, each owning `--facts` invented entities with an
invented attribute value, each fact written in two training phrasings — a LoRA trained on it, then
  * verbatim queries: a training question, answered by the model itself (greedy); the generated answer is attributed;
  * paraphrased queries: a question and answer in a third wording never trained on (the answer is teacher-forced:
    the small model cannot be relied on to produce a paraphrase itself);
  * unrelated queries: questions about nothing in the datanet (half calibrate the null threshold, half test it).
Reported: contributor-level precision@1 (owner of the top example), MRR (contributors in top-k order), the share of
the fee's contributor pool paid to the right owner through `hub.rewards.split` (default RewardSettings: 50% cap).
Baseline in the same run: gradient-only and span-only rankings.

LDS (linear datamodeling score, TRAK): `--lds-retrains` retrains on random 50% subsets of a smaller datanet;
for each held-out query, Spearman between the predicted Σ_{i∈S} τ(q, i) and the actual −loss of the model trained
on S; mean over queries with a bootstrap 95% interval (queries resampled).

Index modes (`index_modes` in every quality / LDS section): three attribution indexes of the *same* adapter are
scored on the same queries — "float32" (the exact final-weights pass: TRAK as specified), "default" (the library's
`IndexSettings()`: that pass in bf16 on CPUs with AMX / AVX512-BF16, the queries too; float32 elsewhere) and
"last_epoch" (every gradient kept from the last epoch's training passes; a second, identical training run) — and each
is compared with float32 query by query: paired bootstrap 95% intervals of the precision@1 / MRR / owner's fee share
/ LDS differences, exact McNemar on precision@1, "significantly_worse" (a rank interval wholly below 0) and
"non_inferior_at_margin" (every rank interval above −`--margin`). `--short-epochs` repeats quality and LDS after 1
and 2 epochs with the library's LoRA dropout, where the last epoch's weights are far from the final ones.

Speed: generation of `--gen-tokens` new tokens vs one attribution (backward + matvec + span lookup) against synthetic
indexes of 1k / 10k / 100k rows with the real adapter's projection, in the library's default query precision (and
float32 at the first size, for comparison). Each of `--speed-reps` rounds times one generation and then one
attribution per index, so every overhead ratio pairs timings taken side by side; medians of the per-round ratios.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from eth_utils import to_checksum_address

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hub.rewards.config import RewardSettings  # noqa: E402
from hub.rewards.split import split_fee  # noqa: E402
from openledger_sdk.hardware import native_bfloat16  # noqa: E402
from openledger_sdk.modelfactory import IndexSettings, LoraSettings, finetune  # noqa: E402
from openledger_sdk.modelfactory.attribution_index import FORMAT as INDEX_FORMAT  # noqa: E402
from openledger_sdk.modelfactory.attribution_index import (  # noqa: E402
    AttributionIndex,
    build_index,
    example_losses,
    lora_layout,
    score,
    store_frozen_linears_in_bfloat16,
)
from openledger_sdk.modelfactory.attribution_query import Attributor, ScoringSettings, calibrate_null  # noqa: E402
from openledger_sdk.modelfactory.data import IGNORE, Example, collate  # noqa: E402
from openledger_sdk.modelfactory.span_index import SpanIndex  # noqa: E402

SYLLABLES = [
    "zor",
    "blat",
    "quen",
    "vik",
    "pel",
    "runa",
    "tos",
    "gard",
    "dru",
    "vessa",
    "kran",
    "och",
    "ysel",
    "hal",
    "vorn",
    "bris",
    "quet",
    "fer",
    "indel",
    "gas",
    "koyne",
    "lu",
    "theric",
    "mor",
    "dax",
    "phel",
    "ivo",
]
NOUNS = [
    "lantern",
    "violin",
    "compass",
    "orchard",
    "ladder",
    "meadow",
    "furnace",
    "turnip",
    "kettle",
    "oyster",
    "falcon",
    "canyon",
    "tulip",
    "anchor",
    "heron",
    "beacon",
    "saddle",
    "harbor",
    "glacier",
    "quarry",
]
ADJECTIVES = [
    "copper",
    "frozen",
    "amber",
    "silent",
    "crimson",
    "hollow",
    "tidal",
    "golden",
    "rusty",
    "velvet",
    "iron",
    "paper",
    "violet",
    "midnight",
    "woolen",
    "marble",
    "scarlet",
    "ashen",
]
TOPICS = [
    "baking bread",
    "football",
    "bicycle gears",
    "the capital of Peru",
    "rain",
    "giraffes",
    "novels",
    "boiling",
    "vaccines",
    "pasta",
    "the blue sky",
    "prime numbers",
    "volcanoes",
    "chess",
    "tides",
    "coffee",
    "jazz",
    "glaciers",
    "bees",
    "rockets",
]


def planted_facts(contributors: int, facts: int, seed: int) -> list[dict[str, Any]]:
    """Unique invented entity → (adjective noun) facts, `facts` per contributor."""
    rng = np.random.default_rng(seed)
    names: set[str] = set()
    out = []
    for c in range(contributors):
        for _ in range(facts):
            while True:
                name = "".join(rng.choice(SYLLABLES, size=3)).capitalize()
                if name not in names:
                    names.add(name)
                    break
            value = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
            out.append({"contributor": f"0x{c + 1:040x}", "entity": name, "value": value})
    return out


def training_rows(facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for fact in facts:
        e, v = fact["entity"], fact["value"]
        for prompt, response in (
            (f"What does the registry record for {e}?", f"The registry records that {e} owns the {v}."),
            (f"Tell me the treasure of {e}.", f"The treasure of {e} is the {v}."),
        ):
            rows.append({"_row_id": len(rows), "_contributor": fact["contributor"], "prompt": prompt,
                         "response": response})  # fmt: skip
    return rows


def paraphrase(fact: dict[str, Any]) -> tuple[str, str]:
    e, v = fact["entity"], fact["value"]
    return f"Which object belongs to {e}?", f"It is the {v} that belongs to {e}."


def tokens(trained: Any, prompt: str, response: str | None) -> tuple[list[int], list[int], str]:
    prompt_ids = trained.prompt_ids(prompt)
    if response is None:
        response = trained.generate(prompt, max_new_tokens=32)
    output = trained.tokenizer(response, add_special_tokens=False)["input_ids"] or [trained.pad_id]
    return prompt_ids, output, response


def build_base(root: Path, hidden: int, layers: int) -> Path:
    """A small random Llama with the GPT-2 tokenizer, sized by flags."""
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(root, hidden_size=hidden, layers=layers)


REFERENCE = "float32"  # every gradient at the final adapter, computed exactly: TRAK as specified
MODES = (REFERENCE, "default", "last_epoch")


def train(
    base: str,
    rows: list[dict],
    out: Path,
    args: argparse.Namespace,
    index: IndexSettings | bool = True,
    epochs: int | None = None,
    dropout: float | None = None,
) -> Any:
    settings = IndexSettings(dim=args.dim) if index is True else index
    lora_dropout = args.lora_dropout if dropout is None else dropout
    return finetune(
        base, datanet="planted-facts", version=1, rows=rows,
        lora=LoraSettings(r=args.rank, alpha=2 * args.rank, dropout=lora_dropout, target_modules=("all-linear",)),
        lr=args.lr, epochs=epochs or args.epochs, batch_size=8, max_len=96, eval_split=0.0, seed=args.seed,
        index=settings, progress=False, output_dir=out, device="cpu",
    )  # fmt: skip


def trained_modes(
    base: str, rows: list[dict], out: Path, args: argparse.Namespace, epochs: int, dropout: float
) -> tuple[Any, dict[str, AttributionIndex]]:
    """One adapter, three indexes of it, so every comparison is paired (same model, same queries):

    "default" — the library's IndexSettings() (bf16 on CPUs with native bf16, float32 elsewhere); "float32" — the
    exact pass, built afterwards from the same adapter; "last_epoch" — every gradient kept from the last epoch's
    training passes, from a second training run that must (and is checked to) produce the identical adapter:
    capturing only observes.
    """
    trained = train(base, rows, out / "default", args, epochs=epochs, dropout=dropout)
    last = train(base, rows, out / "last-epoch", args, IndexSettings(dim=args.dim, gradients="last_epoch"), epochs,
                 dropout)  # fmt: skip
    if last.manifest["adapter_sha256"] != trained.manifest["adapter_sha256"]:
        raise RuntimeError("the two training runs differ: the index modes would not be compared on one adapter")
    exact = build_index(
        trained.model, trained.train_examples, IndexSettings(dim=args.dim, precision="training"), seed=args.seed,
        pad_id=trained.pad_id, device=trained.device, precision="float32",
        extra_meta={"datanets": trained.index.meta.get("datanets", [])},
    )  # fmt: skip
    return trained, {REFERENCE: exact, "default": trained.index, "last_epoch": last.index}


def mode_attributors(trained: Any, indexes: dict[str, AttributionIndex]) -> dict[str, Attributor]:
    return {
        mode: Attributor(index, trained.spans, model=trained.model, settings=ScoringSettings())
        for mode, index in indexes.items()
    }


def modes_setting(indexes: dict[str, AttributionIndex]) -> dict[str, Any]:
    return {
        mode: {key: index.meta[key] for key in ("gradients", "precision", "build_seconds")}
        for mode, index in indexes.items()
    }


def rank_metrics(results: list[dict[str, Any]]) -> dict[str, Any]:
    if not results:
        return {}
    p1 = np.mean([r["top1"] == r["owner"] for r in results])
    mrr = np.mean([reciprocal_rank(r) for r in results])
    return {"queries": len(results), "precision_at_1": round(float(p1), 4), "mrr": round(float(mrr), 4)}


def reciprocal_rank(record: dict[str, Any]) -> float:
    return 1.0 / (record["ranking"].index(record["owner"]) + 1) if record["owner"] in record["ranking"] else 0.0


# --- paired statistics: two indexes of one adapter scored on the very same queries -------------------------------


def paired_bootstrap(a: Sequence[float], b: Sequence[float], seed: int, rounds: int = 4000) -> dict[str, Any]:
    """Mean of b − a over paired items, with a bootstrap 95% interval (items resampled)."""
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(rounds, len(diff)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {"diff": round(float(diff.mean()), 4), "ci95": [round(float(low), 4), round(float(high), 4)]}


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


# --- quality on planted facts -----------------------------------------------------------------------------------


def fact_queries(trained: Any, facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per fact: the model's own answer to a training question (verbatim) and a teacher-forced paraphrase."""
    queries = []
    for fact in facts:
        verbatim = (f"What does the registry record for {fact['entity']}?", None)
        for kind, (prompt, response) in (("verbatim", verbatim), ("paraphrased", paraphrase(fact))):
            prompt_ids, output, text = tokens(trained, prompt, response)
            queries.append({"kind": kind, "owner": fact["contributor"], "prompt_ids": prompt_ids, "output": output,
                            "memorised": kind == "verbatim" and fact["value"] in text})  # fmt: skip
    return queries


def score_query(attributor: Attributor, query: dict[str, Any], top_k: int, settings: RewardSettings) -> dict:
    """One query through one attributor: combined ranking, fee split, and the gradient-/span-only baselines."""
    owner = query["owner"]
    result = attributor.attribute(query["prompt_ids"], query["output"], top_k=top_k)
    split = split_fee(10**18, result.shares, owner_bps=settings.owner_bps,
                      contributors_bps=settings.contributors_bps, contributor_cap=settings.contributor_cap)  # fmt: skip
    pool = 10**18 * settings.contributors_bps // 10000
    owner_amount = split.contributors.get(to_checksum_address(owner), 0)
    record = {
        "kind": query["kind"], "owner": owner, "top1": result.top.contributor if result.top else None,
        "ranking": list(dict.fromkeys(x.contributor for x in result.examples)), "attributed": result.attributed,
        "fee_paid": owner_amount / pool, "seconds": result.timings["total"],
        "fee_of_paid": owner_amount / split.contributors_total if split.contributors_total else 0.0,
    }  # fmt: skip
    stats = attributor.statistics(query["prompt_ids"], query["output"])
    record["z"] = stats["z"]
    for name, vector in (("gradient_only", stats["z"]), ("span_only", stats["span"])):
        order = np.argsort(-vector, kind="stable")[:top_k]
        ranked = list(dict.fromkeys(attributor.index.contributors[i] for i in order if vector[i] > 0))
        record[name] = {"owner": owner, "top1": ranked[0] if ranked else None, "ranking": ranked}
    return record


def score_mode(
    attributor: Attributor, queries: list[dict], calib: list, held_out: list, args: argparse.Namespace
) -> dict[str, Any]:
    """Calibrate this index's null threshold, then score every query and the held-out unrelated answers."""
    threshold = calibrate_null(attributor, calib, quantile=0.95)
    records = [score_query(attributor, q, args.top_k, RewardSettings()) for q in queries]
    false_attr = [attributor.attribute(p, o).attributed for p, o in held_out]
    return {"threshold": threshold, "records": records, "false_attr": false_attr}


def summarise_mode(scored: dict[str, Any]) -> dict[str, Any]:
    records, threshold = scored["records"], scored["threshold"]
    by_kind = {kind: [r for r in records if r["kind"] == kind] for kind in ("verbatim", "paraphrased")}
    return {
        "null_threshold": {
            "gradient_z": round(threshold.gradient_z, 4),
            "span": round(threshold.span, 4),
            "calibration_prompts": threshold.samples,
            "false_attribution_rate_on_held_out_unrelated": round(float(np.mean(scored["false_attr"])), 4),
            "held_out_unrelated": len(scored["false_attr"]),
        },
        "combined": {
            kind: {
                **rank_metrics(rs),
                "attributed_rate": round(float(np.mean([r["attributed"] for r in rs])), 4),
                "fee_pool_share_to_owner": round(float(np.mean([r["fee_paid"] for r in rs])), 4),
                "paid_contributor_share_to_owner": round(float(np.mean([r["fee_of_paid"] for r in rs])), 4),
            }
            for kind, rs in by_kind.items()
        },
        "baselines": {
            name: {kind: rank_metrics([r[name] for r in rs]) for kind, rs in by_kind.items()}
            for name in ("gradient_only", "span_only")
        },
    }


def compare_modes(reference: dict, mode: dict, args: argparse.Namespace) -> dict[str, Any]:
    """Paired mode − reference differences per query kind, and how alike the two indexes' gradient scores are."""
    out: dict[str, Any] = {}
    for kind in ("verbatim", "paraphrased"):
        pair = [[r for r in scored["records"] if r["kind"] == kind] for scored in (reference, mode)]
        out[kind] = {
            "combined": compare_rankings(*pair, args.seed, args.margin),
            "gradient_only": compare_rankings(
                *[[r["gradient_only"] for r in rs] for rs in pair], args.seed, args.margin
            ),  # fmt: skip
            "paid_contributor_share_to_owner": paired_bootstrap(
                *[[r["fee_of_paid"] for r in rs] for rs in pair], args.seed + 2
            ),
        }
    z_pairs = [(a["z"], b["z"]) for a, b in zip(reference["records"], mode["records"], strict=True)]
    out["agreement"] = {
        "gradient_z_spearman_median": round(float(np.median([spearman(a, b) for a, b in z_pairs])), 4),
        "same_top_example_rate": round(float(np.mean([int(a.argmax()) == int(b.argmax()) for a, b in z_pairs])), 4),
    }
    parts = [out[kind][part] for kind in ("verbatim", "paraphrased") for part in ("combined", "gradient_only")]
    out["significantly_worse"] = any(p["significantly_worse"] for p in parts)
    out["non_inferior_at_margin"] = all(p["non_inferior_at_margin"] for p in parts)
    return out


UNRELATED = [(f"Tell me something about {t}.", f"Here is a short note about {t}, written for a curious reader.")
             for t in TOPICS]  # fmt: skip


def evaluate_quality(
    args: argparse.Namespace, base: str, work: Path, epochs: int | None = None, dropout: float | None = None
) -> dict[str, Any]:
    epochs = epochs or args.epochs
    dropout = args.lora_dropout if dropout is None else dropout
    facts = planted_facts(args.contributors, args.facts, args.seed)
    rows = training_rows(facts)
    started = time.perf_counter()
    trained, indexes = trained_modes(base, rows, work / f"facts-{epochs}-{dropout}", args, epochs, dropout)
    train_seconds = trained.metrics["train_seconds"]
    attributors = mode_attributors(trained, indexes)
    queries = fact_queries(trained, facts)
    # Unrelated prompts with ordinary answers about them (teacher-forced): an over-fitted small model answers every
    # prompt with a memorised training response, which *should* be attributed, so its own answers cannot be the null.
    half = len(UNRELATED) // 2
    calib = [tokens(trained, p, a)[:2] for p, a in UNRELATED[:half]]
    held_out = [tokens(trained, p, a)[:2] for p, a in UNRELATED[half:]]
    scored = {mode: score_mode(a, queries, calib, held_out, args) for mode, a in attributors.items()}
    reported = summarise_mode(scored[args.report_mode])
    index = indexes[args.report_mode]
    spans_bytes = trained.spans.nbytes / len(index) if trained.spans is not None else 0.0
    memorised = sum(q["memorised"] for q in queries)
    seconds = [r["seconds"] for r in scored[args.report_mode]["records"]]
    return {
        "setting": {
            "contributors": args.contributors,
            "facts_per_contributor": args.facts,
            "training_rows": len(rows),
            "train_seconds": round(train_seconds, 1),
            "harness_seconds": round(time.perf_counter() - started, 1),
            "epochs": epochs,
            "lora_rank": args.rank,
            "lora_dropout": dropout,
            "index_dim": args.dim,
            "reported_index": args.report_mode,
            "top_k": args.top_k,
            "final_epoch_loss": trained.metrics["epoch_losses"][-1],
            "verbatim_answers_memorised": f"{memorised}/{len(facts)}",
            "reward_settings": {
                "owner_bps": RewardSettings().owner_bps,
                "contributors_bps": RewardSettings().contributors_bps,
                "contributor_cap": str(RewardSettings().contributor_cap),
            },
        },  # fmt: skip
        **reported,
        "targets": {
            "precision_at_1_verbatim >= 0.9": reported["combined"]["verbatim"]["precision_at_1"] >= 0.9,
            "precision_at_1_paraphrased >= 0.7": reported["combined"]["paraphrased"]["precision_at_1"] >= 0.7,
        },
        "index_bytes_per_example": {
            "attribution": round(index.bytes_per_example, 1),
            "span": round(spans_bytes, 1),
        },  # fmt: skip
        "attribution_seconds_median": round(float(np.median(seconds)), 4),
        "index_modes": {
            "modes": {mode: summarise_mode(s) for mode, s in scored.items()},
            "settings": modes_setting(indexes),
            f"vs_{REFERENCE}": {m: compare_modes(scored[REFERENCE], scored[m], args) for m in MODES if m != REFERENCE},
        },
    }


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


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


def lds_per_query(tau: np.ndarray, masks: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """Spearman, per query, between Σ_{i∈S} τ(q, i) and the −loss of the model retrained on S."""
    predicted = masks @ tau.T  # [retrains, queries]
    return np.array([spearman(predicted[:, j], -losses[:, j]) for j in range(tau.shape[0])])


def lds_summary(per_query: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    boot = [float(np.mean(rng.choice(per_query, len(per_query)))) for _ in range(2000)]
    return {
        "lds": round(float(per_query.mean()), 4),
        "ci95": [round(float(np.quantile(boot, 0.025)), 4), round(float(np.quantile(boot, 0.975)), 4)],
    }


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


def synthetic_attributor(model: Any, n: int, dim: int, doc_len: int, seed: int, precision: str) -> Attributor:
    """An index of n rows with the real adapter's layout/projection and random features; random span docs."""
    layout = lora_layout(model)
    num_params = sum(math.prod(e["shape"]) for e in layout)
    gen = torch.Generator().manual_seed(seed)
    features = (torch.randn(n, dim, generator=gen) / 4).clamp(-1, 1).to(torch.float16)
    meta = {"format": INDEX_FORMAT, "layout": layout, "precision": precision,
            "projection": {"kind": "countsketch", "dim": dim, "seed": seed, "num_params": num_params}}  # fmt: skip
    index = AttributionIndex(features, 1.0, list(range(n)), [f"0x{i % 50 + 1:040x}" for i in range(n)], None,
                             torch.rand(n, generator=gen) + 0.5, meta)  # fmt: skip
    docs = np.random.default_rng(seed).integers(0, 50000, size=(n, doc_len))
    spans = SpanIndex.build(list(docs), list(range(n)))
    return Attributor(index, spans, model=model)


def evaluate_speed(args: argparse.Namespace, base: str, label: str) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                      "o_proj"]))  # fmt: skip
    peft_model.eval()
    messages = [{"role": "user", "content": "Tell me about the registry of invented treasures and who owns them."}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) if tok.chat_template else (
        messages[0]["content"])  # fmt: skip
    prompt = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]

    def generate() -> tuple[float, list[int]]:
        started = time.perf_counter()
        with torch.no_grad():
            out = peft_model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                      max_new_tokens=args.gen_tokens, min_new_tokens=args.gen_tokens,
                                      pad_token_id=tok.pad_token_id or tok.eos_token_id)  # fmt: skip
        return time.perf_counter() - started, out[0, prompt.shape[1] :].tolist()

    default = "bfloat16" if native_bfloat16("cpu") else "float32"  # what IndexSettings() builds on this machine
    first = args.speed_rows[0]
    cases = {(n, default): None for n in args.speed_rows}
    models = {"float32": peft_model, default: peft_model}
    if default != "float32":
        cases[(first, "float32")] = None
        models[default] = copy.deepcopy(peft_model)  # as OpenLoRA keeps a bf16 index's query copy
        store_frozen_linears_in_bfloat16(models[default])
    built = {}
    for n, precision in cases:
        started = time.perf_counter()
        cases[(n, precision)] = synthetic_attributor(models[precision], n, args.speed_dim, 32, args.seed, precision)
        built[(n, precision)] = time.perf_counter() - started
    _, output = generate()  # warm-up; its answer is the one attributed
    for attributor in cases.values():
        attributor.attribute(prompt[0].tolist(), output, top_k=10)
    generations, timings = [], {case: [] for case in cases}
    for _ in range(args.speed_reps):  # side by side: one generation, then one attribution per index
        generations.append(generate()[0])
        for case, attributor in cases.items():
            timings[case].append(attributor.attribute(prompt[0].tolist(), output, top_k=10).timings)

    def summary(case: tuple[int, str]) -> dict[str, Any]:
        runs, attributor = timings[case], cases[case]
        ratios = [run["total"] / gen for run, gen in zip(runs, generations, strict=True)]
        return {
            **{k: round(float(np.median([r[k] for r in runs])), 4) for k in runs[0]},
            "overhead_share_of_generation": round(float(np.median(ratios)), 4),
            "overhead_share_range": [round(min(ratios), 4), round(max(ratios), 4)],
            "index_bytes_per_example": round(attributor.index.bytes_per_example, 1),
            "span_bytes_per_example": round(attributor.spans.nbytes / case[0], 1),
            "synthetic_index_build_seconds": round(built[case], 1),
        }

    sizes = {str(n): summary((n, default)) for n in args.speed_rows}
    result = {
        "model": label, "lora": "r=8 q,k,v,o", "threads": torch.get_num_threads(),
        "prompt_tokens": int(prompt.shape[1]), "generated_tokens": len(output), "rounds": args.speed_reps,
        "generation_seconds_median": round(float(np.median(generations)), 4),
        "generation": "transformers generate(), greedy, one request", "query_precision": default,
        "index_dim": args.speed_dim, "rows": sizes,
        f"target_overhead_<=25%_at_{first}": sizes[str(first)]["overhead_share_of_generation"] <= 0.25,
    }  # fmt: skip
    if default != "float32":
        result[f"float32_query_at_{first}"] = summary((first, "float32"))
    return result


def evaluate_short(args: argparse.Namespace, base: str, work: Path) -> dict[str, Any]:
    """The index modes after short runs (the last epoch's weights are then far from the final ones)."""
    out = {}
    for epochs in args.short_epochs:
        section = {"epochs": epochs, "lora_dropout": args.short_dropout}
        if "quality" not in args.skip:
            quality = evaluate_quality(args, base, work, epochs=epochs, dropout=args.short_dropout)
            section["quality"] = {key: quality[key] for key in ("setting", "index_modes")}
        if "lds" not in args.skip:
            lds = evaluate_lds(args, base, work, epochs=epochs, dropout=args.short_dropout)
            section["lds"] = {key: lds[key] for key in ("training_rows", "queries", "retrains", "index_modes")}
        out[f"epochs_{epochs}"] = section
        print(json.dumps(section, indent=1), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contributors", type=int, default=20)
    parser.add_argument("--facts", type=int, default=2, help="facts per contributor")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=128, help="hidden size of the random Llama quality model")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lds-contributors", type=int, default=4)
    parser.add_argument("--lds-retrains", type=int, default=32)
    parser.add_argument("--lds-epochs", type=int, default=25)
    parser.add_argument("--speed-base", default=".openledger-data/models/smollm2-135m-instruct",
                        help="model folder for the speed test ('tiny' = the quality model)")  # fmt: skip
    parser.add_argument("--speed-rows", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--speed-dim", type=int, default=1024)
    parser.add_argument("--gen-tokens", type=int, default=32)
    parser.add_argument("--speed-reps", type=int, default=7, help="rounds of generation + attributions")
    parser.add_argument("--lora-dropout", type=float, default=0.0, help="LoRA dropout of the quality and LDS runs")
    parser.add_argument(
        "--report-mode",
        default="default",
        choices=MODES,
        help="index whose numbers are the top-level ones (all are measured under index_modes)",
    )
    parser.add_argument("--margin", type=float, default=0.05,
                        help="non-inferiority margin: an index is 'non-inferior' when every paired 95%% interval "
                        "of (it - float32) stays above -margin")  # fmt: skip
    parser.add_argument(
        "--short-epochs",
        type=int,
        nargs="*",
        default=[1, 2],
        help="also compare the index modes after this many epochs (quality and LDS)",
    )
    parser.add_argument("--short-dropout", type=float, default=LoraSettings().dropout,
                        help="LoRA dropout of the short runs (default: the library's)")  # fmt: skip
    parser.add_argument("--skip", nargs="*", default=[], choices=["quality", "lds", "short", "speed"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench/results/attribution_eval.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "command": " ".join(["python bench/attribution_eval.py", *(shlex.quote(a) for a in sys.argv[1:])]),
        "torch": torch.__version__, "device": "cpu",
    }  # fmt: skip
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="attribution-eval-") as tmp:
        work = Path(tmp)
        base = str(build_base(work / "base", args.hidden, args.layers))
        results["quality_model"] = f"random Llama hidden={args.hidden} layers={args.layers}, GPT-2 tokenizer"
        if "quality" not in args.skip:
            results["quality"] = evaluate_quality(args, base, work)
            print(json.dumps(results["quality"], indent=1), flush=True)
        if "lds" not in args.skip:
            results["lds"] = evaluate_lds(args, base, work)
            print(json.dumps(results["lds"], indent=1), flush=True)
        if "short" not in args.skip and args.short_epochs:
            results["short_training"] = evaluate_short(args, base, work)
        if "speed" not in args.skip:
            speed_base = base if args.speed_base == "tiny" else str(ROOT / args.speed_base)
            if not Path(speed_base).is_dir():
                speed_base = base
            label = "quality model" if speed_base == base else Path(speed_base).name
            results["speed"] = evaluate_speed(args, speed_base, label)
            print(json.dumps(results["speed"], indent=1), flush=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {results['seconds']} s")


if __name__ == "__main__":
    main()
