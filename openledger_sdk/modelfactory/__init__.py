"""ModelFactory: LoRA fine-tuning on a datanet version, with a provenance manifest and an attribution index.

    from openledger_sdk.modelfactory import finetune, LoraSettings
    model = finetune(base="smollm2-135m-instruct", datanet="support-chats", version=3,
                     lora=LoraSettings(r=8, alpha=16), lr=2e-4, epochs=2)
    model.evaluate(); model.generate("How do I reset my password?")
    ol.models.publish(model, name="support-bot", price_per_1k_tokens=0.5)

Importing this package is cheap: torch, transformers and peft load only when a name that needs them is used
(`openledger_sdk` itself never imports this package).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openledger_sdk.modelfactory.attribution_index import AttributionIndex, IndexSettings, score
    from openledger_sdk.modelfactory.config import LoraSettings, TrainConfig
    from openledger_sdk.modelfactory.errors import FinetuneError, IncompleteModelError, TrainingOutOfMemory
    from openledger_sdk.modelfactory.publish import publish
    from openledger_sdk.modelfactory.span_index import SpanIndex, SpanMatch
    from openledger_sdk.modelfactory.trained import TrainedModel
    from openledger_sdk.modelfactory.trainer import Callback, StepInfo, finetune
    from openledger_sdk.modelfactory.widgets import FinetunePanel

_EXPORTS = {
    "AttributionIndex": "attribution_index",
    "IndexSettings": "attribution_index",
    "score": "attribution_index",
    "LoraSettings": "config",
    "TrainConfig": "config",
    "FinetuneError": "errors",
    "IncompleteModelError": "errors",
    "TrainingOutOfMemory": "errors",
    "publish": "publish",
    "SpanIndex": "span_index",
    "SpanMatch": "span_index",
    "TrainedModel": "trained",
    "Callback": "trainer",
    "StepInfo": "trainer",
    "finetune": "trainer",
    "FinetunePanel": "widgets",
}
__all__ = [
    "AttributionIndex",
    "Callback",
    "FinetuneError",
    "FinetunePanel",
    "IncompleteModelError",
    "IndexSettings",
    "LoraSettings",
    "SpanIndex",
    "SpanMatch",
    "StepInfo",
    "TrainConfig",
    "TrainedModel",
    "TrainingOutOfMemory",
    "finetune",
    "publish",
    "score",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
