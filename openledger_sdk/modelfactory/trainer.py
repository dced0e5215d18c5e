"""`finetune()`: LoRA fine-tuning of a catalog base model on datanet rows, with transformers + peft + accelerate.

One process, one device: CPU (float32), or one GPU (bf16 autocast where supported). The loop is ours (not
`transformers.Trainer`) so that Stop, live callbacks and the attribution index fit in; it matches Trainer's maths:
AdamW, linear schedule with optional warmup, gradient clipping, and token-weighted loss across gradient
accumulation (`num_items_in_batch`). The data order is a seeded permutation per epoch, and its hash goes into the
manifest with everything else needed to reproduce the run.
"""

from __future__ import annotations

import gc
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from openledger_sdk.catalog import DEFAULT_BASE_MODEL, resolve_base_model, weights_hash
from openledger_sdk.errors import OpenLedgerError
from openledger_sdk.modelfactory.config import IndexSettings, LoraSettings, TrainConfig
from openledger_sdk.modelfactory.data import Example, PreparedData, collate, epoch_order, order_hash, prepare, rows_from
from openledger_sdk.modelfactory.errors import FinetuneError, TrainingOutOfMemory

if TYPE_CHECKING:
    from openledger_sdk.client import Client
    from openledger_sdk.modelfactory.trained import TrainedModel


@dataclass(frozen=True)
class StepInfo:
    """One optimizer step: `loss` is the token-weighted mean response loss of the step's examples."""

    step: int
    total_steps: int
    epoch: int  # 1-based
    loss: float
    lr: float
    tokens: int  # tokens processed so far (padding excluded)
    elapsed: float  # seconds since the first step started


class Callback:
    """Hooks into training; override what you need. Called from the thread that runs `finetune()`."""

    def on_phase(self, phase: str) -> None:
        """ "loading data", "loading model", "training", "evaluating", "indexing", "saving", "done", "stopped"."""

    def on_train_begin(self, info: dict[str, Any]) -> None:
        """`info`: total_steps, epochs, train_rows, eval_rows, device, precision, trainable_params."""

    def on_step(self, info: StepInfo) -> None: ...

    def on_epoch_end(self, epoch: int, loss: float) -> None: ...

    def on_index_progress(self, done: int, total: int) -> None: ...

    def on_train_end(self, model: TrainedModel) -> None: ...


def _emit(callbacks: Sequence[Any], event: str, *args: Any) -> None:
    for callback in callbacks:
        method = getattr(callback, event, None)
        if method is not None:
            method(*args)
        elif callable(callback):  # a plain function receives (event, *args)
            callback(event, *args)


# --- setup ---------------------------------------------------------------------------------------------------------


def resolve_device(device: str) -> tuple[str, str]:
    """("cuda" | "cpu", "bf16" | "no"): bf16 autocast on GPUs that support it, float32 elsewhere."""
    if device not in ("auto", "cpu", "cuda"):
        raise FinetuneError(f"device must be 'auto', 'cpu' or 'cuda' (got {device!r})")
    if device == "cuda" and not torch.cuda.is_available():
        raise FinetuneError("device='cuda' but no GPU is visible to this kernel; use device='auto' or 'cpu'")
    if device == "cpu" or not torch.cuda.is_available():
        return "cpu", "no"
    return "cuda", "bf16" if torch.cuda.is_bf16_supported() else "no"


def _accelerator(cpu: bool, precision: str) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    try:
        return Accelerator(cpu=cpu, mixed_precision=precision)
    except ValueError:
        # accelerate keeps one process-wide state; a kernel that trained on another device/precision before
        # must reset it (there is no public API for that).
        AcceleratorState._reset_state(True)
        return Accelerator(cpu=cpu, mixed_precision=precision)


