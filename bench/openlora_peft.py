"""The PEFT baselines of the OpenLoRA benchmark: one adapter active and swapped per batch, or mixed batches over a
pool of loaded adapters (`generate(adapter_names=...)`); static batches, in the benchmark's dtype."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from openlora_measure import add_cpu, cpu_seconds, peak_rss_mb, summarize


class _StepClock:
    """A StoppingCriteria that only records when each new token of a `generate` call was produced."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def run_peft(spec: dict, workload: list[dict], mixed: bool) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteriaList

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec["dtype"]]
    device = torch.device(spec["device"])
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    base = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=dtype).to(device).eval()
    lcfg = LoraConfig(r=spec["rank"], lora_alpha=2 * spec["rank"], target_modules=spec["targets"], lora_dropout=0.0)
    n_slots = spec["slots"] if mixed else 1
    model = get_peft_model(base, lcfg, adapter_name="s0")
    for s in range(1, n_slots):
        model.add_adapter(f"s{s}", lcfg)
    model.eval()
    lora_modules = {
        name.removeprefix("base_model.model."): m for name, m in model.named_modules() if hasattr(m, "lora_A")
    }
    slot_of: dict[str, str] = {}
    last_used: dict[str, float] = {}
    stats = {"loads": 0, "hits": 0}

    def ensure(adapter: str, busy: set[str]) -> str:
        """Put the adapter's weights into a PEFT adapter slot (read from disk: PEFT has no CPU tier)."""
        if adapter in slot_of:
            stats["hits"] += 1
            last_used[slot_of[adapter]] = time.perf_counter()
            return slot_of[adapter]
        used = set(slot_of.values())
        free = [f"s{s}" for s in range(n_slots) if f"s{s}" not in used]
        if free:
            slot = free[0]
        else:
            victims = [(last_used[s], s) for s in used if s not in busy]
            slot = min(victims)[1]
            del slot_of[next(a for a, s in slot_of.items() if s == slot)]
        weights = load_file(Path(spec["adapters_dir"]) / adapter / "adapter_model.safetensors")
        with torch.no_grad():
            for key, t in weights.items():
                mod_name, _, rest = key.removeprefix("base_model.model.").partition(".lora_")
                which = rest.split(".")[0]
                target = (lora_modules[mod_name].lora_A if which == "A" else lora_modules[mod_name].lora_B)[slot]
                target.weight.copy_(t.to(dtype))
        stats["loads"] += 1
        slot_of[adapter] = slot
        last_used[slot] = time.perf_counter()
        return slot

    def generate(batch: list[dict], names: list[str] | None) -> _StepClock:
        width = max(len(r["prompt"]) for r in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):  # left padding for decoder-only generate
            ids[i, width - len(r["prompt"]) :] = torch.tensor(r["prompt"])
            mask[i, width - len(r["prompt"]) :] = 1
        clock = _StepClock()
        n_new = max(r["max_tokens"] for r in batch)
        kwargs = {"adapter_names": names} if names is not None else {}
        with torch.no_grad():
            model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                do_sample=False,
                pad_token_id=pad,
                stopping_criteria=StoppingCriteriaList([clock]),
                **kwargs,
            )
        return clock

    # Warm up, then serve the open-loop workload with static batches.
    model.set_adapter("s0")
    generate([{"prompt": [5] * 16, "max_tokens": 4}], None)
    rss_loaded = peak_rss_mb()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    pending = list(workload)
    records = []
    while pending:
        now = time.perf_counter() - t0
        ready = [r for r in pending if r["arrival"] <= now]
        if not ready:
            time.sleep(max(0.0, pending[0]["arrival"] - now))
            continue
        if mixed:
            batch, adapters = [], []
            for r in ready:
                if len(batch) >= spec["batch"]:
                    break
                if r["adapter"] not in adapters and len(adapters) >= n_slots:
                    continue
                if r["adapter"] not in adapters:
                    adapters.append(r["adapter"])
                batch.append(r)
            busy: set[str] = set()
            for a in adapters:
                busy.add(ensure(a, busy))
            names = [slot_of[r["adapter"]] for r in batch]
        else:
            first = ready[0]["adapter"]
            batch = [r for r in ready if r["adapter"] == first][: spec["batch"]]
            ensure(first, set())
            model.set_adapter(slot_of[first])
            names = None
        clock = generate(batch, names)
        for r in batch:
            pending.remove(r)
            records.append(
                {
                    "arrival": t0 + r["arrival"],
                    "first": clock.times[0],
                    "finish": clock.times[r["max_tokens"] - 1],
                    "tokens": r["max_tokens"],
                }
            )
    out = summarize(records, t0)
    add_cpu(out, cpu0)
    total = stats["loads"] + stats["hits"]
    out["cache"] = {**stats, "hit_rate": stats["hits"] / total if total else None}
    out["rss_after_load_mb"] = rss_loaded
    return out
