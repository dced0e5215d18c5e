"""The engine's token logprobs in OpenAI's two response shapes: chat (`logprobs.content`: token, logprob, UTF-8
bytes, top_logprobs) and legacy completions (`tokens`, `token_logprobs`, `top_logprobs` as token -> logprob,
`text_offset`). A token's `bytes` are its exact bytes (a token can hold part of a UTF-8 character; joining the bytes
of consecutive tokens gives the text); its `token` string is those bytes decoded, a partial character as U+FFFD."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any

from transformers.convert_slow_tokenizer import bytes_to_unicode

from hub.openlora.token_logprobs import TokenLogprob

NEG_INF_LOGPROB = -9999.0  # what OpenAI reports for a token that could not be chosen (JSON has no -inf)
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece's byte-fallback pieces


class TokenTexts:
    """Each token id's bytes and text, cached (the same few thousand tokens come back all the time)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self._byte_level = type(decoder).__name__ == "ByteLevel"  # GPT-2 style: one printable char per byte
        self._byte_of_char = {char: byte for byte, char in bytes_to_unicode().items()}
        self.bytes = functools.lru_cache(maxsize=1 << 16)(self._bytes)

    def _bytes(self, token_id: int) -> bytes:
        piece = self._tokenizer.convert_ids_to_tokens(token_id)
        if piece is None:
            return self._tokenizer.decode([token_id]).encode()
        if self._byte_level and all(c in self._byte_of_char for c in piece):
            return bytes(self._byte_of_char[c] for c in piece)
        byte = _BYTE_TOKEN.fullmatch(piece)
        if byte:
            return bytes([int(byte.group(1), 16)])
        return piece.replace("\u2581", " ").encode()  # SentencePiece writes a leading space as U+2581

    def text(self, token_id: int) -> str:
        return self.bytes(token_id).decode("utf-8", errors="replace")


def _finite(logprob: float) -> float:
    return logprob if math.isfinite(logprob) else NEG_INF_LOGPROB


def _chat_token(texts: TokenTexts, token_id: int, logprob: float) -> dict[str, Any]:
    return {"token": texts.text(token_id), "logprob": _finite(logprob), "bytes": list(texts.bytes(token_id))}


def chat_logprobs(entries: Sequence[TokenLogprob], texts: TokenTexts) -> dict[str, Any]:
    """A chat choice's `logprobs` object (also the shape of each streamed chunk's, for that chunk's tokens)."""
    content = [
        {**_chat_token(texts, e.token_id, e.logprob), "top_logprobs": [_chat_token(texts, t, lp) for t, lp in e.top]}
        for e in entries
    ]
    return {"content": content, "refusal": None}


def completion_logprobs(
    entries: Sequence[TokenLogprob], texts: TokenTexts, text_offset: int = 0
) -> tuple[dict[str, Any], int]:
    """A legacy completion choice's `logprobs` and the text offset after its last token (streams continue from it).
    `top_logprobs` holds the k most likely tokens plus the chosen one, so up to k + 1 entries, as OpenAI's."""
    tokens, offsets, tops = [], [], []
    for e in entries:
        token = texts.text(e.token_id)
        tokens.append(token)
        offsets.append(text_offset)
        text_offset += len(token)
        top = {texts.text(t): _finite(lp) for t, lp in e.top}
        top.setdefault(token, _finite(e.logprob))
        tops.append(top)
    shaped = {
        "tokens": tokens,
        "token_logprobs": [_finite(e.logprob) for e in entries],
        "top_logprobs": tops,
        "text_offset": offsets,
    }
    return shaped, text_offset
