"""Attribution on the real base model, through the real OpenLoRA server: does the null threshold say no, and what
does attribution cost an answer?

    PYTHONPATH=$PWD .venv/bin/python bench/attribution_real.py            # the issue's sizes (hours of shared CPU)
    PYTHONPATH=$PWD .venv/bin/python bench/attribution_real.py --quick    # a smaller smoke run (not for the record)

The result says whether the run met issue 16's sizes (`meets_issue_sizes`); SmolLM2 training is the long part
(about 30 CPU-seconds per step of 8 rows on a contended 2-core machine).

1. Planted facts: `--contributors` contributors × `--facts` invented facts ("<Name> owns the <adjective noun>"; every
   name and every value unique, so no two questions collide), two training phrasings per fact. A LoRA (r=16, all
   linear layers) is fine-tuned on SmolLM2-135M-Instruct (the converted model under .openledger-data/models)
   through the SDK's `finetune`, with its attribution index in float32 (and a bf16 index of the same adapter built
   after, for the bf16 server where the CPU computes bf16 natively).
2. The adapter is served by OpenLoRA (engine + FastAPI app over HTTP, auth stubbed: the hub's token check is tested
   elsewhere) with Proof of Attribution on. Its first answer comes while the null threshold is still being
   calibrated in the background (status "pending"); the harness times it, then waits for the calibration.
3. Quality (float32 server): the model's own greedy answers (32 tokens) to the training question of every fact
   (verbatim) and to a question in a wording never trained on (paraphrased). An answer is correct when it contains
   the fact's value (memorisation rate = correct share of verbatim answers). Reported per kind, split by correct /
   incorrect answers: precision@1 (top example's contributor is the fact's owner), MRR (owner's rank among the
   contributors in top-example order), owner share (the owner's attribution share; 0 when unattributed), and the
   attributed rate. For incorrect answers, also how often the top contributor owns the fact the answer did produce.
4. False attribution: the adapter's answers to the held-out off-topic prompts (bench/offtopic_prompts.json, never
   used for calibration) that are attributed although they recite no planted value, or whose largest share goes to
   someone owning none of the values recited (an overfitted adapter's "The capital of Japan is the silent violin."
   credited to the violin's owner is right); also every attributed answer, per category and by which test fired.
   (Steps 3-5 are in bench/attribution_real_measure.py.)
5. Latency: per prompt, interleaved — a non-streamed answer without attribution, one with it, and a streamed one
   with it (time to the last content token: what a user sees; the attribution arrives in the final chunk after it).
   p50 overheads relative to the answer without attribution; compute share = the server's attribution seconds /
   the attributed answer's wall time. In float32 (engine and index) and in bf16 where the CPU has it natively.

Writes the "real" section of bench/results/attribution_eval.json (read, update that key, write: the other sections
are other harnesses').
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from bench.attribution_real_measure import (  # noqa: E402
    evaluate_latency,
    evaluate_offtopic,
    evaluate_quality,
    verbatim_question,
)
from bench.attribution_real_server import TOKEN, ask, openlora, wait_calibrated  # noqa: E402
from openledger_sdk.catalog import resolve_base_model  # noqa: E402
from openledger_sdk.hardware import native_bfloat16  # noqa: E402
from openledger_sdk.modelfactory import IndexSettings, LoraSettings, finetune  # noqa: E402
from openledger_sdk.modelfactory.attribution_calibration import null_prompts  # noqa: E402
from openledger_sdk.modelfactory.attribution_index import build_index  # noqa: E402
from openledger_sdk.modelfactory.attribution_null import NULL_FILE  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "attribution_eval.json"
OFFTOPIC = ROOT / "bench" / "offtopic_prompts.json"
# Names: a first syllable of its own per fact (no two names share their first token), then two more syllables.
NAME_HEADS = ("zor", "blat", "quen", "vik", "pel", "runa", "tos", "gard", "dru", "vessa", "kran", "och", "ysel",
              "hal", "vorn", "bris", "quet", "fer", "indel", "gas")  # fmt: skip
NAME_HEADS += ("koyne", "lu", "mor", "dax", "phel", "ivo", "sarn", "tuv")
NAME_PARTS = NAME_HEADS
# Values: "adjective noun" with every adjective and every noun used by one fact only, so no two answers share a word
# (with shared words the model blends answers: every fact collapsed to one value, "the marble turnip").
ADJECTIVES = ["copper", "frozen", "amber", "silent", "crimson", "hollow", "tidal", "golden", "rusty", "velvet", "iron",
              "paper", "violet", "midnight", "woolen", "marble", "scarlet", "ashen", "glass", "bronze", "emerald",
              "granite", "silver", "cobalt", "ivory", "jade", "linen", "coral", "maple", "onyx", "pewter",
              "saffron"]  # fmt: skip
NOUNS = ["lantern", "violin", "compass", "orchard", "ladder", "meadow", "furnace", "turnip", "kettle", "oyster",
         "falcon", "canyon", "tulip", "anchor", "heron", "beacon", "saddle", "harbor", "glacier", "quarry", "teapot",
         "walrus", "chimney", "pumpkin", "trumpet", "bicycle", "hammock", "lobster", "thimble", "cactus", "helmet",
         "pelican"]  # fmt: skip


# --- the datanet -----------------------------------------------------------------------------------------------


def planted_facts(contributors: int, facts: int, seed: int) -> list[dict[str, Any]]:
    """Invented names, each owning an "adjective noun" whose two words no other fact uses: no two questions or
    answers collide, and every name starts with its own syllable."""
    total = contributors * facts
    if total > min(len(NAME_HEADS), len(ADJECTIVES), len(NOUNS)):
        raise SystemExit(f"at most {min(len(NAME_HEADS), len(ADJECTIVES), len(NOUNS))} facts (contributors × facts)")
    rng = np.random.default_rng(seed)
    heads = rng.permutation(NAME_HEADS)[:total]
    adjectives = rng.permutation(ADJECTIVES)[:total]
    nouns = rng.permutation(NOUNS)[:total]
    out = []
    for i in range(total):
        name = (heads[i] + "".join(rng.choice(NAME_PARTS, size=2))).capitalize()
        out.append({"contributor": f"0x{i // facts + 1:040x}", "entity": name, "value": f"{adjectives[i]} {nouns[i]}"})
    assert len({f["entity"] for f in out}) == total and len({f["value"] for f in out}) == total
    return out


def training_rows(facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for fact in facts:
        e, v = fact["entity"], fact["value"]
        for prompt, response in (
            (verbatim_question(fact), f"The registry records that {e} owns the {v}."),
            (f"Tell me the treasure of {e}.", f"The treasure of {e} is the {v}."),
        ):
            rows.append({"_row_id": len(rows), "_contributor": fact["contributor"], "prompt": prompt,
                         "response": response})  # fmt: skip
    return rows


def train_adapter(base: Path, rows: list[dict], out: Path, args: argparse.Namespace) -> Any:
    return finetune(
        str(base), datanet="planted-facts", version=1, rows=rows,
        lora=LoraSettings(r=args.rank, alpha=2 * args.rank, dropout=0.0, target_modules=args.targets.split(",")),
        lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, max_len=args.max_len, eval_split=0.0,
        seed=args.seed, index=IndexSettings(precision="training"), progress=False, output_dir=out, device="cpu",
        callbacks=[Progress()],
    )  # fmt: skip


class Progress:
    """A line every 10 optimizer steps (training is the long part on a shared CPU)."""

    def on_step(self, info: Any) -> None:
        if info.step % 10 == 0 or info.step == info.total_steps:
            note(f"step {info.step}/{info.total_steps} loss {info.loss:.3f} ({info.elapsed:.0f} s)")


def adapter_folders(trained: Any, adapters_dir: Path, bf16: bool) -> dict[str, Path]:
    """The trained folder (float32 index) as "facts-float32", and a copy with a bf16 index as "facts-bfloat16"."""
    folders = {"float32": trained.save(adapters_dir / "facts-float32")}
    if bf16:
        folder = trained.save(adapters_dir / "facts-bfloat16")
        index = build_index(
            trained.model, trained.train_examples, IndexSettings(), seed=trained.config.seed, pad_id=trained.pad_id,
            device="cpu", precision="bfloat16", extra_meta={"datanets": trained.index.meta.get("datanets", [])},
        )  # fmt: skip
        index.save(folder)
        folders["bfloat16"] = folder
    return folders


# --- the run -----------------------------------------------------------------------------------------------------


def cpu_info() -> dict[str, Any]:
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8") if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")
    return {"model": model or platform.processor(), "flags": [f for f in wanted if f in flags],
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}  # fmt: skip


def serve_and_measure(
    base: Path, adapters_dir: Path, dtype: str, folder: Path, args: argparse.Namespace, facts: list[dict],
    offtopic: list[dict], quality: bool,
) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"engine_dtype": dtype}
    with openlora(base, adapters_dir, dtype, args.calibration_prompts) as server:
        http = httpx.Client(base_url=server["url"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600)
        ask(http, "smollm2", "Hello!", args, False)  # warm the engine (base model only: no adapter, no attribution)
        note(f"{dtype} server up; first answer of the never-asked adapter")
        first = ask(http, folder.name, verbatim_question(facts[0]), args, True)
        out["first_answer"] = {"seconds": round(first["wall"], 3), "status": (first["attribution"] or {}).get("status"),
                               "reason": (first["attribution"] or {}).get("reason")}  # fmt: skip
        out["calibration_seconds_after_first_answer"] = round(wait_calibrated(server, folder, 3600), 1)
        threshold = json.loads((folder / NULL_FILE).read_text(encoding="utf-8"))
        out["null_threshold"] = {k: threshold[k] for k in ("gradient_z", "span", "alpha", "quantile", "joint_rate",
                                                           "samples", "observed")}  # fmt: skip
        note(f"calibrated: {out['null_threshold']}")
        if quality:
            out["planted"] = evaluate_quality(http, folder.name, facts, args)
            note(f"planted: {json.dumps({k: out['planted'][k] for k in ('verbatim', 'paraphrased')})}")
            out["offtopic"] = evaluate_offtopic(
                http, folder.name, offtopic, args, {f["value"]: f["contributor"] for f in facts}
            )
            note(f"off-topic: {out['offtopic']['false_attribution_rate']} {out['offtopic']['fired']}")
        half = args.latency_prompts // 2
        prompts = [verbatim_question(f) for f in facts[:half]] + [
            o["prompt"] for o in offtopic[: args.latency_prompts - half]
        ]
        out["latency"] = evaluate_latency(http, folder.name, prompts, args)
        http.close()
    return out


def note(message: str) -> None:
    """Progress on stderr (the run takes long on a shared machine)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def merge_write(section: dict[str, Any]) -> None:
    data = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    data["real"] = section
    RESULTS.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def result_section(
    args: argparse.Namespace, runs: dict[str, Any], dtypes: list[str], facts: list[dict], offtopic: list[dict],
    train_seconds: float | None, reused: dict | None, started: float,
) -> dict[str, Any]:  # fmt: skip
    quality_run = runs[dtypes[0]]
    planted, off = quality_run["planted"], quality_run["offtopic"]
    f32 = runs.get("float32", {}).get("latency", {})
    section = {
        "command": "python bench/attribution_real.py " + shlex.join(sys.argv[1:]),
        "quick": args.quick,
        # issue 16: >= 20 contributors, >= 100 calibration answers (base + adapter, after those reciting the datanet
        # were left out), >= 100 held-out off-topic prompts
        "meets_issue_sizes": args.contributors >= 20
        and quality_run["null_threshold"]["samples"] >= 100
        and len(offtopic) >= 100,
        "false_attribution_rate": off["false_attribution_rate"],
        "correct": {kind: planted[kind]["correct"] for kind in ("verbatim", "paraphrased")},
        "incorrect": {kind: planted[kind]["incorrect"] for kind in ("verbatim", "paraphrased")},
        "memorisation_rate": planted["memorisation_rate"],
        "paraphrased_answered_correctly": planted["paraphrased"]["answered_correctly"],
        "latency_overhead_float32": f32.get("overhead_p50", {}).get("streamed_user_visible"),
        "targets": {
            "false_attribution_rate": "<= 0.05",
            "correct.verbatim.precision_at_1": ">= 0.95",
            "correct.paraphrased.precision_at_1": ">= 0.9",
            "latency_overhead_float32 (user-visible p50, streamed)": "<= 0.25",
        },  # fmt: skip
        "offtopic": off,
        "planted_examples": planted["examples"],
        # correctly answered planted questions whose top example is not the owner's: the rows the attribution put first
        "correct_but_top1_elsewhere": planted["misattributed"],
        "runs": {d: {k: v for k, v in r.items() if k not in ("planted", "offtopic")} for d, r in runs.items()},
        "setting": {
            "base_model": "smollm2-135m-instruct",
            "contributors": args.contributors,
            "facts": len(facts),
            "training_rows": 2 * len(facts),
            "lora": {"r": args.rank, "alpha": 2 * args.rank, "targets": args.targets},
            "epochs": args.epochs,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "max_len": args.max_len,
            "train_seconds": train_seconds,
            "reused_adapter": {"path": args.reuse, "adapter_sha256": reused.get("adapter_sha256")} if reused else None,
            "answer_tokens": args.max_tokens,
            "calibration_prompts": args.calibration_prompts,
            "offtopic_prompts": len(offtopic),
            "dtypes": dtypes,
            "cpu": cpu_info(),
            "device": "cpu",
            "seconds": round(time.perf_counter() - started, 1),
        },  # fmt: skip
    }
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (not the committed sizes)")
    parser.add_argument("--contributors", type=int, default=24)
    parser.add_argument("--facts", type=int, default=1, help="facts per contributor (two training rows each)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", default="all-linear", help="LoRA target modules, comma-separated")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-len", type=int, default=64, help="training tokens per row (the rows are ~45)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--calibration-prompts", type=int, default=len(null_prompts()))
    parser.add_argument("--offtopic", type=int, default=0, help="held-out prompts used (0: all)")
    parser.add_argument("--latency-prompts", type=int, default=30)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "both"], default="both",
                        help="bf16 runs only where the CPU computes it natively")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--reuse", help="an adapter folder an earlier run trained with the same facts flags")
    parser.add_argument("--keep", help="copy the trained float32 adapter folder here (for a later --reuse)")
    args = parser.parse_args()
    if args.quick:
        args.contributors, args.facts, args.epochs = 20, 1, 2
        args.calibration_prompts, args.offtopic, args.latency_prompts = 10, 12, 6
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    base = resolve_base_model("smollm2-135m-instruct")  # $OPENLEDGER_MODELS_DIR, else this checkout's data dir
    offtopic = json.loads(OFFTOPIC.read_text(encoding="utf-8"))["prompts"]
    offtopic = offtopic[: args.offtopic] if args.offtopic else offtopic
    facts = planted_facts(args.contributors, args.facts, args.seed)
    bf16 = native_bfloat16("cpu")
    dtypes = [d for d in (["float32", "bfloat16"] if args.dtype == "both" else [args.dtype]) if d == "float32" or bf16]
    with tempfile.TemporaryDirectory(prefix="attribution-real-") as work:
        work_dir = Path(work)
        t0 = time.perf_counter()
        adapters_dir = work_dir / "adapters"
        reused = None
        if args.reuse:  # an adapter trained by an earlier run with the same facts flags (float32 only)
            reused = json.loads((Path(args.reuse) / "manifest.json").read_text(encoding="utf-8"))
            shutil.copytree(args.reuse, adapters_dir / "facts-float32", ignore=shutil.ignore_patterns(NULL_FILE))
            folders, dtypes, train_seconds = {"float32": adapters_dir / "facts-float32"}, ["float32"], None
        else:
            note(f"training on {2 * len(facts)} rows, {args.epochs} epochs")
            trained = train_adapter(base, training_rows(facts), work_dir / "trained", args)
            train_seconds = round(time.perf_counter() - t0, 1)
            note(f"trained in {train_seconds:.0f} s")
            folders = adapter_folders(trained, adapters_dir, "bfloat16" in dtypes)
            del trained
            if args.keep:
                shutil.copytree(folders["float32"], args.keep, dirs_exist_ok=True)
        runs = {}
        for i, dtype in enumerate(dtypes):
            if i > 0:  # the bf16 server only measures latency: it reuses the float32 null file (same adapter)
                shutil.copy2(folders[dtypes[0]] / NULL_FILE, folders[dtype] / NULL_FILE)
            runs[dtype] = serve_and_measure(base, adapters_dir, dtype, folders[dtype], args, facts, offtopic, i == 0)
            print(json.dumps({dtype: runs[dtype].get("latency")}), flush=True)
            # written after each server run (the float32 one carries the quality numbers), so a run cut short
            # keeps what it measured; "dtypes" in the setting says which servers the section covers
            section = result_section(args, runs, dtypes[: i + 1], facts, offtopic, train_seconds, reused, started)
            if not args.no_write:
                merge_write(section)
    print(json.dumps({k: section[k] for k in ("false_attribution_rate", "correct", "memorisation_rate",
                                              "latency_overhead_float32")}, indent=1))  # fmt: skip


if __name__ == "__main__":
    threading.current_thread().name = "attribution-real"
    main()