def _load_rows(datanet: Any, version: Any, rows: Any, client: Client | None) -> tuple[list[dict], list[dict]]:
    """The training rows and their provenance: [{"name", "version", "root", "rows"}] (empty for ad-hoc rows)."""
    if rows is not None:
        data = rows_from(rows)
        if not data:
            raise FinetuneError("the training data has 0 rows: nothing to fine-tune on")
        if datanet is None:
            return data, []
        # Rows handed in directly: we record the datanet they claim to come from, but cannot vouch for its root.
        name = datanet if isinstance(datanet, str) else getattr(datanet, "name", str(datanet))
        return data, [{"name": name, "version": version, "root": None, "rows": len(data), "verified": False}]
    if datanet is None:
        raise FinetuneError("nothing to train on: pass datanet='name' (with version=) or rows= (a Dataset or dicts)")
    handle = datanet
    if isinstance(datanet, str):
        if client is None:
            from openledger_sdk import connect

            client = connect()
        datanets = getattr(client, "datanets", None)
        if datanets is None:
            from openledger_sdk.datanets import Datanets

            datanets = Datanets(client)
        handle = datanets.get(datanet)
    meta = handle.version(version)
    if int(meta.get("rows", meta.get("row_count", 1)) or 0) == 0:
        raise FinetuneError(f"datanet {handle.name!r} version {meta.get('version')} has 0 rows: nothing to train on")
    data = rows_from(handle.load(meta["version"]))
    if not data:
        raise FinetuneError(f"datanet {handle.name!r} version {meta.get('version')} has 0 rows: nothing to train on")
    root = meta.get("merkle_root") or meta.get("root")
    return data, [{"name": handle.name, "version": meta["version"], "root": root, "rows": len(data), "verified": True}]


_weights_hashes: dict[tuple[str, int, float], str] = {}


def _weights_hash(model_dir: Path) -> str:
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


def _check_targets(model: torch.nn.Module, targets: Sequence[str], base: str) -> None:
    if tuple(targets) == ("all-linear",):
        return
    available = linear_module_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise FinetuneError(
            f"target_modules {missing} are not Linear layers of {base}: choose from {', '.join(available)} "
            "(or 'all-linear')"
        )


def _is_oom(err: BaseException) -> bool:
    cuda_oom = getattr(torch.cuda, "OutOfMemoryError", ())
    if isinstance(err, MemoryError | cuda_oom):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def _oom_error(phase: str, device: str, config: TrainConfig) -> TrainingOutOfMemory:
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


def default_output_dir(label: str) -> Path:
    root = Path(os.environ.get("OPENLEDGER_RUNS_DIR") or Path.home() / "openledger-models")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:40] or "run"
    return root / f"{safe}-{stamp}"


# --- evaluation ------------------------------------------------------------------------------------------------------


def mean_response_loss(
    model: torch.nn.Module,
    examples: Sequence[Example],
    *,
    pad_id: int,
    device: Any,
    batch_size: int = 8,
    autocast: Callable[[], Any] | None = None,
) -> tuple[float, int]:
    """Token-weighted mean response loss over `examples` and the number of tokens it covers."""
    from contextlib import nullcontext

    from openledger_sdk.modelfactory.attribution_index import example_losses

    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(examples), batch_size):
                chunk = examples[i : i + batch_size]
                batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
                with (autocast or nullcontext)():
                    losses = example_losses(model, batch)
                counts = [len(ex.response_ids) for ex in chunk]
                total += float((losses.cpu() * torch.tensor(counts, dtype=torch.float32)).sum())
                tokens += sum(counts)
    finally:
        model.train(was_training)
    return total / max(tokens, 1), tokens


def eval_before_after(
    model: Any, examples: Sequence[Example], *, pad_id: int, device: Any, autocast: Any = None
) -> dict[str, Any]:
    """Held-out loss and perplexity of the base model (adapter disabled) and of the fine-tuned model."""
    with model.disable_adapter():
        before, tokens = mean_response_loss(model, examples, pad_id=pad_id, device=device, autocast=autocast)
    after, _ = mean_response_loss(model, examples, pad_id=pad_id, device=device, autocast=autocast)
    return {
        "rows": len(examples),
        "tokens": tokens,
        "loss_before": round(before, 6),
        "loss_after": round(after, 6),
        "perplexity_before": round(math.exp(min(before, 50.0)), 4),
        "perplexity_after": round(math.exp(min(after, 50.0)), 4),
    }


# --- the training loop ---------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    micro_batches: list[list[list[int]]]  # per epoch: lists of example positions
    total_steps: int
    order_hash: str


