"""Batched multi-adapter LoRA layers: one base matmul for the whole batch plus a gathered per-row LoRA delta.

Every wrapped `nn.Linear` keeps, per device slot s, `A[s]` = lora_A zero-padded to the slot rank R ([R, in]) and
`B[s]` = (scaling * lora_B)^T zero-padded ([R, out]). Slot S (one past the last real slot) stays zero: rows that
use the base model point there. For a batch whose row i uses slot ids[i]:

    y = x W^T (+ b)                                  # base layer, once for all rows
    y += bmm(bmm(x, A[ids]^T), B[ids])               # BGMV-style gather + batched matmul, no loop over adapters

Zero padding keeps results exact, and a batch only pays for the largest rank among its own slots (`rank`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LoRABatch:
    """Which slot each row of the current forward uses; shared by every LoRA layer of the model."""

    slot_ids: torch.Tensor  # [n] long, on the model's device; null slot for base-model rows
    rank: int  # largest rank among the batch's slots (0: no adapter in the batch)
    slots: frozenset[int]  # the distinct real slots in the batch
    uniform_slot: int | None  # the one slot every row uses, if so (no gather needed)


class LoRAContext:
    """Holds the batch description for the forward in progress (set by the runner, read by the layers)."""

    def __init__(self) -> None:
        self.batch: LoRABatch | None = None


class BatchedLoRALinear(nn.Module):
    """A base `nn.Linear` plus S stacked LoRA slots. Slot tensors are allocated on first use, so modules that
    no resident adapter targets cost no memory."""

    def __init__(self, base: nn.Linear, num_slots: int, max_rank: int, context: LoRAContext) -> None:
        super().__init__()
        self.base = base
        self.num_slots = num_slots
        self.max_rank = max_rank
        self.context = context
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.A: torch.Tensor | None = None  # [S + 1, R, in]
        self.B: torch.Tensor | None = None  # [S + 1, R, out], scaling folded in
        self.active_slots: set[int] = set()  # slots whose adapter targets this module

    def _allocate(self) -> None:
        w = self.base.weight
        shape = (self.num_slots + 1, self.max_rank)
        self.A = torch.zeros(*shape, self.in_features, dtype=w.dtype, device=w.device)
        self.B = torch.zeros(*shape, self.out_features, dtype=w.dtype, device=w.device)

    def set_slot(self, slot: int, a: torch.Tensor, b_t: torch.Tensor) -> None:
        """Write an adapter's A [r, in] and scaled B^T [r, out] into `slot`, zero-padding ranks r..R."""
        if self.A is None:
            self._allocate()
        assert self.A is not None and self.B is not None
        r = a.shape[0]
        self.A[slot, :r].copy_(a, non_blocking=True)
        self.A[slot, r:].zero_()
        self.B[slot, :r].copy_(b_t, non_blocking=True)
        self.B[slot, r:].zero_()
        self.active_slots.add(slot)

    def clear_slot(self, slot: int) -> None:
        if slot in self.active_slots:
            assert self.A is not None and self.B is not None
            self.A[slot].zero_()
            self.B[slot].zero_()
            self.active_slots.discard(slot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        batch = self.context.batch
        if batch is None or batch.rank == 0 or self.active_slots.isdisjoint(batch.slots):
            return y
        assert self.A is not None and self.B is not None
        r = batch.rank
        if batch.uniform_slot is not None:
            s = batch.uniform_slot
            return y.add_((x @ self.A[s, :r].T) @ self.B[s, :r])
        n = x.shape[0]
        a = self.A[:, :r].index_select(0, batch.slot_ids)  # [n, r, in]
        b = self.B[:, :r].index_select(0, batch.slot_ids)  # [n, r, out]
        x3 = x.reshape(n, -1, self.in_features)
        delta = torch.bmm(torch.bmm(x3, a.transpose(1, 2)), b)
        return y.add_(delta.view(y.shape))


class LoRALayers:
    """All batched LoRA layers of one model, by PEFT module name (e.g. `model.layers.0.self_attn.q_proj`)."""

    def __init__(self, layers: dict[str, BatchedLoRALinear], context: LoRAContext, num_slots: int, max_rank: int):
        self.layers = layers
        self.context = context
        self.num_slots = num_slots
        self.max_rank = max_rank
        self.null_slot = num_slots

    def shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each wrappable module, for validating adapters."""
        return {name: (m.in_features, m.out_features) for name, m in self.layers.items()}

    def load_slot(self, slot: int, modules: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Make `slot` hold exactly this adapter: write its modules, clear modules the previous occupant had."""
        for name, layer in self.layers.items():
            weights = modules.get(name)
            if weights is None:
                layer.clear_slot(slot)
            else:
                layer.set_slot(slot, *weights)

    def clear_slot(self, slot: int) -> None:
        for layer in self.layers.values():
            layer.clear_slot(slot)

    def make_batch(
        self, row_slots: Iterable[int | None], slot_ranks: dict[int, int], device: torch.device
    ) -> LoRABatch:
        """Describe a batch from each row's slot (None: base model)."""
        ids = [self.null_slot if s is None else s for s in row_slots]
        real = frozenset(s for s in ids if s != self.null_slot)
        rank = max((slot_ranks[s] for s in real), default=0)
        uniform = ids[0] if len(real) == 1 and all(s == ids[0] for s in ids) else None
        slot_ids = torch.tensor(ids, dtype=torch.long).to(device, non_blocking=True)
        return LoRABatch(slot_ids=slot_ids, rank=rank, slots=real, uniform_slot=uniform)

    def nbytes(self) -> int:
        return sum(
            (m.A.numel() * m.A.element_size() + m.B.numel() * m.B.element_size()) if m.A is not None else 0
            for m in self.layers.values()
        )


def install_lora_layers(model: nn.Module, num_slots: int, max_rank: int) -> LoRALayers:
    """Wrap every `nn.Linear` of the model except the output embedding (lm_head) in a `BatchedLoRALinear`."""
    context = LoRAContext()
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module is not output and name
    ]
    layers: dict[str, BatchedLoRALinear] = {}
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        wrapped = BatchedLoRALinear(module, num_slots, max_rank, context)
        setattr(parent, child, wrapped)
        layers[name] = wrapped
    return LoRALayers(layers, context, num_slots, max_rank)
