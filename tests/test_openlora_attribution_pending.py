"""OpenLoRA's attribution of a never-asked adapter (issue 16): its null threshold is calibrated in the background,
so the first answer comes at once and says attribution is pending (in the response object and in what the inference
record keeps); once calibration exists, answers are attributed — a planted fact to its owner, an off-topic answer to
nobody.

Real parts: a tiny Llama fine-tuned through the SDK with its attribution index, the real background calibration
(base model's and adapter's answers to the SDK's 100 off-topic prompts = 200 answers), the real Attributor. The only
stand-in: the calibration is held at a gate until the test has seen the pending answer (it would otherwise race).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

import hub.openlora.attribution as attribution_module
from hub.openlora.attribution import AttributionConfig, InferenceAttribution, record_examples
from openledger_sdk.modelfactory import IndexSettings, LoraSettings, TrainedModel, finetune
from openledger_sdk.modelfactory.attribution_null import NULL_FILE, NullThreshold
from tests.tiny_model import shared_tiny_model

torch.set_num_threads(1)  # shared CPUs

OWNERS = [f"0x{i + 1:040x}" for i in range(4)]
NAMES = ["Zorblatquen", "Pelrunavik", "Duvessakran", "Halvornbris", "Ferindelgas", "Tosgardmor", "Koynelutheric",
         "Quetphelivo"]  # fmt: skip
VALUES = ["copper lantern", "frozen violin", "amber compass", "silent orchard", "crimson ladder", "hollow meadow",
          "tidal furnace", "golden turnip"]  # fmt: skip
OFF_TOPIC = [
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("What is the square root of 81?", "The square root of 81 is 9."),
    ("How do I reverse a list in Python?", "Use my_list.reverse() or my_list[::-1]."),
    ("Hi there! What's up?", "Not much, just here to help. How are you?"),
]


def question(name: str) -> str:
    return f"What does the archive say about {name}?"


def answer(name: str, value: str) -> str:
    return f"The archive says that {name} keeps a {value} in the northern tower."


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    rows = [
        {"_row_id": i, "_contributor": OWNERS[i % 4], "prompt": question(n), "response": answer(n, v)}
        for i, (n, v) in enumerate(zip(NAMES, VALUES, strict=True))
    ]
    return finetune(
        str(shared_tiny_model()), datanet="archive", version=1, rows=rows,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0), lr=2e-2, epochs=6, batch_size=4, max_len=64, eval_split=0.0,
        seed=5, index=IndexSettings(dim=256), progress=False, output_dir=tmp_path_factory.mktemp("pending"),
    )  # fmt: skip


def ids(trained: TrainedModel, prompt: str, reply: str) -> tuple[list[int], list[int]]:
    return trained.prompt_ids(prompt), trained.tokenizer(reply, add_special_tokens=False)["input_ids"]


def test_first_answer_is_pending_then_calibrated_answers_are_attributed(
    trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real_calibrate = attribution_module.calibrate_adapter

    def gated(*args: object, **kwargs: object) -> NullThreshold:
        assert gate.wait(60), "the test never opened the calibration gate"
        return real_calibrate(*args, **kwargs)

    monkeypatch.setattr(attribution_module, "calibrate_adapter", gated)
    folder = Path(trained.path)
    assert not (folder / NULL_FILE).exists()
    server = InferenceAttribution(
        shared_tiny_model(),
        AutoTokenizer.from_pretrained(shared_tiny_model()),
        AttributionConfig(calibration_tokens=12),
    )
    planted = ids(trained, question(NAMES[2]), answer(NAMES[2], VALUES[2]))

    started = time.perf_counter()
    first = server.attribute(folder, *planted)
    assert time.perf_counter() - started < 30  # the adapter load only, not 120 generations and backward passes
    assert first["status"] == "pending" and first["attributed"] is False and first["shares"] == {}
    assert "pending" in first["reason"]
    assert record_examples(first) == [{"attribution": "pending", "reason": first["reason"]}]  # the record says so
    assert server.attribute(folder, *planted)["status"] == "pending"  # still calibrating: no second load
    assert server.prepare(folder) == "pending"  # what deploying (POST /v1/models/{id}/load) starts and reports

    gate.set()
    done = server.calibration(folder)
    assert done is not None and done.wait(600)
    threshold = NullThreshold.load(folder)
    assert threshold is not None and threshold.samples >= 100 and threshold.alpha == pytest.approx(0.05)
    assert threshold.joint_rate <= 0.05

    owned = server.attribute(folder, *planted)
    assert owned["status"] == "attributed" and owned["threshold"]["calibrated"] is True
    assert max(owned["shares"], key=owned["shares"].get) == OWNERS[2]
    for prompt, reply in OFF_TOPIC:
        off = server.attribute(folder, *ids(trained, prompt, reply))
        assert off["status"] == "unattributed" and off["shares"] == {}, (prompt, off)
        assert record_examples(off) == off["top_examples"]  # reported for `explain`, nobody paid


def test_a_model_owners_uploaded_threshold_is_not_served(tmp_path: Path) -> None:
    """An owner who ships an attribution_null.json set so high that contributors are never paid: the catalog does
    not materialise it, and a stale per-test one is recalibrated rather than trusted."""
    from hub.models.catalog import NOT_SERVED

    assert NULL_FILE in NOT_SERVED
    (tmp_path / NULL_FILE).write_text(
        '{"format": "openledger-attribution-null/1", "gradient_z": 1e9, "span": 1.0, "samples": 12}'
    )
    assert NullThreshold.load(tmp_path) is None


def test_asking_many_new_adapters_at_once_holds_at_most_max_models_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A student who deploys (or asks) dozens of never-asked adapters to exhaust the server's memory: each waiting
    calibration would hold a model copy, so beyond `max_models` the adapter is not even loaded (answers stay
    pending; asked again once a calibration has finished, it is loaded then). Loads and calibrations are stand-ins
    (the real ones are covered above): what is tested is the bound."""
    gate, loads = threading.Event(), []

    class Copy:
        def __init__(self, directory: Path) -> None:
            self.directory, self.decode = directory, None
            self.index = type("Index", (), {"meta": {"precision": "float32"}})()

    def load(directory: Path, base: object, cache: bool) -> Copy:
        loads.append(directory.name)
        return Copy(directory)

    def calibrate(*args: object, **kwargs: object) -> NullThreshold:
        assert gate.wait(30)
        return NullThreshold(samples=120, alpha=0.05)

    monkeypatch.setattr(attribution_module.Attributor, "load", staticmethod(load))
    monkeypatch.setattr(attribution_module, "calibrate_adapter", calibrate)
    folders = []
    for i in range(6):
        folders.append(tmp_path / f"adapter-{i}")
        folders[-1].mkdir()
        (folders[-1] / "attribution_index.json").write_text("{}")
    server = InferenceAttribution("unused-base", tokenizer=None, config=AttributionConfig(max_models=2))
    assert [server.prepare(folder) for folder in folders] == ["pending"] * 6
    assert [server.attribute(folder, [1], [2])["status"] for folder in folders] == ["pending"] * 6
    assert sorted(loads) == ["adapter-0", "adapter-1"]  # two copies, not six
    gate.set()
    for folder in folders[:2]:
        assert server.calibration(folder) is None or server.calibration(folder).wait(30)
    assert server.prepare(folders[2]) == "pending" and "adapter-2" in loads  # room again: the next one loads