def _plan(train: Sequence[Example], config: TrainConfig) -> _Plan:
    epochs, orders = [], []
    for epoch in range(config.epochs):
        order = epoch_order(len(train), config.seed, epoch)
        orders.append([train[i].row_id for i in order])
        epochs.append([order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)])
    steps_per_epoch = math.ceil(len(epochs[0]) / config.grad_accum)
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return _Plan(epochs, total, order_hash(orders))


def _train_loop(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    accelerator: Any,
    train: Sequence[Example],
    plan: _Plan,
    config: TrainConfig,
    pad_id: int,
    callbacks: Sequence[Any],
    stop: threading.Event,
    bar: Any,
    capture: Any = None,
) -> dict[str, Any]:
    from contextlib import nullcontext

    from openledger_sdk.modelfactory.data import loss_token_count

    device = accelerator.device
    last_epoch = len(plan.micro_batches)
    step, tokens, started = 0, 0, time.perf_counter()
    step_losses: list[float] = []
    epoch_losses: list[float] = []
    stopped = False
    model.train()
    for epoch, batches in enumerate(plan.micro_batches, start=1):
        epoch_loss_sum, epoch_tokens = 0.0, 0
        for group_start in range(0, len(batches), config.grad_accum):
            if step >= plan.total_steps or stopped:
                break
            group = batches[group_start : group_start + config.grad_accum]
            # Token-weighted loss over the whole accumulation group, as transformers.Trainer does.
            group_items = sum(loss_token_count([train[i] for i in micro]) for micro in group)
            items = torch.tensor(group_items, device=device)
            step_loss = 0.0
            for micro in group:
                if stop.is_set():
                    stopped = True
                    break
                batch = {k: v.to(device) for k, v in collate([train[i] for i in micro], pad_id).items()}
                capturing = capture is not None and epoch == last_epoch
                with capture.capture() if capturing else nullcontext() as hooks, accelerator.autocast():
                    loss = model(**batch, num_items_in_batch=items).loss
                accelerator.backward(loss)
                if capturing:
                    capture.collect(hooks, micro, batch, group_items)
                step_loss += float(loss.detach())
                tokens += int(batch["attention_mask"].sum())
            if stopped:
                optimizer.zero_grad(set_to_none=True)
                break
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            step_losses.append(round(step_loss, 6))
            epoch_loss_sum += step_loss * group_items
            epoch_tokens += group_items
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            info = StepInfo(step, plan.total_steps, epoch, step_loss, scheduler.get_last_lr()[0], tokens,
                            time.perf_counter() - started)  # fmt: skip
            _emit(callbacks, "on_step", info)
        if epoch_tokens:
            epoch_losses.append(round(epoch_loss_sum / epoch_tokens, 6))
            _emit(callbacks, "on_epoch_end", epoch, epoch_losses[-1])
        if stopped or step >= plan.total_steps:
            break
    # Time spent collecting index features (gradients="last_epoch") is the index's, not training's.
    seconds = time.perf_counter() - started - (capture.seconds if capture is not None else 0.0)
    return {
        "steps": step,
        "total_steps": plan.total_steps,
        "epochs_completed": len(epoch_losses) if not stopped else max(len(epoch_losses) - 1, 0),
        "step_losses": step_losses,
        "epoch_losses": epoch_losses,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 2) if seconds > 0 else None,
        "stopped": stopped,
    }


