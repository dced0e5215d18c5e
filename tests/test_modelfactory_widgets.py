"""The ModelFactory panel, headless: set values, click the buttons, wait for the training thread, check the widgets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from openledger_sdk import Client
from openledger_sdk.modelfactory import FinetunePanel, LoraSettings, TrainConfig
from openledger_sdk.modelfactory.manifest import read_manifest
from openledger_sdk.modelfactory.panel_progress import eta_text
from openledger_sdk.modelfactory.widgets import IN_MEMORY, linear_layer_names
from tests.test_modelfactory_publish import make_app
from tests.test_modelfactory_train import rows
from tests.tiny_model import shared_tiny_model

torch.set_num_threads(1)  # shared CPUs: OpenMP threads under contention run slower than one
PNG = b"\x89PNG"


def quick(panel: FinetunePanel, **values) -> None:
    settings = {"r": 4, "alpha": 8, "dropout": 0.0, "lr": 3e-2, "epochs": 1, "batch_size": 4, "max_len": 64,
                "eval_split": 0.2, "index_dim": 64, **values}  # fmt: skip
    for name, value in settings.items():
        panel.controls[name].value = value


@pytest.fixture(autouse=True)
def unpaid_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """This file's platform is a fake (models API only) that prices no training: runs here are unpaid. Paying for a
    run through the real platform and chain is tests/test_training_fees_e2e.py's job."""
    monkeypatch.setattr("openledger_sdk.modelfactory.trainer.paying_client", lambda client, fetches_datanet: None)


@pytest.fixture
def hub_client() -> tuple[Client, list[dict]]:
    received: list[dict] = []
    client = Client("http://testserver", "tok")
    client._http = TestClient(make_app(received), base_url="http://testserver", headers={"Authorization": "token tok"})
    client.datanets = NoDatanets()
    return client, received


class NoDatanets:
    def list(self) -> list:
        return []


class ServedDatanet:
    """A published datanet version as the panel sees it through `client.datanets`."""

    name = "support-chats"

    def versions(self) -> list[dict]:
        return [{"version": 1}, {"version": 2}]

    def version(self, version) -> dict:
        return {"version": version, "merkle_root": "0x" + "cd" * 32, "rows": 20}

    def load(self, version):
        import datasets

        return datasets.Dataset.from_list(rows())


class ServedDatanets:
    def list(self) -> list:
        return [ServedDatanet()]


def test_train_shows_loss_progress_eval_and_chat(tmp_path: Path, hub_client) -> None:
    base = shared_tiny_model()
    client, received = hub_client
    client.datanets = ServedDatanets()
    panel = FinetunePanel(client, rows=rows(), base=str(base), output_root=tmp_path)
    assert panel.datanet.options == (IN_MEMORY, "support-chats") and panel.version.disabled
    panel.datanet.value = "support-chats"
    assert panel.version.value == 2 and not panel.version.disabled
    assert set(panel.targets.options) == set(linear_layer_names(base)) >= {"q_proj", "v_proj", "down_proj"}
    assert panel.targets.value == ("q_proj", "k_proj", "v_proj", "o_proj")
    quick(panel, epochs=2)
    assert panel.validate() == [] and not panel.train_button.disabled and panel.publish_button.disabled
    panel.train_button.click()
    assert panel.training and panel.train_button.disabled and not panel.stop_button.disabled
    assert panel.wait(120), "training did not finish"
    assert panel.last_error is None, panel.status.value
    model = panel.model
    assert model is not None and model.complete and model.path.parent == tmp_path
    assert model.manifest["datanets"][0]["version"] == 2 and model.path.name.startswith("support-chats-")
    assert [step for step, _ in panel.loss_points] == list(range(1, 9))  # 16 rows / 4, two epochs
    assert [loss for _, loss in panel.loss_points] == pytest.approx(model.metrics["step_losses"], abs=1e-5)
    assert panel.progress.value == panel.progress.max == 8 and panel.progress.bar_style == "success"
    assert bytes(panel.chart.value).startswith(PNG)
    assert "fine-tuned" in panel.eval_html.value and "held-out rows" in panel.eval_html.value
    assert "done" in panel.status.value and panel.stop_button.disabled and not panel.train_button.disabled
    # Test chat.
    panel.chat_input.value = "What is the code word for locker 2?"
    panel.chat_button.click()
    assert panel.wait(60)
    assert "<b>model:</b>" in panel.chat_log.value and panel.chat_input.value == ""
    # Publish is enabled for a complete model with a hub connection.
    assert not panel.publish_button.disabled
    panel.publish_name.value = "Bad Name"
    panel.publish_button.click()
    assert "must be 1-64 characters" in panel.publish_result.value and received == []
    assert not panel.publish_button.disabled  # a bad name is fixed and tried again
    panel.publish_name.value, panel.publish_price.value = "panel-bot", 0.5
    panel.publish_button.click()
    assert panel.wait(60)
    assert "published <b>panel-bot</b>" in panel.publish_result.value
    assert received[0]["manifest_hash"] == model.manifest_hash and received[0]["price_per_1k_tokens"] == "0.5"
    assert panel.publish_button.disabled  # published: a second click would only meet "name taken"


