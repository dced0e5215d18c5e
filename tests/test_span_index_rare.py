"""Short verbatim spans count as attribution evidence only when they are rare: an invented name restated in a
paraphrase is found; a common phrase, or any fragment of a datanet too small for rarity to mean anything, is not."""

from __future__ import annotations

from openledger_sdk.modelfactory.span_index import SpanIndex
from tests.tiny_model import gpt2_tokenizer

TOKENIZER = gpt2_tokenizer()
NAMES = ["Zorblat", "Quenvik", "Marlowe", "Pelruna", "Tosgard", "Wimbrel", "Halvorn", "Brisquet", "Duvessa", "Yselde"]
VALUES = ["copper lantern", "seven herons", "violet anchor", "frozen violin", "amber compass"]


def ids(text: str) -> list[int]:
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


def index_of(rows: list[str]) -> SpanIndex:
    return SpanIndex.build([ids(row) for row in rows], list(range(len(rows))))


def rows(count: int) -> list[str]:
    return [
        f"The archive says that {NAMES[i % len(NAMES)]}{i // len(NAMES) or ''} keeps a {VALUES[i % len(VALUES)]}."
        for i in range(count)
    ]


def spans(index: SpanIndex, answer: str) -> list[str]:
    query = ids(answer)
    found = index.longest_matches(query, min_len=8, max_examples=len(index), rare_len=3, rare_occurrences=4)
    return [TOKENIZER.decode(query[m.start : m.start + m.length]) for m in found]


def test_a_restated_invented_name_is_found_but_common_phrases_are_not() -> None:
    index = index_of(rows(60))
    found = spans(index, "It is Quenvik3 who owns it, they say.")
    assert found == [" Quenvik3"]  # occurs once in 60 rows
    assert spans(index, "The archive says nothing about it.") == []  # in every row: a phrase, not evidence


def test_long_spans_count_however_common_and_short_ones_need_a_big_enough_datanet() -> None:
    small = index_of(rows(6))
    assert spans(small, "Someone says that Quenvik keeps a secret.") == []  # 1 row in 6 is not rare
    assert spans(small, "The archive says that Quenvik keeps a seven herons.") != []  # a long verbatim span
