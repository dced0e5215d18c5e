"""`finetune()`: LoRA fine-tuning of a catalog base model on datanet rows, with transformers + peft + accelerate.

One process, one device: CPU (float32), or one GPU (bf16 autocast where supported). The loop is ours (not
`transformers.Trainer`) so that Stop, live callbacks and the attribution index fit in; it matches Trainer's maths:
AdamW, linear schedule with optional warmup, gradient clipping, and token-weighted loss across gradient
accumulation (`num_items_in_batch`). The data order is a seeded permutation per epoch, and its hash goes into the
manifest with everything else needed to reproduce the run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openledger_sdk.catalog import DEFAULT_BASE_MODEL, resolve_base_model
from openledger_sdk.errors import OpenLedgerError
from openledger_sdk.modelfactory.callbacks import Callback, StepInfo, emit
from openledger_sdk.modelfactory.config import IndexSettings, LoraSettings, TrainConfig
from openledger_sdk.modelfactory.data import PreparedData, prepare, rows_from
from openledger_sdk.modelfactory.errors import FinetuneError
from openledger_sdk.modelfactory.evaluation import eval_before_after
from openledger_sdk.modelfactory.model_setup import (
    build_model,
    index_precision,
    is_oom,
    oom_error,
    release_memory,
    resolve_device,
)
from openledger_sdk.modelfactory.run_manifest import run_manifest
from openledger_sdk.modelfactory.train_loop import plan_steps, train_loop
from openledger_sdk.modelfactory.training_fee import StepCounter, TrainingPayment, paying_client, training_charge

__all__ = ["Callback", "StepInfo", "finetune", "resolve_device"]

if TYPE_CHECKING:
    from openledger_sdk.client import Client
    from openledger_sdk.modelfactory.trained import TrainedModel


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


def default_output_dir(label: str) -> Path:
    root = Path(os.environ.get("OPENLEDGER_RUNS_DIR") or Path.home() / "openledger-models")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:40] or "run"
    return root / f"{safe}-{stamp}"


# --- the run ------------------------------------------------------------------------------------------------------


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

    emit(callbacks, "on_phase", "loading data")
    payer = paying_client(client, fetches_datanet=rows is None and isinstance(datanet, str))
    data_rows, sources = _load_rows(datanet, version, rows, payer or client)

    from transformers import AutoConfig, AutoTokenizer

    model_config = AutoConfig.from_pretrained(base_dir)
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit and max_len > limit:
        raise FinetuneError(f"max_len={max_len} exceeds the base model's context of {limit} tokens")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prepared = prepare(data_rows, tokenizer, max_len=max_len, eval_split=eval_split, seed=seed)
    plan = plan_steps(prepared.train, config)
    # On a hub the run's maximum cost is held from the user's wallet before any work (refused: nothing runs).
    payment = TrainingPayment.reserve(payer, config, sources, data_rows, plan.total_steps) if payer else None
    steps_done = StepCounter()
    callbacks.append(steps_done)

    emit(callbacks, "on_phase", "loading model")
    phase = "loading the model"
    try:
        peft_model, accelerator, optimizer, scheduler = build_model(
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
        emit(callbacks, "on_train_begin", run_info)
        emit(callbacks, "on_phase", "training")
        phase = "training"
        from tqdm.auto import tqdm

        capture = None
        if index_settings.enabled and index_settings.gradients == "last_epoch":
            from openledger_sdk.modelfactory.attribution_index import TrainingCapture

            index_seed = seed if index_settings.seed is None else index_settings.seed
            capture = TrainingCapture(peft_model, len(prepared.train), index_settings, index_seed, accelerator.device)
        with tqdm(total=plan.total_steps, desc="fine-tuning", unit="step", disable=not progress) as bar:
            training = train_loop(
                peft_model, optimizer, scheduler, accelerator, prepared.train, plan, config, pad_id, callbacks, stop,
                bar, capture,
            )  # fmt: skip
        if payment is not None:
            emit(callbacks, "on_phase", "paying for training")
            payment.finish("stopped" if training["stopped"] else "complete", training["steps"], training["tokens"])
        evaluation, attribution, spans = None, None, None
        if not training["stopped"]:
            if prepared.eval:
                emit(callbacks, "on_phase", "evaluating")
                phase = "evaluating"
                evaluation = eval_before_after(
                    peft_model, prepared.eval, pad_id=pad_id, device=accelerator.device, autocast=accelerator.autocast
                )
            if index_settings.enabled:
                emit(callbacks, "on_phase", "indexing")
                phase = "indexing"
                attribution, spans = _build_indexes(
                    peft_model, prepared, config, pad_id, accelerator, callbacks, sources, capture
                )
    except BaseException as err:
        if payment is not None:
            payment.fail_quietly(steps_done.steps)  # charged for the steps done; the rest of the hold is released
        if is_oom(err):
            release_memory()
            raise oom_error(phase, device_kind, config) from err
        raise

    emit(callbacks, "on_phase", "saving")
    from openledger_sdk.modelfactory.trained import TrainedModel, save_artifacts

    label = sources[0]["name"] if sources else "rows"
    target = Path(output_dir) if output_dir else default_output_dir(label)
    manifest = run_manifest(
        config, base, base_dir, sources, prepared, plan, training, evaluation, attribution, device_kind, precision
    )
    manifest["training_charge"] = training_charge(payment)
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
    emit(callbacks, "on_phase", "stopped" if training["stopped"] else "done")
    emit(callbacks, "on_train_end", trained)
    return trained


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
        progress=lambda done, total: emit(callbacks, "on_index_progress", done, total),
        extra_meta={"datanets": sources, "base_model": config.base},
        captured=capture,
    )
    spans, started = None, time.perf_counter()
    if settings.span_index:
        spans = SpanIndex.build([ex.response_ids for ex in prepared.train], [ex.row_id for ex in prepared.train])
    # The suffix array is part of the index's cost; recorded beside the gradient index's own build time.
    attribution.meta["span_build_seconds"] = round(time.perf_counter() - started, 3)
    return attribution, spans
