"""What the fine-tune panel edits: its default values (TrainConfig's own, or the keywords a notebook passes to
`finetune()`) and the Linear layers LoRA can target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openledger_sdk.catalog import DEFAULT_BASE_MODEL
from openledger_sdk.modelfactory.config import IndexSettings, LoraSettings, TrainConfig

FALLBACK_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# TrainConfig fields that the panel edits as they are (LoRA and index settings are nested objects there).
TRAIN_FIELDS = ("lr", "epochs", "max_steps", "batch_size", "grad_accum", "max_len", "seed", "eval_split")
NO_STEP_CAP = 0  # the max-steps field's value for "train every epoch in full" (max_steps=None)


def linear_layer_names(base_dir: Path) -> list[str]:
    """Short names of the 2-D weights in a model's safetensors (the Linear layers LoRA can target), cheaply:
    only the file header is read."""
    from safetensors import safe_open

    names: set[str] = set()
    for path in sorted(base_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                if not key.endswith(".weight") or "embed" in key or "lm_head" in key:
                    continue
                if len(handle.get_slice(key).get_shape()) == 2:
                    names.add(key[: -len(".weight")].rsplit(".", 1)[-1])
    return sorted(names)


def train_fields(config: TrainConfig) -> dict[str, Any]:
    """The TrainConfig fields that are one control each in the panel, by name (the defaults, finetune()'s keywords)."""
    return {name: getattr(config, name) for name in TRAIN_FIELDS}


def default_settings(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """One value per panel control. `overrides` takes `finetune()`'s own keywords (`lora=LoraSettings(...)`,
    `index=IndexSettings(...)`, `lr=...`, `max_steps=...`) or the controls' flat names (`r`, `alpha`, `index_dim`), so
    a notebook can hand the panel exactly the settings of the run it did in code."""
    given = dict(overrides or {})
    lora = given.pop("lora", None) or LoraSettings()
    index = given.pop("index", None)
    index = index if isinstance(index, IndexSettings) else IndexSettings()
    settings = {
        "r": lora.r,
        "alpha": lora.alpha,
        "dropout": lora.dropout,
        "target_modules": lora.target_modules,
        **train_fields(TrainConfig(base=DEFAULT_BASE_MODEL)),
        "index_dim": index.dim,
        **given,
    }
    if settings["max_steps"] is None:
        settings["max_steps"] = NO_STEP_CAP
    return settings
