"""The seeded step plan of a run (which examples each micro-batch takes, epoch by epoch) and what each optimizer step
trains in tokens. No torch: the platform computes the same plan to price a run without trusting the kernel."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from openledger_sdk.modelfactory.config import TrainConfig
from openledger_sdk.modelfactory.data import Example, epoch_order, order_hash


@dataclass
class TrainingPlan:
    micro_batches: list[list[list[int]]]  # per epoch: lists of example positions
    total_steps: int
    order_hash: str


def plan_steps(train: Sequence[Example], config: TrainConfig) -> TrainingPlan:
    epochs, orders = [], []
    for epoch in range(config.epochs):
        order = epoch_order(len(train), config.seed, epoch)
        orders.append([train[i].row_id for i in order])
        epochs.append([order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)])
    steps_per_epoch = math.ceil(len(epochs[0]) / config.grad_accum)
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return TrainingPlan(epochs, total, order_hash(orders))


def step_tokens(train: Sequence[Example], plan: TrainingPlan, grad_accum: int) -> list[int]:
    """Tokens (padding excluded, as the loop counts them) that each planned optimizer step trains, in order."""
    tokens: list[int] = []
    for batches in plan.micro_batches:
        for start in range(0, len(batches), grad_accum):
            if len(tokens) >= plan.total_steps:
                return tokens
            group = batches[start : start + grad_accum]
            tokens.append(sum(len(train[i].input_ids) for micro in group for i in micro))
    return tokens
