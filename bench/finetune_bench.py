"""ModelFactory benchmark: our `finetune()` vs a plain transformers `Trainer` + peft run, same settings and data.

Reports training tokens/s of both (target: ours / Trainer >= 0.95) from interleaved A/B runs with the default index
settings, and the attribution index build time (gradient index + span suffix array) as a share of training time
(target <= 30%): for the default `IndexSettings()` in the A/B runs (an extra pass at the final weights, in bf16 on
CPUs with AMX / AVX512-BF16, else in training's precision), and in `--other-runs` extra runs each for the
alternatives in ALTERNATIVES (that pass in training's precision, float32 on CPU; gradients="last_epoch", collected
inside the last epoch's backward passes), plus index seconds per 1k examples and bytes per example. Both runs train
the same
tokenized examples (our chat-template formatting and response-only labels) with the same LoRA config, optimizer
(AdamW), linear schedule, clipping, batch size, epochs and seed, and the Trainer reads the batches in our seeded
order (so padding, and even the losses, match); tokens/s counts non-padding tokens over each loop's own timer (ours:
`manifest.training.seconds`, which excludes index work; Trainer: `train_runtime`).

    .venv/bin/python bench/finetune_bench.py                     # real base model, CPU, 1 thread
    .venv/bin/python bench/finetune_bench.py --device cuda --threads 8 --out bench/results/finetune-gpu.json

Writes JSON to bench/results/finetune.json (with the command line and the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPICS = ["billing", "login", "shipping", "refunds", "warranty", "returns", "invoices", "passwords"]


def bench_rows(n: int) -> list[dict[str, Any]]:
    """Support-style prompt/response pairs of near-equal length (so batching pads about the same either way)."""
    return [
        {
            "_row_id": i,
            "_contributor": f"0x{(i % 8) + 1:040x}",
            "prompt": f"Ticket {1000 + i}: a customer asks about {TOPICS[i % 8]} for order {50000 + 37 * i}. "
            "What should the agent reply?",
            "response": f"Thank the customer, confirm order {50000 + 37 * i}, explain our {TOPICS[i % 8]} policy in "
            f"two sentences, and offer follow-up code {chr(65 + i % 26)}{i % 97:02d} if anything is still unclear.",
        }
        for i in range(n)
    ]


def run_ours(
    args: argparse.Namespace, rows: list[dict], workdir: Path, index: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Our finetune(); `index` overrides IndexSettings fields (none: the library's defaults)."""
    from openledger_sdk.modelfactory import IndexSettings, LoraSettings, finetune

    started = time.perf_counter()
    model = finetune(
        args.base,
        rows=rows,
        models_dir=args.models_dir,
        lora=LoraSettings(r=args.rank, alpha=2 * args.rank, dropout=0.0),
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_len=args.max_len,
        seed=0,
        eval_split=0.0,
        index=IndexSettings(dim=args.index_dim, batch_size=args.index_batch_size, **(index or {})),
        device=args.device,
        output_dir=workdir / "ours",
        progress=False,
    )
    wall = time.perf_counter() - started
    training, index = model.manifest["training"], model.manifest["attribution_index"]
    index_seconds = index["build_seconds"] + index["span_build_seconds"]
    examples = index["examples"]
    result = {
        "index_gradients": index["gradients"],
        "index_precision": index["precision"],
        "index_curvature": index["curvature"],
        "tokens": training["tokens"],
        "train_seconds": training["seconds"],
        "tokens_per_second": training["tokens"] / training["seconds"],
        "steps": training["steps"],
        "mean_step_loss": sum(training["step_losses"]) / len(training["step_losses"]),
        "index_seconds": index_seconds,  # gradient index and span suffix array
        "gradient_index_seconds": index["build_seconds"],
        "span_index_seconds": index["span_build_seconds"],
        "index_seconds_per_1k_examples": round(index_seconds / examples * 1000, 3),
        "index_bytes_per_example": index["bytes_per_example"],
        "index_share_of_training": index_seconds / training["seconds"],
        "wall_seconds_incl_load_index_save": round(wall, 3),
    }
    del model
    _free()
    return result


