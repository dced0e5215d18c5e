"""The held-out (eval_split) rows: drawn so that no contributor is left out of training entirely, and listed — row
ids and contributors — in the run's summary and its manifest (they are not trained on, not in the attribution
index, and so not credited by this model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from openledger_sdk.modelfactory import IndexSettings, LoraSettings, finetune
from openledger_sdk.modelfactory.data import prepare
from openledger_sdk.modelfactory.manifest import read_manifest
from tests.tiny_model import gpt2_tokenizer, shared_tiny_model

torch.set_num_threads(1)
SOLO, SMALL, LARGE = (f"0x{i:040x}" for i in (1, 2, 3))


def rows() -> list[dict]:
    """One contributor with a single row, one with 4, one with 5."""
    owners = [SOLO] + [SMALL] * 4 + [LARGE] * 5
    return [
        {"_row_id": 500 + i, "_contributor": who, "prompt": f"Which shelf holds box {i}?", "response": f"Shelf {i}."}
        for i, who in enumerate(owners)
    ]


def test_no_contributor_is_held_out_entirely() -> None:
    tok = gpt2_tokenizer()
    held_ids = set()
    for seed in range(30):
        data = prepare(rows(), tok, max_len=64, eval_split=0.3, seed=seed)
        held = [ex.contributor for ex in data.eval]
        assert len(data.eval) == 3 and SOLO not in held  # the single row of a contributor always trains
        assert {ex.contributor for ex in data.train} == {SOLO, SMALL, LARGE}
        held_ids.update(ex.row_id for ex in data.eval)
    assert held_ids == set(range(501, 510))  # every other row is held out by some seed: still a random draw
    # Even asked to hold out almost everything, each contributor keeps one training row.
    most = prepare(rows(), tok, max_len=64, eval_split=0.9, seed=0)
    assert sorted(ex.contributor for ex in most.train) == sorted([SOLO, SMALL, LARGE])
    # One row per contributor: nothing can be spared, so nothing is held out.
    alone = prepare(rows()[:1] + rows()[1:2] + rows()[5:6], tok, max_len=64, eval_split=0.5, seed=0)
    assert alone.eval == [] and len(alone.train) == 3
    # Rows without a contributor are held out as before.
    anonymous = [{k: v for k, v in r.items() if k != "_contributor"} for r in rows()]
    assert len(prepare(anonymous, tok, max_len=64, eval_split=0.3, seed=0).eval) == 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    return finetune(
        str(shared_tiny_model()), rows=rows(), lora=LoraSettings(r=2, alpha=4), epochs=1, batch_size=4, max_len=48,
        eval_split=0.3, seed=3, index=IndexSettings(dim=32), progress=False,
        output_dir=tmp_path_factory.mktemp("held-out"),
    )  # fmt: skip


def test_manifest_and_summary_list_the_held_out_rows(trained) -> None:
    held = trained.held_out
    ids = [ex.row_id for ex in held]
    assert len(ids) == 3 and SOLO not in {ex.contributor for ex in held}
    expected_contributors = {who: sum(ex.contributor == who for ex in held) for who in {ex.contributor for ex in held}}
    data = read_manifest(trained.path)["data"]  # what was sealed on disk, not only in memory
    assert data["eval_rows"] == 3 and data["eval_row_ids"] == ids
    assert data["eval_contributors"] == expected_contributors
    assert data["contributors_left_out_entirely"] == []
    assert "never held out" in data["eval_rule"]
    summary = trained.summary
    assert summary["eval_row_ids"] == ids and summary["eval_contributors"] == expected_contributors
    assert summary["train_rows"] == 7 and summary["contributors_left_out_entirely"] == []
    assert "3 rows held out" in repr(trained)
    # Held-out rows are really out of the index (so they cannot be credited); every contributor is in it.
    assert not set(ids) & set(trained.index.row_ids)
    assert set(trained.index.contributors) == {SOLO, SMALL, LARGE}


def test_a_reloaded_model_still_lists_its_held_out_rows(trained, tmp_path: Path) -> None:
    from openledger_sdk.modelfactory import TrainedModel

    again = TrainedModel.load(trained.save(tmp_path / "copy"), base=str(shared_tiny_model()))
    assert again.summary["eval_row_ids"] == trained.summary["eval_row_ids"]
    assert again.held_out == []  # the rows themselves are not saved, only which they were
