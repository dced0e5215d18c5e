"""The curvature the attribution index inverts: by default the Fisher of the model's own predictions (gradients on
labels drawn from the model), or TRAK's empirical ΦᵀΦ. Tiny random Llama, seconds."""

from __future__ import annotations

import pytest
import torch

from bench.attribution_lds import training_gradients, trak_scores
from openledger_sdk.modelfactory import IndexSettings, LoraSettings, TrainedModel, finetune
from openledger_sdk.modelfactory.attribution_index import build_index, query_projection, score
from openledger_sdk.modelfactory.errors import FinetuneError
from openledger_sdk.modelfactory.lora_gradients import draw_labels
from tests.tiny_model import shared_tiny_model

torch.set_num_threads(1)
WORDS = ["amber", "basil", "cedar", "delta", "ember", "fjord", "gamma", "heron"]


def rows() -> list[dict]:
    return [
        {
            "_row_id": i,
            "_contributor": f"0x{(i % 2) + 1:040x}",
            "prompt": f"Which word opens door {i}?",
            "response": f"Door {i} opens with the word {WORDS[i % len(WORDS)]}.",
        }
        for i in range(12)
    ]


def tune(tmp_path, index: IndexSettings) -> TrainedModel:
    return finetune(
        str(shared_tiny_model()), datanet="doors", version=1, rows=rows(), lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        lr=3e-2, epochs=3, batch_size=4, max_len=48, eval_split=0.0, seed=5, index=index, progress=False,
        output_dir=tmp_path / "model", device="cpu",
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    # Two draws per row, float32: the exactness checks below.
    return tune(tmp_path_factory.mktemp("fisher"), IndexSettings(dim=128, precision="training", curvature_draws=2))


def inverse(gram: torch.Tensor, damping: float, n: int) -> torch.Tensor:
    lam = damping * float(torch.trace(gram)) / min(n, gram.shape[0])
    return torch.linalg.inv(gram + lam * torch.eye(gram.shape[0], dtype=torch.float64))


def test_the_fisher_index_inverts_the_gram_of_gradients_on_labels_the_model_draws(trained: TrainedModel) -> None:
    index = trained.index
    assert index.meta["curvature_draws"] == 2 and index.meta["curvature"].startswith("fisher")
    phi, drawn = training_gradients(trained, index)  # the harness draws as the index did: same seed, same batches
    assert drawn.shape == (2 * len(phi), 128)
    assert torch.allclose(phi.norm(dim=1), index.raw_norms, rtol=1e-4)
    fisher = drawn.double().T @ drawn.double()
    expected = inverse(fisher, index.meta["damping"], len(phi))
    assert torch.allclose(index.preconditioner.double(), expected, rtol=1e-3, atol=1e-6 * float(expected.abs().max()))
    # The drawn labels are not the training labels: TRAK's own ΦᵀΦ would be another matrix.
    empirical = inverse(phi.double().T @ phi.double(), index.meta["damping"], len(phi))
    assert not torch.allclose(index.preconditioner.double(), empirical, rtol=0.05)
    # And the harness's TRAK scores are the index's scores (float16 features aside).
    example = trained.train_examples[3]
    q = query_projection(trained.model, index, example.input_ids, example.labels)
    harness = torch.from_numpy(trak_scores(phi, q[None], index.meta["damping"], drawn))[0].float()
    assert torch.allclose(score(index, q), harness, atol=2e-3 * float(harness.abs().max()))


def test_the_curvature_is_reproducible_from_the_seed(trained: TrainedModel) -> None:
    settings = IndexSettings(dim=128, precision="training", curvature_draws=2)
    args = {"pad_id": trained.pad_id, "precision": "float32"}
    again = build_index(trained.model, trained.train_examples, settings, seed=5, **args)
    assert torch.equal(again.preconditioner, trained.index.preconditioner)
    other = build_index(trained.model, trained.train_examples, settings, seed=6, **args)
    assert not torch.equal(other.preconditioner, trained.index.preconditioner)


def test_features_kept_from_training_get_the_same_curvature_as_the_final_pass(tmp_path) -> None:
    # gradients="last_epoch": the features come from training, the drawn-label gradients (without the true-label
    # pass) from the final weights, drawn exactly as a final-pass build draws them.
    settings = IndexSettings(dim=128, precision="training", gradients="last_epoch")
    kept = tune(tmp_path, settings)
    assert bool(kept.index.meta["curvature"].startswith("fisher"))
    final = build_index(
        kept.model, kept.train_examples, IndexSettings(dim=128, precision="training"), seed=5, pad_id=kept.pad_id
    )
    assert torch.equal(kept.index.preconditioner, final.preconditioner)


def test_an_empirical_index_inverts_its_own_features(trained: TrainedModel) -> None:
    settings = IndexSettings(dim=128, precision="training", curvature="empirical")
    index = build_index(trained.model, trained.train_examples, settings, seed=5, pad_id=trained.pad_id)
    assert index.meta["curvature_draws"] == 0 and index.meta["curvature"].startswith("empirical")
    phi, rows_of_h = training_gradients(trained, index)
    assert rows_of_h is phi
    expected = inverse(phi.double().T @ phi.double(), index.meta["damping"], len(phi))
    assert torch.allclose(index.preconditioner.double(), expected, rtol=1e-3, atol=1e-6 * float(expected.abs().max()))


def test_labels_are_drawn_from_the_models_own_distribution() -> None:
    certain = torch.full((4, 10), -30.0)
    certain[torch.arange(4), torch.tensor([1, 5, 7, 2])] = 30.0
    assert draw_labels(certain, torch.Generator().manual_seed(0)).tolist() == [1, 5, 7, 2]
    coin = torch.full((400, 3), -30.0)
    coin[:, :2] = 0.0  # two equally likely tokens, a third impossible
    drawn = draw_labels(coin, torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {0, 1} and 150 < int((drawn == 0).sum()) < 250
    assert torch.equal(drawn, draw_labels(coin, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (IndexSettings(curvature="hessian"), "curvature must be 'fisher' or 'empirical'"),
        (IndexSettings(curvature_draws=0), "curvature_draws must be >= 1"),
        (IndexSettings(curvature_draws=1.5), "curvature_draws must be >= 1"),
    ],
)
def test_bad_curvature_settings_are_refused_before_training(tmp_path, settings: IndexSettings, message: str) -> None:
    with pytest.raises(FinetuneError, match=message):
        tune(tmp_path, settings)
    assert not (tmp_path / "model").exists()
