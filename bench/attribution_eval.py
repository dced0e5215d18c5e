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

Speed: one generation (`--gen-tokens` new tokens) vs one attribution (backward + matvec + span lookup) against
synthetic indexes of 1k / 10k / 100k rows with the real adapter's projection; index bytes per example.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
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

from hub.rewards.config import RewardSettings  # noqa: E402
from hub.rewards.split import split_fee  # noqa: E402
from openledger_sdk.modelfactory import IndexSettings, LoraSettings, finetune  # noqa: E402
from openledger_sdk.modelfactory.attribution_index import (  # noqa: E402
    AttributionIndex,
    example_losses,
    lora_layout,
    score,
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


def train(
    base: str, rows: list[dict], out: Path, args: argparse.Namespace, index: bool = True, epochs: int | None = None
) -> Any:
    return finetune(
        base, datanet="planted-facts", version=1, rows=rows,
        lora=LoraSettings(r=args.rank, alpha=2 * args.rank, dropout=0.0, target_modules=("all-linear",)),
        lr=args.lr, epochs=epochs or args.epochs, batch_size=8, max_len=96, eval_split=0.0, seed=args.seed,
        index=IndexSettings(dim=args.dim) if index else False, progress=False, output_dir=out, device="cpu",
    )  # fmt: skip


def rank_metrics(results: list[dict[str, Any]]) -> dict[str, Any]:
    if not results:
        return {}
    p1 = np.mean([r["top1"] == r["owner"] for r in results])
    mrr = np.mean([1.0 / (r["ranking"].index(r["owner"]) + 1) if r["owner"] in r["ranking"] else 0.0 for r in results])
    return {"queries": len(results), "precision_at_1": round(float(p1), 4), "mrr": round(float(mrr), 4)}


def evaluate_quality(args: argparse.Namespace, base: str, work: Path) -> dict[str, Any]:
    facts = planted_facts(args.contributors, args.facts, args.seed)
    rows = training_rows(facts)
    started = time.perf_counter()
    trained = train(base, rows, work / "facts", args)
    train_seconds = time.perf_counter() - started
    attributor = Attributor.load(trained.path, trained.model, settings=ScoringSettings(), cache=False)
    n_unrel = len(TOPICS)
    # Unrelated prompts with ordinary answers about them (teacher-forced): an over-fitted small model answers every
    # prompt with a memorised training response, which *should* be attributed, so its own answers cannot be the null.
    unrelated = [(f"Tell me something about {t}.", f"Here is a short note about {t}, written for a curious reader.")
                 for t in TOPICS]  # fmt: skip
    calib = [tokens(trained, p, a)[:2] for p, a in unrelated[: n_unrel // 2]]
    threshold = calibrate_null(attributor, calib, quantile=0.95)
    settings = RewardSettings()
    per_kind: dict[str, list[dict[str, Any]]] = {"verbatim": [], "paraphrased": []}
    baselines: dict[str, dict[str, list[dict[str, Any]]]] = {"gradient_only": {}, "span_only": {}}
    fee_paid: dict[str, list[float]] = {"verbatim": [], "paraphrased": []}
    fee_of_paid: dict[str, list[float]] = {"verbatim": [], "paraphrased": []}
    memorised, attributed, timings = 0, {"verbatim": 0, "paraphrased": 0}, []
    for fact in facts:
        e = fact["entity"]
        queries = {
            "verbatim": (f"What does the registry record for {e}?", None),
            "paraphrased": paraphrase(fact),
        }
        for kind, (prompt, response) in queries.items():
            prompt_ids, output, text = tokens(trained, prompt, response)
            if kind == "verbatim":
                memorised += fact["value"] in text
            result = attributor.attribute(prompt_ids, output, top_k=args.top_k)
            timings.append(result.timings["total"])
            ranking = list(dict.fromkeys(x.contributor for x in result.examples))
            top1 = result.top.contributor if result.top else None
            per_kind[kind].append({"owner": fact["contributor"], "top1": top1, "ranking": ranking})
            attributed[kind] += result.attributed
            split = split_fee(
                10**18,
                result.shares,
                owner_bps=settings.owner_bps,
                contributors_bps=settings.contributors_bps,
                contributor_cap=settings.contributor_cap,
            )
            pool = 10**18 * settings.contributors_bps // 10000
            owner_amount = split.contributors.get(to_checksum_address(fact["contributor"]), 0)
            fee_paid[kind].append(owner_amount / pool)
            fee_of_paid[kind].append(owner_amount / split.contributors_total if split.contributors_total else 0.0)
            # Baselines from the same statistics: gradient alone, span alone.
            stats = attributor.statistics(prompt_ids, output)
            for name, vector in (("gradient_only", stats["z"]), ("span_only", stats["span"])):
                order = np.argsort(-vector, kind="stable")[: args.top_k]
                ranked = list(dict.fromkeys(attributor.index.contributors[i] for i in order if vector[i] > 0))
                baselines[name].setdefault(kind, []).append(
                    {"owner": fact["contributor"], "top1": ranked[0] if ranked else None, "ranking": ranked}
                )
    false_attr = []
    for prompt, answer in unrelated[n_unrel // 2 :]:
        false_attr.append(attributor.attribute(*tokens(trained, prompt, answer)[:2]).attributed)
    index: AttributionIndex = attributor.index
    spans_bytes = attributor.spans.nbytes / len(index) if attributor.spans is not None else 0.0
    return {
        "setting": {
            "contributors": args.contributors,
            "facts_per_contributor": args.facts,
            "training_rows": len(rows),
            "train_seconds": round(train_seconds, 1),
            "epochs": args.epochs,
            "lora_rank": args.rank,
            "index_dim": args.dim,
            "top_k": args.top_k,
            "final_epoch_loss": trained.metrics["epoch_losses"][-1],
            "verbatim_answers_memorised": f"{memorised}/{len(facts)}",
            "reward_settings": {
                "owner_bps": settings.owner_bps,
                "contributors_bps": settings.contributors_bps,
                "contributor_cap": str(settings.contributor_cap),
            },
        },  # fmt: skip
        "null_threshold": {
            "gradient_z": round(threshold.gradient_z, 4),
            "span": round(threshold.span, 4),
            "calibration_prompts": len(calib),
            "false_attribution_rate_on_held_out_unrelated": round(float(np.mean(false_attr)), 4),
            "held_out_unrelated": len(false_attr),
        },  # fmt: skip
        "combined": {
            kind: {
                **rank_metrics(per_kind[kind]),
                "attributed_rate": round(attributed[kind] / len(facts), 4),
                "fee_pool_share_to_owner": round(float(np.mean(fee_paid[kind])), 4),
                "paid_contributor_share_to_owner": round(float(np.mean(fee_of_paid[kind])), 4),
            }
            for kind in per_kind
        },
        "baselines": {name: {k: rank_metrics(v) for k, v in kinds.items()} for name, kinds in baselines.items()},
        "targets": {
            "precision_at_1_verbatim >= 0.9": rank_metrics(per_kind["verbatim"])["precision_at_1"] >= 0.9,
            "precision_at_1_paraphrased >= 0.7": rank_metrics(per_kind["paraphrased"])["precision_at_1"] >= 0.7,
        },
        "index_bytes_per_example": {
            "attribution": round(index.bytes_per_example, 1),
            "span": round(spans_bytes, 1),
        },  # fmt: skip
        "attribution_seconds_median": round(float(np.median(timings)), 4),
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


def evaluate_lds(args: argparse.Namespace, base: str, work: Path) -> dict[str, Any]:
    facts = planted_facts(args.lds_contributors, args.facts, args.seed + 1)
    rows = training_rows(facts)
    full = train(base, rows, work / "lds-full", args, epochs=args.lds_epochs)
    queries = []
    for fact in facts:
        prompt, answer = paraphrase(fact)
        p, o, _ = tokens(full, prompt, answer)
        queries.append(Example(None, "", p + o, [IGNORE] * len(p) + o, o))
    attributor = Attributor.load(full.path, full.model, cache=False)
    tau_raw, tau_norm = [], []
    for q in queries:
        n_prompt = sum(1 for label in q.labels if label == IGNORE)
        proj = attributor.projection(q.input_ids[:n_prompt], q.response_ids)
        tau_raw.append(score(attributor.index, proj).numpy())
        tau_norm.append(attributor.gradient_scores(proj).numpy())
    tau_raw_m, tau_norm_m = np.stack(tau_raw), np.stack(tau_norm)  # [queries, n]
    rng = np.random.default_rng(args.seed)
    n = len(rows)
    masks, losses = [], []
    started = time.perf_counter()
    for r in range(args.lds_retrains):
        keep = np.zeros(n, dtype=bool)
        keep[rng.choice(n, n // 2, replace=False)] = True
        subset = [row for row, k in zip(rows, keep, strict=True) if k]
        model = train(base, subset, work / f"lds-{r}", args, index=False, epochs=args.lds_epochs)
        losses.append(query_losses(model.model, queries, model.pad_id))
        masks.append(keep)
        del model
    retrain_seconds = time.perf_counter() - started
    masks_m, losses_m = np.stack(masks).astype(np.float64), np.stack(losses)  # [retrains, n], [retrains, queries]
    out: dict[str, Any] = {
        "training_rows": n, "queries": len(queries), "retrains": args.lds_retrains, "subset": "random 50%",
        "retrain_seconds": round(retrain_seconds, 1), "epochs": args.lds_epochs,
    }  # fmt: skip
    for name, tau in (("trak_raw", tau_raw_m), ("normalised_gradient", tau_norm_m)):
        predicted = masks_m @ tau.T  # [retrains, queries]: Σ_{i∈S} τ(q, i)
        per_query = np.array([spearman(predicted[:, j], -losses_m[:, j]) for j in range(len(queries))])
        boot = [float(np.mean(rng.choice(per_query, len(per_query)))) for _ in range(2000)]
        out[name] = {
            "lds": round(float(per_query.mean()), 4),
            "ci95": [round(float(np.quantile(boot, 0.025)), 4), round(float(np.quantile(boot, 0.975)), 4)],
        }
    return out


def synthetic_attributor(model: Any, n: int, dim: int, doc_len: int, seed: int) -> Attributor:
    """An index of n rows with the real adapter's layout/projection and random features; random span docs."""
    layout = lora_layout(model)
    num_params = sum(math.prod(e["shape"]) for e in layout)
    gen = torch.Generator().manual_seed(seed)
    features = (torch.randn(n, dim, generator=gen) / 4).clamp(-1, 1).to(torch.float16)
    meta = {"format": "openledger-attribution-index/1", "layout": layout,
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
    gen_times = []
    for _ in range(3):
        started = time.perf_counter()
        with torch.no_grad():
            out = peft_model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                      max_new_tokens=args.gen_tokens, min_new_tokens=args.gen_tokens,
                                      pad_token_id=tok.pad_token_id or tok.eos_token_id)  # fmt: skip
        gen_times.append(time.perf_counter() - started)
    output = out[0, prompt.shape[1] :].tolist()
    generation = float(np.median(gen_times))
    sizes = {}
    for n in args.speed_rows:
        built = time.perf_counter()
        attributor = synthetic_attributor(peft_model, n, args.speed_dim, 32, args.seed)
        build_seconds = time.perf_counter() - built
        runs = []
        for _ in range(3):
            runs.append(attributor.attribute(prompt[0].tolist(), output, top_k=10).timings)
        median = {k: round(float(np.median([r[k] for r in runs])), 4) for k in runs[0]}
        sizes[str(n)] = {
            **median,
            "overhead_share_of_generation": round(median["total"] / generation, 4),
            "index_bytes_per_example": round(attributor.index.bytes_per_example, 1),
            "span_bytes_per_example": round(attributor.spans.nbytes / n, 1),
            "synthetic_index_build_seconds": round(build_seconds, 1),
        }
        del attributor
    first = str(args.speed_rows[0])
    return {
        "model": label, "lora": "r=8 q,k,v,o", "threads": torch.get_num_threads(),
        "prompt_tokens": int(prompt.shape[1]), "generated_tokens": len(output),
        "generation_seconds": round(generation, 4), "index_dim": args.speed_dim, "rows": sizes,
        f"target_overhead_<=25%_at_{first}": sizes[first]["overhead_share_of_generation"] <= 0.25,
    }  # fmt: skip


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
    parser.add_argument("--skip", nargs="*", default=[], choices=["quality", "lds", "speed"])
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
