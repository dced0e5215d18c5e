"""Farming attribution (issue 16, item 5): a contributor who re-uploads others' facts in its own words, or floods the
datanet with generic rows, must not be paid for other people's answers. A tiny Llama is trained in seconds on a
datanet holding both farmers; the shares of real answers are what a user would see in the inference records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openledger_sdk.modelfactory import IndexSettings, LoraSettings, TrainedModel, finetune
from openledger_sdk.modelfactory.attribution_credit import claim_spans, contributor_credit, upload_ranks
from openledger_sdk.modelfactory.attribution_query import Attributor, ScoringSettings, calibrate_null
from tests.tiny_model import shared_tiny_model

torch.set_num_threads(1)  # shared CPUs

HONEST = [f"0x{i + 1:040x}" for i in range(4)]
COPIER = f"0x{0xC0:040x}"
FLOODER = f"0x{0xF1:040x}"
FACTS = [
    [("Zorblatquen", "copper lantern"), ("Quenvikard", "seven herons")],
    [("Pelrunessa", "frozen violin"), ("Tosgardine", "amber compass")],
    [("Duvessandra", "crimson ladder"), ("Krannochel", "hollow meadow")],
    [("Halvornitz", "golden turnip"), ("Brisquetol", "rusty kettle")],
]
WORDS = ["silver", "quiet", "northern", "broken", "painted", "wooden", "distant", "bright"]
THINGS = ["archive", "harbour", "garden", "library", "tower", "bridge", "market", "chapel"]
UNRELATED = [
    "How do I bake sourdough bread?", "Who won the football match yesterday?", "Explain how a bicycle gear works.",
    "What is the capital of Peru?", "Write a haiku about rain.", "How tall is a giraffe?",
    "Recommend a good science fiction novel.", "What is the boiling point of water?", "How do vaccines work?",
    "Give me a pasta recipe.", "Why is the sky blue?", "What is a prime number?",
]  # fmt: skip
OLD_RULES = ScoringSettings(claim_spans=False, extra_rows_weight=1.0, evidence_only=False)  # before issue 16.5


def farming_rows() -> list[dict]:
    """Honest facts first; then a copier who restates every one of them in its own words; then a flooder."""
    rows: list[dict] = []

    def add(contributor: str, prompt: str, response: str) -> None:
        rows.append({"_row_id": 100 + len(rows), "_contributor": contributor, "prompt": prompt, "response": response})

    for who, facts in zip(HONEST, FACTS, strict=True):
        for name, value in facts:
            add(who, f"What does the archive say about {name}?", f"The archive says that {name} keeps the {value}.")
    for facts in FACTS:
        for name, value in facts:
            add(COPIER, f"What is on record about {name}?", f"On record: {name} is the keeper of the {value}.")
    for i in range(24):  # generic rows in the datanet's answer template, no fact in them
        word, thing = WORDS[i % 8], THINGS[(i * 3) % 8]
        add(FLOODER, f"What does the archive say about the {word} {thing}?",
            f"The archive says that the {word} {thing} keeps nothing yet.")  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return finetune(
        str(shared_tiny_model()), datanet="farmed", version=1, rows=farming_rows(),
        lora=LoraSettings(r=4, alpha=8, dropout=0.0), lr=2e-2, epochs=6, batch_size=4, max_len=64, eval_split=0.0,
        seed=5, index=IndexSettings(dim=512), progress=False, output_dir=tmp_path_factory.mktemp("farmed"),
    )  # fmt: skip


def answer(trained: TrainedModel, prompt: str, response: str | None = None) -> tuple[list[int], list[int]]:
    if response is None:
        response = trained.generate(prompt, max_new_tokens=24)
    output = trained.tokenizer(response, add_special_tokens=False)["input_ids"] or [trained.pad_id]
    return trained.prompt_ids(prompt), output


@pytest.fixture(scope="module")
def attributor(trained: TrainedModel) -> Attributor:
    attributor = Attributor.load(trained.path, trained.model, decode=trained.tokenizer.decode, cache=False)
    calibrate_null(attributor, [answer(trained, p) for p in UNRELATED])
    return attributor


def fact_answers(trained: TrainedModel) -> list[tuple[str, tuple[list[int], list[int]]]]:
    """(owner, answer) for every honest fact: asked as trained, and asked and answered in a third wording."""
    out = []
    for who, facts in zip(HONEST, FACTS, strict=True):
        for name, value in facts:
            out.append((who, answer(trained, f"What does the archive say about {name}?",
                                    f"The archive says that {name} keeps the {value}.")))  # fmt: skip
            out.append((who, answer(trained, f"Which object belongs to {name}?",
                                    f"It is the {value} that belongs to {name}.")))  # fmt: skip
    return out


def mean_shares(attributor: Attributor, answers: list, settings: ScoringSettings) -> dict[str, float]:
    """Each contributor's mean share over the answers (an unattributed answer pays nobody)."""
    attributor.settings = settings
    stats = [attributor.statistics(*ids) for _, ids in answers]
    totals: dict[str, float] = {}
    for st in stats:
        for who, share in attributor.result(st).shares.items():
            totals[who] = totals.get(who, 0.0) + share / len(answers)
    return totals


