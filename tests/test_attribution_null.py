"""The null rule of attribution (issue 16): only spans that are evidence count (judged in words: a number or a run
of function words is never "rare"), the two tests share one false-attribution budget, and an old per-test threshold
file is recalibrated rather than trusted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from openledger_sdk.modelfactory.attribution_index import AttributionIndex
from openledger_sdk.modelfactory.attribution_null import NULL_FILE, NullThreshold, calibrate_null, joint_thresholds
from openledger_sdk.modelfactory.attribution_query import Attributor
from openledger_sdk.modelfactory.span_evidence import is_evidence
from openledger_sdk.modelfactory.span_index import SpanIndex
from tests.tiny_model import gpt2_tokenizer

TOKENIZER = gpt2_tokenizer()
HONEST = [f"The registry records that Zorblatquen{i} owns the amber compass number {i}." for i in range(40)]
# A contributor who uploads rows of bare figures and stock phrases, hoping every arithmetic or chatty answer
# "quotes" them.
FARMER = ["The answer is 81.", "The answer is 9.", "Of course! Here is the answer: 42.", "I hope this helps!"]


def ids(text: str) -> list[int]:
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


def span_attributor(rows: list[str]) -> Attributor:
    """An attributor whose spans are real (suffix array over the rows); the gradient side is not used here."""
    n = len(rows)
    index = AttributionIndex(
        features=torch.zeros(n, 8, dtype=torch.float16),
        scale=1.0,
        row_ids=list(range(n)),
        contributors=["0x" + "1" * 40] * n,
        preconditioner=None,
        raw_norms=torch.ones(n),
        meta={"projection": {"dim": 8}},
    )
    spans = SpanIndex.build([ids(row) for row in rows], list(range(n)))
    return Attributor(index, spans, decode=TOKENIZER.decode)


def evidence(text: str, rare: bool = True) -> bool:
    pieces = [TOKENIZER.decode([t]) for t in ids(text)]
    return is_evidence(pieces, rare=rare, min_words=8, rare_letters=8)[0]


def test_numbers_and_common_words_are_never_rare_evidence_but_an_invented_name_is() -> None:
    assert not evidence(" 81") and not evidence(" 3.14159")  # digits are not words
    assert not evidence(" of the") and not evidence(" I hope this helps!")  # one token per word: everyday language
    assert evidence(" Zorblatquen")  # a word the tokenizer never merged: rare in language at large
    assert not evidence(" Zorblatquen", rare=False)  # ... but common in this datanet: no longer specific
    assert evidence(" it is said that the small house by the river", rare=False)  # long spans count (idf-weighted)


def test_a_farmer_of_figures_and_stock_phrases_is_not_credited_for_arithmetic_answers() -> None:
    attributor = span_attributor(HONEST + FARMER)
    for answer in ("The answer is 81.", "The square root of 81 is 9.", "Of course! I hope this helps!"):
        scores, where = attributor.span_scores(ids(answer))
        assert scores.max() == 0.0 and not where, answer
    # A paraphrase that restates an honest row's invented name is still evidence for that row.
    scores, _ = attributor.span_scores(ids("It is Zorblatquen17 who has it, they say."))
    assert int(np.argmax(scores)) == 17 and scores[17] > 0


def test_without_a_decoder_only_long_token_spans_count() -> None:
    attributor = span_attributor(HONEST + FARMER)
    attributor.decode = None
    assert attributor.span_scores(ids("It is Zorblatquen17 who has it, they say."))[0].max() == 0.0
    assert attributor.span_scores(ids(HONEST[5]))[0][5] > 0


@pytest.mark.parametrize("correlation", [0.0, 0.6])
def test_the_joint_false_attribution_rate_is_the_configured_alpha(correlation: float) -> None:
    """On a synthetic null (z Gaussian; S zero for most answers, heavy-tailed otherwise), thresholds calibrated on
    20000 answers flag alpha of 100000 fresh ones; each test at its own 95th percentile would flag about twice that."""
    rng = np.random.default_rng(7)

    def null(n: int) -> tuple[np.ndarray, np.ndarray]:
        shared = rng.normal(size=n)
        z = correlation * shared + np.sqrt(1 - correlation**2) * rng.normal(size=n)
        latent = correlation * shared + np.sqrt(1 - correlation**2) * rng.normal(size=n)
        s = np.where(latent > 0.5, rng.exponential(0.1, size=n), 0.0)  # ~30% of answers quote something
        return z, s

    alpha = 0.05
    t_z, t_s, q, rate = joint_thresholds(*null(20_000), alpha)
    assert rate <= alpha and 1 - alpha <= q <= 1
    z, s = null(100_000)
    fresh = float(np.mean((z > t_z) | (s > t_s)))
    assert abs(fresh - alpha) < 0.01, fresh
    separate = float(np.mean((z > np.quantile(z, 0.95)) | (s > np.quantile(s, 0.95))))
    assert separate > 1.5 * alpha  # the rule this replaces


def test_an_old_per_test_threshold_file_is_recalibrated_and_a_foreign_one_refused(tmp_path: Path) -> None:
    old = {"format": "openledger-attribution-null/1", "gradient_z": 99.0, "span": 1.0, "quantile": 0.95, "samples": 12}
    (tmp_path / NULL_FILE).write_text(json.dumps(old))
    assert NullThreshold.load(tmp_path) is None  # made by the 2 x 5% rule: not trusted, recalibrated
    (tmp_path / NULL_FILE).write_text(json.dumps({**old, "format": "openledger-attribution-null/2"}))
    assert NullThreshold.load(tmp_path) is None  # reciting answers set its span bar: recalibrated too
    (tmp_path / NULL_FILE).write_text(json.dumps({"format": "something-else/1"}))
    with pytest.raises(ValueError, match="is not an"):
        NullThreshold.load(tmp_path)
    saved = NullThreshold(gradient_z=2.5, span=0.1, alpha=0.05, quantile=0.97, joint_rate=0.05, samples=120)
    saved.save(tmp_path)
    assert NullThreshold.load(tmp_path) == saved and saved.calibrated and not NullThreshold().calibrated


def test_a_calibration_killed_while_saving_leaves_the_previous_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL between writing the new file and renaming it over the old one (simulated: the rename never happens)."""
    first = NullThreshold(gradient_z=2.5, span=0.1, alpha=0.05, quantile=0.97, joint_rate=0.05, samples=120)
    first.save(tmp_path)

    def killed(*_args: object) -> None:
        raise SystemExit("killed before the rename")

    monkeypatch.setattr("openledger_sdk.files.os.replace", killed)
    with pytest.raises(SystemExit):
        NullThreshold(gradient_z=9.0, span=0.9, samples=100).save(tmp_path)
    assert NullThreshold.load(tmp_path) == first  # whole and loadable: the old threshold, not half of the new one


