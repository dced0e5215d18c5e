"""Who is paid for an answer's evidence: the anti-farming rules between scoring rows and splitting the fee.

Scores say which training rows an answer resembles; these rules say which of those rows are *paid*, so that a
contributor cannot earn by re-uploading others' facts in new words or by flooding the datanet with generic rows:

* **Earliest upload wins a specific span** (`claim_spans`). A short rare span (an invented name, a value) or a long
  span found in only a few rows is one piece of content: when rows of several contributors contain it, only the rows
  of the contributor who uploaded it first (lowest row id: datanet upload order) get its weight. Common spans (a
  template every row shares) stay shared, idf-weighted as before.
* **A row whose evidence was all claimed is a copy** (`evidence_copies`). If the answer's spans that a later row
  contains were all won by an earlier contributor's row, and the later row has no evidence of its own, the later row
  is a copy *for this answer*: its whole score (gradient part too) goes to the row it copied, whatever its wording.
* **Only rows with evidence of their own are paid** (`Attributor.result`). A top-k row is paid when it holds a
  verbatim span of the answer (after claims) or its own gradient z clears the null bar t_z; the rest of the top-k is
  reported for explanation (`paid: false`) but earns nothing, so rows that merely look like every answer (a flood
  of template rows) fill no paid slots.
* **One row's worth per contributor** (`contributor_credit`). A contributor's credit on one answer is its best row's
  score plus a small fraction of the rest (`extra_rows_weight`): many lookalike rows in the top-k are worth about
  one, while an honest contributor's best row is paid in full.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["claim_spans", "contributor_credit", "cosine_copies", "evidence_copies", "upload_ranks"]


def upload_ranks(row_ids: Sequence[Any]) -> np.ndarray:
    """Each index row's place in upload order: datanet row ids are assigned in upload order (integers), so rank by
    them; other ids (tests, custom rows) fall back to index order, which ModelFactory keeps in datanet order."""
    if row_ids and all(isinstance(r, int | np.integer) and not isinstance(r, bool) for r in row_ids):
        order = np.argsort(np.asarray(row_ids, dtype=np.int64), kind="stable")
        ranks = np.empty(len(row_ids), dtype=np.int64)
        ranks[order] = np.arange(len(row_ids))
        return ranks
    return np.arange(len(row_ids), dtype=np.int64)


def claim_spans(examples: Sequence[int], contributors: Sequence[str], ranks: np.ndarray) -> tuple[int, ...]:
    """The rows that keep a specific span: those of the contributor whose row containing it was uploaded first."""
    if len(examples) < 2:
        return tuple(examples)
    first = min(examples, key=lambda e: int(ranks[e]))
    owner = contributors[first]
    return tuple(e for e in examples if contributors[e] == owner)


def evidence_copies(
    credited: np.ndarray,
    kept: Mapping[int, Sequence[tuple[int, int]]],
    lost_to: Mapping[int, set[int]],
    ranks: np.ndarray,
) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Move the score of every row whose spans were all claimed by an earlier contributor to that contributor's
    earliest claiming row (which keeps the larger of the two scores); returns the new scores and the copies."""
    out = credited.copy()
    copies: dict[int, list[int]] = {}
    for row, winners in lost_to.items():
        if kept.get(row) or not winners or out[row] <= 0:
            continue  # it has evidence of its own (or nothing to move)
        source = min(winners, key=lambda w: int(ranks[w]))
        out[source] = max(out[source], out[row])
        out[row] = 0.0
        copies.setdefault(source, []).append(row)
    return out, copies


def contributor_credit(scores: Sequence[tuple[str, float]], extra_rows_weight: float) -> dict[str, float]:
    """Per contributor: its best row's score plus `extra_rows_weight` × the sum of its other rows' scores."""
    rows: dict[str, list[float]] = {}
    for who, value in scores:
        if who and value > 0:
            rows.setdefault(who, []).append(float(value))
    return {who: max(values) + extra_rows_weight * (sum(values) - max(values)) for who, values in sorted(rows.items())}


def cosine_copies(
    combined: np.ndarray,
    features: torch.Tensor,
    where: Mapping[int, Sequence[tuple[int, int]]],
    candidates: int,
    copy_cosine: float,
) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Among the `candidates` best rows, rows whose preconditioned features have cosine >= `copy_cosine` and that
    share the same verbatim evidence (or have none) are one cluster: its best score goes to its earliest row (index
    order), the later copies get 0. Catches verbatim re-uploads and floods of near-identical rows."""
    credited = combined.copy()
    k = min(candidates, len(combined))
    top = [int(i) for i in np.argsort(-combined, kind="stable")[:k] if combined[i] > 0]
    copies: dict[int, list[int]] = {}
    if len(top) < 2:
        return credited, copies
    feats = features[top].to(torch.float32)
    feats = feats / feats.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cosine = (feats @ feats.T).numpy()
    spans_of = [set(where.get(i, ())) for i in top]
    claimed: set[int] = set()
    for a in sorted(range(len(top)), key=lambda j: top[j]):  # earliest row first: it keeps the credit
        if a in claimed:
            continue
        members = [
            b
            for b in range(len(top))
            if b != a and b not in claimed and top[b] > top[a] and cosine[a, b] >= copy_cosine
            and (spans_of[a] & spans_of[b] or not spans_of[a])  # same verbatim evidence (or none to tell apart)
        ]  # fmt: skip
        if not members:
            continue
        credited[top[a]] = max(combined[top[j]] for j in [a, *members])
        for b in members:
            credited[top[b]] = 0.0
            claimed.add(b)
        copies[top[a]] = [top[b] for b in members]
    return credited, copies