def test_validation_messages_gate_the_train_button() -> None:
    panel = FinetunePanel(rows=rows(4), base=str(shared_tiny_model()))
    quick(panel)
    assert not panel.train_button.disabled and panel.problems.value == ""
    panel.controls["r"].value = 0
    panel.controls["lr"].value = -1.0
    assert panel.train_button.disabled
    assert "LoRA rank r must be a positive integer" in panel.problems.value and "learning rate" in panel.problems.value
    panel.train_button.click()  # does nothing while settings are invalid
    assert panel._thread is None
    panel.controls["r"].value, panel.controls["lr"].value = 4, 1e-3
    panel.targets.value = ()
    assert "target_modules" in panel.problems.value
    panel.targets.value = ("q_proj",)
    assert panel.validate() == [] and not panel.train_button.disabled
    nothing = FinetunePanel(base=str(shared_tiny_model()))
    assert nothing.train_button.disabled and "no training data" in nothing.problems.value


def test_stop_leaves_an_incomplete_unpublishable_model(tmp_path: Path, hub_client) -> None:
    client, received = hub_client
    panel = FinetunePanel(client, rows=rows(), base=str(shared_tiny_model()), output_root=tmp_path)
    quick(panel, epochs=200)  # far more steps than the test waits for
    panel.train_button.click()
    deadline = time.monotonic() + 60
    while len(panel.loss_points) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(panel.loss_points) >= 2
    panel.stop_button.click()
    assert panel.wait(60)
    model = panel.model
    assert model is not None and not model.complete
    assert read_manifest(model.path)["complete"] is False
    assert len(panel.loss_points) < model.metrics["total_steps"] == 800
    assert "marked incomplete" in panel.status.value and panel.progress.bar_style == "warning"
    assert panel.publish_button.disabled
    panel._on_publish()  # even if forced, publish refuses
    assert "cannot publish an incomplete model" in panel.publish_result.value and received == []


class FakeDatanet:
    name = "support-chats"

    def versions(self) -> list[dict]:
        return [{"version": 1}, {"version": 3}]


class FakeDatanets:
    def list(self) -> list:
        return [FakeDatanet()]


def test_datanets_and_versions_come_from_the_client() -> None:
    client = Client("http://hub.invalid", "tok")
    client.datanets = FakeDatanets()
    panel = FinetunePanel(client, base=str(shared_tiny_model()))
    assert panel.datanet.options == ("support-chats",) and panel.version.options == (3, 1)
    assert panel.version.value == 3 and not panel.version.disabled
    quick(panel)
    assert panel.validate() == []
    kwargs = panel._finetune_kwargs()
    assert kwargs["version"] == 3 and kwargs["datanet"].name == "support-chats" and "rows" not in kwargs


def test_panel_starts_from_the_settings_of_the_code_run(tmp_path: Path) -> None:
    """Notebook 03 hands the panel the keywords it gave finetune(): the panel must train with exactly those."""
    settings = dict(lora=LoraSettings(r=4, alpha=8, dropout=0.0), lr=3e-2, epochs=2, max_steps=3, batch_size=4,
                    max_len=64, seed=0, eval_split=0.0)  # fmt: skip
    base = str(shared_tiny_model())
    panel = FinetunePanel(rows=rows(), base=base, defaults=settings, output_root=tmp_path)
    code_run = TrainConfig(base=base, lora=settings["lora"], **{k: v for k, v in settings.items() if k != "lora"})
    assert panel.config() == code_run
    # Without defaults the panel is finetune()'s own defaults (the documented code path), max steps included.
    plain = FinetunePanel(rows=rows(), base=base)
    assert plain.config() == TrainConfig(base=base) and plain.controls["max_steps"].value == 0
    assert plain.config().max_steps is None  # 0 in the field: every epoch in full
    plain.controls["max_steps"].value = -2
    assert plain.train_button.disabled and "max_steps must be a positive integer" in plain.problems.value

    panel.controls["index_dim"].value = 64
    panel.progress.description = "9/9"  # what the previous run left
    panel.train_button.click()
    assert panel.progress.description == "starting" and panel.eta.value == ""  # fresh at once, not "9/9"
    etas: set[str] = set()
    while panel.training:
        etas.add(panel.eta.value)
        time.sleep(0.005)
    assert panel.wait(120) and panel.last_error is None, panel.status.value
    assert panel.model.metrics["steps"] == 3 and panel.progress.description == "3/3"  # max steps honoured
    assert any(eta.startswith("about ") and eta.endswith(" left") for eta in etas), etas
    assert panel.eta.value.startswith("took ")


def test_eta_text() -> None:
    assert eta_text(10.0, 2, 6) == "about 20 s left"
    assert eta_text(60.0, 1, 3) == "about 2 min 00 s left"
    assert eta_text(5.0, 0, 6) == eta_text(5.0, 6, 6) == ""  # nothing to extrapolate from, or nothing left
