"""Incremental detokenization with stop strings, per sequence.

Text is decoded from a sliding window of tokens (prefix/read offsets, as in HF's TextStreamer and vLLM), so a
step costs O(window) instead of re-decoding the whole output; incomplete UTF-8 (a trailing U+FFFD) waits for
the next token. With stop strings, the last len(longest stop) - 1 characters are held back from the stream
until they cannot start a stop string any more; the stop string itself is never emitted.
"""

from __future__ import annotations

from typing import Any


class TextStream:
    def __init__(self, tokenizer: Any, stop: tuple[str, ...] = ()) -> None:
        self._tok = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0
        self.stop = stop
        self._hold = max((len(s) for s in stop), default=1) - 1
        self.text = ""  # decoded so far (after truncation at a stop string)
        self._emitted = 0  # characters of `text` already returned
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token_id: int) -> str:
        """Append a token; return the text that can be streamed now. Sets `stopped` if a stop string appeared."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        new_text = self._decode(self._ids[self._prefix :])
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return ""
        delta = new_text[len(prefix_text) :]
        self._prefix, self._read = self._read, len(self._ids)
        start = max(0, len(self.text) - self._hold)
        self.text += delta
        if self.stop:
            cut = min((i for i in (self.text.find(s, start) for s in self.stop) if i >= 0), default=-1)
            if cut >= 0:
                self.text = self.text[:cut]
                self.stopped = True
                return self.flush()
        ready = len(self.text) - self._hold if self.stop else len(self.text)
        if ready <= self._emitted:
            return ""
        out = self.text[self._emitted : ready]
        self._emitted = ready
        return out

    def flush(self) -> str:
        """Everything not yet returned (call when the sequence ends)."""
        if not self.stopped and self._read < len(self._ids):
            # Trailing tokens that never formed complete characters: emit what the tokenizer makes of them.
            tail = self._decode(self._ids[self._prefix :])[len(self._decode(self._ids[self._prefix : self._read])) :]
            self.text += tail
            self._read = len(self._ids)
        out = self.text[self._emitted :]
        self._emitted = len(self.text)
        return out
