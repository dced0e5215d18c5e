"""Per-example LoRA gradients, projected: which parameters (`lora_layout`), the seeded CountSketch (`Projector`),
one batched forward + backward per micro-batch (`project_gradients`) and the capture inside training's own backward
passes (`TrainingCapture`). The attribution index (`attribution_index`) is built from, and queried with, these.

Forward hooks keep each LoRA Linear's input x and output y; `torch.autograd.grad(loss, ys)` gives dL/dy without
touching parameter grads; the per-example weight gradient is einsum(dL/dy, x) over that example's tokens (exact:
examples in a batch never interact, padding has zero gradient).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

import torch

from openledger_sdk.modelfactory.config import IndexSettings
from openledger_sdk.modelfactory.data import IGNORE

__all__ = [
    "Projector",
    "TrainingCapture",
    "example_losses",
    "lora_layout",
    "draw_labels",
    "labelled_logits",
    "precision_autocast",
    "project_gradients",
    "project_gradients_and_draws",
    "store_frozen_linears_in_bfloat16",
]

# --- which parameters, and the projection ------------------------------------------------------------------------


def lora_layout(model: torch.nn.Module) -> list[dict[str, Any]]:
    """The LoRA weights in gradient order: [{"name": peft parameter name, "shape": [rows, cols]}].

    lora_A weights are [r, in_features], lora_B weights [out_features, r] (PEFT's unscaled parameters; the
    module output is x + scaling · B A x with scaling = alpha / r). Gradients are flattened row-major, concatenated
    in this order, then projected.
    """
    layout = [
        {"name": name, "shape": list(param.shape)}
        for name, param in model.named_parameters()
        if ".lora_A." in name or ".lora_B." in name
    ]
    if not layout:
        raise ValueError("the model has no trainable LoRA weights")
    return layout


class Projector:
    """Seeded CountSketch R^P → R^dim; the same (num_params, dim, seed) always gives the same projection.

    buckets = torch.randint(0, dim, (P,)) then signs = 2 * torch.randint(0, 2, (P,)) - 1, both drawn in that order
    from `torch.Generator("cpu").manual_seed(seed)`; projected[b] = Σ_j signs[j] · g[j] over j with buckets[j] = b.
    """

    def __init__(self, num_params: int, dim: int, seed: int, device: torch.device | str = "cpu") -> None:
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self.num_params, self.dim, self.seed = int(num_params), int(dim), int(seed)
        self.buckets = torch.randint(0, dim, (num_params,), generator=generator).to(device)
        self.signs = (torch.randint(0, 2, (num_params,), generator=generator) * 2 - 1).to(device, torch.float32)

    def project_slice(self, out: torch.Tensor, grads: torch.Tensor, offset: int) -> None:
        """Add the projection of a [B, s] block of gradients (parameters offset..offset+s) into out [B, dim]."""
        width = grads.shape[1]
        signed = grads.to(torch.float32) * self.signs[offset : offset + width]
        out.index_add_(1, self.buckets[offset : offset + width], signed)

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        """[B, P] (or [P]) full gradients → [B, dim] (or [dim])."""
        flat = grads.reshape(-1, self.num_params) if grads.dim() > 1 else grads.reshape(1, -1)
        out = torch.zeros(flat.shape[0], self.dim, dtype=torch.float32, device=flat.device)
        self.project_slice(out, flat, 0)
        return out if grads.dim() > 1 else out[0]


# --- per-example gradients ---------------------------------------------------------------------------------------


def _uses_plain_lm_head(model: torch.nn.Module) -> bool:
    config = getattr(model, "config", None)
    scaled = getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None)
    return not scaled and hasattr(model, "get_decoder") and model.get_output_embeddings() is not None


def example_losses(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per-example mean cross-entropy over the labelled (response) tokens: [B], in float32.

    Logits are computed only at labelled positions when the model has a plain LM head (saves the vocabulary
    projection, and its memory, for prompt and padding tokens).
    """
    logits, keep = labelled_logits(model, batch)
    return _mean_losses(logits, batch["labels"][:, 1:][keep], keep)


