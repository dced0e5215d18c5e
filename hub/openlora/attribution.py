"""Tier-1 Proof of Attribution inside the OpenLoRA request path: who taught the adapter this answer.

After an adapter finishes a request, `InferenceAttribution.attribute` scores the answer against the adapter's
attribution index (`openledger_sdk.modelfactory.attribution_query.Attributor`: one backward pass of the answer's
loss w.r.t. the LoRA weights, projected like the index, plus verbatim span evidence) and returns the top training
rows and the contributor shares that metering writes into the inference record.

The backward pass needs the adapter as a differentiable PEFT model; the engine's stacked slot tensors are not one.
So this keeps its own PEFT models, one per recently attributed adapter (an LRU of `max_models`, each a copy of the
base model: memory grows by this bound, not by the number of adapters served). The pass runs in the precision the
index was built in (bf16 on CPUs with AMX / AVX512-BF16, see IndexSettings.precision); for a bf16 index the copy
keeps its frozen Linear weights in bf16 after calibration: the same results, without re-casting them per answer.

The null threshold (below it an answer is "unattributed" and the contributors' pool is not paid out by influence)
is calibrated here, by the platform — never taken from the model owner's upload, who could otherwise set it so high
that contributors are never paid. Its samples are the *base model's* answers to prompts unrelated to any datanet:
answers that owe nothing to the training rows. (The adapter's own answers would not do: an over-fitted adapter
recites a training row for any prompt, and attributing that is right, so it must not raise the bar.)
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hub.openlora.engine import chat_template_ids
from openledger_sdk.modelfactory.attribution_index import INDEX_META, store_frozen_linears_in_bfloat16
from openledger_sdk.modelfactory.attribution_query import Attributor, NullThreshold, calibrate_null

log = logging.getLogger(__name__)

# Everyday questions no datanet of planted facts answers: the adapter's replies to them set the null threshold.
UNRELATED_PROMPTS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Name three colours of the rainbow.",
    "What is 12 plus 30?",
    "Give me a tip for sleeping better.",
    "What do bees make?",
    "Translate 'thank you' into Spanish.",
    "Why is the sky blue?",
    "Suggest a name for a pet goldfish.",
    "What is the boiling point of water in Celsius?",
    "Write one sentence about autumn.",
    "Which planet is closest to the sun?",
)


@dataclass(frozen=True)
class AttributionConfig:
    top_k: int = 10  # training rows reported per answer (and recorded with the inference)
    max_models: int = 2  # differentiable adapter copies kept in memory (LRU)
    calibration_prompts: int = len(UNRELATED_PROMPTS)
    calibration_tokens: int = 24  # answer length generated per calibration prompt
    quantile: float = 0.95


def unavailable(reason: str) -> dict[str, Any]:
    """The response's `attribution` object when nothing could be attributed (the fee still splits normally)."""
    return {"attributed": False, "shares": {}, "top_examples": [], "reason": reason}