def run_trainer(args: argparse.Namespace, rows: list[dict], workdir: Path) -> dict[str, Any]:
    """The baseline: transformers.Trainer + peft on exactly our tokenized examples."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from openledger_sdk.catalog import resolve_base_model
    from openledger_sdk.modelfactory.data import collate, epoch_order, prepare
    from openledger_sdk.modelfactory.model_setup import resolve_device

    base_dir = resolve_base_model(args.base, args.models_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    prepared = prepare(rows, tokenizer, max_len=args.max_len, eval_split=0.0, seed=0)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device, precision = resolve_device(args.device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    torch.manual_seed(0)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    model = get_peft_model(
        model,
        LoraConfig(
            r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM"
        ),  # fmt: skip
    )
    # The same batches in the same order as ours (our seeded per-epoch permutations, laid end to end, read
    # sequentially in one Trainer epoch): identical padding, identical schedule length, comparable losses.
    order = [i for epoch in range(args.epochs) for i in epoch_order(len(prepared.train), 0, epoch)]
    train = [{"example": prepared.train[i]} for i in order]
    training_args = TrainingArguments(
        output_dir=str(workdir / "trainer"),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        num_train_epochs=1,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        bf16=precision == "bf16",
        use_cpu=device == "cpu",
        seed=0,
        data_seed=0,
        save_strategy="no",
        report_to=[],
        logging_steps=10**6,
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )

    class SameOrderTrainer(Trainer):
        def _get_train_sampler(self, *_args: Any, **_kwargs: Any) -> Any:
            return SequentialSampler(train)

    trainer = SameOrderTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        data_collator=lambda items: collate([item["example"] for item in items], pad_id),
    )
    started = time.perf_counter()
    output = trainer.train()
    wall = time.perf_counter() - started
    tokens = sum(len(item["example"].input_ids) for item in train)
    seconds = output.metrics["train_runtime"]
    result = {
        "tokens": tokens,
        "train_seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "steps": output.global_step,
        "mean_step_loss": output.training_loss,  # same batches and maths: should match ours closely
        "wall_seconds_train_call": round(wall, 3),
    }
    del trainer, model
    _free()
    return result


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# Index settings measured beside the default (their cost only: they are not part of the A/B against Trainer).
ALTERNATIVES: dict[str, dict[str, Any]] = {
    "precision_training": {"precision": "training"},  # the extra pass in training's precision (float32 on CPU)
    "empirical_curvature": {"curvature": "empirical"},  # TRAK's ΦᵀΦ: no drawn-label backward pass
    # gradients kept from the last epoch's own backward passes; with the empirical curvature nothing else is computed
    "last_epoch": {"gradients": "last_epoch", "curvature": "empirical"},
}


def run_schedule(args: argparse.Namespace, rows: list[dict]) -> dict[str, list[dict]]:
    """Interleaved ours (default index settings) / Trainer rounds, then the alternative index settings' runs."""
    results: dict[str, list[dict]] = {"ours": [], "trainer": [], **{name: [] for name in ALTERNATIVES}}
    runners = {"ours": run_ours, "trainer": run_trainer}
    runners |= {name: partial(run_ours, index=index) for name, index in ALTERNATIVES.items()}
    workdir = Path(tempfile.mkdtemp(prefix="finetune-bench-"))
    try:
        # Warm-up (file cache, lazy imports, kernels) so round 1 does not favour whichever runs second.
        run_ours(argparse.Namespace(**{**vars(args), "epochs": 1}), rows[: args.batch_size * 2], workdir / "warm")
        schedule = [["ours", "trainer"] if r % 2 == 0 else ["trainer", "ours"] for r in range(args.rounds)]
        schedule += [list(ALTERNATIVES)] * args.other_runs
        for round_, names in enumerate(schedule):
            for name in names:
                result = runners[name](args, rows, workdir / f"{name}-{round_}")
                results[name].append(result)
                print(f"run {round_ + 1} {name}: {result['tokens_per_second']:.1f} tokens/s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def index_summary(runs: list[dict], epochs: int) -> dict[str, Any]:
    """Median index cost over runs: share of training time, the same in epochs of training (what it would be as a
    share of a 1-epoch run), seconds per 1k examples; bytes per example."""
    return {
        "share_of_training": round(statistics.median(r["index_share_of_training"] for r in runs), 4),
        "cost_in_training_epochs": round(statistics.median(r["index_share_of_training"] * epochs for r in runs), 4),
        "seconds_per_1k_examples": round(statistics.median(r["index_seconds_per_1k_examples"] for r in runs), 3),
        "bytes_per_example": runs[0]["index_bytes_per_example"],
    }


def summarise(results: dict[str, list[dict]], epochs: int) -> dict[str, Any]:
    ours, baseline = results["ours"], results["trainer"]
    ours_tps = statistics.median(r["tokens_per_second"] for r in ours)
    base_tps = statistics.median(r["tokens_per_second"] for r in baseline)
    default = index_summary(ours, epochs)
    return {
        "ours_tokens_per_second": round(ours_tps, 2),
        "trainer_tokens_per_second": round(base_tps, 2),
        "ratio_ours_over_trainer": round(ours_tps / base_tps, 4),
        "ratio_target": 0.95,
        "ratio_per_round": [
            round(a["tokens_per_second"] / b["tokens_per_second"], 4) for a, b in zip(ours, baseline, strict=True)
        ],  # fmt: skip
        "index_default": {key: ours[0][f"index_{key}"] for key in ("gradients", "precision", "curvature")},
        "index_share_of_training": default["share_of_training"],
        "index_share_target": 0.30,
        "index_cost_in_training_epochs": default["cost_in_training_epochs"],
        "index_seconds_per_1k_examples": default["seconds_per_1k_examples"],
        "index_bytes_per_example": default["bytes_per_example"],
        "alternatives": {
            name: {**ALTERNATIVES[name], **index_summary(results[name], epochs)}
            for name in ALTERNATIVES
            if results[name]
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--models-dir", type=Path, default=ROOT / ".openledger-data" / "models")
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--index-dim", type=int, default=1024)
    parser.add_argument("--index-batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved A/B rounds (order alternates)")
    parser.add_argument("--other-runs", type=int, default=1, help="runs of each alternative index setting")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 on shared CPUs: contended OpenMP spins)"
    )
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "finetune.json")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)  # pinned: the machine is shared, and both sides get the same
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = bench_rows(args.rows)
    results = run_schedule(args, rows)
    summary = summarise(results, args.epochs)
    import peft
    import transformers

    report = {
        "benchmark": "finetune",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if args.device != "cpu" and torch.cuda.is_available() else "cpu",
            "platform": platform.platform(),
            "load_average_at_end": os.getloadavg(),
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "summary": summary,
        "ours": results["ours"],
        "trainer": results["trainer"],
        **{f"ours_{name}": results[name] for name in ALTERNATIVES},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
