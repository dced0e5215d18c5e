"""Tier-1 Proof of Attribution on one inference: gradient influence + span evidence → top examples → shares.

The OpenLoRA request path calls, per request (after generation, unless the request says `attribution: false`):

    attributor = Attributor.load(adapter_dir, base_model_or_model)      # cached per adapter folder
    result = attributor.attribute(prompt_ids, output_ids, top_k=10)      # model= the PEFT model, adapter active
    record_inference(..., shares=result.shares, top_examples=result.top_examples())

How one answer is scored (n training examples in the adapter's index):

1. Gradient influence. One forward + backward pass of the answer's mean cross-entropy (labels on `output_ids`
   only) w.r.t. the adapter's LoRA weights, per-layer weight gradients einsum(dL/dy, x) in the index's layout order,
   CountSketch-projected with the index's seed — `attribution_index.query_projection`, the very code that built the
   index, so the query and the training examples live in the same space. Then one matrix-vector product with the
   stored preconditioned features: g_i = q·M·Φ_i / (‖q‖ ‖Φ_i‖) (TRAK, LESS-normalised so high-gradient-norm
   outlier rows cannot win every query). Standardised over the index: z_i = (g_i − mean g) / std g ("how far this
   example stands out for this answer"); G_i = max(z_i, 0) / max(max_j z_j, t_z) ∈ [0, 1] (see 3).
2. Span evidence. The suffix array finds the maximal spans of the answer that occur verbatim in training responses;
   each is judged in words (`span_evidence`): at least `min_words` words count however common (idf-weighted), a
   shorter span only when rare in the datanet and specific: its multi-token (uncommon) words have `rare_letters`
   letters, or it is `rare_surprisal` nats surprising to the base model (`base_surprisal`, adapter switched off) —
   an invented name restated in a paraphrase or a value of everyday words counts; a number or stock phrase does not.
   A span of W words found in df examples weighs w = (W / words of the answer) · idf with
   idf = log(1 + n / df) / log(1 + n);
   S_i = min(1, Σ w over the spans example i contains) ∈ [0, 1].
3. Combined: c_i = gradient_weight · G_i + (1 − gradient_weight) · S_i / max_j S_j (default 0.5 / 0.5). Both parts
   are scaled to a best row of 1, so the row with the strongest verbatim evidence and the row with the strongest
   gradient weigh the same (unscaled, a paraphrase's few rare spans were outvoted by a wrong gradient top row);
   except that G is scaled to max(max_j z_j, t_z): a best z below the null bar is noise and weighs less.
4. Null test. The answer is attributed when max_j z_j > t_z or max_j S_j > t_S, the two thresholds calibrated
   together so that at most alpha (5%) of answers to off-topic prompts clear either (`attribution_null`), stored
   beside the index in `attribution_null.json`. Otherwise the result is "unattributed": no shares (the rewards side
   sends the whole contributors' pool to the unattributed bucket), top examples still reported.
5. Who owns a span, and copies (`attribution_credit`). A span found in at most `specific_rows` rows is claimed by
   the contributor who uploaded it first (lowest datanet row id): other contributors' rows get none of its weight.
   A row whose spans were all claimed is a copy for this answer: its score goes to the claiming row. Among the top
   candidates, rows with feature cosine ≥ `copy_cosine` sharing a span are one cluster too (earliest row keeps it).
6. Pay. Only top-k rows with evidence of their own are paid: S_i > 0 (after claims) or z_i > t_z (the null bar,
   row by row); the others are reported with `paid: false`, listed after the paid ones. A contributor's credit is
   its best paid row's c plus `extra_rows_weight` (0.1) × its other paid rows' c; shares = credits normalised to sum
   to 1. The per-contributor cap and "never more than the fee" are applied by `hub.rewards.split` when metered.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openledger_sdk.modelfactory.attribution_credit import (
    claim_spans,
    contributor_credit,
    cosine_copies,
    evidence_copies,
    upload_ranks,
)
from openledger_sdk.modelfactory.attribution_index import (
    INDEX_FILE,
    INDEX_META,
    AttributionIndex,
    precision_autocast,
    query_projection,
)
from openledger_sdk.modelfactory.attribution_null import NULL_FILE, NullThreshold, calibrate_null
from openledger_sdk.modelfactory.attribution_result import AttributedExample, AttributionResult, normalised_shares
from openledger_sdk.modelfactory.base_surprisal import token_surprisal
from openledger_sdk.modelfactory.data import IGNORE
from openledger_sdk.modelfactory.span_evidence import answer_words, is_evidence
from openledger_sdk.modelfactory.span_index import SPAN_META, SpanIndex

__all__ = [
    "NULL_FILE",
    "AttributedExample",
    "AttributionResult",
    "Attributor",
    "NullThreshold",
    "ScoringSettings",
    "calibrate_null",
]


@dataclass(frozen=True)
class ScoringSettings:
    """Knobs of the combination; the defaults are what the quality harness measured."""

    gradient_weight: float = 0.5  # c = w·G + (1 − w)·S
    min_words: int = 8  # a verbatim span of this many words is evidence however many rows contain it (idf-weighted)
    rare_letters: int = 8  # a shorter span counts when rare and its multi-token words have this many letters ...
    rare_occurrences: int = 4  # ... rare: at most this many occurrences (and in at most 5% of the rows)
    rare_surprisal: float = 20.0  # ... or, with a base model to ask, this many nats surprising to it (0: off)
    min_span: int = 8  # tokens: the long-span rule when no tokenizer is given to decode spans
    rare_span: int = 2  # tokens: the shortest candidate span the suffix array reports for the rules above
    candidates: int = 64  # top examples by combined score examined for near-copies
    copy_cosine: float = 0.98  # feature cosine at or above which two rows sharing a span are one cluster
    specific_rows: int = 4  # a span in at most this many rows is specific content: its earliest uploader claims it
    claim_spans: bool = True  # earliest upload wins a specific span; a row whose evidence was all claimed is a copy
    extra_rows_weight: float = 0.1  # a contributor's credit: best row + this × its other top-k rows (1: plain sum)
    evidence_only: bool = True  # pay only rows with a verbatim span or a gradient z above the null bar themselves
    dense_limit: int = 1 << 26  # keep float32 features in memory up to this many numbers (256 MB); chunked above


_CACHE: dict[tuple[str, int, str], Attributor] = {}
_CACHE_LOCK = threading.Lock()


def _load_peft(adapter_dir: Path, base: str | Path, device: str) -> tuple[Any, Callable[[list[int]], str]]:
    """The adapter on its base model (float32) and the base model's decoder (spans are judged in words)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from openledger_sdk.catalog import resolve_base_model

    base_path = Path(base)
    base_dir = base_path if base_path.is_dir() else resolve_base_model(str(base), None)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).to(device)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=False).eval(), tokenizer.decode