def test_an_adapter_answer_reciting_the_datanet_does_not_set_the_span_bar() -> None:
    """An over-fitted adapter answers off-topic prompts with its rows' content; those spans are evidence, not the
    chance matches the span bar bounds. Kept in, they put the bar above every honest paraphrase."""
    attributor = span_attributor(HONEST + FARMER)
    attributor.projection = lambda *_args, **_kwargs: torch.ones(8)  # type: ignore[method-assign]  # no model here
    base = [(ids("Q:"), ids(f"The weather is nice today, friend number {i}.")) for i in range(40)]
    reciting = [(ids("Q:"), ids(f"It is Zorblatquen{i} who has it, they say.")) for i in range(10)]
    answers = base + reciting
    kept_in = calibrate_null(attributor, answers, save=False)
    assert kept_in.span > 0  # 10 of 50 answers hold a span: the bar sits at their level
    fresh = attributor.span_scores(ids("It is Zorblatquen33 who has it, they say."))[0].max()
    assert not kept_in.clears(0.0, fresh)  # ... so a fresh paraphrase of a row is not attributed
    adapter = [False] * len(base) + [True] * len(reciting)
    threshold = calibrate_null(attributor, answers, save=False, from_adapter=adapter)
    assert threshold.span == 0.0 and threshold.observed["reciting"] == 10 and threshold.samples == 50
    assert threshold.clears(0.0, fresh)
    with pytest.raises(ValueError, match="from_adapter has 3 entries"):
        calibrate_null(attributor, answers, save=False, from_adapter=[True] * 3)


def test_the_base_model_is_asked_only_for_a_rare_span_the_letter_rule_refused() -> None:
    """A planted value of everyday words ("the woolen glacier") fails the letter rule; the base model's surprisal
    decides it. Its forward pass is skipped for answers that do not need it."""
    attributor = span_attributor([*HONEST, "The treasure of Sarnphel is the woolen glacier.", *FARMER])
    glacier = len(HONEST)
    asked: list[int] = []

    def base_model(nats: float) -> Callable[[], np.ndarray]:
        def surprisal() -> np.ndarray:
            asked.append(1)
            return np.full(64, nats)

        return surprisal

    answer = ids("The object belongs to the woolen glacier.")
    scores, _ = attributor.span_scores(answer, surprisal=base_model(15.0))  # ~60 nats over the span: surprising
    assert int(np.argmax(scores)) == glacier and scores[glacier] > 0 and asked
    asked.clear()
    assert attributor.span_scores(answer, surprisal=base_model(0.5))[0].max() == 0.0  # what any model writes
    assert asked
    asked.clear()
    named = attributor.span_scores(ids("It is Zorblatquen17 who has it, they say."), surprisal=base_model(0.5))[0]
    assert named[17] > 0 and not asked  # the letter rule already said yes: no forward pass
    assert attributor.span_scores(ids("Numbers: 81."), surprisal=base_model(15.0))[0].max() == 0.0
    assert not asked  # the only match (" 81.") has no words: nothing for the base model to judge
