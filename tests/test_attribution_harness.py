"""The attribution harness's own arithmetic (bench/attribution_*.py): bootstrap intervals, LDS, random subsets, the
farming accounting through the platform's fee split, and the farmer's uploads through the real datanet service.

The harness's numbers are only as good as these helpers, so each is checked on inputs whose answer is known.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.attribution_farming import (
    FARMER,
    FEE,
    address_of,
    earnings,
    extra_share,
    generic_rows,
    paraphrased_copies,
    published_rows,
    share_of_pool,
    uploads,
)
from bench.attribution_lds import random_subsets, tracin_scores, trak_scores
from bench.attribution_results import cpu_description, merge_write
from bench.attribution_stats import bootstrap_ci, lds_per_query, lds_summary, paired_bootstrap
from hub.rewards.config import RewardSettings
from hub.rewards.split import SplitError

A, B, C = (address_of(name) for name in ("alice", "bob", FARMER))


# --- bootstrap and LDS ----------------------------------------------------------------------------------------------


def test_bootstrap_interval_brackets_the_mean_and_is_seeded() -> None:
    values = np.random.default_rng(1).normal(0.3, 0.2, size=40)
    low, high = bootstrap_ci(values, seed=5)
    assert low < values.mean() < high and high - low < 0.2  # the standard error is 0.2 / sqrt(40) ≈ 0.03
    assert bootstrap_ci(values, seed=5) == [low, high]
    assert bootstrap_ci([0.25] * 8, seed=0) == [0.25, 0.25]  # no spread, no width
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([], seed=0)


def test_paired_bootstrap_measures_the_difference() -> None:
    a = np.random.default_rng(2).normal(size=30)
    assert paired_bootstrap(a, a + 0.5, seed=0) == {"diff": 0.5, "ci95": [0.5, 0.5]}
    worse = paired_bootstrap(a, a - np.abs(np.random.default_rng(3).normal(1, 0.1, size=30)), seed=0)
    assert worse["ci95"][1] < 0


def test_lds_is_one_for_a_linear_truth_and_minus_one_when_reversed() -> None:
    rng = np.random.default_rng(0)
    masks = random_subsets(12, 40, 0.5, rng).astype(np.float64)
    tau = rng.normal(size=(3, 12))  # [queries, rows]
    losses = -(masks @ tau.T)  # each row in S lowers the query's loss by exactly its τ
    assert np.allclose(lds_per_query(tau, masks, losses), 1.0)
    assert np.allclose(lds_per_query(-tau, masks, losses), -1.0)
    noise = lds_per_query(rng.normal(size=(3, 12)), masks, losses)
    assert np.all(np.abs(noise) < 0.9)  # unrelated scores do not predict the losses
    summary = lds_summary(lds_per_query(tau, masks, losses), seed=0)
    assert summary == {"lds": 1.0, "ci95": [1.0, 1.0]}


def test_random_subsets_keep_the_fraction() -> None:
    masks = random_subsets(64, 50, 0.5, np.random.default_rng(0))
    assert masks.shape == (50, 64) and set(masks.sum(axis=1)) == {32}
    assert len({m.tobytes() for m in masks}) == 50  # distinct subsets
    assert masks.mean(axis=0).min() > 0.3 and masks.mean(axis=0).max() < 0.7  # every row in and out
    with pytest.raises(ValueError, match="keep some rows"):
        random_subsets(4, 3, 1.0, np.random.default_rng(0))


def test_trak_scores_match_the_preconditioner_and_tend_to_tracin() -> None:
    gen = torch.Generator().manual_seed(0)
    phi, queries = torch.randn(10, 6, generator=gen), torch.randn(3, 6, generator=gen)
    gram = phi.double().T @ phi.double()
    lam = 0.1 * float(torch.trace(gram)) / 6  # the index's λ: damping × mean eigenvalue over min(n, dim)
    expected = queries.double() @ torch.linalg.inv(gram + lam * torch.eye(6, dtype=torch.float64)) @ phi.double().T
    assert np.allclose(trak_scores(phi, queries, 0.1), expected.numpy())
    assert np.allclose(tracin_scores(phi, queries), (queries @ phi.T).numpy(), atol=1e-6)

    # With a huge damping the preconditioner is ≈ I/λ: the same ranking as the plain gradient dot product.
    def same_order(x: np.ndarray, y: np.ndarray) -> bool:
        return all((np.argsort(a) == np.argsort(b)).all() for a, b in zip(x, y, strict=True))

    far = trak_scores(phi, queries, 1e9)
    assert same_order(far, tracin_scores(phi, queries))
    assert not same_order(trak_scores(phi, queries, 1e-3), far)  # a small damping really changes the ranking


# --- farming accounting ---------------------------------------------------------------------------------------------


def test_earnings_follow_the_platform_split() -> None:
    settings = RewardSettings()  # 40% of each fee to the contributors, at most half of it to one contributor
    assert settings.contributors_bps == 4000 and settings.contributor_cap == Fraction(1, 2)
    ledger = earnings([{A: 1.0}, {A: 0.5, B: 0.5}, {}], settings)
    pool = FEE * 4000 // 10000
    assert ledger["inferences"] == 3 and ledger["pool"] == 3 * pool
    assert ledger["paid"] == {A: pool // 2 + pool // 2, B: pool // 2}  # A alone is capped at half the pool
    assert ledger["unattributed"] == pool // 2 + pool  # the capped excess and the unattributed answer
    assert share_of_pool(ledger, A) == pytest.approx(1 / 3) and share_of_pool(ledger, C) == 0.0


def test_extra_share_is_what_farming_adds_over_honest() -> None:
    settings = RewardSettings()
    honest = earnings([{A: 0.5, B: 0.5}, {A: 0.5, C: 0.5}], settings)
    farming = earnings([{A: 0.5, C: 0.5}, {A: 0.5, C: 0.5}], settings)
    extra = extra_share(honest, farming, C)
    assert extra == {"honest_share": 0.25, "farming_share": 0.5, "extra_share": 0.25, "relative_gain": 1.0}
    assert extra_share(honest, honest, C)["extra_share"] == 0.0
    assert extra_share(farming, honest, B)["relative_gain"] is None  # nothing earned honestly: no ratio


def test_a_farmer_cannot_be_paid_through_a_bad_share() -> None:
    # The accounting goes through the platform's split: a non-address or a negative weight earns nothing extra.
    with pytest.raises(SplitError, match="not an Ethereum address"):
        earnings([{"farmer": 1.0}], RewardSettings())
    ledger = earnings([{A: 1.0, C: -5.0}], RewardSettings())
    assert C not in ledger["paid"] and ledger["paid"][A] == FEE * 4000 // 10000 // 2


# --- the farmer's uploads ---------------------------------------------------------------------------------------------

FACTS = [
    {"user": "alice", "contributor": A, "entity": "Zorblat", "value": "copper lantern"},
    {"user": "bob", "contributor": B, "entity": "Quenvik", "value": "amber violin"},
    {"user": FARMER, "contributor": C, "entity": "Pelruna", "value": "silent kettle"},
]


def test_strategies_upload_what_they_say() -> None:
    args = argparse.Namespace(flood_rows=6, seed=0)
    honest = dict(uploads("honest", FACTS, args))
    copier = dict(uploads("paraphrase", FACTS, args))
    flooder = dict(uploads("flood", FACTS, args))
    assert [u for u, _ in uploads("honest", FACTS, args)] == ["alice", "bob", FARMER]  # the farmer comes last
    assert len(honest[FARMER]) == 2 and honest["alice"] == copier["alice"] == flooder["alice"]
    copies = copier[FARMER][2:]
    assert len(copies) == 2 and {"Zorblat", "Quenvik"} == {c["prompt"].split()[-1].rstrip("?") for c in copies}
    assert len(flooder[FARMER]) == 2 + 6 and not any("Zorblat" in r["response"] for r in flooder[FARMER])
    with pytest.raises(ValueError, match="unknown farming strategy"):
        uploads("bribe", FACTS, args)


def test_the_datanet_rejects_copies_and_keeps_paraphrases(tmp_path: Path) -> None:
    alice = [{"prompt": "What does the registry record for Zorblat?",
              "response": "The registry records that Zorblat owns the copper lantern."}]  # fmt: skip
    stolen = [dict(alice[0]), {**alice[0], "response": alice[0]["response"].replace("the copper", "a copper")}]
    farmer = stolen + paraphrased_copies(FACTS[:1]) + generic_rows(4, seed=0)
    rows, report = published_rows(tmp_path, [("alice", alice), (FARMER, farmer)])
    assert report["farmer_rows_uploaded"] == 7 and report["farmer_rows_rejected"] == 2  # exact and near copy
    assert report["published_rows"] == len(rows) == 1 + 1 + 4
    owners = {r["response"]: r["_contributor"] for r in rows}
    assert owners[alice[0]["response"]] == A  # the original stays with its author
    assert [r["_contributor"] for r in rows].count(C) == 5
    assert sorted(r["_row_id"] for r in rows) == sorted({r["_row_id"] for r in rows})


# --- results --------------------------------------------------------------------------------------------------------


def test_merge_write_keeps_other_sections(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    merge_write(out, {"quality": {"p": 1}, "lds": {"old": True}})
    merged = merge_write(out, {"lds": {"new": True}, "farming": {"extra_share": 0.01}})
    assert merged == {"quality": {"p": 1}, "lds": {"new": True}, "farming": {"extra_share": 0.01}}
    out.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not overwriting"):
        merge_write(out, {"lds": {}})
    assert out.read_text() == "[1, 2]"


def test_cpu_description_reads_model_and_bf16_flags() -> None:
    info = "model name\t: Example CPU 9000\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile sse\n"
    described = cpu_description(info)
    assert described["cpu_flags"] == ["avx2", "avx512f", "amx_bf16", "amx_tile"]
    assert described["cpu_model"] == "Example CPU 9000"


# --- the real-model harness's planted facts (bench/attribution_real.py) ---------------------------------------------


def test_real_planted_facts_never_collide() -> None:
    """No two facts share a name, a name's first syllable, or any word of their values (shared words made SmolLM2
    blend every answer into one value); one fact per contributor at the committed sizes."""
    from bench.attribution_real import planted_facts, training_rows
    from bench.attribution_real_measure import paraphrased_question, verbatim_question

    facts = planted_facts(24, 1, seed=0)
    assert len({f["contributor"] for f in facts}) == 24
    words = [w for f in facts for w in f["value"].split()]
    assert len(words) == len(set(words)) == 48
    assert len({f["entity"] for f in facts}) == 24
    rows = training_rows(facts)
    prompts = {r["prompt"] for r in rows}
    assert len(prompts) == len(rows)
    assert not prompts & {paraphrased_question(f) for f in facts}  # the paraphrase is never trained on
    assert {verbatim_question(f) for f in facts} <= prompts
    assert planted_facts(24, 1, seed=0) == facts
    with pytest.raises(SystemExit):
        planted_facts(40, 1, seed=0)


def test_an_offtopic_answer_reciting_a_value_is_rightly_credited_to_its_owner() -> None:
    """The real harness's false-attribution rule: attributed without reciting a planted value, or with the largest
    share going to someone who owns none of the values recited."""
    from bench.attribution_real_measure import offtopic_verdict

    owner_of = {"silent violin": "0xviolin", "ivory pumpkin": "0xpumpkin"}
    text = "The capital of Japan is the silent violin."
    right = offtopic_verdict({"attributed": True, "shares": {"0xviolin": 0.8, "0xpumpkin": 0.2}}, text, owner_of)
    assert right == {"recites": True, "attributed": True, "false": False}
    wrong = offtopic_verdict({"attributed": True, "shares": {"0xviolin": 0.3, "0xpumpkin": 0.7}}, text, owner_of)
    assert wrong["false"]  # recites the violin, pays the pumpkin's owner most
    plain = "The capital of Japan is Tokyo."
    assert offtopic_verdict({"attributed": True, "shares": {"0xviolin": 1.0}}, plain, owner_of)["false"]
    assert not offtopic_verdict({"attributed": False, "shares": {}}, plain, owner_of)["false"]
