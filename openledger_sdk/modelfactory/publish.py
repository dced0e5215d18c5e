"""`publish()`: upload a complete fine-tuned model (adapter + manifest + indexes) to the platform.

The platform stores the files in the blob store and registers the model on-chain (ModelRegistry, through the
relay) with its manifest hash and price. No torch here: a saved model folder can be published from any kernel.

Request: `POST /services/platform/api/models`, multipart/form-data with the fields `name`, `price_per_1k_tokens`
(decimal OPEN, as text), `manifest_hash`, and one `files` part per file, named by its file name
(adapter_model.safetensors, adapter_config.json, manifest.json, attribution_index.safetensors,
attribution_index.json, span_index.safetensors, span_index.json). Response: the platform's model record.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openledger_sdk.modelfactory.errors import FinetuneError, IncompleteModelError
from openledger_sdk.modelfactory.manifest import MANIFEST_FILE, manifest_problems, read_manifest

if TYPE_CHECKING:
    from openledger_sdk.client import Client
    from openledger_sdk.modelfactory.trained import TrainedModel

MODELS_PATH = "api/models"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
CONTENT_TYPES = {".json": "application/json", ".safetensors": "application/octet-stream"}


def _model_dir(model: TrainedModel | str | Path) -> Path:
    path = getattr(model, "path", model)
    return Path(path)


def check_publishable(model: TrainedModel | str | Path) -> dict[str, Any]:
    """The model's manifest if it can be published; `IncompleteModelError` saying why not otherwise."""
    directory = _model_dir(model)
    try:
        manifest = read_manifest(directory)
    except FileNotFoundError as err:
        raise IncompleteModelError(str(err)) from None
    if not manifest.get("complete"):
        reason = manifest.get("stop_reason") or "training did not finish"
        raise IncompleteModelError(f"cannot publish an incomplete model ({reason}): train it to the end first")
    problems = manifest_problems(directory, manifest)
    if problems:
        raise IncompleteModelError(f"cannot publish {directory}: " + "; ".join(problems))
    if not manifest.get("attribution_index"):
        raise IncompleteModelError("cannot publish a model without its attribution index (index=False in finetune)")
    sources = manifest.get("datanets") or []
    if not sources or not all(isinstance(s.get("root"), str) and s["root"] for s in sources):
        raise IncompleteModelError(
            "cannot publish a model trained on rows passed in directly: its contributors could not be attributed "
            "and paid. Train on a published datanet version: finetune(datanet=..., version=...)"
        )
    return manifest


def _price(value: Any) -> str:
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise FinetuneError(f"price_per_1k_tokens must be a number of OPEN (got {value!r})") from None
    if not price.is_finite() or price < 0:
        raise FinetuneError(f"price_per_1k_tokens must be >= 0 OPEN (got {value!r})")
    return format(price.normalize(), "f")


def publish(
    client: Client, model: TrainedModel | str | Path, name: str, price_per_1k_tokens: float | str | Decimal
) -> dict[str, Any]:
    """Upload a complete model and register it; returns the platform's model record.

    `model` is a `TrainedModel` or a saved model folder. Refused (before any upload) when the model is
    incomplete (Stop was pressed), has no attribution index, was not trained on a published datanet version, or its
    files do not match its manifest. The platform checks all of this again, and the base weights and datanet roots
    against its own copies.
    """
    manifest = check_publishable(model)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise FinetuneError(
            f"model name {name!r} must be 1-64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    price = _price(price_per_1k_tokens)
    directory = _model_dir(model)
    names = [MANIFEST_FILE, *sorted(manifest["files"])]
    data = {"name": name, "price_per_1k_tokens": price, "manifest_hash": manifest["manifest_hash"]}
    with ExitStack() as stack:
        files = [
            (
                "files",
                (
                    filename,
                    stack.enter_context((directory / filename).open("rb")),
                    CONTENT_TYPES.get(Path(filename).suffix, "application/octet-stream"),
                ),
            )
            for filename in names
        ]
        return client.request("POST", "platform", MODELS_PATH, data=data, files=files)
