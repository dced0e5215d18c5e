"""Speed of tier-1 attribution against synthetic indexes of growing size (see attribution_eval.py)."""

from __future__ import annotations

import argparse
import copy
import math
import time
from typing import Any

import numpy as np
import torch

from openledger_sdk.hardware import native_bfloat16
from openledger_sdk.modelfactory.attribution_index import FORMAT as INDEX_FORMAT
from openledger_sdk.modelfactory.attribution_index import (
    AttributionIndex,
    lora_layout,
    store_frozen_linears_in_bfloat16,
)
from openledger_sdk.modelfactory.attribution_query import Attributor
from openledger_sdk.modelfactory.span_index import SpanIndex


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