def test_the_copier_and_the_flooder_gain_nothing_on_others_facts(trained: TrainedModel, attributor: Attributor) -> None:
    answers = fact_answers(trained)
    before = mean_shares(attributor, answers, OLD_RULES)
    after = mean_shares(attributor, answers, ScoringSettings())
    # Under the old rules both farmers were paid for facts they did not contribute ...
    assert before.get(COPIER, 0.0) > 0.1 and before.get(FLOODER, 0.0) > 0.05
    # ... now the copier's restatements are copies of the earlier rows and the flood is worth about one row.
    # (measured: copier 0.24 → 0, flooder 0.07 → 0, each owner 0.16–0.18 → 0.25 = all of its own answers)
    assert after.get(COPIER, 0.0) <= 0.02 and after.get(FLOODER, 0.0) <= 0.02
    honest_after = sum(after.get(h, 0.0) for h in HONEST)
    assert honest_after >= sum(before.get(h, 0.0) for h in HONEST) + 0.1
    # and each answer's best-paid contributor is still the fact's owner
    attributor.settings = ScoringSettings()
    for owner, ids in answers:
        result = attributor.attribute(*ids)
        assert result.attributed and max(result.shares, key=result.shares.get) == owner
        assert result.top is not None and result.top.contributor == owner
        copied = [e for e in result.examples if e.copies]
        assert all(e.contributor != COPIER for e in copied)


def test_a_quoted_wording_is_still_its_rows_evidence(trained: TrainedModel, attributor: Attributor) -> None:
    # What the rules leave open (docs/attribution.md): an answer that quotes the copier's own wording, longer than
    # anything the owner wrote, is that row's evidence — the longest verbatim match decides, not the fact behind it.
    attributor.settings = ScoringSettings()
    result = attributor.attribute(*answer(trained, "What is on record?", "On record: Zorblatquen is the keeper."))
    assert result.top is not None and result.top.contributor == COPIER


def test_rows_without_evidence_are_reported_but_not_paid(trained: TrainedModel, attributor: Attributor) -> None:
    attributor.settings = ScoringSettings()
    _, ids = fact_answers(trained)[1]  # a paraphrased answer: its top-k holds rows with no evidence of their own
    result = attributor.attribute(*ids)
    unpaid = [e for e in result.examples if not e.paid]
    assert unpaid and all(e.to_dict()["paid"] is False for e in unpaid)
    paid = [e for e in result.examples if e.paid]
    assert set(result.shares) == {e.contributor for e in paid}  # shares come from the paid rows only
    bar = attributor.threshold.gradient_z
    assert all(e.span > 0 or e.gradient_z > bar or e.copies for e in paid)


def test_earliest_upload_claims_a_specific_span() -> None:
    ranks = upload_ranks([205, 101, 150])  # datanet ids: upload order, whatever the index order
    assert ranks.tolist() == [2, 0, 1]
    assert upload_ranks(["b", "a"]).tolist() == [0, 1]  # non-integer ids: index order
    contributors = ["0xcopy", "0xowner", "0xowner"]
    assert claim_spans((0, 1, 2), contributors, ranks) == (1, 2)  # every row of the first uploader, no one else
    assert claim_spans((0,), contributors, ranks) == (0,)


def test_a_contributor_is_paid_about_one_row_per_answer() -> None:
    rows = [("0xflood", 0.4)] * 8 + [("0xowner", 1.0), ("0xowner", 0.9), ("0xother", 0.3)]
    credit = contributor_credit(rows, extra_rows_weight=0.1)
    assert credit["0xflood"] == pytest.approx(0.4 + 0.1 * 0.4 * 7)
    assert credit["0xowner"] == pytest.approx(1.09) and credit["0xother"] == pytest.approx(0.3)
    summed = contributor_credit(rows, extra_rows_weight=1.0)
    assert summed["0xflood"] == pytest.approx(3.2)  # the old rule: eight lookalike rows beat the owner


def test_paid_rows_come_first_and_noise_gradients_do_not_tie_with_a_span(
    trained: TrainedModel, attributor: Attributor
) -> None:
    # Seen on the real model: a generic row whose gradient z (3.2) was below the null bar (4.9) tied with the fact
    # owner's span row at c = 0.5 and was listed first, so the answer's top example was a row that earns nothing.
    attributor.settings = ScoringSettings()
    n = len(attributor.index)
    bar = attributor.threshold.gradient_z
    z = np.zeros(n)
    z[0] = 0.9 * bar  # noise: the gradient test does not fire on it
    span = np.zeros(n)
    span[n - 1] = 0.6  # the owner's row holds a verbatim span of the answer
    result = attributor.result({"z": z, "span": span, "where": {n - 1: [(0, 3)]}, "lost_to": {}, "timings": {}})
    assert result.top is not None and result.top.position == n - 1 and result.top.paid
    assert result.examples[1].position == 0 and not result.examples[1].paid
    assert result.examples[1].score == pytest.approx(0.5 * 0.9)  # scaled to the bar, not to the best z
    assert result.shares == {attributor.index.contributors[n - 1]: 1.0}
    # and in any answer's list, every paid row precedes every unpaid one
    for _, ids in fact_answers(trained):
        paid = [e.paid for e in attributor.attribute(*ids).examples]
        assert paid == sorted(paid, reverse=True)
