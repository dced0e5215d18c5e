"""ModelFactory data preparation, settings validation and the span index: tokenizer only, no model, seconds."""

from __future__ import annotations

import numpy as np
import pytest

from openledger_sdk.modelfactory.config import IndexSettings, LoraSettings, TrainConfig, validation_problems
from openledger_sdk.modelfactory.data import (
    IGNORE,
    collate,
    epoch_order,
    loss_token_count,
    order_hash,
    prepare,
    rows_from,
)
from openledger_sdk.modelfactory.errors import FinetuneError
from openledger_sdk.modelfactory.span_index import SpanIndex, suffix_array
from tests.tiny_model import gpt2_tokenizer


@pytest.fixture(scope="module")
def tok():
    return gpt2_tokenizer()


def chat_rows(n: int = 6) -> list[dict]:
    return [
        {"_row_id": 100 + i, "_contributor": f"0x{i:040x}", "prompt": f"question {i}?", "response": f"answer {i}."}
        for i in range(n)
    ]


def test_labels_cover_only_the_response(tok) -> None:
    data = prepare(chat_rows(1), tok, max_len=64, eval_split=0.0, seed=0)
    ex = data.train[0]
    prompt_text = tok.apply_chat_template([{"role": "user", "content": "question 0?"}], add_generation_prompt=True,
                                          tokenize=False)  # fmt: skip
    prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    assert ex.input_ids[: len(prompt_ids)] == prompt_ids
    assert ex.labels[: len(prompt_ids)] == [IGNORE] * len(prompt_ids)
    response = ex.labels[len(prompt_ids) :]
    assert IGNORE not in response and response == ex.response_ids
    # The response text, the template's line end and EOS (the tiny template has no end marker of its own).
    assert tok.decode(response) == "answer 0.\n" + tok.eos_token
    assert (ex.row_id, ex.contributor) == (100, "0x" + "0" * 40)
    batch = collate([ex, *prepare(chat_rows(3), tok, max_len=64, eval_split=0.0, seed=0).train[1:]], tok.pad_token_id)
    assert batch["labels"].shape == batch["input_ids"].shape
    pad = batch["attention_mask"] == 0
    assert (batch["labels"][pad] == IGNORE).all()
    assert loss_token_count([ex]) == len(ex.response_ids)


def test_text_rows_get_plain_lm_loss(tok) -> None:
    data = prepare([{"text": "the quick brown fox"}, {"text": "jumps over"}], tok, max_len=32, eval_split=0, seed=0)
    ex = data.train[0]
    assert data.format == "text"
    assert ex.labels[0] == IGNORE and ex.labels[1:] == ex.input_ids[1:]
    assert ex.row_id == 0 and ex.contributor == ""  # no snapshot columns: position, unattributed


def test_fallback_template_without_chat_template(tok) -> None:
    plain = gpt2_tokenizer()
    plain.chat_template = None
    data = prepare(chat_rows(1), plain, max_len=64, eval_split=0, seed=0)
    assert data.template == "fallback"
    assert plain.decode(data.train[0].input_ids).startswith("### Prompt:\nquestion 0?\n### Response:\n")


def shared_rows(n: int) -> list[dict]:
    """Rows from three contributors (the held-out split never takes a contributor's last training row)."""
    return [{**row, "_contributor": f"0x{i % 3 + 1:040x}"} for i, row in enumerate(chat_rows(n))]


def test_eval_split_and_order_are_seeded(tok) -> None:
    a = prepare(shared_rows(10), tok, max_len=64, eval_split=0.2, seed=3)
    b = prepare(shared_rows(10), tok, max_len=64, eval_split=0.2, seed=3)
    assert [e.row_id for e in a.eval] == [e.row_id for e in b.eval] and len(a.eval) == 2 and len(a.train) == 8
    assert epoch_order(8, 3, 0) == epoch_order(8, 3, 0) != epoch_order(8, 3, 1)
    assert order_hash([[1, 2], [2, 1]]) == order_hash([[1, 2], [2, 1]]) != order_hash([[2, 1], [1, 2]])
    assert a.rows_sha256 == b.rows_sha256 != prepare(chat_rows(9), tok, max_len=64, eval_split=0, seed=3).rows_sha256
    # Tiny sets still keep one training and one held-out row.
    two = prepare([{**row, "_contributor": "0x" + "1" * 40} for row in chat_rows(2)], tok, max_len=64, eval_split=0.1,
                  seed=0)  # fmt: skip
    assert len(two.train) == 1 and len(two.eval) == 1


