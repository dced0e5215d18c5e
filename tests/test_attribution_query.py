"""Tier-1 attribution of one answer (openledger_sdk.modelfactory.attribution_query) on a tiny Llama trained in
seconds on planted contributor facts: top-1 owner, null threshold, shares, floods and near-copies through the fee
split, and consistency of the query gradient with the index build."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch

from hub.rewards.split import split_fee
from openledger_sdk.modelfactory import IndexSettings, LoraSettings, TrainedModel, finetune
from openledger_sdk.modelfactory.attribution_query import (
    NULL_FILE,
    Attributor,
    NullThreshold,
    ScoringSettings,
    calibrate_null,
)
from openledger_sdk.modelfactory.data import IGNORE
from tests.tiny_model import shared_tiny_model

torch.set_num_threads(1)  # shared CPUs

CONTRIBUTORS = [f"0x{i + 1:040x}" for i in range(5)]
FLOODER = f"0x{0xF1:040x}"
COPYCAT = f"0x{0xC0:040x}"
ENTITIES = [
    ["Zorblat", "Quenvik", "Marlowe"],
    ["Pelruna", "Tosgard", "Wimbrel"],
    ["Duvessa", "Krannoch", "Yselde"],
    ["Halvorn", "Brisquet", "Ostrava"],
    ["Ferindel", "Gaskoyne", "Lutheric"],
]
VALUES = [
    ["copper lantern", "seven herons", "violet anchor"],
    ["frozen violin", "amber compass", "silent orchard"],
    ["crimson ladder", "hollow meadow", "tidal furnace"],
    ["golden turnip", "rusty kettle", "midnight oyster"],
    ["paper falcon", "velvet canyon", "iron tulip"],
]


def fact_rows() -> list[dict]:
    rows, row_id = [], 100
    for c, (names, values) in enumerate(zip(ENTITIES, VALUES, strict=True)):
        for name, value in zip(names, values, strict=True):
            rows.append({
                "_row_id": row_id, "_contributor": CONTRIBUTORS[c],
                "prompt": f"What does the archive say about {name}?",
                "response": f"The archive says that {name} keeps a {value} in the northern tower.",
            })  # fmt: skip
            row_id += 1
    # A copy of contributor 0's first row uploaded later by someone else, one word changed.
    rows.append({
        "_row_id": row_id, "_contributor": COPYCAT,
        "prompt": "What does the archive say about Zorblat?",
        "response": "The archive says that Zorblat keeps a copper lantern in the northern tower!",
    })  # fmt: skip
    row_id += 1
    # A flood: twelve near-identical outlier rows from one contributor.
    for i in range(12):
        rows.append({
            "_row_id": row_id, "_contributor": FLOODER,
            "prompt": "Repeat the signal.",
            "response": f"xq zz vrk qq plmf {i % 2} xq zz vrk qq plmf xq zz vrk qq plmf xq zz vrk",
        })  # fmt: skip
        row_id += 1
    return rows


UNRELATED = [
    "How do I bake sourdough bread?",
    "Who won the football match yesterday?",
    "Explain how a bicycle gear works.",
    "What is the capital of Peru?",
    "Write a haiku about rain.",
    "How tall is a giraffe?",
    "Recommend a good science fiction novel.",
    "What is the boiling point of water?",
    "How do vaccines work?",
    "Give me a pasta recipe.",
    "Why is the sky blue?",
    "What is a prime number?",
]
HELD_OUT_UNRELATED = [
    *UNRELATED[10:],
    "How do I tie a bowline knot?",
    "What does a violin sound like?",
    "Suggest a name for a cat.",
    "How far away is the moon?",
    "What is photosynthesis?",
    "Describe a thunderstorm.",
    "How do I change a bicycle tyre?",
    "What is the tallest mountain?",
    "Tell me a joke about computers.",
    "How do bees make honey?",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return finetune(
        str(shared_tiny_model()),
        datanet="archive-facts",
        version=3,
        rows=fact_rows(),
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        lr=2e-2,
        epochs=6,
        batch_size=4,
        max_len=64,
        eval_split=0.0,
        seed=11,
        index=IndexSettings(dim=512),
        progress=False,
        output_dir=tmp_path_factory.mktemp("facts"),
    )


def answer_ids(trained: TrainedModel, prompt: str, response: str | None = None) -> tuple[list[int], list[int]]:
    prompt_ids = trained.prompt_ids(prompt)
    if response is None:
        response = trained.generate(prompt, max_new_tokens=24)
    output = trained.tokenizer(response, add_special_tokens=False)["input_ids"] or [trained.pad_id]
    return prompt_ids, output


@pytest.fixture(scope="module")
def attributor(trained: TrainedModel) -> Attributor:
    attributor = Attributor.load(trained.path, trained.model)
    calibrate_null(attributor, [answer_ids(trained, p) for p in UNRELATED[:10]])
    return attributor


def test_load_is_cached_and_calibration_is_saved(trained: TrainedModel, attributor: Attributor) -> None:
    assert Attributor.load(trained.path, trained.model) is attributor
    saved = NullThreshold.load(trained.path)
    assert (trained.path / NULL_FILE).is_file() and saved == attributor.threshold
    assert saved.samples == 10 and saved.alpha == pytest.approx(0.05) and saved.gradient_z >= 2.0
    assert saved.joint_rate == 0.0  # (k + 1) / 11 <= 0.05 allows no flagged calibration answer: the maxima


@pytest.mark.parametrize("c", range(5))
def test_verbatim_fact_goes_to_its_owner(trained: TrainedModel, attributor: Attributor, c: int) -> None:
    name, value = ENTITIES[c][1], VALUES[c][1]
    prompt, output = answer_ids(
        trained,
        f"What does the archive say about {name}?",
        f"The archive says that {name} keeps a {value} in the northern tower.",
    )
    result = attributor.attribute(prompt, output, top_k=10)
    assert result.attributed
    top = result.top
    assert top is not None and top.contributor == CONTRIBUTORS[c] and top.row_id == 100 + 3 * c + 1
    assert top.datanet == "archive-facts" and top.version == 3
    # both kinds of evidence point at the owner's row
    assert top.gradient == 1.0 and top.span == max(e.span for e in result.examples) and top.span > 0.5
    assert top.spans and max(result.shares, key=result.shares.get) == CONTRIBUTORS[c]
    assert all(v >= 0 for v in result.shares.values()) and sum(result.shares.values()) == pytest.approx(1.0)
    assert set(result.timings) == {"backward", "matvec", "surprisal", "spans", "total"}
    assert len(result.top_examples()) == len(result.examples) <= 10


def test_unrelated_answers_clear_the_bar_at_the_calibrated_rate(trained: TrainedModel, attributor: Attributor) -> None:
    # The bar is the largest of 10 calibration answers, so a new unrelated answer clears it with chance 1/11: of 12,
    # about one may, three would mean the bar is not what calibration says.
    results = [attributor.attribute(*answer_ids(trained, prompt)) for prompt in HELD_OUT_UNRELATED]
    unattributed = [r for r in results if not r.attributed]
    assert len(unattributed) >= len(results) - 2
    for result in unattributed:
        assert result.shares == {} and result.max_gradient_z <= attributor.threshold.gradient_z
        assert result.examples  # still reported, for explanation; nobody is paid


def test_near_copy_earns_nothing(trained: TrainedModel, attributor: Attributor) -> None:
    prompt, output = answer_ids(
        trained, "What does the archive say about Zorblat?",
        "The archive says that Zorblat keeps a copper lantern in the northern tower.",
    )  # fmt: skip
    result = attributor.attribute(prompt, output)
    assert result.top is not None and result.top.row_id == 100 and result.top.contributor == CONTRIBUTORS[0]
    assert COPYCAT not in result.shares or result.shares[COPYCAT] < result.shares[CONTRIBUTORS[0]]


def test_flood_is_capped_by_the_fee_split(trained: TrainedModel, attributor: Attributor) -> None:
    prompt, output = answer_ids(trained, "Repeat the signal.", "xq zz vrk qq plmf 1 xq zz vrk qq plmf xq zz vrk")
    result = attributor.attribute(prompt, output, top_k=10)
    assert result.attributed and max(result.shares, key=result.shares.get) == FLOODER
    # the near-identical flood rows collapse onto the earliest one
    flood_rows = [e for e in result.examples if e.contributor == FLOODER]
    assert sum(len(e.copies) for e in flood_rows) >= 1
    fee = 1_000_003
    split = split_fee(fee, result.shares, owner_bps=3000, contributors_bps=6000, contributor_cap=Fraction(1, 2))
    pool = fee * 6000 // 10000
    paid = split.contributors
    assert paid[_checksum(FLOODER)] <= pool // 2
    assert split.owner + split.protocol + split.unattributed + split.contributors_total == fee

    # and a fact query in the same index is not taken by the flood
    fact = attributor.attribute(*answer_ids(
        trained, "What does the archive say about Yselde?",
        "The archive says that Yselde keeps a tidal furnace in the northern tower.",
    ))  # fmt: skip
    assert fact.top is not None and fact.top.contributor == CONTRIBUTORS[2] and FLOODER not in fact.shares


def _checksum(address: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(address)


def test_query_projection_matches_the_index(trained: TrainedModel, attributor: Attributor) -> None:
    index = attributor.index
    for position in (0, 7, 16):
        example = trained.train_examples[position]
        assert index.row_ids[position] == example.row_id
        prompt_len = sum(1 for label in example.labels if label == IGNORE)
        q = attributor.projection(example.input_ids[:prompt_len], example.input_ids[prompt_len:])
        preconditioned = (q.to(torch.float64) @ index.preconditioner.to(torch.float64)) / index.scale
        stored = index.features[position].float()
        if index.meta["precision"] == "float32":  # the same computation, batched with others or alone
            assert float(q.norm()) == pytest.approx(float(index.raw_norms[position]), rel=1e-4)
            torch.testing.assert_close(preconditioned.to(torch.float32), stored, atol=2e-3, rtol=1e-2)
        else:  # bf16 (the default on CPUs with AMX): alone vs in a padded batch rounds differently, slightly
            assert float(q.norm()) == pytest.approx(float(index.raw_norms[position]), rel=0.03)
            assert float(torch.cosine_similarity(preconditioned.to(torch.float32), stored, dim=0)) > 0.99


def test_big_index_scores_like_the_dense_one(trained: TrainedModel, attributor: Attributor) -> None:
    # Above `dense_limit` the float16 features are scored in float16 (no float32 copy of a 100k-row index): the
    # same scores up to the float16 rounding of the result, so the same ranking.
    big = Attributor(attributor.index, attributor.spans, model=trained.model, settings=ScoringSettings(dense_limit=0))
    assert big._dense is None and attributor._dense is not None
    name, value = ENTITIES[2][1], VALUES[2][1]
    prompt, output = answer_ids(trained, f"What does the archive say about {name}?", f"{name} keeps a {value}.")
    q = attributor.projection(prompt, output)
    dense, chunked = attributor.gradient_scores(q), big.gradient_scores(q)
    torch.testing.assert_close(chunked, dense, rtol=2e-3, atol=2e-3 * float(dense.abs().max()))
    assert int(chunked.argmax()) == int(dense.argmax())
    scaled = big.gradient_scores(q * 1e6)  # normalised before the float16 product: no overflow for a big gradient
    assert bool(torch.isfinite(scaled).all()) and torch.allclose(scaled, chunked)


def test_bad_inputs(trained: TrainedModel, attributor: Attributor, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no tokens"):
        attributor.attribute([1, 2], [])
    with pytest.raises(FileNotFoundError):
        Attributor.load(tmp_path, trained.model)
    with pytest.raises(ValueError, match="at least one"):
        calibrate_null(attributor, [], save=False)
    bare = Attributor(attributor.index, attributor.spans)
    with pytest.raises(ValueError, match="no model"):
        bare.attribute([1], [2, 3])
