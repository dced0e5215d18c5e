"""finetune() on a tiny random Llama (seconds): loss goes down, seeded determinism, manifest, attribution index,
Stop, and every bad input with its message."""

from __future__ import annotations

import copy as copy_module
import json
import shutil
import threading
from pathlib import Path

import datasets
import pytest
import torch

import openledger_sdk.hardware as hardware_module
import openledger_sdk.modelfactory.model_setup as model_setup
from openledger_sdk.catalog import weights_hash
from openledger_sdk.modelfactory import IndexSettings, LoraSettings, TrainedModel, finetune
from openledger_sdk.modelfactory.attribution_index import (
    Projector,
    build_index,
    precision_autocast,
    query_projection,
    score,
    store_frozen_linears_in_bfloat16,
)
from openledger_sdk.modelfactory.config import TrainConfig
from openledger_sdk.modelfactory.errors import FinetuneError, IncompleteModelError, TrainingOutOfMemory
from openledger_sdk.modelfactory.manifest import file_sha256, manifest_hash, manifest_problems, read_manifest
from openledger_sdk.modelfactory.publish import publish
from tests.tiny_model import shared_tiny_model

torch.set_num_threads(1)  # shared CPUs: 2 OpenMP threads under contention run several times slower than 1
WORDS = ["amber", "basil", "cedar", "delta", "ember", "fjord", "gamma", "heron", "indigo", "jade", "koala", "lemon"]


def rows(n: int = 20) -> list[dict]:
    """Distinct but regular prompt/response pairs: easy to learn, and every example has its own gradient."""
    return [
        {
            "_row_id": 1000 + i,
            "_contributor": f"0x{(i % 3) + 1:040x}",
            "prompt": f"What is the code word for locker {i}?",
            "response": f"The code word for locker {i} is {WORDS[i % len(WORDS)]}.",
        }
        for i in range(n)
    ]


SETTINGS = {
    "lora": LoraSettings(r=4, alpha=8, dropout=0.0),
    "lr": 3e-2,
    "epochs": 3,
    "batch_size": 4,
    "max_len": 64,
    "eval_split": 0.2,
    "seed": 7,
    "index": IndexSettings(dim=256, precision="training"),  # float32 here: the exactness checks below
    "progress": False,
}


@pytest.fixture(scope="module")
def base() -> Path:
    return shared_tiny_model()