def test_bad_data_is_refused_clearly(tok) -> None:
    with pytest.raises(FinetuneError, match="0 rows"):
        prepare([], tok, max_len=64, eval_split=0, seed=0)
    with pytest.raises(FinetuneError, match="columns: answer_text, question_text"):
        prepare([{"question_text": "a", "answer_text": "b"}], tok, max_len=64, eval_split=0, seed=0)
    with pytest.raises(FinetuneError, match="row id 1 appears twice"):
        prepare([{"row_id": 1, "text": "a b"}, {"row_id": 1, "text": "c d"}], tok, max_len=64, eval_split=0, seed=0)
    with pytest.raises(FinetuneError, match="'response' field is empty"):
        prepare([{"prompt": "a", "response": " "}], tok, max_len=64, eval_split=0, seed=0)
    long_prompt = [{"prompt": "word " * 40, "response": "ok"}] * 1
    with pytest.raises(FinetuneError, match="max_len=16 is too small.*longest prompt"):
        prepare(long_prompt, tok, max_len=16, eval_split=0, seed=0)
    with pytest.raises(FinetuneError, match="list of dicts"):
        rows_from({"prompt": "a", "response": "b"})


def test_rows_from_accepts_datasets_and_pandas() -> None:
    import datasets
    import pandas as pd

    rows = chat_rows(2)
    assert rows_from(datasets.Dataset.from_list(rows)) == rows
    assert rows_from(pd.DataFrame(rows))[1]["prompt"] == "question 1?"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lora": LoraSettings(r=0)}, "rank r must be a positive integer"),
        ({"lora": LoraSettings(r=-2)}, "rank r"),
        ({"lora": LoraSettings(alpha=0)}, "alpha"),
        ({"lora": LoraSettings(dropout=1.0)}, "dropout"),
        ({"lora": LoraSettings(target_modules=())}, "target_modules"),
        ({"lr": 0}, "learning rate"),
        ({"lr": -1e-4}, "learning rate"),
        ({"lr": float("nan")}, "learning rate"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"epochs": 1.5}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"grad_accum": 0}, "grad_accum"),
        ({"max_len": 8}, "max_len=8 is too small"),
        ({"eval_split": 1.0}, "eval_split"),
        ({"seed": -1}, "seed"),
        ({"max_steps": 0}, "max_steps"),
        ({"index": IndexSettings(dim=0)}, "index dim"),
        ({"index": IndexSettings(damping=0)}, "damping"),
        ({"index": IndexSettings(precision="fp8")}, "precision must be one of auto, training, bfloat16"),
    ],
)
def test_settings_validation(change: dict, message: str) -> None:
    config = TrainConfig(base="tiny", **change)
    with pytest.raises(FinetuneError, match=message):
        config.validate()


def test_config_hash_is_canonical() -> None:
    a = TrainConfig(base="m", lora=LoraSettings(target_modules=["q_proj", "v_proj"]))
    b = TrainConfig(base="m", lora=LoraSettings(target_modules=("q_proj", "v_proj")))
    assert a.config_hash() == b.config_hash() != TrainConfig(base="m", lr=1e-3).config_hash()
    assert TrainConfig.from_dict(a.to_dict()) == a
    # A config recorded before `precision` existed reads back as what those indexes did: training's own precision.
    old = a.to_dict()
    del old["index"]["precision"]
    assert a.index.precision == "auto" and TrainConfig.from_dict(old).index.precision == "training"
    assert validation_problems(a) == []


def test_suffix_array_matches_naive_sort() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 17, 200):
        text = rng.integers(0, 3, n)
        assert suffix_array(text).tolist() == sorted(range(n), key=lambda i: text[i:].tolist())


def test_span_index_finds_a_planted_verbatim_span(tmp_path) -> None:
    rng = np.random.default_rng(1)
    docs = [rng.integers(0, 5000, 50).tolist() for _ in range(40)]
    planted = list(range(9000, 9012))
    docs[17][20:32] = planted
    docs[3][0:6] = planted[:6]  # a shorter partial copy elsewhere
    index = SpanIndex.build(docs, [f"row-{i}" for i in range(40)])
    query = [1, 2] + planted + [3]
    spans = index.longest_matches(query, min_len=8)
    assert len(spans) == 1
    assert (spans[0].start, spans[0].length, spans[0].row_ids, spans[0].occurrences) == (2, 12, ("row-17",), 1)
    six = index.longest_matches(planted[:6], min_len=6)
    assert six[0].row_ids == ("row-3", "row-17") and six[0].occurrences == 2
    assert index.longest_matches([9999] * 10, min_len=2) == []
    # Matches never cross example boundaries: the end of one example + the start of the next is not a span.
    assert index.longest_matches(docs[0][-4:] + docs[1][:4], min_len=8) == []
    index.save(tmp_path)
    loaded = SpanIndex.load(tmp_path)
    assert loaded.longest_matches(query, min_len=8) == spans
