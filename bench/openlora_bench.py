"""OpenLoRA benchmark: open-loop Poisson arrivals, Zipf adapter popularity, four systems in one run.

    .venv/bin/python bench/openlora_bench.py            # full grid (slow on 2 CPU cores)
    .venv/bin/python bench/openlora_bench.py --quick    # a few minutes
    .venv/bin/python bench/openlora_bench.py --dtype float32   # default: the server's dtype here (bf16 with AMX)
    .venv/bin/python bench/openlora_bench.py --repeats 3       # every system 3 times, interleaved; median ratios

Systems, each in its own child process (so peak RSS is per system), on the same workload:
  engine      our engine: continuous batching, mixed-adapter batches (gather + bmm over slot stacks)
  peft_swap   PEFT with one adapter active, weights swapped per batch (S-LoRA's PEFT baseline); static batches
              of requests for that one adapter
  peft_mixed  PEFT mixed batches via `generate(adapter_names=...)` over a pool of loaded adapters; static batches
  base        our engine serving every request with the base model alone (upper bound: no LoRA work at all)

Every system runs in the same dtype (--dtype; by default what the server picks on this machine, see
models.serve_dtype). Workload: input 8-128 tokens, output 8-64 tokens (greedy, EOS ignored), N adapters with
Zipf(s) popularity.
Adapters are PEFT files (rank r, attention projections by default); above 32 adapters the weight files are
symlinks into a pool of 32 distinct files (each id is still loaded, cached and slotted separately).
Results: JSON in bench/results/ with throughput (tokens/s), TTFT and per-token latency p50/p99, peak RSS,
cache hit rates, the CPU (model, bf16 / AMX / AVX-512 flags), and the issue's targets checked against the
base/PEFT systems of the same rounds (bench/openlora_report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from openlora_measure import add_cpu, cpu_seconds, peak_rss_mb, summarize  # noqa: E402
from openlora_peft import run_peft  # noqa: E402
from openlora_report import cpu_description, summary, targets  # noqa: E402

from hub.openlora.config import serving_dtype  # noqa: E402

DEFAULT_MODEL = REPO / ".openledger-data" / "models" / "smollm2-135m-instruct"
POOL = 32


# -- workload -------------------------------------------------------------------------------------------------
def adapter_id(i: int) -> str:
    return f"bench-{i:04d}"


def make_workload(n_adapters: int, zipf_s: float, n_requests: int, rate: float, vocab: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    weights = [1.0 / (k + 1) ** zipf_s for k in range(n_adapters)]
    order = list(range(n_adapters))
    rng.shuffle(order)  # popularity rank -> adapter id, so popular adapters are not always the low ids
    t = 0.0
    out = []
    for _ in range(n_requests):
        t += rng.expovariate(rate)
        k = rng.choices(range(n_adapters), weights=weights)[0]
        out.append(
            {
                "arrival": t,
                "adapter": adapter_id(order[k]),
                "prompt": [rng.randrange(100, vocab - 100) for _ in range(rng.randint(8, 128))],
                "max_tokens": rng.randint(8, 64),
            }
        )
    return out


def write_adapters(adapters_dir: Path, model_dir: Path, n: int, rank: int, targets: list[str]) -> None:
    """PEFT-format adapters bench-0000.. (random A and B) for the model's Linear layers named in `targets`."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_dir)
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    h, kv, q, inter = cfg.hidden_size, cfg.num_key_value_heads * hd, cfg.num_attention_heads * hd, cfg.intermediate_size
    shapes = {
        "self_attn.q_proj": (h, q),
        "self_attn.k_proj": (h, kv),
        "self_attn.v_proj": (h, kv),
        "self_attn.o_proj": (q, h),
        "mlp.gate_proj": (h, inter),
        "mlp.up_proj": (h, inter),
        "mlp.down_proj": (inter, h),
    }
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": targets,
        "lora_dropout": 0.0,
        "bias": "none",
        "base_model_name_or_path": str(model_dir),
    }
    pool = adapters_dir / "_pool"
    pool.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        d = adapters_dir / adapter_id(i)
        if (d / "adapter_model.safetensors").exists():
            continue
        d.mkdir(parents=True, exist_ok=True)
        (d / "adapter_config.json").write_text(json.dumps(config))
        src = pool / f"w{i % POOL}.safetensors"
        if not src.exists():
            g = torch.Generator().manual_seed(1000 + i)
            tensors = {}
            for layer in range(cfg.num_hidden_layers):
                for mod, (fan_in, fan_out) in shapes.items():
                    if mod.rsplit(".", 1)[-1] in targets:
                        key = f"base_model.model.model.layers.{layer}.{mod}"
                        tensors[f"{key}.lora_A.weight"] = torch.randn(rank, fan_in, generator=g) / fan_in**0.5
                        tensors[f"{key}.lora_B.weight"] = torch.randn(fan_out, rank, generator=g) * 0.01
            save_file(tensors, src)
        (d / "adapter_model.safetensors").symlink_to(src)