class Attributor:
    """The attribution index, span index and null threshold of one adapter, ready to score answers."""

    def __init__(
        self,
        index: AttributionIndex,
        spans: SpanIndex | None,
        *,
        model: Any = None,
        threshold: NullThreshold | None = None,
        settings: ScoringSettings | None = None,
        directory: str | Path | None = None,
        decode: Callable[[list[int]], str] | None = None,
    ) -> None:
        self.index = index
        self.decode = decode  # token ids → text: spans are judged in words (without it: only long token spans)
        self.spans = spans
        self.model = model
        self.settings = settings or ScoringSettings()
        self.threshold = threshold or NullThreshold()
        self.directory = Path(directory) if directory is not None else None
        self.lock = threading.Lock()  # one backward pass at a time on a shared model
        n = len(index)
        self._dense = index.features.to(torch.float32) if n * index.dim <= self.settings.dense_limit else None
        self._norms = index.raw_norms.to(torch.float32).clamp_min(1e-12)
        self._ranks = upload_ranks(index.row_ids)  # upload order: who uploaded a specific span first
        sources = index.meta.get("datanets") or []
        self._source = (sources[0].get("name"), sources[0].get("version")) if sources else (None, None)
        # Every row's datanet and version: one source per index today (ModelFactory trains on one datanet version).

    @classmethod
    def load(
        cls,
        adapter_dir: str | Path,
        base_model_or_model: Any = None,
        *,
        settings: ScoringSettings | None = None,
        device: str = "cpu",
        cache: bool = True,
        decode: Callable[[list[int]], str] | None = None,
    ) -> Attributor:
        """The adapter folder's indexes (+ null threshold), loaded once per folder and model.

        `base_model_or_model`: the PEFT model serving this adapter (its LoRA layout must match the index), or a
        base model folder / catalog name to load the adapter onto (float32, on `device`), or None to pass
        `model=` to every `attribute()` call. `decode` (token ids → text; the base model's tokenizer when a base is
        given) lets spans be judged in words; without it only long token spans count.
        """
        directory = Path(adapter_dir).resolve()
        if not (directory / INDEX_META).is_file():
            raise FileNotFoundError(f"{directory} has no attribution index ({INDEX_META})")
        model_key = "none" if base_model_or_model is None else (
            str(base_model_or_model) if isinstance(base_model_or_model, str | Path) else f"id{id(base_model_or_model)}"
        )  # fmt: skip
        key = (str(directory), (directory / INDEX_FILE).stat().st_mtime_ns, model_key)
        with _CACHE_LOCK:
            if cache and key in _CACHE:
                return _CACHE[key]
        index = AttributionIndex.load(directory)
        spans = SpanIndex.load(directory) if (directory / SPAN_META).is_file() else None
        model = base_model_or_model
        if isinstance(model, str | Path):
            model, base_decode = _load_peft(directory, model, device)
            decode = decode or base_decode
        threshold = NullThreshold.load(directory)
        attributor = cls(
            index, spans, model=model, threshold=threshold, settings=settings, directory=directory, decode=decode
        )
        if cache:
            with _CACHE_LOCK:
                _CACHE[key] = attributor
        return attributor

    # --- the pieces --------------------------------------------------------------------------------------------

    def projection(self, prompt_ids: Sequence[int], output_ids: Sequence[int], model: Any = None) -> torch.Tensor:
        """The answer's projected LoRA gradient [dim] (same computation as the index build)."""
        model = model if model is not None else self.model
        if model is None:
            raise ValueError("no model: pass model= (the PEFT model with this adapter active) or load with one")
        output = [int(t) for t in output_ids]
        if not output:
            raise ValueError("the output has no tokens to attribute")
        ids = [int(t) for t in prompt_ids] + output
        labels = [IGNORE] * len(prompt_ids) + output
        with self.lock, torch.enable_grad():
            return query_projection(model, self.index, ids, labels).detach().cpu()

    def gradient_scores(self, q: torch.Tensor) -> torch.Tensor:
        """g_i = q·M·Φ_i / (‖q‖ ‖Φ_i‖) for every row: one matrix-vector product [n]."""
        q = q.to(torch.float32).reshape(-1)
        if q.shape[0] != self.index.dim:
            raise ValueError(f"query projection has {q.shape[0]} entries; this index has dim {self.index.dim}")
        unit = q / q.norm().clamp_min(1e-12)
        if self._dense is not None:
            raw = self._dense @ unit
        else:  # big index: a float16 product on the stored features (4× faster than converting them to float32);
            # with a unit query and features in [-1, 1] it cannot overflow, and it rounds only the result (~5e-4)
            raw = (self.index.features @ unit.to(torch.float16)).to(torch.float32)
        return raw * self.index.scale / self._norms

    def span_scores(
        self,
        output_ids: Sequence[int],
        lost_to: dict[int, set[int]] | None = None,
        surprisal: Callable[[], np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, dict[int, list[tuple[int, int]]]]:
        """S_i for every row [n], and the (start, length) spans each credited row contains (`span_evidence`).

        `lost_to` (filled in when given): row → the earlier contributor's rows that claimed a span it contains.
        `surprisal`: gives the nats per output token under the base model (`base_surprisal`, None when it cannot);
        asked only when a rare short span fails the letter rule, so most answers skip that forward pass."""
        n = len(self.index)
        scores = np.zeros(n, dtype=np.float64)
        where: dict[int, list[tuple[int, int]]] = {}
        output = [int(t) for t in output_ids]
        settings = self.settings
        if self.spans is None or len(output) < min(settings.min_span, settings.rare_span):
            return scores, where
        norm = math.log1p(n)
        decode = self.decode
        matches = self.spans.longest_matches(
            output,
            min_len=settings.min_span,
            max_examples=n,
            rare_len=settings.rare_span if decode is not None else None,
            rare_occurrences=settings.rare_occurrences,
        )
        total = answer_words(decode(output)) if decode is not None else len(output)
        for match in matches:
            if decode is None:  # no text to judge: long token spans only, measured in tokens
                size = match.length
            else:
                pieces = [decode([t]) for t in output[match.start : match.start + match.length]]
                rare = self.spans.is_rare(match.occurrences, settings.rare_occurrences)
                rule = {"rare": rare, "min_words": settings.min_words, "rare_letters": settings.rare_letters}
                counts, measured = is_evidence(pieces, **rule)
                judged = not counts and rare and measured.words > 0  # a short rare span of words, letters said no
                nats = surprisal() if judged and surprisal is not None else None
                if nats is not None:  # the letter rule said no: the base model's surprisal may still say yes
                    surprise = float(nats[match.start : match.start + match.length].sum())
                    counts, measured = is_evidence(
                        pieces, **rule, surprise=surprise, rare_surprisal=settings.rare_surprisal
                    )
                if not counts:
                    continue
                size = max(measured.words, 1)
            df = max(len(match.examples), 1)
            weight = min(size / total, 1.0) * (math.log1p(n / df) / norm if n > 1 else 1.0)
            paid = match.examples
            if settings.claim_spans and df <= settings.specific_rows:  # specific content: first uploader only
                paid = claim_spans(match.examples, self.index.contributors, self._ranks)
                if lost_to is not None:
                    for example in set(match.examples) - set(paid):
                        lost_to.setdefault(example, set()).update(paid)
            for example in paid:
                scores[example] += weight
                where.setdefault(example, []).append((match.start, match.length))
        return np.minimum(scores, 1.0), where

    def surprisal(self, prompt_ids: Sequence[int], output_ids: Sequence[int], model: Any = None) -> np.ndarray | None:
        """Nats per output token under the base model (None: no decoder to judge spans in words, rule off, or a
        model without a switchable adapter)."""
        model = model if model is not None else self.model
        if self.decode is None or self.settings.rare_surprisal <= 0 or model is None:
            return None
        device_type = next(model.parameters()).device.type
        autocast = precision_autocast(self.index.meta.get("precision", "float32"), device_type)  # as the backward
        with self.lock:
            return token_surprisal(model, prompt_ids, output_ids, autocast)

    # --- one answer --------------------------------------------------------------------------------------------

    def statistics(self, prompt_ids: Sequence[int], output_ids: Sequence[int], model: Any = None) -> dict[str, Any]:
        """Everything `attribute()` combines: z [n], S [n], spans per row, timings (also used by calibration)."""
        started = time.perf_counter()
        q = self.projection(prompt_ids, output_ids, model)
        backward = time.perf_counter()
        g = self.gradient_scores(q)
        std = float(g.std()) if len(g) > 1 else 0.0
        z = (g - g.mean()) / std if std > 0 else torch.zeros_like(g)
        matvec = time.perf_counter()
        surprisal_seconds = [0.0]

        @functools.cache
        def surprisal() -> np.ndarray | None:  # one forward pass, at most, and only if a span needs it
            began = time.perf_counter()
            try:
                return self.surprisal(prompt_ids, output_ids, model)
            finally:
                surprisal_seconds[0] = time.perf_counter() - began

        lost_to: dict[int, set[int]] = {}
        span, where = self.span_scores(output_ids, lost_to, surprisal)
        done = time.perf_counter()
        timings = {"backward": backward - started, "matvec": matvec - backward, "surprisal": surprisal_seconds[0],
                   "spans": done - matvec - surprisal_seconds[0]}  # fmt: skip
        z_np = z.numpy().astype(np.float64)  # lost_to: the rows whose specific spans an earlier contributor claimed
        return {"z": z_np, "span": span, "where": where, "lost_to": lost_to, "timings": timings}

    def attribute(
        self, prompt_ids: Sequence[int], output_ids: Sequence[int], model: Any = None, top_k: int = 10
    ) -> AttributionResult:
        """Attribute one generated answer (`output_ids`, after `prompt_ids`) to training rows and contributors."""
        started = time.perf_counter()
        result = self.result(self.statistics(prompt_ids, output_ids, model), top_k)
        result.timings["total"] = time.perf_counter() - started
        return result

    def result(self, stats: Mapping[str, Any], top_k: int = 10) -> AttributionResult:
        """Top examples and shares from `statistics()` (the scoring rules after the backward pass)."""
        z, span, where = stats["z"], stats["span"], stats["where"]
        max_z = float(z.max()) if len(z) else 0.0
        max_span = float(span.max()) if len(span) else 0.0
        # The gradient part is scaled to the null bar when no row clears it: a best z that is noise (below t_z)
        # must not weigh as much as a verbatim span (it used to tie with the owner's span row and be listed first).
        gradient = np.clip(z, 0.0, None) / max(max_z, self.threshold.gradient_z, 1e-12)
        weight = self.settings.gradient_weight
        combined = weight * gradient + (1.0 - weight) * span / max(max_span, 1e-12)
        settings = self.settings
        features = self.index.features
        credited, copies = cosine_copies(combined, features, where, settings.candidates, settings.copy_cosine)
        credited, claimed = evidence_copies(credited, where, stats.get("lost_to", {}), self._ranks)
        for source, rows in claimed.items():
            copies.setdefault(source, []).extend(rows)
        # Only rows that carry evidence on their own are paid: a verbatim span (after claims) or a gradient z that
        # clears the null bar by itself. The rest of the top-k is reported (explanation) but earns nothing.
        paid = (span > 0) | (z > self.threshold.gradient_z) if settings.evidence_only else np.ones(len(z), bool)
        for source, rows in copies.items():  # a cluster's evidence is its members' (the source took their score)
            paid[source] |= bool(paid[rows].any())
        # Paid rows first (by score; on equal scores the row with more verbatim evidence), then the unpaid ones: the
        # first example is the best row that earns. (Seen on SmolLM2: a template row's gradient and the owner's span
        # tied at c = 0.5, and index order put the template row first.)
        best = [int(i) for i in np.lexsort((-span, -credited))[:top_k] if credited[i] > 0]
        order = sorted(best, key=lambda i: not paid[i])
        examples = [
            AttributedExample(
                position=i,
                row_id=self.index.row_ids[i],
                contributor=self.index.contributors[i],
                datanet=self._source[0],
                version=self._source[1],
                score=float(credited[i]),
                gradient=float(gradient[i]),
                gradient_z=float(z[i]),
                span=float(span[i]),
                spans=tuple(where.get(i, ())),
                copies=tuple(self.index.row_ids[j] for j in copies.get(i, ())),
                paid=bool(paid[i]),
            )
            for i in order
        ]
        credit = contributor_credit([(e.contributor, e.score) for e in examples if e.paid], settings.extra_rows_weight)
        attributed = bool(credit) and self.threshold.clears(max_z, max_span)
        shares = normalised_shares(credit) if attributed else {}
        timings = {**stats["timings"], "total": sum(stats["timings"].values())}
        return AttributionResult(attributed, examples, shares, max_z, max_span, self.threshold, timings)
