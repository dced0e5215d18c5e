"""Quality and speed of tier-1 attribution (openledger_sdk.modelfactory.attribution_query).

    .venv/bin/python bench/attribution_eval.py              # every section, into bench/results/attribution_eval.json
    .venv/bin/python bench/attribution_eval.py --only lds   # one section (quality, lds, farming, short, speed)

Each run merge-writes its sections into the JSON file (other sections are kept); the LDS and farming sections carry
their own `run` record (command, CPU model and flags, dtype, threads).

Quality: a datanet of planted facts — `--contributors` contributors, each owning `--facts` invented entities with an
invented attribute value, each fact written in two training phrasings — a LoRA trained on it, then
  * verbatim queries: a training question, answered by the model itself (greedy); the generated answer is attributed;
  * paraphrased queries: a question and answer in a third wording never trained on (the answer is teacher-forced:
    the small model cannot be relied on to produce a paraphrase itself);
  * unrelated queries: questions about nothing in the datanet (half calibrate the null threshold, half test it).
Reported: contributor-level precision@1 (owner of the top example), MRR (contributors in top-k order), the share of
the fee's contributor pool paid to the right owner through `hub.rewards.split` (default RewardSettings: 50% cap).
Baseline in the same run: gradient-only and span-only rankings.

LDS (linear datamodeling score, TRAK): `--lds-contributors` × `--facts` facts × 2 phrasings (default 64 rows) on a
smaller random Llama (`--lds-hidden`, LM head ×`--lds-head-scale` so that the adapter can fit its rows);
`--lds-retrains` retrains from scratch on random `--lds-fraction` subsets (default 50 × 50%, `--lds-epochs` each);
for each paraphrased query (two wordings per fact, never trained on), Spearman
between the predicted Σ_{i∈S} τ(q, i) and the actual −loss of the model trained on S; mean over queries with a
bootstrap 95% interval (queries resampled). Baseline in the same run: TracIn-style gradient dot product g_q · g_i at
the final adapter (no preconditioner), and the paired interval of TRAK minus it (bench/attribution_lds.py).

Farming (bench/attribution_farming.py): a farmer who uploads paraphrased copies of everyone's facts, and one who
floods generic rows, against the same farmer contributing honestly; the extra share of the contributors' pool each
earns, through the real datanet service and the platform's fee split.

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
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from eth_utils import to_checksum_address

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.attribution_facts import (  # noqa: E402
    MODES,
    REFERENCE,
    UNRELATED,
    build_base,
    mode_attributors,
    modes_setting,
    paraphrase,
    planted_facts,
    tokens,
    trained_modes,
    training_rows,
)
from bench.attribution_farming import evaluate_farming  # noqa: E402
from bench.attribution_lds import evaluate_lds  # noqa: E402
from bench.attribution_results import merge_write, run_record  # noqa: E402
from bench.attribution_speed import evaluate_speed  # noqa: E402
from bench.attribution_stats import (  # noqa: E402
    compare_rankings,
    paired_bootstrap,
    rank_metrics,
    spearman,
)
from hub.rewards.config import RewardSettings  # noqa: E402
from hub.rewards.split import split_fee_under  # noqa: E402
from openledger_sdk.modelfactory import LoraSettings  # noqa: E402
from openledger_sdk.modelfactory.attribution_query import Attributor, calibrate_null  # noqa: E402


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
    split = split_fee_under(10**18, result.shares, settings)
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


DTYPE = "training and retrains float32; indexes as index_modes.settings say (default: bf16 where native)"
SECTIONS = ("quality", "lds", "farming", "short", "speed")


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


def parse_args() -> argparse.Namespace:
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
    parser.add_argument("--lds-contributors", type=int, default=16, help="LDS datanet: contributors (x facts x 2 rows)")
    parser.add_argument("--lds-retrains", type=int, default=50)
    parser.add_argument("--lds-fraction", type=float, default=0.5, help="share of the rows each LDS retrain keeps")
    parser.add_argument("--lds-epochs", type=int, default=10)
    parser.add_argument("--lds-lr", type=float, default=1e-2)
    parser.add_argument("--lds-head-scale", type=float, default=4.0,
                        help="LM head scale of the LDS model (4: the adapter fits its rows)")  # fmt: skip
    parser.add_argument("--lds-dampings", type=float, nargs="*", default=[1e-3, 1e-2, 0.1, 1.0, 10.0],
                        help="also score raw TRAK at these dampings on the same retrains")  # fmt: skip
    parser.add_argument("--lds-hidden", type=int, default=64, help="hidden size of the LDS model (retrains dominate)")
    parser.add_argument("--farming-contributors", type=int, default=12, help="honest contributors beside the farmer")
    parser.add_argument(
        "--farming-cache",
        default=None,
        help="keep the farming scenarios' trained models here and reuse them (re-scores only)",
    )
    parser.add_argument("--flood-rows", type=int, default=48, help="generic rows the flooding farmer uploads")
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
    parser.add_argument("--skip", nargs="*", default=[], choices=SECTIONS)
    parser.add_argument("--only", nargs="*", default=None, choices=SECTIONS, help="run only these sections")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench/results/attribution_eval.json"))
    args = parser.parse_args()
    if args.only is not None:
        args.skip = [section for section in SECTIONS if section not in args.only]
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="attribution-eval-") as tmp:
        work = Path(tmp)
        base = str(build_base(work / "base", args.hidden, args.layers))
        if "quality" not in args.skip:
            results["quality"] = {**evaluate_quality(args, base, work), "run": run_record(DTYPE)}
            print(json.dumps(results["quality"], indent=1), flush=True)
        if "lds" not in args.skip:
            lds_base = str(build_base(work / "lds-base", args.lds_hidden, args.layers, args.lds_head_scale))
            model = (f"random Llama hidden={args.lds_hidden} layers={args.layers}, LM head x{args.lds_head_scale}, "
                     "GPT-2 tokenizer")  # fmt: skip
            results["lds"] = {**evaluate_lds(args, lds_base, work), "model": model, "run": run_record(DTYPE)}
            print(json.dumps(results["lds"], indent=1), flush=True)
        if "farming" not in args.skip:
            results["farming"] = {
                **evaluate_farming(args, base, work),
                "run": run_record(DTYPE),
                "model": f"random Llama hidden={args.hidden} layers={args.layers}, GPT-2 tokenizer",
            }
            print(json.dumps(results["farming"], indent=1), flush=True)
        if "short" not in args.skip and args.short_epochs:
            results["short_training"] = evaluate_short(args, base, work)
        if "speed" not in args.skip:
            speed_base = base if args.speed_base == "tiny" else str(ROOT / args.speed_base)
            if not Path(speed_base).is_dir():
                speed_base = base
            label = "quality model" if speed_base == base else Path(speed_base).name
            results["speed"] = evaluate_speed(args, speed_base, label)
            print(json.dumps(results["speed"], indent=1), flush=True)
    if not args.skip:  # a full run also renews the file's top-level record
        results.update(command=run_record()["command"], torch=torch.__version__, device="cpu", seconds=round(
            time.perf_counter() - started, 1), quality_model=f"random Llama hidden={args.hidden} layers={args.layers}, "
            "GPT-2 tokenizer")  # fmt: skip
    merge_write(args.out, results)
    print(f"wrote {', '.join(results)} into {args.out} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