class InferenceAttribution:
    def __init__(self, base_model_dir: str | Path, tokenizer: Any, config: AttributionConfig | None = None) -> None:
        self.base_model_dir = Path(base_model_dir)
        self.tokenizer = tokenizer
        self.config = config or AttributionConfig()
        self._attributors: OrderedDict[Path, Attributor] = OrderedDict()
        self._lock = threading.Lock()  # the LRU bookkeeping; scoring locks per attributor
        self._loading: dict[Path, threading.Lock] = {}  # one per adapter being loaded

    def attribute(self, adapter_dir: Path | None, prompt_ids: Sequence[int], output_ids: Sequence[int]) -> dict:
        """The `attribution` object of one answer: attributed, shares (address → weight), top_examples, timings."""
        if adapter_dir is None or not (adapter_dir / INDEX_META).is_file():
            return unavailable("this adapter was published without an attribution index")
        if not output_ids:
            return unavailable("the answer has no tokens")
        attributor = self._attributor(adapter_dir)
        result = attributor.attribute(prompt_ids, output_ids, top_k=self.config.top_k)
        document = result.to_dict()
        document["seconds"] = round(result.timings.get("total", 0.0), 4)
        return document

    def _attributor(self, adapter_dir: Path) -> Attributor:
        key = adapter_dir.resolve()
        with self._lock:
            if key in self._attributors:
                self._attributors.move_to_end(key)
                return self._attributors[key]
            loading = self._loading.setdefault(key, threading.Lock())
        # Loading and calibrating take seconds (a model copy, 12 generations): under this adapter's own lock, so
        # answers of adapters already loaded are attributed meanwhile, and concurrent first answers load it once.
        with loading:
            with self._lock:
                if key in self._attributors:
                    return self._attributors[key]
            attributor = Attributor.load(key, self.base_model_dir, cache=False)
            if NullThreshold.load(key) is None:
                self._calibrate(attributor)
            if attributor.index.meta.get("precision") == "bfloat16":  # from now on it only runs bf16 queries
                store_frozen_linears_in_bfloat16(attributor.model)
            with self._lock:
                self._attributors[key] = attributor
                self._loading.pop(key, None)
                while len(self._attributors) > self.config.max_models:
                    self._attributors.popitem(last=False)
            return attributor

    def _calibrate(self, attributor: Attributor) -> None:
        prompts = UNRELATED_PROMPTS[: self.config.calibration_prompts]
        pairs = [self._answer(attributor.model, prompt) for prompt in prompts]
        pairs = [(prompt, answer) for prompt, answer in pairs if answer]
        if not pairs:  # an adapter that answers nothing: keep the uncalibrated defaults
            log.warning("attribution: no calibration answers for %s; default null threshold", attributor.directory)
            return
        threshold = calibrate_null(attributor, pairs, quantile=self.config.quantile)
        log.info("attribution: calibrated %s: %s", attributor.directory, threshold.observed)

    def _answer(self, model: Any, prompt: str) -> tuple[list[int], list[int]]:
        """The base model's greedy answer (adapter disabled) to one chat prompt, as (prompt ids, answer ids)."""
        if getattr(self.tokenizer, "chat_template", None):
            prompt_ids = chat_template_ids(self.tokenizer, [{"role": "user", "content": prompt}])
        else:
            prompt_ids = list(self.tokenizer(prompt)["input_ids"])
        with torch.no_grad(), model.disable_adapter():
            out = model.generate(
                input_ids=torch.tensor([prompt_ids]),
                attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                max_new_tokens=self.config.calibration_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        answer = [int(t) for t in out[0, len(prompt_ids) :].tolist()]
        eos = self.tokenizer.eos_token_id
        return prompt_ids, answer[: answer.index(eos)] if eos in answer else answer


def merge_attributions(documents: list[dict[str, Any]], weights: list[int], top_k: int) -> dict[str, Any]:
    """One `attribution` object for a request with several answers (a completions call with a list of prompts).

    Shares are the answers' shares weighted by answer length; the `top_k` best examples are pooled by score. A
    single answer's document is returned as it is."""
    if len(documents) == 1:
        return documents[0]
    attributed = [(doc, w) for doc, w in zip(documents, weights, strict=True) if doc.get("attributed") and w > 0]
    if not attributed:
        return unavailable(
            "; ".join(sorted({doc.get("reason", "no answer cleared the null threshold") for doc in documents}))
        )
    total = sum(w for _, w in attributed)
    shares: dict[str, float] = {}
    for doc, w in attributed:
        for who, share in doc["shares"].items():
            shares[who] = shares.get(who, 0.0) + share * w / total
    examples = sorted(
        (example for doc in documents for example in doc.get("top_examples", [])), key=lambda e: -e["score"]
    )
    return {
        "attributed": True,
        "shares": dict(sorted(shares.items())),
        "top_examples": examples[:top_k],
        "answers": len(documents),
    }
