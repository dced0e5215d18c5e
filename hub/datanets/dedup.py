"""Near-duplicate detection: MinHash signatures of character shingles and a datasketch LSH index per datanet.

Signatures follow datasketch's "affine32" MinHash scheme exactly (MurmurHash3 finalizer on each shingle hash, then
`a * h + b` modulo 2^32 with datasketch's own permutations), but are computed for a whole batch of rows in a few numpy
operations instead of one Python call per row — a test checks they equal `datasketch.MinHash.update_batch`. They are
stored per row (uint32 × num_perm bytes) so the index is rebuilt at start without re-reading the rows.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

SCHEME = "affine32"
SEED = 1
_POLY = np.uint32(0x01000193)  # FNV prime: mixes codepoints into one shingle value; the finalizer does the rest
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
_SPACE = re.compile(r"\s+")
MAX_BATCH_SHINGLES = 1 << 14  # bounds the (num_perm × shingles) work array to 8 MB; measured fastest here


def normalise(text: str) -> str:
    """What near-duplicate detection compares: case-folded, whitespace collapsed."""
    return _SPACE.sub(" ", text.casefold()).strip()


def _fmix32(values: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX
    values = values ^ (values >> s1)
    values = values * m1
    values = values ^ (values >> s2)
    values = values * m2
    return values ^ (values >> s3)


class MinHasher:
    """Signatures of texts: `signatures(["...", ...])` → uint32 array (rows × num_perm)."""

    def __init__(self, num_perm: int = 128, shingle: int = 5, seed: int = SEED) -> None:
        self.num_perm = num_perm
        self.shingle = shingle
        self.seed = seed
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
        self._a = np.asarray(a, dtype=np.uint32)
        self._b = np.asarray(b, dtype=np.uint32)

    @property
    def params(self) -> str:
        """Stored with a datanet: signatures made with other parameters are recomputed at start."""
        return f"{SCHEME}/{self.num_perm}/{self.shingle}/{self.seed}"

    def shingle_hashes(self, text: str) -> np.ndarray:
        """uint32 hashes of the text's character shingles (one shingle for texts shorter than the shingle size)."""
        return self._batch_shingles([text])[0]

    def _batch_shingles(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(hashes of every shingle of every text, start offset of each text's hashes)."""
        k = self.shingle
        points = [np.frombuffer(text.encode("utf-32-le"), dtype="<u4") for text in texts]
        lengths = np.array([len(p) for p in points], dtype=np.int64)
        pad = np.zeros(k, dtype=np.uint32)  # a gap of k zeros: no window spans two texts, empty texts get one
        joined = np.concatenate([part for p in points for part in (p, pad)]) if points else pad
        width = len(joined) - (k - 1)
        rolling = np.zeros(width, dtype=np.uint32)
        for j in range(k):
            rolling = rolling * _POLY + joined[j : j + width]
        # Valid windows start inside a text and end inside it (or cover all of a short text).
        counts = np.maximum(lengths - k + 1, 1)
        text_starts = np.concatenate([[0], np.cumsum(lengths + k)[:-1]])
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        index = np.repeat(text_starts - offsets, counts) + np.arange(int(counts.sum()))
        return rolling[index], offsets

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        start = 0
        while start < len(texts):
            # Grow the chunk until it holds about MAX_BATCH_SHINGLES shingles.
            end, total = start, 0
            while end < len(texts) and (total == 0 or total + len(texts[end]) <= MAX_BATCH_SHINGLES):
                total += max(len(texts[end]) - self.shingle + 1, 1)
                end += 1
            hashes, offsets = self._batch_shingles(texts[start:end])
            # (num_perm × shingles): each text's shingles are contiguous in a row, which reduceat scans fast.
            permuted = self._a[:, None] * _fmix32(hashes)[None, :] + self._b[:, None]
            out[start:end] = np.minimum.reduceat(permuted, offsets, axis=1).T
            start = end
        return out

    def to_bytes(self, signature: np.ndarray) -> bytes:
        return np.ascontiguousarray(signature, dtype="<u4").tobytes()

    def from_bytes(self, data: bytes) -> np.ndarray | None:
        """The stored signature, or None if it was made with another number of permutations."""
        if len(data) != 4 * self.num_perm:
            return None
        return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of the two texts behind two signatures."""
    return float(np.count_nonzero(a == b)) / len(a)


class NearDupIndex:
    """LSH over signatures, keyed by anything hashable (the platform uses row hashes)."""

    def __init__(self, hasher: MinHasher, threshold: float) -> None:
        self.hasher = hasher
        self.threshold = threshold
        self.lsh = MinHashLSH(threshold=threshold, num_perm=hasher.num_perm)
        self.signatures: dict[Hashable, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.signatures)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.signatures

    def _sketch(self, signature: np.ndarray) -> LeanMinHash:
        return LeanMinHash(seed=self.hasher.seed, hashvalues=signature, scheme=SCHEME)

    def add(self, key: Hashable, signature: np.ndarray) -> None:
        if key in self.signatures:
            return
        self.lsh.insert(key, self._sketch(signature), check_duplication=False)
        self.signatures[key] = signature

    def add_many(self, items: Sequence[tuple[Hashable, np.ndarray]]) -> None:
        with self.lsh.insertion_session() as session:
            for key, signature in items:
                if key not in self.signatures:
                    session.insert(key, self._sketch(signature), check_duplication=False)
                    self.signatures[key] = signature

    def remove(self, key: Hashable) -> None:
        if self.signatures.pop(key, None) is not None:
            self.lsh.remove(key)

    def query(self, signature: np.ndarray) -> list[tuple[Hashable, float]]:
        """Indexed keys whose estimated similarity reaches the threshold, most similar first."""
        return self._hits(self._sketch(signature), signature)

    def add_unless_near(self, key: Hashable, signature: np.ndarray) -> list[tuple[Hashable, float]]:
        """The near duplicates of `signature`; if there are none, `key` is added (one sketch for both steps)."""
        sketch = self._sketch(signature)
        hits = self._hits(sketch, signature)
        if not hits and key not in self.signatures:
            self.lsh.insert(key, sketch, check_duplication=False)
            self.signatures[key] = signature
        return hits

    def _hits(self, sketch: LeanMinHash, signature: np.ndarray) -> list[tuple[Hashable, float]]:
        if not self.signatures:
            return []
        hits = []
        for key in self.lsh.query(sketch):
            score = similarity(self.signatures[key], signature)
            if score >= self.threshold:
                hits.append((key, score))
        return sorted(hits, key=lambda hit: -hit[1])