# -- systems (child processes) -----------------------------------------------------------------------------------
def run_engine(spec: dict, workload: list[dict], base_only: bool) -> dict[str, Any]:
    from hub.openlora import EngineConfig, OpenLoRAEngine, SamplingParams

    config = EngineConfig(
        max_batch_size=spec["batch"],
        max_slots=spec["slots"],
        max_lora_rank=spec["rank"],
        cpu_cache_bytes=spec["cpu_cache_mb"] << 20,
        device=spec["device"],
        dtype=spec["dtype"],
    )
    engine = OpenLoRAEngine(spec["model_dir"], adapters_dir=spec["adapters_dir"], config=config)
    try:
        warm = [engine.submit(engine.base_model_id, [5] * 16, SamplingParams(max_tokens=4, temperature=0))]
        for h in warm:
            h.result()
        rss_loaded = peak_rss_mb()
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        handles = []
        for req in workload:
            delay = t0 + req["arrival"] - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            model = engine.base_model_id if base_only else req["adapter"]
            params = SamplingParams(max_tokens=req["max_tokens"], temperature=0, ignore_eos=True)
            handles.append((engine.submit(model, req["prompt"], params), t0 + req["arrival"]))
        records = []
        for h, arrival in handles:
            c = h.result()
            records.append(
                {"arrival": arrival, "first": h.first_token_at, "finish": h.finished_at, "tokens": c.completion_tokens}
            )
        out = summarize(records, t0)
        add_cpu(out, cpu0)
        tiers = engine.store.stats.snapshot()
        admitted = tiers["device_hits"] + tiers["cpu_hits"] + tiers["disk_loads"]
        out["cache"] = {
            **tiers,
            "device_hit_rate": tiers["device_hits"] / admitted if admitted else None,
            "cpu_hit_rate": tiers["cpu_hits"] / admitted if admitted else None,
        }
        out["steps"] = engine.scheduler.steps
        sched = engine.scheduler
        out["mean_decode_batch"] = sched.decode_rows / sched.decode_steps if sched.decode_steps else None
        out["rss_after_load_mb"] = rss_loaded
        return out
    finally:
        engine.close()


