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

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / ".openledger-data" / "models"
NOTEBOOK = ROOT / "templates" / "notebooks" / "03-finetune-lora.ipynb"
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


def test_template_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("OPENLEDGER_MODELS_DIR", str(MODELS))  # what the hub kernel sets
    monkeypatch.setenv("OPENLEDGER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # shared CPUs: the kernel's torch uses one thread
    out = tmp_path / "03-out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(tmp_path), parameters={"max_steps": 3},
        progress_bar=False,
    )  # fmt: skip
    executed = json.loads(out.read_text())
    text = "".join(
        "".join(o.get("text", "")) for cell in executed["cells"] if cell["cell_type"] == "code" for o in cell["outputs"]
    )
    assert "training on 16 in-notebook rows" in text and "held-out loss" in text and "verbatim span" in text
    widget_outputs = [
        o for cell in executed["cells"] for o in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]  # fmt: skip
    assert widget_outputs, "the panel was not displayed"
    assert len(list((tmp_path / "runs").iterdir())) == 1
