"""The attribution index of a trained adapter: projected, preconditioned per-example LoRA gradients (TRAK/LESS).

At the end of training, for every training example i we take the gradient g_i of its response loss (mean
cross-entropy over its response tokens) with respect to the LoRA parameters only, at the final adapter weights,
with dropout off. g_i has P entries (all lora_A / lora_B weights, in the order of `layout`); it is projected to
`dim` numbers with a seeded CountSketch (a sparse JL transform: parameter j is added, with sign s_j, to bucket
h_j). CountSketch preserves inner products in expectation (E[<Sx, Sy>] = <x, y>) at O(P) cost per example, and the
same projection is regenerated from (num_params, dim, seed) at inference time — see `Projector`.

With Φ the n × dim matrix of projected gradients, the TRAK preconditioner is M = (ΦᵀΦ + λI)⁻¹, where
λ = damping × trace(ΦᵀΦ) / min(n, dim) (damping relative to the mean non-zero eigenvalue). We store the
**preconditioned features** F = Φ M (float16, divided by `scale` so their largest entry is 1) — then scoring a query
is one matrix-vector product: score_i = scale · F_i · q, where q is the query's projected gradient (`score()`).
M itself is stored too (float32, dim × dim) for batch re-scoring and diagnostics; it is not needed per inference.

Per-example gradients: one batched forward + backward per micro-batch. Forward hooks keep each LoRA Linear's input
x and output y; `torch.autograd.grad(loss, ys)` gives dL/dy without touching parameter grads; the per-example weight
gradient is einsum(dL/dy, x) over that example's tokens (exact: examples in a batch never interact, padding has zero
gradient). `torch.func.vmap(grad(...))` also works with PEFT models but hits the unbatched fallback of SDPA
attention and is slower on CPU.

Files: `attribution_index.safetensors` (features fp16 [n, dim], preconditioner fp32 [dim, dim], raw_norms fp32 [n])
and `attribution_index.json` (row ids, contributors, projection, layout, λ, scale, build stats).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from openledger_sdk.modelfactory.config import IndexSettings
from openledger_sdk.modelfactory.data import IGNORE, Example, collate

INDEX_FILE = "attribution_index.safetensors"
INDEX_META = "attribution_index.json"
FORMAT = "openledger-attribution-index/1"
PROJECTION = "countsketch"
__all__ = [
    "INDEX_FILE",
    "INDEX_META",
    "AttributionIndex",
    "IndexSettings",
    "Projector",
    "TrainingCapture",
    "build_index",
    "example_losses",
    "lora_layout",
    "precision_autocast",
    "project_gradients",
    "query_projection",
    "score",
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
            logits = head(hidden[:, :-1][keep].to(head.weight.dtype)).float()
    else:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = out.logits[:, :-1][keep].float()
    token_loss = torch.nn.functional.cross_entropy(logits, labels[keep], reduction="none")
    rows = torch.nonzero(keep)[:, 0]
    totals = torch.zeros(labels.shape[0], dtype=torch.float32, device=token_loss.device).index_add_(0, rows, token_loss)
    return totals / keep.sum(dim=1).to(torch.float32)


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
    params = [model.get_parameter(entry["name"]) for entry in layout]
    frozen = [p for p in params if not p.requires_grad]
    for p in frozen:  # a loaded (inference) adapter: the graph must reach the LoRA outputs
        p.requires_grad_(True)
    try:
        with _Capture(model, layout) as capture, (autocast or nullcontext)(), _attention_kernel(batch):
            losses = example_losses(model, batch)
        grads_out = torch.autograd.grad(losses.sum(), [capture.outputs[n] for n in capture.module_names])
    finally:
        for p in frozen:
            p.requires_grad_(False)
    return capture.project(grads_out, layout, projector)


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


# --- the index -----------------------------------------------------------------------------------------------------


@dataclass
class AttributionIndex:
    """Preconditioned projected gradients of the training examples; `score()` ranks them for a query."""

    features: torch.Tensor  # float16 [n, dim]: Φ M / scale
    scale: float
    row_ids: list[Any]
    contributors: list[str]
    preconditioner: torch.Tensor | None  # float32 [dim, dim]: M = (ΦᵀΦ + λI)⁻¹
    raw_norms: torch.Tensor  # float32 [n]: ‖Φ_i‖, for normalised scoring
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.row_ids)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def seed(self) -> int:
        return int(self.meta["projection"]["seed"])

    @property
    def bytes_per_example(self) -> float:
        """Stored bytes per training example: features, norm, and the example's share of the JSON sidecar."""
        json_bytes = len(json.dumps({"r": self.row_ids, "c": self.contributors}, separators=(",", ":")))
        return self.features.shape[1] * 2 + 4 + json_bytes / max(len(self), 1)

    def projector(self, device: torch.device | str = "cpu") -> Projector:
        projection = self.meta["projection"]
        return Projector(projection["num_params"], projection["dim"], projection["seed"], device)

    def save(self, directory: str | Path) -> list[Path]:
        from safetensors.torch import save_file

        directory = Path(directory)
        tensors = {"features": self.features.contiguous(), "raw_norms": self.raw_norms.contiguous()}
        if self.preconditioner is not None:
            tensors["preconditioner"] = self.preconditioner.contiguous()
        save_file(tensors, str(directory / INDEX_FILE), metadata={"format": FORMAT})
        meta = {**self.meta, "scale": self.scale, "row_ids": self.row_ids, "contributors": self.contributors}
        (directory / INDEX_META).write_text(json.dumps(meta, separators=(",", ":")), encoding="utf-8")
        return [directory / INDEX_FILE, directory / INDEX_META]

    @classmethod
    def load(cls, directory: str | Path) -> AttributionIndex:
        from safetensors.torch import load_file

        directory = Path(directory)
        tensors = load_file(str(directory / INDEX_FILE))
        meta = json.loads((directory / INDEX_META).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{directory / INDEX_META} is not an {FORMAT} file")
        row_ids, contributors, scale = meta.pop("row_ids"), meta.pop("contributors"), meta.pop("scale")
        return cls(
            tensors["features"], scale, row_ids, contributors, tensors.get("preconditioner"), tensors["raw_norms"], meta
        )


def score(index: AttributionIndex, query: torch.Tensor, *, normalize: bool = False) -> torch.Tensor:
    """TRAK scores of every training example for one projected query gradient `query` [dim]: [n] float32.

    score_i = q · M · Φ_i (one matrix-vector product on the stored preconditioned features). `normalize=True`
    divides by ‖q‖ and ‖Φ_i‖ (LESS-style; removes the bias towards short, high-gradient-norm examples).
    """
    q = query.to(torch.float32).reshape(-1).to(index.features.device)
    if q.shape[0] != index.dim:
        raise ValueError(f"query projection has {q.shape[0]} entries; this index has dim {index.dim}")
    scores = (index.features.to(torch.float32) @ q) * index.scale
    if normalize:
        scores = scores / (index.raw_norms.to(scores.device).clamp_min(1e-12) * q.norm().clamp_min(1e-12))
    return scores


def query_projection(
    model: torch.nn.Module,
    index: AttributionIndex,
    input_ids: Sequence[int],
    labels: Sequence[int],
    autocast: Callable[[], AbstractContextManager] | None = None,
) -> torch.Tensor:
    """The projected gradient [dim] of one sequence's mean loss over its labelled tokens (IGNORE = not labelled).

    For a generated answer: input_ids = prompt + generated tokens, labels = [IGNORE] * len(prompt) + generated.
    `model` is the PEFT model with this index's adapter active (same layout as the index). Without `autocast`, the
    pass runs in the precision the index was built in (its meta "precision"), so query and rows round alike.
    """
    layout = index.meta["layout"]
    current = [entry["name"] for entry in lora_layout(model)]
    if current != [entry["name"] for entry in layout]:
        raise ValueError("the model's LoRA parameters do not match the index layout (another adapter?)")
    device = next(model.parameters()).device
    if autocast is None:
        autocast = precision_autocast(index.meta.get("precision", "float32"), device.type)
    example = Example(None, "", list(input_ids), list(labels), [t for t in labels if t != IGNORE])
    batch = {k: v.to(device) for k, v in collate([example], pad_id=0).items()}
    was_training = model.training
    model.eval()
    try:
        return project_gradients(model, batch, layout, index.projector(device), autocast)[0]
    finally:
        model.train(was_training)


def _length_batches(examples: Sequence[Example], batch_size: int) -> list[list[int]]:
    # Similar lengths together: less padding, and the result does not depend on the order.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def build_index(
    model: torch.nn.Module,
    examples: Sequence[Example],
    settings: IndexSettings,
    *,
    seed: int,
    pad_id: int,
    device: torch.device | str = "cpu",
    precision: str = "float32",
    progress: Callable[[int, int], None] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    captured: TrainingCapture | None = None,
) -> AttributionIndex:
    """Build the index over `examples` with the model's current (final) LoRA weights.

    With `captured` (features collected during training), only the examples it did not see are computed here.
    `precision` ("float32" or "bfloat16": about half the time where the hardware computes bf16 natively) is what
    the gradient passes compute in; the index records it, and its queries compute in it too.
    """
    started = time.perf_counter()
    autocast = precision_autocast(precision, torch.device(device).type)
    layout = lora_layout(model)
    num_params = sum(math.prod(entry["shape"]) for entry in layout)
    projector = Projector(num_params, settings.dim, seed, device)
    n, dim = len(examples), settings.dim
    features = captured.features if captured is not None else torch.empty(n, dim, dtype=torch.float32)
    todo = [i for i in range(n) if captured is None or not bool(captured.seen[i])]
    was_training = model.training
    model.eval()  # no dropout: the gradient of the model that will serve
    done = n - len(todo)
    try:
        for chunk in _length_batches([examples[i] for i in todo], settings.batch_size):
            positions = [todo[i] for i in chunk]
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in positions], pad_id).items()}
            features[positions] = project_gradients(model, batch, layout, projector, autocast).cpu()
            done += len(positions)
            if progress is not None:
                progress(done, n)
    finally:
        model.train(was_training)
    phi = features.to(torch.float64)
    gram = phi.T @ phi
    trace = float(torch.trace(gram))
    lam = settings.damping * trace / max(min(n, dim), 1) if trace > 0 else settings.damping
    chol = torch.linalg.cholesky(gram + lam * torch.eye(dim, dtype=torch.float64))
    preconditioner = torch.cholesky_inverse(chol)
    preconditioned = (phi @ preconditioner).to(torch.float32)
    scale = float(preconditioned.abs().max()) or 1.0
    seconds = time.perf_counter() - started + (captured.seconds if captured is not None else 0.0)
    when = (
        f"weights of the training step that saw it in the last epoch ({n - len(todo)} examples; the other "
        f"{len(todo)} at the final adapter), LoRA dropout undone"
        if captured is not None
        else "final adapter, dropout off"
    )
    meta = {
        "format": FORMAT,
        "projection": {"kind": PROJECTION, "dim": dim, "seed": int(seed), "num_params": num_params},
        "layout": layout,
        "gradient": f"mean cross-entropy over the example's response tokens; LoRA weights only; {when}",
        "gradients": settings.gradients,
        "stored": "preconditioned features F = Φ (ΦᵀΦ + λI)⁻¹ / scale (float16); score = scale · F q",
        "damping": settings.damping,
        "lambda": lam,
        "examples": n,
        "precision": precision,
        "build_seconds": round(seconds, 3),
        "seconds_per_1k_examples": round(seconds / max(n, 1) * 1000, 3),
        **(extra_meta or {}),
    }
    index = AttributionIndex(
        features=(preconditioned / scale).to(torch.float16),
        scale=scale,
        row_ids=[e.row_id for e in examples],
        contributors=[e.contributor for e in examples],
        preconditioner=preconditioner.to(torch.float32),
        raw_norms=features.norm(dim=1),
        meta=meta,
    )
    index.meta["bytes_per_example"] = round(index.bytes_per_example, 1)
    return index