def finetune(
    base: str = DEFAULT_BASE_MODEL,
    datanet: Any = None,
    version: int | str = "latest",
    rows: Any = None,
    *,
    lora: LoraSettings | None = None,
    lr: float = 2e-4,
    epochs: int = 1,
    batch_size: int = 4,
    grad_accum: int = 1,
    max_len: int = 512,
    seed: int = 0,
    eval_split: float = 0.1,
    weight_decay: float = 0.0,
    warmup_ratio: float = 0.0,
    max_grad_norm: float | None = 1.0,
    max_steps: int | None = None,
    index: IndexSettings | bool = True,
    device: str = "auto",
    callbacks: Iterable[Any] = (),
    stop: threading.Event | None = None,
    output_dir: str | Path | None = None,
    client: Client | None = None,
    models_dir: str | Path | None = None,
    progress: bool = True,
) -> TrainedModel:
    """Fine-tune a LoRA adapter and save it with its manifest and attribution index; return the `TrainedModel`.

    Data: `datanet` (a name, fetched through `client` or `connect()`) at `version`, or `rows` (a
    `datasets.Dataset`, DataFrame or list of dicts with prompt/response or text columns, plus `_row_id` /
    `_contributor` when they come from a datanet snapshot). `stop` (a `threading.Event`) ends training after the
    current micro-batch: the partial adapter is saved with `complete: false` and cannot be published.
    """
    index_settings = index if isinstance(index, IndexSettings) else IndexSettings(enabled=bool(index))
    config = TrainConfig(
        base=base,
        lora=lora or LoraSettings(),
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_len=max_len,
        seed=seed,
        eval_split=eval_split,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        max_grad_norm=max_grad_norm,
        max_steps=max_steps,
        index=index_settings,
    )
    config.validate()
    callbacks = list(callbacks)
    stop = stop or threading.Event()
    device_kind, precision = resolve_device(device)
    try:
        base_dir = resolve_base_model(base, Path(models_dir) if models_dir else None)
    except OpenLedgerError as err:
        raise FinetuneError(str(err)) from None

    _emit(callbacks, "on_phase", "loading data")
    data_rows, sources = _load_rows(datanet, version, rows, client)

    from transformers import AutoConfig, AutoTokenizer

    model_config = AutoConfig.from_pretrained(base_dir)
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit and max_len > limit:
        raise FinetuneError(f"max_len={max_len} exceeds the base model's context of {limit} tokens")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prepared = prepare(data_rows, tokenizer, max_len=max_len, eval_split=eval_split, seed=seed)
    plan = _plan(prepared.train, config)

    _emit(callbacks, "on_phase", "loading model")
    phase = "loading the model"
    try:
        peft_model, accelerator, optimizer, scheduler = _build_model(
            base_dir, config, device_kind, precision, plan.total_steps
        )
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        run_info = {
            "total_steps": plan.total_steps,
            "epochs": epochs,
            "train_rows": len(prepared.train),
            "eval_rows": len(prepared.eval),
            "device": device_kind,
            "precision": precision,
            "trainable_params": trainable,
        }
        _emit(callbacks, "on_train_begin", run_info)
        _emit(callbacks, "on_phase", "training")
        phase = "training"
        from tqdm.auto import tqdm

        capture = None
        if index_settings.enabled and index_settings.gradients == "last_epoch":
            from openledger_sdk.modelfactory.attribution_index import TrainingCapture

            index_seed = seed if index_settings.seed is None else index_settings.seed
            capture = TrainingCapture(peft_model, len(prepared.train), index_settings, index_seed, accelerator.device)
        with tqdm(total=plan.total_steps, desc="fine-tuning", unit="step", disable=not progress) as bar:
            training = _train_loop(
                peft_model, optimizer, scheduler, accelerator, prepared.train, plan, config, pad_id, callbacks, stop,
                bar, capture,
            )  # fmt: skip
        evaluation, attribution, spans = None, None, None
        if not training["stopped"]:
            if prepared.eval:
                _emit(callbacks, "on_phase", "evaluating")
                phase = "evaluating"
                evaluation = eval_before_after(
                    peft_model, prepared.eval, pad_id=pad_id, device=accelerator.device, autocast=accelerator.autocast
                )
            if index_settings.enabled:
                _emit(callbacks, "on_phase", "indexing")
                phase = "indexing"
                attribution, spans = _build_indexes(
                    peft_model, prepared, config, pad_id, accelerator, callbacks, sources, capture
                )
    except Exception as err:
        if _is_oom(err):
            _release_memory()
            raise _oom_error(phase, device_kind, config) from err
        raise

    _emit(callbacks, "on_phase", "saving")
    from openledger_sdk.modelfactory.trained import TrainedModel, save_artifacts

    label = sources[0]["name"] if sources else "rows"
    target = Path(output_dir) if output_dir else default_output_dir(label)
    manifest = _manifest(
        config, base, base_dir, sources, prepared, plan, training, evaluation, attribution, device_kind, precision
    )
    manifest = save_artifacts(target, accelerator.unwrap_model(peft_model), base, manifest, attribution, spans)
    trained = TrainedModel(
        model=accelerator.unwrap_model(peft_model),
        tokenizer=tokenizer,
        config=config,
        manifest=manifest,
        path=target,
        held_out=prepared.eval,
        train_examples=prepared.train,
        index=attribution,
        spans=spans,
        device=accelerator.device,
        autocast=accelerator.autocast,
    )
    _emit(callbacks, "on_phase", "stopped" if training["stopped"] else "done")
    _emit(callbacks, "on_train_end", trained)
    return trained


