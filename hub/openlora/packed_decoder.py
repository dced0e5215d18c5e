"""The packed forward for Llama-style decoders: the runner's own loop over the model's layers, with one step's
tokens packed into one [T, hidden] matrix (decode tokens first, then every new prompt unpadded), so each weight
matrix is read once per step and no compute goes to padding. Used by `ModelRunner` only after a start-up check
against the transformers forward."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hub.openlora.kv_cache import KVPool

# Model types whose decoder layers are exactly: RMSNorm, q/k/v/o projections with rotary embeddings and grouped
# KV heads, RMSNorm, gated MLP. The start-up check still compares against transformers before trusting it.
PACKED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})


@dataclass
class TokenPlan:
    """Where the tokens of one packed step come from and go to (built once, shared by every layer)."""

    ids: torch.Tensor  # [T] token ids: decode tokens, then each new prompt
    positions: torch.Tensor  # [T]
    kv_index: torch.Tensor  # [T * kv_heads] pool slots to write (`KVPool.token_index`)
    decode_rows: int  # rows 0..n-1 decode one token each
    decode_len: int  # KV positions the decode rows attend over
    decode_bias: torch.Tensor | None  # [n * kv_heads, 1, decode_len]: 0 where a row may attend, -inf after it
    prompts: list[tuple[int, int]]  # token range of each new prompt
    last: torch.Tensor  # [rows] tokens whose hidden state the step returns (each row's last)


class PackedDecoder:
    """A Llama-style decoder run layer by layer over packed tokens, reusing the model's own modules (so the
    batched LoRA layers and the weights are shared with the transformers path)."""

    def __init__(self, decoder: nn.Module, mc: object, kv: KVPool) -> None:
        self.embed = decoder.embed_tokens
        self.layers = list(decoder.layers)
        self.norm = decoder.norm
        self.rotary = decoder.rotary_emb
        self.kv = kv
        self.heads = mc.num_attention_heads
        self.kv_heads = kv.kv_heads
        self.head_dim = kv.head_dim
        self.groups = self.heads // self.kv_heads
        self.scaling = float(self.layers[0].self_attn.scaling)

    @classmethod
    def build(cls, model: nn.Module, mc: object, kv: KVPool) -> PackedDecoder | None:
        """The packed decoder if the model has the expected structure, else None."""
        if getattr(mc, "model_type", None) not in PACKED_MODEL_TYPES:
            return None
        decoder = model.get_decoder()
        if not all(hasattr(decoder, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
            return None
        if not all(_plain_layer(layer) for layer in decoder.layers):
            return None
        return cls(decoder, mc, kv)

    def plan(
        self, tokens: list[int], positions: list[int], row_start: int, prompts: list[list[int]], device: torch.device
    ) -> TokenPlan:
        n = len(tokens)
        lens = [len(p) for p in prompts]
        if row_start + len(prompts) > self.kv.max_rows:
            raise ValueError("the step exceeds the KV pool's rows")
        self.kv.ensure_capacity(max([p + 1 for p in positions] + lens, default=1))
        ids = torch.tensor(tokens + [t for p in prompts for t in p], dtype=torch.long)
        dec_pos = torch.tensor(positions, dtype=torch.long)
        pos = torch.cat([dec_pos, *(torch.arange(m) for m in lens)])
        new_rows = torch.arange(row_start, row_start + len(prompts)).repeat_interleave(
            torch.tensor(lens, dtype=torch.long)
        )
        rows = torch.cat([torch.arange(n), new_rows])
        ends = torch.tensor(lens, dtype=torch.long).cumsum(0) + n
        starts = [n, *ends[:-1].tolist()][: len(lens)]
        length = max(positions) + 1 if positions else 0
        return TokenPlan(
            ids=ids.to(device),
            positions=pos.to(device),
            kv_index=self.kv.token_index(rows.to(device), pos.to(device)),
            decode_rows=n,
            decode_len=length,
            decode_bias=self._decode_bias(dec_pos, length).to(device) if n else None,
            prompts=list(zip(starts, ends.tolist(), strict=True)),
            last=torch.cat([torch.arange(n), ends - 1]).to(device),
        )

    def _decode_bias(self, positions: torch.Tensor, length: int) -> torch.Tensor:
        """Additive mask [rows * kv_heads, 1, length]: row i sees positions 0..positions[i]."""
        after = torch.arange(length)[None, :] > positions[:, None]
        bias = torch.zeros(len(positions), length, dtype=self.kv.dtype).masked_fill_(after, -torch.inf)
        return bias.repeat_interleave(self.kv_heads, dim=0).unsqueeze(1)

    def forward(self, plan: TokenPlan) -> torch.Tensor:
        """The final-norm hidden state of each row's last token: [rows, hidden]."""
        x = self.embed(plan.ids)
        cos, sin = self.rotary(x, plan.positions[None])
        cos, sin = cos[0, :, None, :], sin[0, :, None, :]  # [T, 1, head_dim]: broadcast over heads
        for i, layer in enumerate(self.layers):
            x = self._layer(i, layer, x, cos, sin, plan)
        return _rms_norm(x.index_select(0, plan.last), self.norm)

    def _layer(
        self, i: int, layer: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, plan: TokenPlan
    ) -> torch.Tensor:
        attn, mlp = layer.self_attn, layer.mlp
        t = x.shape[0]
        h = _rms_norm(x, layer.input_layernorm)
        q = _rope(attn.q_proj(h).view(t, self.heads, self.head_dim), cos, sin)
        k = _rope(attn.k_proj(h).view(t, self.kv_heads, self.head_dim), cos, sin)
        v = attn.v_proj(h).view(t, self.kv_heads, self.head_dim)
        self.kv.write_tokens(i, k, v, plan.kv_index)
        x = x + attn.o_proj(self._attention(i, q, k, v, plan).view(t, -1))
        h = _rms_norm(x, layer.post_attention_layernorm)
        return x + mlp.down_proj(mlp.act_fn(mlp.gate_proj(h)) * mlp.up_proj(h))

    def _attention(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: TokenPlan) -> torch.Tensor:
        """[T, heads, head_dim]: decode rows over the pool, each new prompt over itself."""
        out = torch.empty_like(q)
        n = plan.decode_rows
        if n:
            rows = n * self.kv_heads
            keys, values = (
                t.reshape(rows, plan.decode_len, self.head_dim) for t in self.kv.rows(i, n, plan.decode_len)
            )
            # Query heads sharing a KV head form one small matmul (no repeated copies of the cache); the scale and
            # the mask ride along in the same call.
            grouped = q[:n].reshape(rows, self.groups, self.head_dim)
            scores = torch.baddbmm(plan.decode_bias, grouped, keys.transpose(1, 2), alpha=self.scaling)
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            out[:n] = torch.bmm(probs, values).view(n, self.heads, self.head_dim)
        for a, b in plan.prompts:
            qi, ki, vi = (t[a:b].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
            oi = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=self.scaling, enable_gqa=True)
            out[a:b] = oi[0].transpose(0, 1)
        return out


def _plain_layer(layer: nn.Module) -> bool:
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    if attn is None or mlp is None or hasattr(attn, "q_norm") or not hasattr(attn, "scaling"):
        return False
    projections = all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj"))
    gated = all(hasattr(mlp, p) for p in ("gate_proj", "up_proj", "down_proj", "act_fn"))
    norms = all(
        hasattr(getattr(layer, n, None), "variance_epsilon") for n in ("input_layernorm", "post_attention_layernorm")
    )
    return projections and gated and norms


def _rms_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """LlamaRMSNorm's arithmetic (float32 statistics), without the module call."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * xf.to(x.dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin
