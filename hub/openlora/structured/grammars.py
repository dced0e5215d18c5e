"""Grammars for structured output, compiled with xgrammar for the engine's tokenizer.

xgrammar was picked over llguidance and outlines-core by `bench/grammar_backends.py`
(bench/results/grammar_backends.json; SmolLM2's 49k-token vocabulary, 16 constrained rows, one thread): filling the
batch's token bitmasks in one library call took a median 52-87 us with xgrammar against 190-5400 us with llguidance
over five runs on a loaded 2-core host; compiling a schema took well under a millisecond (median) with both, while
outlines-core builds a regex automaton over the vocabulary per schema (25-105 ms median, up to 0.8 s) and has no
batch mask call. In the engine, 16 constrained rows decode at 0.95x the tokens/s of the same rows unconstrained.

A compiled grammar is immutable and shared (xgrammar caches it by schema); each request gets its own matcher.
"""

from __future__ import annotations

import json
import threading
import weakref
from typing import Any

import xgrammar as xgr
from xgrammar.structural_tag import (
    JSONSchemaFormat,
    StructuralTag,
    TagFormat,
    TagsWithSeparatorFormat,
    TriggeredTagsFormat,
)

from hub.openlora.errors import InvalidRequestError
from hub.openlora.structured.tool_format import ARGS_PREFIX, CALL_END, CALL_OPEN, CALL_PREFIX, CALL_SEPARATOR

# One whitespace at most between JSON tokens: a model (a random test model above all) cannot pad forever.
MAX_WHITESPACE = 1
CompiledGrammar = xgr.CompiledGrammar


class GrammarCompiler:
    """Compiles response formats and tool sets for one tokenizer (built on first use: ~0.4 s for 50k tokens)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]) -> None:
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids)
        self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        self.vocab_size = vocab_size

    def json_object(self) -> CompiledGrammar:
        """Any JSON object (OpenAI's `json_object`)."""
        return self._compiler.compile_json_schema('{"type": "object"}', any_whitespace=False, strict_mode=False)

    def json_schema(self, schema: dict[str, Any], param: str) -> CompiledGrammar:
        try:
            return self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)
        except Exception as exc:  # xgrammar's RuntimeError names what it could not compile
            raise InvalidRequestError(f"{param}: {_reason(exc)}", code="invalid_value", param=param) from None

    def tool_calls(self, functions: list[dict[str, Any]], choice: str, parallel: bool) -> CompiledGrammar:
        """`choice` "auto": free text, and each `<tool_call>` the model opens is held to a listed function's schema;
        "required" (or a single named function): nothing but calls, at least one (only one unless `parallel`)."""
        tags = [
            TagFormat(
                begin=CALL_PREFIX + f["name"] + ARGS_PREFIX,
                content=JSONSchemaFormat(json_schema=f.get("parameters") or {}, max_whitespace_cnt=MAX_WHITESPACE),
                end=CALL_END,
            )
            for f in functions
        ]
        if choice == "auto":
            fmt: Any = TriggeredTagsFormat(triggers=[CALL_OPEN], tags=tags, stop_after_first=not parallel)
        else:
            fmt = TagsWithSeparatorFormat(
                tags=tags, separator=CALL_SEPARATOR, at_least_one=True, stop_after_first=not parallel
            )
        try:
            return self._compiler.compile_structural_tag(StructuralTag(format=fmt))
        except Exception as exc:
            raise InvalidRequestError(f"tools: {_reason(exc)}", code="invalid_value", param="tools") from None


def _reason(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text.split(": ", 1)[-1] if text.startswith("[") else text  # drop xgrammar's "[time] file:line:" prefix


_compilers: weakref.WeakKeyDictionary[Any, GrammarCompiler] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def compiler_for(engine: Any) -> GrammarCompiler:
    """The engine's grammar compiler, built once (thread-safe: requests compile from the API's thread pool)."""
    with _lock:
        found = _compilers.get(engine)
        if found is None:
            found = GrammarCompiler(engine.tokenizer, engine.runner.vocab_size, sorted(engine.runner.eos_token_ids))
            _compilers[engine] = found
        return found


def new_matcher(grammar: CompiledGrammar) -> xgr.GrammarMatcher:
    return xgr.GrammarMatcher(grammar)
