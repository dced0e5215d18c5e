"""Span evidence: a token suffix array over the training rows' response tokens, and longest-match queries.

The corpus is every example's response tokens, each followed by a unique negative separator (so no match crosses
an example boundary, and the array never runs off the end). `longest_matches(tokens, min_len)` finds, for each
position of a generated output, the longest stretch that occurs verbatim in the training responses, and reports the
maximal spans of at least `min_len` tokens with the examples (row ids) that contain them and how often they occur
(rarer spans are stronger evidence; weighting is the attribution side's choice). numpy only, no torch.

Files: `span_index.safetensors` (tokens int32, suffix array int32/int64, example starts) + `span_index.json`.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPAN_FILE = "span_index.safetensors"
RARE_SHARE = 0.05  # a short span is rare only if it occurs at most this often per training row
SPAN_META = "span_index.json"
FORMAT = "openledger-span-index/1"


def suffix_array(text: np.ndarray) -> np.ndarray:
    """Suffix array of an integer sequence by prefix doubling (O(n log² n) with numpy sorts).

    Rank pairs (rank[i], rank[i + k]) are sorted each round until all ranks are distinct; fine for the few
    million tokens of a datanet version.
    """
    n = len(text)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    _, rank = np.unique(np.asarray(text), return_inverse=True)
    rank = rank.astype(np.int64).ravel()
    k = 1
    while True:
        second = np.full(n, -1, dtype=np.int64)  # rank of the suffix k further on; -1 past the end
        if k < n:
            second[: n - k] = rank[k:]
        order = np.lexsort((second, rank))
        first_sorted, second_sorted = rank[order], second[order]
        changed = np.empty(n, dtype=bool)
        changed[0] = False
        changed[1:] = (first_sorted[1:] != first_sorted[:-1]) | (second_sorted[1:] != second_sorted[:-1])
        new_rank = np.empty(n, dtype=np.int64)
        new_rank[order] = np.cumsum(changed)
        rank = new_rank
        if rank.max() == n - 1 or k >= n:
            return order.astype(np.int64)
        k *= 2


@dataclass(frozen=True)
class SpanMatch:
    """`length` tokens of the query starting at `start` occur verbatim in the training responses."""

    start: int
    length: int
    occurrences: int  # how many times the span occurs in the training responses
    examples: tuple[int, ...]  # example positions in the index (at most `max_examples`)
    row_ids: tuple[Any, ...]


class SpanIndex:
    """Suffix array over response tokens with example boundaries; `longest_matches()` is the query."""

    def __init__(self, tokens: np.ndarray, sa: np.ndarray, starts: np.ndarray, row_ids: Sequence[Any]) -> None:
        self.tokens = tokens  # concatenated responses, each followed by its separator -(example + 1)
        self.sa = sa
        self.starts = starts  # where each example's tokens begin in `tokens`
        self.row_ids = list(row_ids)

    @classmethod
    def build(cls, docs: Sequence[Sequence[int]], row_ids: Sequence[Any]) -> SpanIndex:
        if len(docs) != len(row_ids):
            raise ValueError("one row id per document")
        lengths = np.array([len(d) + 1 for d in docs], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        tokens = np.empty(int(lengths.sum()), dtype=np.int64)
        for i, doc in enumerate(docs):
            tokens[starts[i] : starts[i] + len(doc)] = doc
            tokens[starts[i] + len(doc)] = -(i + 1)
        index_type = np.int32 if len(tokens) < 2**31 else np.int64
        return cls(tokens.astype(index_type), suffix_array(tokens).astype(index_type), starts, row_ids)

    def __len__(self) -> int:
        return len(self.row_ids)

    @property
    def nbytes(self) -> int:
        return int(self.tokens.nbytes + self.sa.nbytes + self.starts.nbytes)

    def _narrow(self, lo: int, hi: int, depth: int, token: int) -> tuple[int, int]:
        # Suffixes in [lo, hi) share `depth` tokens, so their token at `depth` is sorted: binary search it.
        def key(j: int) -> int:
            return int(self.tokens[self.sa[j] + depth])

        return bisect_left(range(hi), token, lo=lo, key=key), bisect_right(range(hi), token, lo=lo, key=key)

    def match_at(self, query: Sequence[int]) -> tuple[int, int, int]:
        """(length, lo, hi): the longest prefix of `query` in the corpus and its suffix-array interval."""
        lo, hi, length = 0, len(self.sa), 0
        for token in query:
            new_lo, new_hi = self._narrow(lo, hi, length, int(token))
            if new_lo >= new_hi:
                break
            lo, hi, length = new_lo, new_hi, length + 1
        return length, lo, hi

    def example_of(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, positions, side="right") - 1

    def longest_matches(
        self,
        tokens: Sequence[int],
        min_len: int = 8,
        max_examples: int = 20,
        *,
        rare_len: int | None = None,
        rare_occurrences: int = 4,
    ) -> list[SpanMatch]:
        """Maximal spans of `tokens` (length >= min_len) found verbatim in the training responses.

        With `rare_len` (< min_len), shorter spans of at least `rare_len` tokens count too when they occur at most
        `rare_occurrences` times in the corpus and in at most 5% of the rows: a rare few-token span (an invented
        name, a specific figure) is evidence where a common phrase of the same length is not."""
        query = [int(t) for t in tokens]
        shortest = min(min_len, rare_len) if rare_len else min_len
        spans: list[SpanMatch] = []
        reach = 0  # end of the last reported span: a span ending there or before is contained in it
        for start in range(len(query)):
            if len(query) - start < shortest:
                break
            length, lo, hi = self.match_at(query[start:])
            if length < shortest or start + length <= reach:
                continue
            if length < min_len and not self.is_rare(hi - lo, rare_occurrences):
                continue  # short and common: a phrase many rows use
            reach = start + length
            examples = np.unique(self.example_of(self.sa[lo:hi].astype(np.int64)))[:max_examples]
            spans.append(
                SpanMatch(
                    start=start,
                    length=length,
                    occurrences=hi - lo,
                    examples=tuple(int(e) for e in examples),
                    row_ids=tuple(self.row_ids[int(e)] for e in examples),
                )
            )
        return spans

    def is_rare(self, occurrences: int, limit: int) -> bool:
        # Rare in absolute terms and as a share of the rows: in a datanet of a handful of rows every fragment is
        # "rare", and rarity says nothing.
        return occurrences <= limit and occurrences <= RARE_SHARE * len(self)

    def save(self, directory: str | Path) -> list[Path]:
        from safetensors.numpy import save_file

        directory = Path(directory)
        save_file(
            {"tokens": self.tokens, "suffix_array": self.sa, "starts": self.starts},
            str(directory / SPAN_FILE),
            metadata={"format": FORMAT},
        )
        meta = {"format": FORMAT, "examples": len(self), "tokens": int(len(self.tokens)), "row_ids": self.row_ids}
        (directory / SPAN_META).write_text(json.dumps(meta, separators=(",", ":")), encoding="utf-8")
        return [directory / SPAN_FILE, directory / SPAN_META]

    @classmethod
    def load(cls, directory: str | Path) -> SpanIndex:
        from safetensors.numpy import load_file

        directory = Path(directory)
        arrays = load_file(str(directory / SPAN_FILE))
        meta = json.loads((directory / SPAN_META).read_text(encoding="utf-8"))
        return cls(arrays["tokens"], arrays["suffix_array"], arrays["starts"], meta["row_ids"])
