"""`TrainedModel`: the fine-tuned adapter in memory and on disk — generate, evaluate, attribute, save, load.

A model folder holds `adapter_model.safetensors` + `adapter_config.json` (a standard PEFT LoRA adapter, loadable by
OpenLoRA and `PeftModel.from_pretrained`), `manifest.json`, and for complete runs the attribution index
(`attribution_index.*`) and span index (`span_index.*`).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from openledger_sdk.modelfactory.attribution_calibration import calibrate_adapter
from openledger_sdk.modelfactory.attribution_index import AttributionIndex
from openledger_sdk.modelfactory.attribution_null import NullThreshold
from openledger_sdk.modelfactory.attribution_query import Attributor
from openledger_sdk.modelfactory.config import TrainConfig
from openledger_sdk.modelfactory.data import Example, prepare, render_prompt, rows_from
from openledger_sdk.modelfactory.errors import FinetuneError
from openledger_sdk.modelfactory.manifest import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    MANIFEST_FILE,
    manifest_problems,
    read_manifest,
    write_manifest,
)
from openledger_sdk.modelfactory.span_index import SpanIndex


def save_artifacts(
    target: Path,
    model: Any,
    base: str,
    manifest: dict[str, Any],
    attribution: AttributionIndex | None,
    spans: SpanIndex | None,
) -> dict[str, Any]:
    """Write adapter, indexes and the sealed manifest into `target`; return the sealed manifest."""
    target.mkdir(parents=True, exist_ok=True)
    for stale in (MANIFEST_FILE, "README.md"):
        (target / stale).unlink(missing_ok=True)
    config = model.peft_config["default"]
    local_path = config.base_model_name_or_path
    config.base_model_name_or_path = base  # the catalog id, not this machine's folder
    try:
        model.save_pretrained(target, save_embedding_layers=False)  # LoRA only; "auto" looks the base up online
    finally:
        config.base_model_name_or_path = local_path
    (target / "README.md").unlink(missing_ok=True)  # PEFT's generated model card: nothing we vouch for
    files = [ADAPTER_WEIGHTS, ADAPTER_CONFIG]
    if attribution is not None:
        files += [p.name for p in attribution.save(target)]
    if spans is not None:
        files += [p.name for p in spans.save(target)]
    return write_manifest(target, manifest, files)


class TrainedModel:
    """A fine-tuned LoRA adapter on its base model, with its manifest, metrics and attribution index."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: TrainConfig,
        manifest: dict[str, Any],
        path: Path,
        held_out: Sequence[Example] = (),
        train_examples: Sequence[Example] = (),
        index: AttributionIndex | None = None,
        spans: SpanIndex | None = None,
        device: Any = "cpu",
        autocast: Any = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.manifest = manifest
        self.path = Path(path)
        self.held_out = list(held_out)  # in memory after training only (not saved)
        self.train_examples = list(train_examples)  # in index order
        self.index = index
        self.spans = spans
        self.device = torch.device(device)
        self._autocast = autocast
        self._lock = threading.Lock()  # one generate/evaluate at a time (the widget's chat runs in threads)
        self._attributor: Attributor | None = None

    def __repr__(self) -> str:
        state = "complete" if self.complete else "INCOMPLETE"
        held = self.manifest.get("data", {}).get("eval_rows", 0)
        return (
            f"<TrainedModel {self.manifest['base_model']['id']} + LoRA r={self.config.lora.r}, {state}, "
            f"{held} rows held out, {self.path}>"
        )

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def manifest_hash(self) -> str:
        return self.manifest["manifest_hash"]

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    @property
    def metrics(self) -> dict[str, Any]:
        training = self.manifest.get("training", {})
        return {
            "complete": self.complete,
            "steps": training.get("steps"),
            "total_steps": training.get("total_steps"),
            "step_losses": training.get("step_losses", []),
            "epoch_losses": training.get("epoch_losses", []),
            "tokens_per_second": training.get("tokens_per_second"),
            "train_seconds": training.get("seconds"),
            "eval": self.manifest.get("eval"),
        }

    @property
    def summary(self) -> dict[str, Any]:
        """The run at a glance, including which rows the held-out split kept out of training and the index (and so
        out of attribution): their row ids and, per contributor, how many."""
        data, training = self.manifest.get("data", {}), self.manifest.get("training", {})
        return {
            "complete": self.complete,
            "train_rows": data.get("train_rows"),
            "eval_rows": data.get("eval_rows"),
            "eval_row_ids": data.get("eval_row_ids", []),
            "eval_contributors": data.get("eval_contributors", {}),
            "contributors_left_out_entirely": data.get("contributors_left_out_entirely", []),
            "skipped_rows": data.get("skipped_rows", []),
            "final_epoch_loss": (training.get("epoch_losses") or [None])[-1],
            "eval": self.manifest.get("eval"),
        }

    def _autocast_ctx(self) -> Any:
        return self._autocast() if self._autocast is not None else nullcontext()

    # --- use -----------------------------------------------------------------------------------------------------

    def prompt_ids(self, prompt: str | Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids the model sees before answering (chat template, or the raw text for text-trained models)."""
        if self.manifest.get("data", {}).get("format") == "text":
            if not isinstance(prompt, str):
                raise FinetuneError("this model was trained on free text: pass a string prompt")
            return self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        return self.tokenizer(render_prompt(self.tokenizer, messages), add_special_tokens=False)["input_ids"]

    def generate(
        self,
        prompt: str | Sequence[Mapping[str, str]],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        adapter: bool = True,
    ) -> str:
        """The model's answer to a prompt (or a list of chat messages); greedy unless temperature > 0.

        `adapter=False` answers with the base model, for comparison.
        """
        ids = torch.tensor([self.prompt_ids(prompt)], device=self.device)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {}
        with self._lock, torch.no_grad(), self._autocast_ctx():
            was_training = self.model.training
            self.model.eval()
            try:
                with nullcontext() if adapter else self.model.disable_adapter():
                    out = self.model.generate(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        max_new_tokens=max_new_tokens,
                        pad_token_id=self.pad_id,
                        do_sample=temperature > 0,
                        **{k: v for k, v in sampling.items() if k != "do_sample"},
                    )
            finally:
                self.model.train(was_training)
        return self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    def evaluate(self, rows: Any = None, *, batch_size: int = 8) -> dict[str, Any]:
        """Response loss and perplexity before (adapter off) and after (adapter on) fine-tuning.

        Default: the held-out rows of training (`eval_split`). Or pass rows (same format as training).
        """
        from openledger_sdk.modelfactory.evaluation import eval_before_after

        if rows is None:
            if not self.held_out:
                raise FinetuneError("no held-out rows: pass rows= to evaluate on, or train with eval_split > 0")
            examples = self.held_out
        else:
            prepared = prepare(
                rows_from(rows), self.tokenizer, max_len=self.config.max_len, eval_split=0.0, seed=self.config.seed
            )
            examples = prepared.train
        with self._lock:
            return eval_before_after(
                self.model, examples, pad_id=self.pad_id, device=self.device, autocast=self._autocast
            )

    def attribute(
        self, prompt: str | Sequence[Mapping[str, str]], response: str | None = None, *, top_k: int = 5
    ) -> dict[str, Any]:
        """Attribute one answer as the OpenLoRA server does: the same scoring, null test and pay rules.

        Returns the response, whether it is `attributed`, each contributor's `shares` (who the fee would pay),
        `top_examples` (paid rows first; `paid: false` marks rows reported but not paid), the scores and the
        null `threshold`, and `spans`: the long verbatim matches in the training responses. The threshold is this
        folder's calibrated one (`calibrate_attribution()`, or OpenLoRA's when the model was deployed) or else the
        uncalibrated defaults (`threshold["calibrated"]` says which).
        """
        attributor = self.attributor()  # before generating: a model without an index says so at once
        if response is None:
            response = self.generate(prompt)
        prompt_ids = self.prompt_ids(prompt)
        response_ids = self.tokenizer(response, add_special_tokens=False)["input_ids"] or [self.pad_id]
        with self._lock:  # the index's own precision (not generation's): query and rows must round alike
            result = attributor.attribute(prompt_ids, response_ids, top_k=top_k)
        spans = self.spans.longest_matches(response_ids, min_len=8) if self.spans is not None else []
        return {"response": response, **result.to_dict(), "spans": spans}

    def attributor(self) -> Attributor:
        """The scorer OpenLoRA would use for this model (built once), with the folder's null threshold if any."""
        if self.index is None:
            raise FinetuneError("this model has no attribution index (incomplete run, or index disabled)")
        if self._attributor is None:
            self._attributor = Attributor(
                self.index, self.spans, model=self.model, threshold=NullThreshold.load(self.path),
                directory=self.path, decode=self.tokenizer.decode,
            )  # fmt: skip
        return self._attributor

    def calibrate_attribution(self, prompts: Sequence[str] | None = None) -> NullThreshold:
        """Calibrate (and save beside the index) the null threshold, as OpenLoRA does when the model is deployed:
        greedy answers of the base model and the adapter to off-topic prompts (minutes on a CPU)."""
        with self._lock:
            return calibrate_adapter(self.attributor(), self.tokenizer, model=self.model, prompts=prompts)

    # --- files -----------------------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Copy the model folder (adapter, manifest, indexes) to `path`; the manifest's hashes stay valid."""
        target = Path(path)
        if target.resolve() == self.path.resolve():
            return target
        target.mkdir(parents=True, exist_ok=True)
        for name in [MANIFEST_FILE, *self.manifest.get("files", {})]:
            shutil.copy2(self.path / name, target / name)
        return target

    @classmethod
    def load(
        cls, path: str | Path, *, base: str | None = None, models_dir: str | Path | None = None, device: str = "auto"
    ) -> TrainedModel:
        """Load a saved model folder onto its base model (checked against the manifest's weights hash)."""
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from openledger_sdk.catalog import resolve_base_model
        from openledger_sdk.errors import OpenLedgerError
        from openledger_sdk.modelfactory.model_setup import cached_weights_hash, resolve_device

        path = Path(path)
        manifest = read_manifest(path)
        problems = manifest_problems(path, manifest)
        if problems:
            raise FinetuneError(f"{path} does not match its manifest: " + "; ".join(problems))
        base_id = base or manifest["base_model"]["id"]
        try:
            base_dir = resolve_base_model(base_id, Path(models_dir) if models_dir else None)
        except OpenLedgerError as err:
            raise FinetuneError(str(err)) from None
        if cached_weights_hash(base_dir) != manifest["base_model"]["weights_sha256"]:
            raise FinetuneError(f"base model {base_id} at {base_dir} is not the one this adapter was trained on")
        device_kind, precision = resolve_device(device)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype).to(device_kind)
        peft_model = PeftModel.from_pretrained(model, path, is_trainable=False).eval()
        index = AttributionIndex.load(path) if (path / "attribution_index.json").exists() else None
        spans = SpanIndex.load(path) if (path / "span_index.json").exists() else None
        autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if precision == "bf16" else None
        return cls(
            peft_model,
            AutoTokenizer.from_pretrained(base_dir),
            TrainConfig.from_dict(manifest["config"]),
            manifest,
            path,
            index=index,
            spans=spans,
            device=device_kind,
            autocast=autocast,
        )
