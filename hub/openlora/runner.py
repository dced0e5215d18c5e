"""The model side of the engine: loads the base model (transformers), installs the batched LoRA layers and runs
forwards over the pooled KV cache. Knows nothing about requests or scheduling.

A step is one forward for the decoding rows (one token each) plus the prompts of sequences joining the batch.
Two implementations:

- packed (Llama-style decoders): the runner's own loop over the model's layers, with the step's tokens packed into
  one [T, hidden] matrix: decode tokens first, then every new prompt unpadded. Each weight matrix is read once per
  step whatever mix of decode and prefill it holds, and no compute goes to padding. Decode rows attend over the
  pool (batched matmuls over grouped query heads); each new prompt attends to itself (causal SDPA). It is checked
  against the transformers forward at start-up and not used if they disagree.
- generic (any other model): the transformers decoder with the pool behind its Cache API; one padded forward
  per group of similar-length prompts, and one decode forward.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hub.openlora.config import EngineConfig
from hub.openlora.cpu_matmul import linear_for
from hub.openlora.kv_cache import KVPool
from hub.openlora.lora_batch import LoRALayers, install_lora_layers
from hub.openlora.packed_decoder import PackedDecoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewSequences:
    """Prompts joining the batch in a step (at the rows after the decoding ones), with their adapter slots."""

    prompts: list[list[int]]
    slots: list[int | None]

    def __len__(self) -> int:
        return len(self.prompts)


class ModelRunner:
    def __init__(self, model_dir: str | Path, config: EngineConfig) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.dtype = config.torch_dtype
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        cpu = self.device.type == "cpu"
        # sdpa: the boolean 4D masks built below are in the form it expects (True = attend). On CPU the weights
        # are re-laid out below: read them into memory, or the file's mapped pages would stay resident beside
        # the copies.
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=self.dtype, attn_implementation="sdpa", **({"disable_mmap": True} if cpu else {})
        )
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        slot_dtype = torch.float32 if cpu else None  # see install_lora_layers
        self.lora = install_lora_layers(self.model, config.max_slots, config.max_lora_rank, slot_dtype)
        if cpu and not self.lora.prepack_base_weights():
            _store_weights_transposed(self.lora)
        mc = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else self.model.config
        if getattr(mc, "sliding_window", None) and getattr(mc, "use_sliding_window", True):
            log.warning("model config has a sliding window; this engine applies full causal attention")
        self.vocab_size = mc.vocab_size
        self.softcap = getattr(mc, "final_logit_softcapping", None)
        model_max = int(getattr(mc, "max_position_embeddings", 2048))
        # The KV pool reserves up to max_batch_size x max_seq_len positions: default to at most 4096.
        self.max_seq_len = min(config.max_seq_len or min(model_max, 4096), model_max)
        heads = mc.num_attention_heads
        head_dim = getattr(mc, "head_dim", None) or mc.hidden_size // heads
        self.kv = KVPool(
            num_layers=mc.num_hidden_layers,
            max_rows=config.max_batch_size,
            kv_heads=getattr(mc, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            max_len=self.max_seq_len,
            initial_len=config.kv_initial_len,
            dtype=self.dtype,
            device=self.device,
        )
        per_token = 2 * mc.num_hidden_layers * self.kv.kv_heads * head_dim * self.kv.k[0].element_size()
        log.info(
            "KV pool: %d rows x up to %d positions (up to %.2f GiB; grows on demand)",
            config.max_batch_size,
            self.max_seq_len,
            config.max_batch_size * self.max_seq_len * per_token / 2**30,
        )
        self.decoder = self.model.get_decoder()
        self.lm_head = self.model.get_output_embeddings()
        # On CPU the output projection gets its own oneDNN copy too (tied to the input embedding, which still needs
        # its dense rows: one more embedding matrix of memory, for the step's largest matmul).
        self._head = linear_for(self.lm_head.weight, getattr(self.lm_head, "bias", None)) if cpu else self.lm_head
        # transformers renamed `past_key_values` to `cache` (5.x); pass whichever this version takes.
        params = inspect.signature(self.decoder.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.eos_token_ids = self._eos_ids()
        self.packed = PackedDecoder.build(self.model, mc, self.kv)
        if self.packed is not None and not self._packed_matches_generic():
            log.warning("the packed forward disagrees with transformers for this model: using the generic forward")
            self.packed = None
        log.info("forward: %s", "packed" if self.packed else "generic (transformers decoder)")

    def _eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        gen = getattr(self.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, (list, tuple)):
            ids.update(int(e) for e in eos)
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return frozenset(ids)

    def use_generic_forward(self) -> None:
        """Run every step through the transformers decoder (tests compare both paths)."""
        self.packed = None

    # -- steps -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def prefill(
        self, row_start: int, prompts: list[list[int]], row_slots: list[int | None], slot_ranks: dict[int, int]
    ) -> torch.Tensor:
        """Start new sequences at rows row_start..: the logits of each prompt's last token."""
        new = NewSequences(prompts, row_slots)
        if self.packed is not None:
            return self._packed_step([], [], [], row_start, new, slot_ranks)
        return self._generic_prefill(row_start, new, slot_ranks)

    @torch.no_grad()
    def decode(
        self,
        last_tokens: list[int],
        positions: list[int],
        row_slots: list[int | None],
        slot_ranks: dict[int, int],
        new: NewSequences | None = None,
    ) -> torch.Tensor:
        """One decode step for rows 0..n-1 (row i feeds `last_tokens[i]` at position `positions[i]`), plus `new`
        sequences joining at rows n..: logits [n + len(new), vocab], decode rows first."""
        n = len(last_tokens)
        if self.packed is not None:
            return self._packed_step(last_tokens, positions, row_slots, n, new, slot_ranks)
        logits = self._generic_decode(last_tokens, positions, row_slots, slot_ranks)
        if new:
            logits = torch.cat([logits, self._generic_prefill(n, new, slot_ranks)])
        return logits

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self._head(hidden).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    # -- packed path -----------------------------------------------------------------------------------------
    def _packed_step(
        self,
        tokens: list[int],
        positions: list[int],
        row_slots: Sequence[int | None],
        row_start: int,
        new: NewSequences | None,
        slot_ranks: dict[int, int],
    ) -> torch.Tensor:
        assert self.packed is not None
        new = new or NewSequences([], [])
        plan = self.packed.plan(tokens, positions, row_start, new.prompts, self.device)
        segments = [(len(p), s) for p, s in zip(new.prompts, new.slots, strict=True)]
        self.lora.context.batch = self.lora.make_batch(row_slots, slot_ranks, self.device, segments=segments)
        try:
            hidden = self.packed.forward(plan)
        finally:
            self.lora.context.batch = None
        return self._logits(hidden)

    def _packed_matches_generic(self) -> bool:
        """Run a prefill, then a decode step fused with a second prefill, both ways; True if the logits agree."""
        assert self.packed is not None
        packed = self.packed
        try:
            self.packed = None
            ref = self._check_steps()
            self.packed = packed
            got = self._check_steps()
        except Exception:  # an architecture detail the packed loop does not handle: use transformers
            log.exception("the packed forward failed its start-up check")
            return False
        finally:
            self.kv.shrink(0)  # give back what the check grew
        tol = 1e-3 if self.dtype == torch.float32 else 5e-2
        for r, g in zip(ref, got, strict=True):
            diff = float((r - g).abs().max())
            if not diff <= tol * max(1.0, float(r.abs().max())):
                log.warning("packed vs transformers forward: logits differ by %.3g", diff)
                return False
        return True

    def _check_steps(self) -> list[torch.Tensor]:
        """Logits of a short prefill, then of a decode step (joined by a second prompt when the pool has rows)."""
        length = max(1, min(9, self.max_seq_len - 1))
        first = [(7 * i + 3) % self.vocab_size for i in range(length)]
        second = [(11 * i + 5) % self.vocab_size for i in range(max(1, length - 3))]
        joining = NewSequences([second], [None]) if self.kv.max_rows > 1 else None
        logits = [self.prefill(0, [first], [None], {})]
        logits.append(self.decode([first[0]], [length], [None], {}, joining))
        return logits

    # -- generic path (transformers decoder) -----------------------------------------------------------------
    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.decoder(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_kw: self.kv.cache},
        )
        return out.last_hidden_state

    def _generic_prefill(self, row_start: int, new: NewSequences, slot_ranks: dict[int, int]) -> torch.Tensor:
        """Prefill in padded chunks of contiguous prompts (padding is paid in full: keep it bounded)."""
        out = []
        for chunk in padding_chunks([len(p) for p in new.prompts]):
            prompts = new.prompts[chunk.start : chunk.stop]
            slots = new.slots[chunk.start : chunk.stop]
            out.append(self._padded_prefill(row_start + chunk.start, prompts, slots, slot_ranks))
        return torch.cat(out)

    def _padded_prefill(
        self, row_start: int, prompts: list[list[int]], row_slots: list[int | None], slot_ranks: dict[int, int]
    ) -> torch.Tensor:
        """Run the prompts of new sequences (rows row_start..) in one padded forward; logits of each last token."""
        n = len(prompts)
        t = max(len(p) for p in prompts)
        ids = torch.zeros(n, t, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = torch.tensor(p, dtype=torch.long)
        lens = torch.tensor([len(p) for p in prompts], dtype=torch.long)
        j = torch.arange(t)
        # Causal and key-padding mask; padded query positions still see their row's real tokens (no empty rows).
        mask = (j[None, None, :] <= j[None, :, None]) & (j[None, None, :] < lens[:, None, None])
        positions = j.unsqueeze(0).expand(n, t)
        self.kv.plan_prefill(row_start, n, t)
        self.lora.context.batch = self.lora.make_batch(row_slots, slot_ranks, self.device, tokens_per_row=t)
        try:
            hidden = self._forward(ids.to(self.device), mask.unsqueeze(1).to(self.device), positions.to(self.device))
        finally:
            self.lora.context.batch = None
            self.kv.plan = None
        last = hidden[torch.arange(n, device=self.device), (lens - 1).to(self.device)]
        return self._logits(last)

    def _generic_decode(
        self, last_tokens: list[int], positions: list[int], row_slots: list[int | None], slot_ranks: dict[int, int]
    ) -> torch.Tensor:
        n = len(last_tokens)
        pos = torch.tensor(positions, dtype=torch.long)
        kv_len = int(max(positions)) + 1
        mask = torch.arange(kv_len)[None, :] <= pos[:, None]
        pos_d = pos.to(self.device)
        self.kv.plan_decode(pos_d, kv_len)
        self.lora.context.batch = self.lora.make_batch(row_slots, slot_ranks, self.device)
        try:
            ids = torch.tensor(last_tokens, dtype=torch.long).view(n, 1).to(self.device)
            hidden = self._forward(ids, mask.view(n, 1, 1, kv_len).to(self.device), pos_d.view(n, 1))
        finally:
            self.lora.context.batch = None
            self.kv.plan = None
        return self._logits(hidden[:, -1])


def padding_chunks(lengths: Sequence[int], max_waste: float = 1.3, small: int = 256) -> list[range]:
    """Split prompts (in order; sort them by length first) into contiguous chunks whose padded size stays under
    `max_waste` x their real tokens. Tiny chunks are merged anyway: per-forward overhead dominates them."""
    chunks: list[range] = []
    start, real, longest = 0, 0, 0
    for i, n in enumerate(lengths):
        widest = max(longest, n)
        padded = (i - start + 1) * widest
        if i > start and padded > max_waste * (real + n) and padded > small:
            chunks.append(range(start, i))
            start, real, widest = i, 0, n
        real += n
        longest = widest
    if start < len(lengths):
        chunks.append(range(start, len(lengths)))
    return chunks


def _store_weights_transposed(lora: LoRALayers) -> None:
    """Keep each wrapped base weight [out, in] in column-major memory (same shape, transposed strides): CPU GEMMs
    with few rows (every decode step) run 1.2-1.5x faster when they need not repack a row-major weight each call.
    One matrix at a time is copied, so memory does not grow."""
    for layer in lora.layers.values():
        w = layer.base.weight
        w.data = w.data.t().contiguous().t()
