"""A pooled KV cache: one row per running sequence, kept compact (rows 0..n-1), behind transformers' Cache API.

Per layer the pool holds K and V as [max_rows, kv_heads, capacity, head_dim]. Running sequences occupy rows
0..n-1, so a decode step reads `K[:n, :, :kv_len]` as a view (no per-step copy of the whole cache); when a
sequence leaves, the last row moves into its place (one sequence's KV copied). A prefill step writes new
sequences into rows n..n+k-1. The capacity grows by doubling up to `max_len`, so memory follows the longest
sequence actually running, not the model's context length.

The model calls `cache.update(key, value, layer_idx)` from its attention layers; the runner sets a plan
(prefill or decode) before each forward so `update` knows where to write. The runner's own packed forward
(no transformers attention) writes any mix of tokens with one `index_copy_` per layer instead: `token_index`
maps each (row, position) to its place in the flattened pool once per forward, shared by all layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


@dataclass
class _Plan:
    prefill: bool
    row_start: int  # prefill: first new row; decode: 0
    rows: int
    length: int  # prefill: padded prompt length; decode: kv length to attend over
    index: torch.Tensor | None = None  # decode: where each row's new token goes (`KVPool.token_index`)


class _PoolLayer(CacheLayerMixin):
    """One model layer's view of the pool; `update` writes per the current plan and returns what to attend to."""

    def __init__(self, pool: KVPool, layer_idx: int) -> None:
        super().__init__()
        self.pool = pool
        self.layer_idx = layer_idx
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        return None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        return self.pool.write(self.layer_idx, key_states, value_states)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        plan = self.pool.plan
        return (plan.length if plan else query_length), 0

    def get_seq_length(self) -> int:
        return 0  # positions are always passed explicitly, per row

    def get_max_length(self) -> int:
        return self.pool.max_len


class PoolCache(Cache):
    """The transformers `Cache` the model sees; all state lives in the `KVPool`."""

    def __init__(self, pool: KVPool) -> None:
        super().__init__(layers=[_PoolLayer(pool, i) for i in range(pool.num_layers)])


class KVPool:
    def __init__(
        self,
        *,
        num_layers: int,
        max_rows: int,
        kv_heads: int,
        head_dim: int,
        max_len: int,
        initial_len: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.num_layers = num_layers
        self.max_rows = max_rows
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.max_len = max_len
        self.dtype = dtype
        self.device = device
        self.capacity = 0
        self.initial_len = min(initial_len, max_len)
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.plan: _Plan | None = None
        self._arange = torch.arange(max_rows, device=device)
        self.ensure_capacity(self.initial_len)
        self.cache = PoolCache(self)

    def ensure_capacity(self, length: int) -> None:
        """Make room for positions 0..length-1 in every row (amortised doubling, capped at max_len)."""
        if length <= self.capacity:
            return
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds the KV pool's max_len {self.max_len}")
        new_cap = min(self.max_len, max(length, 2 * self.capacity))
        shape = (self.max_rows, self.kv_heads, new_cap, self.head_dim)
        for i in range(self.num_layers):
            k = torch.zeros(shape, dtype=self.dtype, device=self.device)
            v = torch.zeros(shape, dtype=self.dtype, device=self.device)
            if self.capacity:
                k[:, :, : self.capacity].copy_(self.k[i])
                v[:, :, : self.capacity].copy_(self.v[i])
                self.k[i], self.v[i] = k, v
            else:
                self.k.append(k)
                self.v.append(v)
        self.capacity = new_cap

    def shrink(self, longest: int) -> None:
        """Give memory back after long sequences left: reallocate when the longest running sequence uses under a
        quarter of the capacity (hysteresis, so the pool does not oscillate)."""
        if self.capacity <= self.initial_len or longest * 4 > self.capacity:
            return
        new_cap = max(self.initial_len, 2 * longest)
        for i in range(self.num_layers):
            self.k[i] = self.k[i][:, :, :new_cap].clone()
            self.v[i] = self.v[i][:, :, :new_cap].clone()
        self.capacity = new_cap

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    # -- plans ---------------------------------------------------------------------------------------------
    def plan_prefill(self, row_start: int, rows: int, length: int) -> None:
        if row_start + rows > self.max_rows:
            raise ValueError("prefill exceeds the KV pool's rows")
        self.ensure_capacity(length)
        self.plan = _Plan(prefill=True, row_start=row_start, rows=rows, length=length)

    def plan_decode(self, positions: torch.Tensor, kv_len: int) -> None:
        rows = positions.shape[0]
        self.ensure_capacity(kv_len)
        index = self.token_index(self._arange[:rows], positions)
        self.plan = _Plan(prefill=False, row_start=0, rows=rows, length=kv_len, index=index)

    def write(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        plan = self.plan
        assert plan is not None, "KVPool.write called without a plan"
        k, v = self.k[layer], self.v[layer]
        if plan.prefill:
            rows = slice(plan.row_start, plan.row_start + plan.rows)
            t = key.shape[2]
            k[rows, :, :t].copy_(key)
            v[rows, :, :t].copy_(value)
            return k[rows, :, :t], v[rows, :, :t]
        # Decode: one new token per row, written at that row's own position.
        assert plan.index is not None
        self.write_tokens(layer, key[:, :, 0], value[:, :, 0], plan.index)
        return k[: plan.rows, :, : plan.length], v[: plan.rows, :, : plan.length]

    # -- packed tokens (the runner's own forward) ------------------------------------------------------------
    def token_index(self, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Flat indices into a layer's pool viewed as [max_rows * kv_heads * capacity, head_dim] for each token's
        (row, position) and KV head: [tokens * kv_heads], token-major (the layout of k.reshape(-1, head_dim)).
        Valid until the capacity changes: call `ensure_capacity` first."""
        heads = torch.arange(self.kv_heads, device=rows.device)
        return ((rows[:, None] * self.kv_heads + heads[None, :]) * self.capacity + positions[:, None]).reshape(-1)

    def write_tokens(self, layer: int, key: torch.Tensor, value: torch.Tensor, index: torch.Tensor) -> None:
        """Store key/value [tokens, kv_heads, head_dim] at `index` (from `token_index`)."""
        self.k[layer].view(-1, self.head_dim).index_copy_(0, index, key.reshape(-1, self.head_dim))
        self.v[layer].view(-1, self.head_dim).index_copy_(0, index, value.reshape(-1, self.head_dim))

    def rows(self, layer: int, n: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of K and V for rows 0..n-1, positions 0..length-1: [n, kv_heads, length, head_dim]."""
        return self.k[layer][:n, :, :length], self.v[layer][:n, :, :length]

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of row `src` into row `dst` (compaction when a sequence leaves)."""
        if src == dst or length <= 0:
            return
        for k, v in zip(self.k, self.v, strict=True):
            k[dst, :, :length].copy_(k[src, :, :length])
            v[dst, :, :length].copy_(v[src, :, :length])
