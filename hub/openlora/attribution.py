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
that contributors are never paid (the catalog does not materialise an uploaded `attribution_null.json`). Its samples
are the base model's and the adapter's greedy answers to the SDK's off-topic prompts (200 answers,
`attribution_calibration`), which takes minutes on a CPU: so it runs in a background thread the first time an
adapter is asked, never on a request's path. Until it exists, answers of that adapter say `"status": "pending"` in
the response and in the inference record (unattributed: the contributors' pool goes to the unattributed bucket);
from then on they are attributed. The result is saved beside the materialised adapter and reused after a restart.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openledger_sdk.modelfactory.attribution_calibration import ANSWER_TOKENS, calibrate_adapter
from openledger_sdk.modelfactory.attribution_index import INDEX_META, store_frozen_linears_in_bfloat16
from openledger_sdk.modelfactory.attribution_null import ALPHA
from openledger_sdk.modelfactory.attribution_query import Attributor, NullThreshold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttributionConfig:
    top_k: int = 10  # training rows reported per answer (and recorded with the inference)
    max_models: int = 2  # differentiable adapter copies kept in memory (LRU)
    calibration_tokens: int = ANSWER_TOKENS  # answer length generated per calibration prompt
    alpha: float = ALPHA  # joint false-attribution rate the null threshold is calibrated for
    calibration_prompts: tuple[str, ...] | None = None  # None: the SDK's off-topic prompts (null_prompts.json)


def unavailable(reason: str) -> dict[str, Any]:
    """The response's `attribution` object when nothing could be attributed (the fee still splits normally)."""
    return {"attributed": False, "status": "unavailable", "shares": {}, "top_examples": [], "reason": reason}


PENDING_REASON = (
    "attribution pending: this adapter's null threshold is being calibrated in the background (its first use); "
    "answers from then on are attributed"
)


def pending() -> dict[str, Any]:
    """The `attribution` object of an answer given before the adapter's null threshold exists."""
    return {**unavailable(PENDING_REASON), "status": "pending"}


def record_examples(document: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What the inference record keeps as top examples: the examples, or a note why there are none."""
    document = document or {}
    if document.get("top_examples"):
        return list(document["top_examples"])
    if document.get("status") in ("pending", "unavailable"):
        return [{"attribution": document["status"], "reason": document.get("reason", "")}]
    return []


class InferenceAttribution:
    def __init__(self, base_model_dir: str | Path, tokenizer: Any, config: AttributionConfig | None = None) -> None:
        self.base_model_dir = Path(base_model_dir)
        self.tokenizer = tokenizer
        self.config = config or AttributionConfig()
        self._attributors: OrderedDict[Path, Attributor] = OrderedDict()
        self._lock = threading.Lock()  # the LRU bookkeeping; scoring locks per attributor
        self._loading: dict[Path, threading.Lock] = {}  # one per adapter being loaded
        self._calibrating: dict[Path, threading.Event] = {}  # set when that adapter's calibration has ended
        self._one_calibration = threading.Lock()  # calibrations share the CPU with serving: one at a time

    def attribute(self, adapter_dir: Path | None, prompt_ids: Sequence[int], output_ids: Sequence[int]) -> dict:
        """The `attribution` object of one answer: attributed, status, shares (address → weight), top_examples."""
        if adapter_dir is None or not (adapter_dir / INDEX_META).is_file():
            return unavailable("this adapter was published without an attribution index")
        if not output_ids:
            return unavailable("the answer has no tokens")
        attributor = self._attributor(adapter_dir)
        if attributor is None:
            return pending()
        result = attributor.attribute(prompt_ids, output_ids, top_k=self.config.top_k)
        document = result.to_dict()
        document["seconds"] = round(result.timings.get("total", 0.0), 4)
        return document

    def prepare(self, adapter_dir: Path | None) -> str:
        """Deploying an adapter: load its copy and start its calibration now, before anyone asks it anything.
        Returns "ready", "pending" (calibrating in the background) or "unavailable"."""
        if adapter_dir is None or not (adapter_dir / INDEX_META).is_file():
            return "unavailable"
        return "pending" if self._attributor(adapter_dir) is None else "ready"

    def calibration(self, adapter_dir: Path) -> threading.Event | None:
        """The event set when the adapter's background calibration ends (None when none is running)."""
        with self._lock:
            return self._calibrating.get(adapter_dir.resolve())

    def _attributor(self, adapter_dir: Path) -> Attributor | None:
        """The adapter's ready attributor, or None while its null threshold is being calibrated."""
        key = adapter_dir.resolve()
        with self._lock:
            if key in self._attributors:
                self._attributors.move_to_end(key)
                return self._attributors[key]
            if key in self._calibrating:
                return None
            loading = self._loading.setdefault(key, threading.Lock())
        # Loading takes seconds (a model copy): under this adapter's own lock, so answers of adapters already loaded
        # are attributed meanwhile, and concurrent first answers load it once.
        with loading:
            with self._lock:
                if key in self._attributors:
                    return self._attributors[key]
                if key in self._calibrating:
                    return None
            calibrated = NullThreshold.load(key) is not None
            with self._lock:
                if not calibrated and len(self._calibrating) >= self.config.max_models:
                    return None  # a copy per waiting calibration would grow without bound: ask again later
            attributor = Attributor.load(key, self.base_model_dir, cache=False)
            if self.tokenizer is not None and getattr(attributor, "decode", None) is None:
                attributor.decode = self.tokenizer.decode
            if not calibrated:
                self._start_calibration(key, attributor)
                return None
            return self._ready(key, attributor)

    def _ready(self, key: Path, attributor: Attributor) -> Attributor:
        if attributor.index.meta.get("precision") == "bfloat16":  # from now on it only runs bf16 queries
            store_frozen_linears_in_bfloat16(attributor.model)
        with self._lock:
            self._attributors[key] = attributor
            self._loading.pop(key, None)
            while len(self._attributors) > self.config.max_models:
                self._attributors.popitem(last=False)
        return attributor

    def _start_calibration(self, key: Path, attributor: Attributor) -> None:
        done = threading.Event()
        with self._lock:
            self._calibrating[key] = done
        thread = threading.Thread(
            target=self._calibrate, args=(key, attributor, done), name="attribution-calibration", daemon=True
        )
        thread.start()

    def _calibrate(self, key: Path, attributor: Attributor, done: threading.Event) -> None:
        try:
            with self._one_calibration:
                threshold = calibrate_adapter(
                    attributor,
                    self.tokenizer,
                    prompts=self.config.calibration_prompts,
                    alpha=self.config.alpha,
                    max_new_tokens=self.config.calibration_tokens,
                    save=False,
                )
            try:
                threshold.save(key)
            except OSError as err:  # a read-only adapter folder: keep it in memory for this process
                log.warning("attribution: could not save the null threshold of %s: %s", key, err)
            log.info("attribution: calibrated %s on %d answers: %s", key, threshold.samples, threshold.observed)
            self._ready(key, attributor)
        except Exception:  # the next answer of this adapter tries again
            log.exception("attribution: calibrating %s failed", key)
        finally:
            with self._lock:
                self._calibrating.pop(key, None)
                self._loading.pop(key, None)
            done.set()


def merge_attributions(documents: list[dict[str, Any]], weights: list[int], top_k: int) -> dict[str, Any]:
    """One `attribution` object for a request with several answers (a completions call with a list of prompts).

    Shares are the answers' shares weighted by answer length; the `top_k` best examples are pooled by score. A
    single answer's document is returned as it is."""
    if len(documents) == 1:
        return documents[0]
    attributed = [(doc, w) for doc, w in zip(documents, weights, strict=True) if doc.get("attributed") and w > 0]
    if not attributed:
        merged = unavailable(
            "; ".join(sorted({doc.get("reason", "no answer cleared the null threshold") for doc in documents}))
        )
        statuses = {doc.get("status") for doc in documents}
        return {**merged, "status": "pending"} if "pending" in statuses else merged
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
        "status": "attributed",
        "shares": dict(sorted(shares.items())),
        "top_examples": examples[:top_k],
        "answers": len(documents),
    }
