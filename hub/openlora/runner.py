"""The model side of the engine: loads the base model (transformers), installs the batched LoRA layers and runs
prefill / decode forwards over the pooled KV cache. Knows nothing about requests or scheduling."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hub.openlora.config import EngineConfig
from hub.openlora.kv_cache import KVPool
from hub.openlora.lora_batch import install_lora_layers

log = logging.getLogger(__name__)


class ModelRunner:
    def __init__(self, model_dir: str | Path, config: EngineConfig) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.dtype = config.torch_dtype
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # sdpa: the boolean 4D masks built below are in the form it expects (True = attend).
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=self.dtype, attn_implementation="sdpa")
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.lora = install_lora_layers(self.model, config.max_slots, config.max_lora_rank)
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
        # transformers renamed `past_key_values` to `cache` (5.x); pass whichever this version takes.
        params = inspect.signature(self.decoder.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.eos_token_ids = self._eos_ids()

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

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.decoder(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_kw: self.kv.cache},
        )
        return out.last_hidden_state

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(hidden).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    @torch.no_grad()
    def prefill(
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
        self.lora.context.batch = self.lora.make_batch(row_slots, slot_ranks, self.device)
        try:
            hidden = self._forward(ids.to(self.device), mask.unsqueeze(1).to(self.device), positions.to(self.device))
        finally:
            self.lora.context.batch = None
            self.kv.plan = None
        last = hidden[torch.arange(n, device=self.device), (lens - 1).to(self.device)]
        return self._logits(last)

    @torch.no_grad()
    def decode(
        self, last_tokens: list[int], positions: list[int], row_slots: list[int | None], slot_ranks: dict[int, int]
    ) -> torch.Tensor:
        """One decode step for rows 0..n-1: row i feeds `last_tokens[i]` at position `positions[i]`."""
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
