"""The optimisation loop of `finetune()` over the seeded step plan (step_plan.py): AdamW steps with token-weighted
loss across gradient accumulation, Stop between micro-batches, live callbacks, optional index feature capture."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import torch

from openledger_sdk.modelfactory.callbacks import StepInfo, emit
from openledger_sdk.modelfactory.config import TrainConfig
from openledger_sdk.modelfactory.data import Example, collate
from openledger_sdk.modelfactory.step_plan import TrainingPlan, plan_steps

__all__ = ["TrainingPlan", "plan_steps", "train_loop"]


def train_loop(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    accelerator: Any,
    train: Sequence[Example],
    plan: TrainingPlan,
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
            emit(callbacks, "on_step", info)
        if epoch_tokens:
            epoch_losses.append(round(epoch_loss_sum / epoch_tokens, 6))
            emit(callbacks, "on_epoch_end", epoch, epoch_losses[-1])
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