def child(spec: dict) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    workload = make_workload(
        spec["n_adapters"], spec["zipf"], spec["requests"], spec["rate"], spec["vocab"], spec["seed"]
    )
    system = spec["system"]
    if system in ("engine", "base"):
        out = run_engine(spec, workload, base_only=system == "base")
    else:
        out = run_peft(spec, workload, mixed=system == "peft_mixed")
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# -- driver --------------------------------------------------------------------------------------------------------
def run_child(spec: dict, timeout: float) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TRANSFORMERS_VERBOSITY": "error"}
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/openlora-bench"))
    p.add_argument("--adapters", default="1,16,100,1000", help="comma-separated N")
    p.add_argument("--zipf", default="0,1.2", help="comma-separated Zipf exponents")
    p.add_argument("--systems", default="engine,peft_swap,peft_mixed,base")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--rate", type=float, default=8.0, help="Poisson arrival rate, requests/s")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--slots", type=int, default=32, help="engine device slots and PEFT mixed-batch adapter pool")
    p.add_argument("--cpu-cache-mb", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", help="float32 | bfloat16 | float16 | auto (the server's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=900, help="per system run, seconds")
    p.add_argument("--peft-at", default="", help="comma-separated N where the PEFT systems run (default: every N)")
    p.add_argument("--repeats", type=int, default=1, help="rounds of every system per configuration (interleaved)")
    p.add_argument("--quick", action="store_true", help="N in {1,16,100}, s=1.2, 24 requests")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return
    if args.quick:
        args.adapters, args.zipf, args.requests = "1,16,100", "1.2", 24
    dtype = serving_dtype(args.device, args.dtype)  # auto: what the server runs on this machine
    model_dir = args.model_dir
    if not (model_dir / "config.json").exists():
        sys.path.insert(0, str(REPO / "tests"))
        from tiny_model import build_tiny_model

        model_dir = args.work_dir / "tiny-model"
        if not (model_dir / "config.json").exists():
            build_tiny_model(model_dir)
        print(f"{args.model_dir} not found: benchmarking the tiny test model instead", file=sys.stderr)
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    ns = [int(x) for x in args.adapters.split(",")]
    zipfs = [float(x) for x in args.zipf.split(",")]
    systems = args.systems.split(",")
    targets_list = args.targets.split(",")
    adapters_dir = args.work_dir / f"adapters-{model_dir.name}-r{args.rank}-{'-'.join(t[:1] for t in targets_list)}"
    write_adapters(adapters_dir, model_dir, max(ns), args.rank, targets_list)

    results: list[dict] = []
    started = time.time()
    out_path = args.out or REPO / "bench" / "results" / f"openlora-{args.device.split(':')[0]}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    peft_at = {int(x) for x in args.peft_at.split(",")} if args.peft_at else set(ns)
    for n in ns:
        for s in zipfs:
            if n == 1 and s != zipfs[0]:
                continue  # popularity is meaningless with one adapter
            # Rounds of all systems back to back (interleaved): the machine is shared and noisy.
            run_here = [x for x in systems if n in peft_at or not x.startswith("peft")]
            for round_, system in ((k, x) for k in range(args.repeats) for x in run_here):
                spec = {
                    "system": system,
                    "n_adapters": n,
                    "zipf": s,
                    "requests": args.requests,
                    "rate": args.rate,
                    "rank": args.rank,
                    "targets": targets_list,
                    "batch": args.batch,
                    "slots": args.slots,
                    "cpu_cache_mb": args.cpu_cache_mb,
                    "threads": args.threads,
                    "device": args.device,
                    "dtype": dtype,
                    "seed": args.seed,
                    "vocab": vocab,
                    "model_dir": str(model_dir),
                    "adapters_dir": str(adapters_dir),
                }
                t, load_before = time.time(), os.getloadavg()[0]
                out = run_child(spec, args.timeout)
                row = {"system": system, "n_adapters": n, "zipf": s, "round": round_, **out}
                row["wall_s"] = time.time() - t
                # Other work on a shared host skews timings: keep the 1-minute load average next to each number.
                row["host_load_1m"] = [load_before, os.getloadavg()[0]]
                results.append(row)
                shown = (
                    f"{out['throughput_tok_s']:.1f} tok/s" if "throughput_tok_s" in out else out.get("error", "")[:300]
                )
                print(f"N={n:<5} s={s:<4} round {round_} {system:<11} {shown}", file=sys.stderr, flush=True)
            # Written after every configuration: a long run stopped early still leaves what it measured.
            report = build_report(args, model_dir, dtype, targets_list, results, started)
            out_path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["targets"], indent=2))
    print(f"wrote {out_path}", file=sys.stderr)


def build_report(
    args: argparse.Namespace, model_dir: Path, dtype: str, targets_list: list[str], results: list[dict], started: float
) -> dict[str, Any]:
    import torch
    import transformers

    return {
        "benchmark": "openlora",
        "command": " ".join(["python", "bench/openlora_bench.py", *sys.argv[1:]]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "duration_s": time.time() - started,
        "model": str(model_dir),
        "device": args.device,
        "dtype": dtype,
        "threads": args.threads,
        "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "cpu": cpu_description(),
        "repeats": args.repeats,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "workload": {
            "requests": args.requests,
            "arrival": f"Poisson, {args.rate} req/s",
            "input_tokens": "8-128",
            "output_tokens": "8-64",
            "rank": args.rank,
            "targets": targets_list,
            "batch": args.batch,
            "slots": args.slots,
            "cpu_cache_mb": args.cpu_cache_mb,
        },
        "results": results,
        "summary": summary(results),
        "targets": targets(results),
    }


if __name__ == "__main__":
    main()
