"""ModelFactory with the real base model (SmolLM2-135M-Instruct): a few training steps, generation, and the
template notebook run top to bottom with papermill. Marked slow; skipped only when the converted model is absent."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from openledger_sdk.catalog import DEFAULT_BASE_MODEL, resolve_base_model, weights_hash
from openledger_sdk.modelfactory import IndexSettings, LoraSettings, finetune
from tests.hub_harness import RunningHub
from tests.test_notebooks import run_notebook

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / ".openledger-data" / "models"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (MODELS / DEFAULT_BASE_MODEL).is_dir(),
        reason=f"the converted base model is not in {MODELS / DEFAULT_BASE_MODEL} (run `make model`)",
    ),
]


def test_real_base_model_trains_a_few_steps_and_generates(tmp_path: Path) -> None:
    torch.set_num_threads(1)  # shared CPUs: OpenMP threads under contention run slower than one
    base_dir = resolve_base_model(DEFAULT_BASE_MODEL, MODELS)
    rows = [
        {
            "_row_id": i,
            "_contributor": f"0x{(i % 4) + 1:040x}",
            "prompt": f"Which shelf holds box {i}?",
            "response": f"Box {i} is on shelf {'ABCD'[i % 4]}{i % 3}.",
        }
        for i in range(16)
    ]
    model = finetune(DEFAULT_BASE_MODEL, rows=rows, models_dir=MODELS, lora=LoraSettings(r=8, alpha=16),
                     lr=1e-3, epochs=1, batch_size=4, max_len=64, eval_split=0.25, index=IndexSettings(dim=256),
                     output_dir=tmp_path / "real", progress=False)  # fmt: skip
    metrics = model.metrics
    assert model.complete and metrics["steps"] == 3  # 12 training rows / 4
    assert all(math.isfinite(x) for x in metrics["step_losses"])
    assert metrics["eval"]["loss_after"] < metrics["eval"]["loss_before"]
    assert model.manifest["base_model"]["weights_sha256"] == weights_hash(base_dir)
    assert model.manifest["base_model"]["id"] == DEFAULT_BASE_MODEL
    assert json.loads((model.path / "adapter_config.json").read_text())["base_model_name_or_path"] == DEFAULT_BASE_MODEL
    answer = model.generate("Which shelf holds box 5?", max_new_tokens=12)
    assert isinstance(answer, str) and answer.strip()
    assert model.index.features.shape == (12, 256)


@pytest.mark.e2e
def test_template_notebook_runs_top_to_bottom(platform: RunningHub, tmp_path: Path) -> None:
    """Notebooks 02 then 03 as a student runs them, in the OpenLedger kernel on the hub, with the real base model:
    03 trains on the version 02 published and the model answers its own training questions. (papermill starts the
    kernel here, which finds the base model in this checkout's .openledger-data/models; nothing is published.)"""
    user = "nb-real-finetune"
    platform.ensure_user(user)
    # The kernel trains on this checkout's converted model; the platform prices the run with that base model's
    # tokenizer from its own models folder (on a real hub both are the platform's data dir), so it gets it too.
    served = platform.settings.data_dir / "models" / DEFAULT_BASE_MODEL
    if not served.exists():
        served.symlink_to(MODELS / DEFAULT_BASE_MODEL, target_is_directory=True)
    with platform.admin() as admin:  # training is paid on the hub: OPEN for the run, ETH for its gas
        funded = admin.post("/services/platform/api/admin/faucet", json={"user": user, "open": "5", "eth": "1"})
        assert funded.status_code == 200, funded.text
    run_notebook(platform, user, "02-contribute-data.ipynb", tmp_path)
    text = run_notebook(platform, user, "03-finetune-lora.ipynb", tmp_path, publish=False, output_dir=str(tmp_path))
    assert f"training on datanet {user}-support version latest: 8 rows" in text
    assert "loss on the rows" in text and "verbatim span" in text
    right = int(text.split(" questions answered exactly")[0].rsplit("\n", 1)[-1].split("/")[0])
    assert right >= 6, text  # 8/8 here (bench/results/first_run.json); a little room for another CPU's rounding
