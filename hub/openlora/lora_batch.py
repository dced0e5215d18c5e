"""Batched multi-adapter LoRA layers: one base matmul for the whole batch plus each token's own LoRA delta.

Every wrapped `nn.Linear` keeps, per device slot s, `A[s]` = lora_A zero-padded to the slot rank R ([R, in]) and
`B[s]` = (scaling * lora_B)^T zero-padded ([R, out]). Slot S (one past the last real slot) stays zero: rows that
use the base model point there. The layer sees the batch's tokens flattened to [T, in] and adds the deltas in
two shapes, both exact (zero padding) and paying only for the largest rank among the batch's own slots:

    y = x W^T (+ b)                                        # base layer, once for all tokens
    rows (decode tokens, or whole padded rows):            # BGMV: gather each row's slot, batched matmul
        y[:lead] += bmm(bmm(x_rows, A[ids]^T), B[ids])     #   (one-token rows: the B side is an embedding_bag,
                                                           #    weighted sums of B rows read in place, no copy)
    rows sharing few adapters (decode, D distinct):        # gather each adapter once, two dense matmuls
        y[:lead] += ((x_rows @ A[d]^T) * onehot) @ B[d]    #   (onehot: which of the D a row uses)
    segments (packed prompts, one adapter per run):        # SGMV: one matmul pair per contiguous run
        y[a:b] += (x[a:b] @ A[s]^T) @ B[s]

A prompt's tokens share one adapter, so a packed prompt is one segment: a per-token gather would copy the
adapter's matrices once per token, a segment reads them once. Likewise, when many decode rows share few adapters
(popular ones), copying each adapter once beats copying it per row; the dense matmuls then cost rows x D x rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hub.openlora.cpu_matmul import PackedLinear, can_prepack

Segment = tuple[int, int, int]  # (first token, end token, slot) of a run of tokens that use one slot


@dataclass(frozen=True)
class LoRABatch:
    """Which slot each token of the current forward uses; shared by every LoRA layer of the model."""

    rank: int  # largest rank among the batch's slots (0: no adapter in the batch)
    slots: frozenset[int]  # the distinct real slots in the batch
    uniform_slot: int | None = None  # the one slot every token uses, if so (one plain matmul pair)
    row_ids: torch.Tensor | None = None  # [rows] long: slot of each leading row (null slot for base rows)
    lead_tokens: int = 0  # tokens covered by `row_ids` (rows x tokens per row), at the start of the batch
    b_bags: tuple[torch.Tensor, torch.Tensor] | None = None  # one-token rows: (B row index, offsets) per row
    distinct: torch.Tensor | None = None  # compact mode for one-token rows: [D] slots used by the rows ...
    onehot: torch.Tensor | None = None  # ... and [rows, D, 1] which one each row uses (all zero: base model)
    segments: tuple[Segment, ...] = ()  # runs after the leading rows; base-model runs are left out


class LoRAContext:
    """Holds the batch description for the forward in progress (set by the runner, read by the layers)."""

    def __init__(self) -> None:
        self.batch: LoRABatch | None = None


class BatchedLoRALinear(nn.Module):
    """A base `nn.Linear` plus S stacked LoRA slots. Slot tensors are allocated on first use, so modules that
    no resident adapter targets cost no memory."""

    def __init__(
        self, base: nn.Linear, num_slots: int, max_rank: int, context: LoRAContext, slot_dtype: torch.dtype
    ) -> None:
        super().__init__()
        self.base = base
        self.slot_dtype = slot_dtype
        self.num_slots = num_slots
        self.max_rank = max_rank
        self.context = context
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.A: torch.Tensor | None = None  # [S + 1, R, in]
        self.B: torch.Tensor | None = None  # [S + 1, R, out], scaling folded in
        self.active_slots: set[int] = set()  # slots whose adapter targets this module
        self.packed: PackedLinear | None = None  # the base weight in oneDNN's layout (`prepack_base_weights`)

    def _allocate(self) -> None:
        device = self.base.weight.device
        shape = (self.num_slots + 1, self.max_rank)
        self.A = torch.zeros(*shape, self.in_features, dtype=self.slot_dtype, device=device)
        self.B = torch.zeros(*shape, self.out_features, dtype=self.slot_dtype, device=device)

    def set_slot(self, slot: int, a: torch.Tensor, b_t: torch.Tensor) -> None:
        """Write an adapter's A [r, in] and scaled B^T [r, out] into `slot`, zero-padding ranks r..R."""
        if self.A is None:
            self._allocate()
        assert self.A is not None and self.B is not None
        r = a.shape[0]
        self.A[slot, :r].copy_(a, non_blocking=True)
        self.B[slot, :r].copy_(b_t, non_blocking=True)
        if r < self.max_rank:
            self.A[slot, r:].zero_()
            self.B[slot, r:].zero_()
        self.active_slots.add(slot)

    def clear_slot(self, slot: int) -> None:
        if slot in self.active_slots:
            assert self.A is not None and self.B is not None
            self.A[slot].zero_()
            self.B[slot].zero_()
            self.active_slots.discard(slot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Not self.base(x): one module call less per projection.
        y = self.packed(x) if self.packed is not None else F.linear(x, self.base.weight, self.base.bias)
        batch = self.context.batch
        if batch is None or batch.rank == 0 or self.active_slots.isdisjoint(batch.slots):
            return y
        x2 = x.reshape(-1, self.in_features).to(self.slot_dtype)  # no copy unless the slots' dtype differs
        y2 = y.view(-1, self.out_features)  # deltas are added in place, rounded to y's dtype
        if batch.uniform_slot is not None:
            self._add_segment(x2, y2, batch.uniform_slot, batch.rank)
            return y
        if batch.distinct is not None:
            assert batch.onehot is not None
            self._add_shared(x2[: batch.lead_tokens], y2[: batch.lead_tokens], batch.distinct, batch.onehot, batch.rank)
        elif batch.row_ids is not None:
            self._add_rows(x2[: batch.lead_tokens], y2[: batch.lead_tokens], batch, batch.row_ids)
        for start, end, slot in batch.segments:
            if slot in self.active_slots:
                self._add_segment(x2[start:end], y2[start:end], slot, batch.rank)
        return y

    def _add_segment(self, x: torch.Tensor, y: torch.Tensor, slot: int, r: int) -> None:
        assert self.A is not None and self.B is not None
        y.add_((x @ self.A[slot, :r].T) @ self.B[slot, :r])

    def _add_rows(self, x: torch.Tensor, y: torch.Tensor, batch: LoRABatch, ids: torch.Tensor) -> None:
        """Per-row gather: row i (x viewed as [rows, tokens per row, in]) uses slot ids[i]."""
        assert self.A is not None and self.B is not None
        n, r = ids.shape[0], batch.rank
        a = self.A[:, :r].index_select(0, ids)  # [n, r, in]
        xa = torch.bmm(x.view(n, -1, self.in_features), a.transpose(1, 2))  # [n, tokens, r]
        if batch.b_bags is not None:  # y_i += sum_k xa[i, k] * B[ids[i], k]
            index, offsets = batch.b_bags
            flat_b = self.B.view(-1, self.out_features)
            y.add_(F.embedding_bag(index, flat_b, offsets, mode="sum", per_sample_weights=xa.view(-1)))
            return
        b = self.B[:, :r].index_select(0, ids)  # [n, r, out]
        y.add_(torch.bmm(xa, b).view(y.shape))

    def _add_shared(self, x: torch.Tensor, y: torch.Tensor, slots: torch.Tensor, onehot: torch.Tensor, r: int) -> None:
        """One-token rows over D distinct slots: each slot's matrices copied once, not once per row."""
        assert self.A is not None and self.B is not None
        d = slots.shape[0]
        a = self.A[:, :r].index_select(0, slots).view(d * r, self.in_features)
        b = self.B[:, :r].index_select(0, slots).view(d * r, self.out_features)
        xa = (x @ a.T).view(-1, d, r).mul_(onehot)  # keep only each row's own adapter
        if y.dtype == b.dtype:
            y.addmm_(xa.view(-1, d * r), b)
        else:
            y.add_(xa.view(-1, d * r) @ b)


class LoRALayers:
    """All batched LoRA layers of one model, by PEFT module name (e.g. `model.layers.0.self_attn.q_proj`)."""

    def __init__(
        self,
        layers: dict[str, BatchedLoRALinear],
        context: LoRAContext,
        num_slots: int,
        max_rank: int,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.layers = layers
        self.context = context
        self.num_slots = num_slots
        self.max_rank = max_rank
        self.null_slot = num_slots
        self.dtype = dtype  # of the slot tensors

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
        self,
        row_slots: Sequence[int | None],
        slot_ranks: dict[int, int],
        device: torch.device,
        *,
        tokens_per_row: int = 1,
        segments: Sequence[tuple[int, int | None]] = (),
    ) -> LoRABatch:
        """Describe a batch whose tokens are `row_slots` rows of `tokens_per_row` tokens each (gathered per row),
        followed by `segments`: (token count, slot) runs such as packed prompts. None: the base model."""
        lead = len(row_slots) * tokens_per_row
        runs = _merge_runs([(tokens_per_row, s) for s in row_slots] + list(segments))
        real = frozenset(s for _, _, s in runs if s is not None)
        rank = max((slot_ranks[s] for s in real), default=0)
        if not real:
            return LoRABatch(rank=0, slots=real)
        if len(runs) == 1:  # every token uses one adapter: no gather, no loop
            return LoRABatch(rank=rank, slots=real, uniform_slot=runs[0][2])
        tail = tuple((a, b, s) for a, b, s in _merge_runs(list(segments), start=lead) if s is not None)
        rows = self._rows_mode(row_slots, tokens_per_row, rank, device)
        return LoRABatch(rank=rank, slots=real, lead_tokens=lead, segments=tail, **rows)

    def _rows_mode(
        self, row_slots: Sequence[int | None], tokens_per_row: int, rank: int, device: torch.device
    ) -> dict[str, Any]:
        """How the leading rows get their deltas: nothing (all base), compact (few adapters), or per-row gather."""
        distinct = sorted({s for s in row_slots if s is not None})
        if not distinct:
            return {}
        if tokens_per_row == 1 and 2 * len(distinct) <= len(row_slots):
            return self._compact_rows(row_slots, distinct, device)
        return self._gathered_rows(row_slots, tokens_per_row, rank, device)

    def _compact_rows(
        self, row_slots: Sequence[int | None], distinct: list[int], device: torch.device
    ) -> dict[str, torch.Tensor]:
        column = {s: j for j, s in enumerate(distinct)}
        onehot = torch.zeros(len(row_slots), len(distinct), 1, dtype=self.dtype)
        for i, s in enumerate(row_slots):
            if s is not None:
                onehot[i, column[s]] = 1
        return {
            "distinct": torch.tensor(distinct, dtype=torch.long).to(device, non_blocking=True),
            "onehot": onehot.to(device, non_blocking=True),
        }

    def _gathered_rows(
        self, row_slots: Sequence[int | None], tokens_per_row: int, rank: int, device: torch.device
    ) -> dict[str, Any]:
        ids = torch.tensor([self.null_slot if s is None else s for s in row_slots], dtype=torch.long)
        mode: dict[str, Any] = {"row_ids": ids.to(device, non_blocking=True)}
        if tokens_per_row == 1:  # B row k of slot s sits at s * max_rank + k of B viewed as [(S + 1) * R, out]
            index = (ids[:, None] * self.max_rank + torch.arange(rank)[None, :]).reshape(-1)
            offsets = torch.arange(0, len(ids) * rank, rank)
            mode["b_bags"] = (index.to(device, non_blocking=True), offsets.to(device, non_blocking=True))
        return mode

    def prepack_base_weights(self) -> int:
        """Move every base weight oneDNN can serve into its layout (see cpu_matmul), dropping the dense copy so
        memory does not grow; the dense `base.weight` becomes an empty tensor. Returns how many were packed."""
        packed = 0
        for layer in self.layers.values():
            w = layer.base.weight
            if can_prepack(w):
                layer.packed = PackedLinear(w, layer.base.bias)
                layer.base.weight = nn.Parameter(w.new_empty(0), requires_grad=False)
                packed += 1
        return packed

    def nbytes(self) -> int:
        return sum(
            (m.A.numel() * m.A.element_size() + m.B.numel() * m.B.element_size()) if m.A is not None else 0
            for m in self.layers.values()
        )


def _merge_runs(runs: list[tuple[int, int | None]], start: int = 0) -> list[tuple[int, int, int | None]]:
    """(length, slot) runs -> (first, end, slot) token ranges, adjacent runs of one slot merged."""
    out: list[tuple[int, int, int | None]] = []
    pos = start
    for length, slot in runs:
        if out and out[-1][2] == slot:
            out[-1] = (out[-1][0], pos + length, slot)
        else:
            out.append((pos, pos + length, slot))
        pos += length
    return out


def install_lora_layers(
    model: nn.Module, num_slots: int, max_rank: int, slot_dtype: torch.dtype | None = None
) -> LoRALayers:
    """Wrap every `nn.Linear` of the model except the output embedding (lm_head) in a `BatchedLoRALinear`.

    `slot_dtype`: of the adapters' slot tensors and their deltas (default: the base weights'). A bf16 model on CPU
    keeps them in float32: the rank-r products are too thin for the CPU's bf16 matrix units, and its bf16 fallbacks
    for them are slower than float32 (bench/openlora_bench.py, bf16, N=100: engine / base 0.70 with bf16 slots,
    0.89 with float32 ones).
    """
    context = LoRAContext()
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module is not output and name
    ]
    dtype = slot_dtype or (targets[0][1].weight.dtype if targets else torch.float32)
    layers: dict[str, BatchedLoRALinear] = {}
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        wrapped = BatchedLoRALinear(module, num_slots, max_rank, context, dtype)
        setattr(parent, child, wrapped)
        layers[name] = wrapped
    return LoRALayers(layers, context, num_slots, max_rank, dtype)