def labelled_logits(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [K, V] float32 at the K labelled positions, the [B, T-1] mask of those positions)."""
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    if not bool(keep.any(dim=1).all()):
        raise ValueError("every example needs at least one labelled token")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if _uses_plain_lm_head(base):
        hidden = base.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        head = base.get_output_embeddings()
        # The head and the loss in the head's own dtype even under bf16 autocast: for a memorised answer p ≈ 1 and
        # dL/dlogits = p − onehot is a difference of near-equal numbers that bf16 logits would blur.
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            return head(hidden[:, :-1][keep].to(head.weight.dtype)).float(), keep
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.logits[:, :-1][keep].float(), keep


def _mean_losses(logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    token_loss = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    rows = torch.nonzero(keep)[:, 0]
    totals = torch.zeros(keep.shape[0], dtype=torch.float32, device=token_loss.device).index_add_(0, rows, token_loss)
    return totals / keep.sum(dim=1).to(torch.float32)


def draw_labels(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per labelled position, drawn from the model's own predictive distribution (softmax of `logits`).

    Drawn where the logits are (a [positions, vocabulary] copy to the CPU would cost more than the backward pass on a
    GPU), from a generator seeded by the CPU `generator` there, so a build is reproducible on its device."""
    if logits.device.type != "cpu":
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        generator = torch.Generator(device=logits.device).manual_seed(seed)
    probs = torch.softmax(logits.detach().float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class _Capture(AbstractContextManager):
    """Forward hooks on the LoRA Linear modules: keep each one's input and output for this forward pass
    (and, with `grads=True`, the gradient that reaches the output in the next backward pass).

    `clean=True` also keeps each LoRA layer's input before its LoRA dropout, so that per-example gradients taken in
    a training pass use the example's undropped input: dL/d(A x') does not depend on the mask, so einsum(dL/d(A x'), x)
    and einsum(dL/d(B A x'), A x) are the gradients without this layer's dropout (other layers' masks still shape the
    activations, a second-order effect: a LoRA branch is a small correction of its layer's output).
    """

    def __init__(
        self, model: torch.nn.Module, layout: Sequence[Mapping[str, Any]], *, grads: bool = False, clean: bool = False
    ) -> None:
        self.module_names = [entry["name"].rsplit(".weight", 1)[0] for entry in layout]
        self.modules = [model.get_submodule(name) for name in self.module_names]
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self.clean_inputs: dict[str, torch.Tensor] = {}  # LoRA layer name → its input before LoRA dropout
        self._dropouts = _active_dropouts(model, self.module_names) if clean else {}
        self._want_grads = grads
        self._handles: list[Any] = []

    def __enter__(self) -> _Capture:
        for name, module in zip(self.module_names, self.modules, strict=True):
            self._handles.append(module.register_forward_hook(self._hook(name)))
        for layer, (dropout, _weight) in self._dropouts.items():
            self._handles.append(dropout.register_forward_hook(self._clean_hook(layer)))
        return self

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self.inputs[name], self.outputs[name] = inputs[0], output
            if self._want_grads and output.requires_grad:
                output.register_hook(lambda grad: self.grads.__setitem__(name, grad))

        return hook

    def _clean_hook(self, layer: str) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
            self.clean_inputs[layer] = inputs[0]

        return hook

    def __exit__(self, *_exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _weight_input(self, name: str) -> torch.Tensor:
        """The input whose outer product with dL/dy is the weight gradient (undropped where it was kept)."""
        layer, kind, _adapter = name.rsplit(".", 2)
        clean = self.clean_inputs.get(layer)
        if clean is None:
            return self.inputs[name]
        if kind == "lora_A":
            return clean
        weight_a = self._dropouts[layer][1]
        return torch.nn.functional.linear(clean.to(weight_a.dtype), weight_a)  # lora_B's input without dropout

    def project(
        self, grads_out: Sequence[torch.Tensor], layout: Sequence[Mapping[str, Any]], projector: Projector
    ) -> torch.Tensor:
        """[B, dim]: per-example weight gradients einsum(dL/dy, x), flattened in layout order and projected."""
        batch = grads_out[0].shape[0]
        out = torch.zeros(batch, projector.dim, dtype=torch.float32, device=grads_out[0].device)
        offset = 0
        with torch.no_grad():
            for name, grad_out, entry in zip(self.module_names, grads_out, layout, strict=True):
                inputs = self._weight_input(name).to(torch.float32)
                per_example = torch.einsum("bto,bti->boi", grad_out.to(torch.float32), inputs)  # weight grad [out, in]
                width = math.prod(entry["shape"])
                projector.project_slice(out, per_example.reshape(batch, width), offset)
                offset += width
        return out


def _active_dropouts(
    model: torch.nn.Module, module_names: Sequence[str]
) -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    """LoRA layer name → (its LoRA dropout module, its lora_A weight), for layers whose dropout is a real Dropout."""
    found: dict[str, tuple[torch.nn.Module, torch.Tensor]] = {}
    for name in module_names:
        layer, _kind, adapter = name.rsplit(".", 2)
        dropouts = getattr(model.get_submodule(layer), "lora_dropout", None)
        dropout = dropouts[adapter] if dropouts is not None and adapter in dropouts else None
        if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0 and layer not in found:
            found[layer] = (dropout, model.get_submodule(f"{layer}.lora_A.{adapter}").weight)
    return found


MATH_ATTENTION_MAX_LEN = 256


def _attention_kernel(batch: Mapping[str, torch.Tensor]) -> AbstractContextManager:
    """Plain (math) attention for short sequences on CPU: PyTorch's CPU flash-attention backward is slower there
    (bf16: ~20% of a whole gradient pass); the math kernel's T × T memory is small up to MATH_ATTENTION_MAX_LEN."""
    ids = batch["input_ids"]
    if ids.device.type != "cpu" or ids.shape[1] > MATH_ATTENTION_MAX_LEN:
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def store_frozen_linears_in_bfloat16(model: torch.nn.Module) -> int:
    """Keep the frozen Linear weights (not LoRA's, not the LM head) in bf16; returns how many were converted.

    For a model that only ever runs under bf16 autocast (a bf16 index's query copy): autocast would round those
    weights to bf16 on every call anyway, so the results are bit-identical, minus the casts — most of one short
    answer's backward pass on CPU — and half the memory. The LM head (tied to the embeddings) stays as it is.
    """
    lora = {entry["name"].rsplit(".weight", 1)[0] for entry in lora_layout(model)}
    head = model.get_output_embeddings()
    head_weight = head.weight if head is not None else None
    converted = 0
    for name, module in model.named_modules():
        if (
            isinstance(module, torch.nn.Linear)
            and name not in lora
            and module.weight is not head_weight
            and not module.weight.requires_grad
        ):
            module.to(torch.bfloat16)
            converted += 1
    return converted


def precision_autocast(precision: str, device_type: str) -> Callable[[], AbstractContextManager] | None:
    """The autocast of a gradient pass computed in `precision` ("float32": none; "bfloat16": bf16 autocast)."""
    if precision == "bfloat16":
        return lambda: torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    if precision != "float32":
        raise ValueError(f"unknown gradient precision {precision!r}: float32 or bfloat16")
    return None


def project_gradients(
    model: torch.nn.Module,
    batch: Mapping[str, torch.Tensor],
    layout: Sequence[Mapping[str, Any]],
    projector: Projector,
    autocast: Callable[[], AbstractContextManager] | None = None,
) -> torch.Tensor:
    """Projected per-example gradients [B, dim] of each example's mean response loss w.r.t. the LoRA weights."""
    return cast(torch.Tensor, project_gradients_and_draws(model, batch, layout, projector, autocast)[0])


def project_gradients_and_draws(
    model: torch.nn.Module,
    batch: Mapping[str, torch.Tensor],
    layout: Sequence[Mapping[str, Any]],
    projector: Projector,
    autocast: Callable[[], AbstractContextManager] | None = None,
    *,
    draws: int = 0,
    generator: torch.Generator | None = None,
    features: bool = True,
) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """`project_gradients`, plus `draws` more projected gradients [B, dim] of the same examples' loss on labels
    drawn from the model itself (`draw_labels`), from the same forward pass (one more backward pass each). Their
    Gram is the Fisher of the model's predictions, the curvature the index inverts (see `build_index`).
    `features=False` skips the true-label backward pass (None in its place): rows whose features training kept."""
    params = [model.get_parameter(entry["name"]) for entry in layout]
    frozen = [p for p in params if not p.requires_grad]
    for p in frozen:  # a loaded (inference) adapter: the graph must reach the LoRA outputs
        p.requires_grad_(True)
    try:
        with _Capture(model, layout) as capture, (autocast or nullcontext)(), _attention_kernel(batch):
            logits, keep = labelled_logits(model, batch)
            losses = [_mean_losses(logits, batch["labels"][:, 1:][keep], keep)] if features else []
            if draws and generator is None:
                raise ValueError("drawing labels needs a seeded generator")
            losses += [_mean_losses(logits, draw_labels(logits, generator), keep) for _ in range(draws)]
        outputs = [capture.outputs[n] for n in capture.module_names]
        projected = []
        for k, loss in enumerate(losses):
            grads_out = torch.autograd.grad(loss.sum(), outputs, retain_graph=k < len(losses) - 1)
            projected.append(capture.project(grads_out, layout, projector))
    finally:
        for p in frozen:
            p.requires_grad_(False)
    return (projected[0], projected[1:]) if features else (None, projected)


class TrainingCapture:
    """Index features collected inside training's own backward passes (IndexSettings(gradients="last_epoch")).

    The training loss of a micro-batch is Σ token losses / N (N = loss tokens of the whole accumulation group), so
    the captured per-example gradient times N / n_b is example b's own mean-loss gradient — what the final-weights
    pass computes, but at the weights of the step that saw the example. Each LoRA layer's dropout is undone for its
    own weight gradient (`_Capture(clean=True)`), so where the weights stand still the two agree exactly (tested).
    """

    def __init__(self, model: torch.nn.Module, n: int, settings: IndexSettings, seed: int, device: Any) -> None:
        self.layout = lora_layout(model)
        self.num_params = sum(math.prod(entry["shape"]) for entry in self.layout)
        self.projector = Projector(self.num_params, settings.dim, seed, device)
        self.features = torch.zeros(n, settings.dim, dtype=torch.float32)
        self.seen = torch.zeros(n, dtype=torch.bool)
        self.seconds = 0.0
        self._model = model

    def capture(self) -> _Capture:
        return _Capture(self._model, self.layout, grads=True, clean=True)

    def collect(self, capture: _Capture, positions: Sequence[int], batch: Mapping[str, torch.Tensor], n_items: int):
        started = time.perf_counter()
        grads = [capture.grads[name] for name in capture.module_names]
        projected = capture.project(grads, self.layout, self.projector).cpu()
        own_tokens = (batch["labels"][:, 1:] != IGNORE).sum(dim=1).cpu().to(torch.float32)
        self.features[list(positions)] = projected * (n_items / own_tokens)[:, None]
        self.seen[list(positions)] = True
        self.seconds += time.perf_counter() - started