@pytest.fixture(scope="module")
def trained(base: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return finetune(str(base), rows=rows(), output_dir=tmp_path_factory.mktemp("run1"), **SETTINGS)


def test_training_reduces_loss(trained: TrainedModel) -> None:
    metrics = trained.metrics
    assert trained.complete and metrics["steps"] == metrics["total_steps"] == 12  # 16 train rows / 4 x 3 epochs
    losses = metrics["epoch_losses"]
    assert len(losses) == 3 and losses[2] < losses[1] < losses[0]
    assert metrics["step_losses"][-1] < metrics["step_losses"][0] - 1.0  # nats; random init starts at ln(vocab)
    ev = metrics["eval"]
    assert ev["rows"] == 4 and ev["loss_after"] < ev["loss_before"] and ev["perplexity_after"] < ev["perplexity_before"]
    assert metrics["tokens_per_second"] > 0


def test_same_seed_same_run(trained: TrainedModel, base: Path, tmp_path: Path) -> None:
    again = finetune(str(base), rows=rows(), output_dir=tmp_path / "again", **SETTINGS)
    first, second = trained.manifest, again.manifest
    assert second["data"]["order_hash"] == first["data"]["order_hash"]
    assert second["training"]["step_losses"] == first["training"]["step_losses"]
    assert second["adapter_sha256"] == first["adapter_sha256"]
    assert second["config_hash"] == first["config_hash"]
    assert torch.equal(again.index.features, trained.index.features)
    other = finetune(str(base), rows=rows(), output_dir=tmp_path / "other", **{**SETTINGS, "seed": 8, "epochs": 1})
    assert other.manifest["data"]["order_hash"] != first["data"]["order_hash"]


def test_manifest_records_provenance(trained: TrainedModel, base: Path, tmp_path: Path) -> None:
    manifest = read_manifest(trained.path)
    assert manifest == trained.manifest and manifest["complete"] is True and manifest["stop_reason"] is None
    assert manifest["manifest_hash"] == manifest_hash(manifest)
    assert manifest["base_model"] == {
        "id": str(base),
        "weights_sha256": weights_hash(base),
        "architecture": "LlamaForCausalLM",
    }
    assert manifest["config_hash"] == TrainConfig.from_dict(manifest["config"]).config_hash()
    assert manifest["config"]["lora"] == {
        "r": 4,
        "alpha": 8,
        "dropout": 0.0,
        "target_modules": list(SETTINGS["lora"].target_modules),
    }
    assert manifest["seed"] == 7 and len(manifest["data"]["order_hash"]) == 64
    assert manifest["data"]["train_rows"] == 16 and manifest["data"]["eval_rows"] == 4
    assert len(manifest["training"]["epoch_losses"]) == 3 and manifest["eval"]["loss_after"] > 0
    expected_files = {
        "adapter_model.safetensors",
        "adapter_config.json",
        "attribution_index.safetensors",
        "attribution_index.json",
        "span_index.safetensors",
        "span_index.json",
    }
    assert set(manifest["files"]) == expected_files
    for name, digest in manifest["files"].items():
        assert file_sha256(trained.path / name) == digest
    assert manifest["adapter_sha256"] == manifest["files"]["adapter_model.safetensors"]
    assert {"torch", "transformers", "peft", "accelerate", "python"} <= set(manifest["libraries"])
    assert manifest["datanets"] == []  # in-memory rows: the rows' hash identifies the data instead
    assert len(manifest["data"]["rows_sha256"]) == 64
    adapter_config = json.loads((trained.path / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(base) and adapter_config["r"] == 4
    assert not (trained.path / "README.md").exists()
    assert manifest_problems(trained.path) == []
    # Any change to a file or to the manifest shows up.
    copy = trained.save(tmp_path / "copy")
    assert manifest_problems(copy) == []
    (copy / "span_index.json").write_text("{}")
    assert manifest_problems(copy) == ["span_index.json does not match the sha256 in manifest.json"]
    edited = read_manifest(copy)
    edited["seed"] = 8
    (copy / "manifest.json").write_text(json.dumps(edited))
    assert "edited after it was sealed" in manifest_problems(copy)[0]


def test_attribution_index(trained: TrainedModel) -> None:
    index, examples = trained.index, trained.train_examples
    n = 16
    assert index.features.shape == (n, 256) and index.features.dtype == torch.float16
    assert index.preconditioner.shape == (256, 256) and index.preconditioner.dtype == torch.float32
    assert index.raw_norms.shape == (n,) and bool((index.raw_norms > 0).all())
    assert index.row_ids == [ex.row_id for ex in examples]
    assert index.contributors == [ex.contributor for ex in examples]
    assert sorted(index.row_ids + [ex.row_id for ex in trained.held_out]) == list(range(1000, 1020))
    assert 512 <= index.bytes_per_example < 700  # 256 x float16 + a norm + row id and address in JSON
    projection = index.meta["projection"]
    lora_params = sum(p.numel() for name, p in trained.model.named_parameters() if "lora_" in name)
    assert projection == {"kind": "countsketch", "dim": 256, "seed": 7, "num_params": lora_params}
    # The projection is regenerated from its seed alone.
    again = Projector(lora_params, 256, 7)
    assert torch.equal(again.buckets, index.projector().buckets) and torch.equal(again.signs, index.projector().signs)
    for i, ex in enumerate(examples):
        q = query_projection(trained.model, index, ex.input_ids, ex.labels)
        # Sanity: each training example's own gradient scores highest against itself.
        assert int(score(index, q).argmax()) == i, (ex.row_id, score(index, q))
        assert int(score(index, q, normalize=True).argmax()) == i
        # The stored feature is the example's projection times the preconditioner (float16-rounded).
        stored = index.features[i].float() * index.scale
        assert torch.allclose(stored, q @ index.preconditioner, atol=2e-3 * float(stored.abs().max()))
        assert torch.isclose(q.norm(), index.raw_norms[i], rtol=1e-4)


def test_bfloat16_index_stays_close_to_float32(trained: TrainedModel) -> None:
    # IndexSettings(precision="bfloat16", or "auto" on hardware with native bf16) runs the extra pass under bf16
    # autocast (LM head and loss in float32): the same gradients up to bf16 rounding. Rebuilt from the same adapter,
    # each row's norm stays within 3% (measured <= 2% here and on SmolLM2-135M); the index records its precision,
    # and its queries, computed in it too, rank the rows like the float32 index does. (Close is not equal:
    # bench/attribution_eval.py measures what the rounding costs in attribution quality.)
    examples, exact = trained.train_examples, trained.index
    bf16 = build_index(
        trained.model, examples, IndexSettings(dim=256), seed=7, pad_id=trained.pad_id,
        precision="bfloat16",
    )  # fmt: skip
    assert exact.meta["precision"] == "float32" and bf16.meta["precision"] == "bfloat16"
    assert torch.allclose(bf16.raw_norms, exact.raw_norms, rtol=0.03)
    for i, ex in enumerate(examples):
        q_exact = query_projection(trained.model, exact, ex.input_ids, ex.labels)
        q_bf16 = query_projection(trained.model, bf16, ex.input_ids, ex.labels)  # in bf16: the index's precision
        assert not torch.equal(q_exact, q_bf16)
        fp32_scores, bf16_scores = score(exact, q_exact), score(bf16, q_bf16)
        assert int(bf16_scores.argmax()) == i
        assert torch.corrcoef(torch.stack([fp32_scores, bf16_scores]))[0, 1] > 0.995


def test_bfloat16_query_copy_gives_identical_gradients(trained: TrainedModel) -> None:
    # OpenLoRA keeps a bf16 index's query copy with its frozen Linear weights stored in bf16: under bf16 autocast
    # those weights are rounded to bf16 on every call anyway, so the query gradient is the same to the bit.
    copy = copy_module.deepcopy(trained.model)
    assert store_frozen_linears_in_bfloat16(copy) > 0
    head = copy.get_output_embeddings().weight
    assert head.dtype == torch.float32  # the LM head (tied to the embeddings) stays
    assert all(p.dtype == torch.float32 for n, p in copy.named_parameters() if "lora_" in n)
    assert copy.get_submodule("base_model.model.model.layers.0.mlp.up_proj").weight.dtype == torch.bfloat16
    bf16 = precision_autocast("bfloat16", "cpu")
    for ex in trained.train_examples[:3]:
        expected = query_projection(trained.model, trained.index, ex.input_ids, ex.labels, bf16)
        assert torch.equal(query_projection(copy, trained.index, ex.input_ids, ex.labels, bf16), expected)


class FakeAccelerator:
    def __init__(self, device: str, mixed_precision: str) -> None:
        self.device, self.mixed_precision = torch.device(device), mixed_precision


@pytest.mark.parametrize(
    ("precision", "device", "training", "native", "expected"),
    [
        ("training", "cpu", "no", True, "float32"),
        ("training", "cuda", "bf16", True, "bfloat16"),  # training's own autocast on GPUs
        ("bfloat16", "cpu", "no", False, "bfloat16"),
        ("auto", "cpu", "no", True, "bfloat16"),  # CPUs with AMX / AVX512-BF16
        ("auto", "cpu", "no", False, "float32"),  # elsewhere bf16 is emulated: training's own
        ("auto", "cuda", "no", False, "float32"),
    ],
)
def test_index_precision(
    precision: str, device: str, training: str, native: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hardware_module, "native_bfloat16", lambda _device: native)
    name = model_setup.index_precision(precision, FakeAccelerator(device, training))
    assert name == expected
    autocast = precision_autocast(name, device)
    if expected == "float32":
        assert autocast is None
    elif device == "cuda":  # no GPU here: the autocast exists, entering it would only warn
        assert autocast is not None
    else:
        with autocast():
            assert torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16


def test_generate_evaluate_attribute_save_load(trained: TrainedModel, base: Path, tmp_path: Path) -> None:
    answer = trained.generate("What is the code word for locker 3?", max_new_tokens=12)
    assert isinstance(answer, str) and answer
    assert isinstance(trained.generate([{"role": "user", "content": "hi"}], max_new_tokens=4, adapter=False), str)
    held = trained.evaluate()
    assert held == trained.metrics["eval"]
    fresh = trained.evaluate(rows()[:3])
    assert fresh["rows"] == 3 and fresh["loss_after"] < fresh["loss_before"]
    report = trained.attribute("What is the code word for locker 5?", "The code word for locker 5 is fjord.", top_k=3)
    # Scored as OpenLoRA scores it: the row that says it is paid, first; the threshold is the uncalibrated default.
    owner = rows()[5]["_contributor"]
    assert report["attributed"] and report["top_examples"][0]["contributor"] == owner, report
    assert max(report["shares"], key=report["shares"].get) == owner and report["spans"]
    assert report["threshold"]["calibrated"] is False
    saved = trained.save(tmp_path / "saved")
    loaded = TrainedModel.load(saved, device="cpu")
    assert loaded.complete and loaded.manifest == trained.manifest
    assert loaded.generate("What is the code word for locker 3?", max_new_tokens=12) == answer
    assert (
        loaded.attribute("What is the code word for locker 5?", report["response"], top_k=3)["top_examples"]
        == report["top_examples"]
    )


def test_stop_mid_epoch_saves_an_incomplete_model(base: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    seen: list[int] = []

    class StopAfterTwo:
        def on_step(self, info) -> None:
            seen.append(info.step)
            if info.step == 2:
                stop.set()  # what the widget's Stop button does

    model = finetune(str(base), rows=rows(), output_dir=tmp_path / "stopped", stop=stop, callbacks=[StopAfterTwo()],
                     **SETTINGS)  # fmt: skip
    manifest = read_manifest(tmp_path / "stopped")
    assert seen == [1, 2] and not model.complete
    assert manifest["complete"] is False and manifest["training"]["steps"] == 2 < manifest["training"]["total_steps"]
    assert manifest["stop_reason"] == "stopped by the user at step 2 of 12"
    assert manifest["attribution_index"] is None and manifest["eval"] is None
    assert set(manifest["files"]) == {"adapter_model.safetensors", "adapter_config.json"}
    assert manifest_problems(tmp_path / "stopped") == []

    class NoNetwork:
        def request(self, *args, **kwargs):
            raise AssertionError("an incomplete model must be refused before any upload")

    with pytest.raises(IncompleteModelError, match="incomplete model .*stopped by the user at step 2 of 12"):
        publish(NoNetwork(), model, "partial", 1)
    with pytest.raises(IncompleteModelError):
        publish(NoNetwork(), tmp_path / "stopped", "partial", 1)


class FakeDatanet:
    name = "support-chats"

    def __init__(self, data: list[dict]) -> None:
        self.data = data

    def version(self, version):
        return {"version": 2, "merkle_root": "0x" + "ab" * 32, "rows": len(self.data)}

    def load(self, version):
        assert version == 2
        return datasets.Dataset.from_list(self.data)


class FakeClient:
    def __init__(self, datanet: FakeDatanet) -> None:
        self.datanets = self
        self._datanet = datanet

    def get(self, name: str) -> FakeDatanet:
        assert name == "support-chats"
        return self._datanet


def test_datanet_version_provenance(base: Path, tmp_path: Path) -> None:
    quick = {**SETTINGS, "epochs": 1, "max_steps": 1, "index": False}
    model = finetune(str(base), datanet="support-chats", version="latest", client=FakeClient(FakeDatanet(rows(8))),
                     output_dir=tmp_path / "dn", **quick)  # fmt: skip
    assert model.manifest["datanets"] == [
        {"name": "support-chats", "version": 2, "root": "0x" + "ab" * 32, "rows": 8, "verified": True}
    ]
    assert model.manifest["training"]["steps"] == 1 and model.index is None
    with pytest.raises(FinetuneError, match="datanet 'support-chats' version 2 has 0 rows"):
        finetune(str(base), datanet="support-chats", client=FakeClient(FakeDatanet([])), output_dir=tmp_path / "x",
                 **quick)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"base": "no-such-model"}, FinetuneError, "unknown base model 'no-such-model'"),
        ({"rows": []}, FinetuneError, "0 rows"),
        ({"rows": None}, FinetuneError, "nothing to train on"),
        ({"lora": LoraSettings(r=0)}, FinetuneError, "rank r must be a positive integer"),
        ({"lr": -1e-3}, FinetuneError, "learning rate lr must be a positive number"),
        ({"lr": 0}, FinetuneError, "learning rate"),
        ({"epochs": 0}, FinetuneError, "epochs must be an integer >= 1"),
        ({"max_len": 4}, FinetuneError, "max_len=4 is too small"),
        ({"max_len": 20}, FinetuneError, "max_len=20 is too small: .* rows have prompts of 20\\+ tokens"),
        ({"max_len": 4096}, FinetuneError, "exceeds the base model's context of 256 tokens"),
        ({"device": "tpu"}, FinetuneError, "device must be"),
        (
            {"lora": LoraSettings(target_modules=("q_proj", "attn_qkv"))},
            FinetuneError,
            r"\['attn_qkv'\] are not Linear layers .*choose from down_proj, gate_proj, k_proj, o_proj, q_proj, "
            "up_proj, v_proj",
        ),
    ],
)
def test_bad_inputs(base: Path, tmp_path: Path, kwargs: dict, error: type, message: str) -> None:
    settings = {**SETTINGS, "epochs": 1, "max_steps": 1, "index": False, "rows": rows(8), "base": str(base), **kwargs}
    with pytest.raises(error, match=message):
        finetune(output_dir=tmp_path / "bad", **settings)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "oom", [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), MemoryError(),
            RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: out of memory")]
)  # fmt: skip
def test_out_of_memory_has_a_clear_message(base: Path, tmp_path: Path, monkeypatch, oom: BaseException) -> None:
    import openledger_sdk.modelfactory.trainer as trainer

    def explode(*args, **kwargs):
        raise oom

    monkeypatch.setattr(trainer, "train_loop", explode)
    with pytest.raises(TrainingOutOfMemory, match=r"out of memory while training on cpu \(batch_size=4, max_len=64.*"
                       "use a smaller batch_size.*effective batch of 4.*smaller max_len") as info:  # fmt: skip
        finetune(str(base), rows=rows(8), output_dir=tmp_path / "oom", **SETTINGS)
    assert isinstance(info.value, MemoryError)
    monkeypatch.undo()
    # Other errors pass through unchanged.
    monkeypatch.setattr(trainer, "train_loop", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        finetune(str(base), rows=rows(8), output_dir=tmp_path / "other", **SETTINGS)


def test_sdk_core_imports_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, openledger_sdk\n"
        "c = openledger_sdk.Client('http://hub.invalid', 't')\n"
        "c.models\n"
        "import openledger_sdk.modelfactory, openledger_sdk.modelfactory.publish, openledger_sdk.modelfactory.config\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'\n"
        "assert 'openledger_sdk.modelfactory' not in sys.modules or 'openledger_sdk.modelfactory.trainer' not in "
        "sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr


def test_bad_base_folder_is_not_touched(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(FinetuneError, match="unknown base model"):
        finetune(str(empty), rows=rows(4), output_dir=tmp_path / "out", progress=False)
    shutil.rmtree(empty)


def test_last_epoch_capture_matches_the_final_pass_when_weights_stand_still(base: Path, tmp_path: Path) -> None:
    # lr ~ 0: the weights at every step are the final weights, so the features collected inside training's own
    # backward passes (rescaled from the accumulation group's loss to each example's mean loss, each layer's LoRA
    # dropout undone) must equal the extra pass's — with the library's default LoRA dropout.
    still = {**SETTINGS, "lora": LoraSettings(r=4, alpha=8), "lr": 1e-12, "epochs": 1, "eval_split": 0.0,
             "grad_accum": 2}  # fmt: skip
    assert still["lora"].dropout > 0
    last_epoch = IndexSettings(dim=256, gradients="last_epoch")
    final = finetune(str(base), rows=rows(10), output_dir=tmp_path / "final", **still)
    captured = finetune(str(base), rows=rows(10), output_dir=tmp_path / "captured", **{**still, "index": last_epoch})
    assert captured.manifest["adapter_sha256"] == final.manifest["adapter_sha256"]  # capturing only observes
    assert (
        captured.index.meta["gradients"] == "last_epoch"
        and "10 examples; the other 0" in captured.index.meta["gradient"]
    )
    assert torch.allclose(captured.index.raw_norms, final.index.raw_norms, rtol=1e-4)
    assert torch.allclose(captured.index.features.float(), final.index.features.float(), atol=2e-3)
    # Training time excludes the capture work, which is counted as index time instead.
    assert captured.manifest["attribution_index"]["build_seconds"] > 0
    # Cut short by max_steps before the last epoch: the examples it never saw get the final-weights pass.
    cut = finetune(str(base), rows=rows(10), output_dir=tmp_path / "cut",
                   **{**still, "epochs": 3, "max_steps": 2, "index": last_epoch})  # fmt: skip
    assert "(0 examples; the other 10 at the final adapter)" in cut.index.meta["gradient"]


def test_a_calibrated_null_threshold_is_kept_with_the_model(trained: TrainedModel, tmp_path: Path) -> None:
    folder = trained.save(tmp_path / "calibrated")
    model = TrainedModel.load(folder, device="cpu")
    threshold = model.calibrate_attribution(prompts=["What is the capital of France?", "Tell me a joke."])
    assert threshold.calibrated and threshold.samples >= 2  # answers of the base model and of the adapter
    reloaded = TrainedModel.load(folder, device="cpu")  # a later session reuses it instead of the defaults
    report = reloaded.attribute("What is the code word for locker 5?", "The code word for locker 5 is fjord.")
    assert report["threshold"]["calibrated"] and report["threshold"]["gradient_z"] == round(threshold.gradient_z, 4)
    assert not manifest_problems(folder)  # the extra file does not break the sealed manifest
