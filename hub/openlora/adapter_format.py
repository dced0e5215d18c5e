"""Reading PEFT LoRA adapters (`adapter_config.json` + `adapter_model.safetensors`) into slot-ready tensors.

Everything that can be wrong with an adapter on disk (missing files, bad JSON, a corrupt safetensors file,
unsupported PEFT features, shapes that do not fit the base model, NaNs, a rank above the slot rank) raises
`AdapterLoadError` with the reason, so only the requests for that adapter fail.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from hub.openlora.errors import AdapterLoadError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[^.]+)?\.weight$")


@dataclass
class AdapterWeights:
    """One adapter in CPU memory: per module (A [r, in], scaling * B^T [r, out]) in the engine dtype."""

    adapter_id: str
    rank: int
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]
    nbytes: int
    config: dict[str, Any] = field(default_factory=dict)


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    # Same matching rule as PEFT's get_pattern_key: the pattern matches the end of the module name.
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def read_adapter_config(adapter_id: str, path: Path) -> dict[str, Any]:
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise AdapterLoadError(adapter_id, f"{CONFIG_FILE} not found in {path}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterLoadError(adapter_id, f"{CONFIG_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise AdapterLoadError(adapter_id, f"{CONFIG_FILE} must hold a JSON object")
    unsupported = {
        "use_dora": "DoRA adapters",
        "modules_to_save": "adapters with modules_to_save (full copies of base modules)",
        "trainable_token_indices": "trainable token indices",
        "layer_replication": "layer replication",
        "lora_bias": "LoRA bias terms",
    }
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise AdapterLoadError(adapter_id, f"peft_type {config.get('peft_type')!r} is not LORA")
    for key, what in unsupported.items():
        if config.get(key):
            raise AdapterLoadError(adapter_id, f"{what} are not supported by this server ({key} is set)")
    if config.get("bias", "none") != "none":
        raise AdapterLoadError(adapter_id, f"bias={config.get('bias')!r} is not supported (only 'none')")
    try:
        float(config.get("lora_alpha", 8))
    except (TypeError, ValueError):
        raise AdapterLoadError(adapter_id, "lora_alpha must be a number") from None
    return config


def read_peft_adapter(
    adapter_id: str,
    path: Path,
    module_shapes: dict[str, tuple[int, int]],
    *,
    max_rank: int,
    dtype: torch.dtype,
) -> AdapterWeights:
    """Load and validate one adapter directory against the base model's module shapes (in, out).

    This runs on a prefetch thread next to the scheduler thread: every torch call releases and retakes the GIL, so
    the work is kept to a few calls per module (a decode step slowed 2-3x while a per-tensor loader ran)."""
    config = read_adapter_config(adapter_id, path)
    pairs = _module_pairs(adapter_id, _read_tensors(adapter_id, path))
    alpha_default = float(config.get("lora_alpha", 8))
    alpha_pattern = config.get("alpha_pattern") or {}
    use_rslora = bool(config.get("use_rslora", False))
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    max_r = 0
    nbytes = 0
    for module, (a, b) in pairs.items():
        _check_shapes(adapter_id, module, a, b, module_shapes, max_rank)
        r = a.shape[0]
        alpha = float(_pattern_value(alpha_pattern, module, alpha_default))
        scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        a_out = a.to(dtype).contiguous()
        # Scaling folded into B once, at load time; B^T stays a transposed view (the slot copy takes any strides).
        b_out = (b.float().T * scaling).to(dtype)
        modules[module] = (a_out, b_out)
        max_r = max(max_r, r)
        nbytes += a_out.numel() * a_out.element_size() + b_out.numel() * b_out.element_size()
    _check_finite(adapter_id, pairs)
    return AdapterWeights(adapter_id=adapter_id, rank=max_r, modules=modules, nbytes=nbytes, config=config)


def _read_tensors(adapter_id: str, path: Path) -> dict[str, torch.Tensor]:
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        hint = (
            " (pickled adapter_model.bin is not accepted: re-save with safetensors)"
            if (path / "adapter_model.bin").exists()
            else ""
        )
        raise AdapterLoadError(adapter_id, f"{WEIGHTS_FILE} not found in {path}{hint}")
    try:
        # One read (GIL released) and one parse: far cheaper than a get_tensor call per tensor.
        return safetensors.torch.load(weights_path.read_bytes())
    except Exception as exc:  # safetensors raises its own error types for corrupt headers and truncated data
        raise AdapterLoadError(adapter_id, f"{WEIGHTS_FILE} is corrupt or unreadable: {exc}") from exc


def _module_pairs(adapter_id: str, tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """lora_A / lora_B per module name (PEFT prefix removed), sorted by name."""
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        name = key[len(_PREFIX) :] if key.startswith(_PREFIX) else key
        m = _KEY.match(name)
        if m is None:
            raise AdapterLoadError(
                adapter_id, f"unsupported tensor {key!r} (only lora_A/lora_B weights of Linear layers)"
            )
        halves.setdefault(m["module"], {})[m["which"]] = tensor
    if not halves:
        raise AdapterLoadError(adapter_id, f"{WEIGHTS_FILE} holds no LoRA weights")
    pairs = {}
    for module, ab in sorted(halves.items()):
        if set(ab) != {"A", "B"}:
            raise AdapterLoadError(adapter_id, f"module {module} has lora_{next(iter(ab))} but not its pair")
        pairs[module] = (ab["A"], ab["B"])
    return pairs


def _check_shapes(
    adapter_id: str,
    module: str,
    a: torch.Tensor,
    b: torch.Tensor,
    module_shapes: dict[str, tuple[int, int]],
    max_rank: int,
) -> None:
    if module not in module_shapes:
        raise AdapterLoadError(adapter_id, f"module {module} is not a Linear layer of the base model")
    in_f, out_f = module_shapes[module]
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != in_f or b.shape[0] != out_f or a.shape[0] != b.shape[1]:
        raise AdapterLoadError(
            adapter_id,
            f"module {module}: lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not fit the base layer "
            f"({in_f} -> {out_f}); was it trained for another base model?",
        )
    if a.shape[0] > max_rank:
        raise AdapterLoadError(adapter_id, f"rank {a.shape[0]} exceeds this server's max LoRA rank {max_rank}")


def _check_finite(adapter_id: str, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Reject NaN / inf weights. One fused norm over every tensor (NaN and inf propagate into a norm); only if
    that is not finite is each module checked, to name the culprit (a huge finite norm is not an error)."""
    tensors = [t.float() for ab in pairs.values() for t in ab]
    if bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors, 2.0))).all()):
        return
    for module, (a, b) in pairs.items():
        if not (torch.isfinite(a.float()).all() and torch.isfinite(b.float()).all()):
            raise AdapterLoadError(adapter_id, f"module {module} contains NaN or infinite values")
