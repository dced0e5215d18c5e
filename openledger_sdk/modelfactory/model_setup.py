"""Setting up a fine-tuning run: the device and precision, the PEFT model with its optimizer and schedule, target
checks, and clear out-of-memory errors."""

from __future__ import annotations

import gc
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from openledger_sdk.catalog import weights_hash
from openledger_sdk.modelfactory.config import TrainConfig
from openledger_sdk.modelfactory.errors import FinetuneError, TrainingOutOfMemory


def resolve_device(device: str) -> tuple[str, str]:
    """("cuda" | "cpu", "bf16" | "no"): bf16 autocast on GPUs that support it, float32 elsewhere."""
    if device not in ("auto", "cpu", "cuda"):
        raise FinetuneError(f"device must be 'auto', 'cpu' or 'cuda' (got {device!r})")
    if device == "cuda" and not torch.cuda.is_available():
        raise FinetuneError("device='cuda' but no GPU is visible to this kernel; use device='auto' or 'cpu'")
    if device == "cpu" or not torch.cuda.is_available():
        return "cpu", "no"
    return "cuda", "bf16" if torch.cuda.is_bf16_supported() else "no"


def make_accelerator(cpu: bool, precision: str) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    try:
        return Accelerator(cpu=cpu, mixed_precision=precision)
    except ValueError:
        # accelerate keeps one process-wide state; a kernel that trained on another device/precision before
        # must reset it (there is no public API for that).
        AcceleratorState._reset_state(True)
        return Accelerator(cpu=cpu, mixed_precision=precision)


_weights_hashes: dict[tuple[str, int, float], str] = {}


def cached_weights_hash(model_dir: Path) -> str:
    # Hashing 0.5 GB takes a second or two: once per file version per kernel is enough.
    stat = (model_dir / "model.safetensors").stat()
    key = (str(model_dir.resolve()), stat.st_size, stat.st_mtime)
    if key not in _weights_hashes:
        _weights_hashes[key] = weights_hash(model_dir)
    return _weights_hashes[key]


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """The distinct short names of Linear layers LoRA can target (the output head excluded)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head and name
    }
    return sorted(names)


def check_targets(model: torch.nn.Module, targets: Sequence[str], base: str) -> None:
    if tuple(targets) == ("all-linear",):
        return
    available = linear_module_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise FinetuneError(
            f"target_modules {missing} are not Linear layers of {base}: choose from {', '.join(available)} "
            "(or 'all-linear')"
        )


def is_oom(err: BaseException) -> bool:
    cuda_oom = getattr(torch.cuda, "OutOfMemoryError", ())
    if isinstance(err, MemoryError | cuda_oom):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def oom_error(phase: str, device: str, config: TrainConfig) -> TrainingOutOfMemory:
    effective = config.batch_size * config.grad_accum
    hint = (
        f"lower the attribution index batch size (IndexSettings(batch_size={max(1, config.index.batch_size // 2)}))"
        if phase == "indexing"
        else f"use a smaller batch_size (and raise grad_accum to keep the effective batch of {effective})"
    )
    return TrainingOutOfMemory(
        f"out of memory while {phase} on {device} (batch_size={config.batch_size}, max_len={config.max_len}, "
        f"grad_accum={config.grad_accum}): {hint}, or a smaller max_len, or a smaller base model"
    )


def build_model(
    base_dir: Path, config: TrainConfig, device: str, precision: str, total_steps: int
) -> tuple[Any, Any, Any, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, get_linear_schedule_with_warmup

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    check_targets(model, config.lora.target_modules, config.base)
    targets: Any = "all-linear" if config.lora.target_modules == ("all-linear",) else list(config.lora.target_modules)
    torch.manual_seed(config.seed)  # LoRA A initialisation and dropout masks
    lora_config = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora_config)
    accelerator = make_accelerator(cpu=device == "cpu", precision=precision)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = math.ceil(total_steps * config.warmup_ratio)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    peft_model, optimizer, scheduler = accelerator.prepare(peft_model, optimizer, scheduler)
    return peft_model, accelerator, optimizer, scheduler


def index_precision(precision: str, accelerator: Any) -> str:
    """What the index's gradient pass computes in ("float32" or "bfloat16") for IndexSettings.precision."""
    from openledger_sdk.hardware import native_bfloat16

    if precision == "bfloat16" or (precision == "auto" and native_bfloat16(accelerator.device.type)):
        return "bfloat16"
    # "training", or "auto" without native bf16: training's own precision
    return "bfloat16" if accelerator.mixed_precision == "bf16" else "float32"


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