def _build_model(
    base_dir: Path, config: TrainConfig, device: str, precision: str, total_steps: int
) -> tuple[Any, Any, Any, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, get_linear_schedule_with_warmup

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    _check_targets(model, config.lora.target_modules, config.base)
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
    accelerator = _accelerator(cpu=device == "cpu", precision=precision)
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


def _build_indexes(
    model: Any,
    prepared: PreparedData,
    config: TrainConfig,
    pad_id: int,
    accelerator: Any,
    callbacks: Sequence[Any],
    sources: list[dict],
    capture: Any = None,
) -> tuple[Any, Any]:
    from openledger_sdk.modelfactory.attribution_index import build_index
    from openledger_sdk.modelfactory.span_index import SpanIndex

    settings = config.index
    seed = config.seed if settings.seed is None else settings.seed
    # Features captured in training's backward passes are in training's precision: the rest must match them.
    wanted = settings.precision if settings.gradients == "final" else "training"
    precision = index_precision(wanted, accelerator)
    attribution = build_index(
        model,
        prepared.train,
        settings,
        seed=seed,
        pad_id=pad_id,
        device=accelerator.device,
        precision=precision,
        progress=lambda done, total: _emit(callbacks, "on_index_progress", done, total),
        extra_meta={"datanets": sources, "base_model": config.base},
        captured=capture,
    )
    spans, started = None, time.perf_counter()
    if settings.span_index:
        spans = SpanIndex.build([ex.response_ids for ex in prepared.train], [ex.row_id for ex in prepared.train])
    # The suffix array is part of the index's cost; recorded beside the gradient index's own build time.
    attribution.meta["span_build_seconds"] = round(time.perf_counter() - started, 3)
    return attribution, spans


def _manifest(
    config: TrainConfig,
    base: str,
    base_dir: Path,
    sources: list[dict],
    prepared: PreparedData,
    plan: _Plan,
    training: dict[str, Any],
    evaluation: dict[str, Any] | None,
    attribution: Any,
    device: str,
    precision: str,
) -> dict[str, Any]:
    from openledger_sdk.modelfactory.manifest import library_versions

    stopped = training["stopped"]
    training = {key: value for key, value in training.items() if key != "stopped"}
    index_summary = None
    if attribution is not None:
        meta = attribution.meta
        index_summary = {
            key: meta[key]
            for key in (
                "projection",
                "gradients",
                "damping",
                "lambda",
                "examples",
                "build_seconds",
                "seconds_per_1k_examples",
                "precision",
                "span_build_seconds",
            )
        }
        index_summary["bytes_per_example"] = meta["bytes_per_example"]
    return {
        "complete": not stopped,
        "stop_reason": f"stopped by the user at step {training['steps']} of {training['total_steps']}"
        if stopped
        else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": {
            "id": base,
            "weights_sha256": _weights_hash(base_dir),
            "architecture": (_read_json(base_dir / "config.json").get("architectures") or [None])[0],
        },
        "datanets": sources,
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        "seed": config.seed,
        "data": {
            "format": prepared.format,
            "fields": list(prepared.fields),
            "template": prepared.template,
            "rows_sha256": prepared.rows_sha256,
            "train_rows": len(prepared.train),
            "eval_rows": len(prepared.eval),
            "skipped_rows": prepared.skipped,
            "order_hash": plan.order_hash,
        },
        "training": {**training, "device": device, "precision": precision},
        "eval": evaluation,
        "attribution_index": index_summary,
        "libraries": library_versions(),
    }


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
