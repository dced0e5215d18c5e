"""Which verbatim spans of an answer are evidence that a training row shaped it: measured in words, not tokens.

Token counts mislead: a tokenizer that splits numbers into digits makes " 81" three tokens, and a three-token span a
few rows contain looked like a rare, specific fact. So a span found by the suffix array (`SpanIndex`) is judged by
its text, token by token decoded:

* words are runs of letters (numbers, punctuation and whitespace are not words);
* a word is *uncommon* when the tokenizer needs two or more tokens for it and it is not a function word. Byte-pair
  tokenizers give every frequent word of their training corpus its own token, so "hope", "answer" or "Paris" are
  one token and an invented name ("Zorblatquen"), a rare term or a code is several: a character-level measure of how
  rare a word is in language at large, where a datanet's own counts cannot tell a fact from boilerplate;
* a **long** span (at least `min_words` words) is evidence however many rows contain it; its idf weight makes a
  sentence every row shares worth almost nothing;
* a **short** span is evidence only when it is rare in the training responses (at most `rare_occurrences`
  occurrences and in at most 5% of the rows) and specific: its uncommon words have at least `rare_letters` letters,
  or, where the base model is at hand, it is at least `rare_surprisal` nats surprising to the base model in context
  (`base_surprisal`). An invented name restated in a paraphrase counts, and so does a value of everyday words the
  base model would not have written ("the woolen glacier"); a number, "I hope this helps", or "the answer is" never
  does.

Its weight in S_i is its share of the answer's words times idf (see `attribution_query`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

WORD = re.compile(r"[^\W\d_]+")  # letters only: "81", "3.14" and "_" are not words
# Words so common that a match made of them says nothing about any row (English function words).
_FUNCTION_WORDS = """a an the and or but if of to in on at by for with from as is are was were be been being it its
this that these those there here i you he she we they me him her us them my your his our their what which
who whom whose when
where why how not no yes do does did done have has had can could will would shall should may might must so than then
too very just also only about into over under up down out off again all any both each few more most other some such
own same s t re ve ll d m"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())


@dataclass(frozen=True)
class SpanText:
    words: int  # letter-words in the span
    uncommon_letters: int  # letters of its multi-token words that are not function words


def measure(pieces: Sequence[str]) -> SpanText:
    """Words and uncommon letters of a span given as its tokens' texts (a word may run over several tokens)."""
    words: list[list[str]] = []  # each word as its pieces
    joins = False  # whether the next piece continues the current word
    for piece in pieces:
        for i, run in enumerate(WORD.finditer(piece)):
            starts_piece = i == 0 and run.start() == 0
            if starts_piece and joins and words:
                words[-1].append(run.group())
            else:
                words.append([run.group()])
        joins = bool(piece) and piece[-1].isalpha()
    uncommon = sum(
        len("".join(word)) for word in words if len(word) > 1 and "".join(word).lower() not in FUNCTION_WORDS
    )
    return SpanText(len(words), uncommon)


def answer_words(text: str) -> int:
    """Words of the whole answer (at least 1, so a span's share is defined)."""
    return max(len(WORD.findall(text)), 1)


def is_evidence(
    pieces: Sequence[str],
    *,
    rare: bool,
    min_words: int,
    rare_letters: int,
    surprise: float | None = None,
    rare_surprisal: float = float("inf"),
) -> tuple[bool, SpanText]:
    """Whether a span (its tokens' texts) counts, given whether it is rare in the training responses.

    `surprise`: the span's total surprisal under the base model in nats (`base_surprisal`), when known; a rare span
    at least `rare_surprisal` nats surprising counts too (a value of everyday words, a short invented name)."""
    span = measure(pieces)
    if span.words >= min_words:
        return True, span
    if not rare or span.words == 0:
        return False, span
    return span.uncommon_letters >= rare_letters or (surprise is not None and surprise >= rare_surprisal), span
