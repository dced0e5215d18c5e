"""The attribution index of a trained adapter: projected, preconditioned per-example LoRA gradients (TRAK/LESS).

At the end of training, for every training example i we take the gradient g_i of its response loss (mean
cross-entropy over its response tokens) with respect to the LoRA parameters only, at the final adapter weights,
with dropout off. g_i has P entries (all lora_A / lora_B weights, in the order of `layout`); it is projected to
`dim` numbers with a seeded CountSketch (a sparse JL transform: parameter j is added, with sign s_j, to bucket
h_j). CountSketch preserves inner products in expectation (E[<Sx, Sy>] = <x, y>) at O(P) cost per example, and the
same projection is regenerated from (num_params, dim, seed) at inference time — see `Projector`.

With Φ the n × dim matrix of projected gradients, the TRAK preconditioner is M = (H + λI)⁻¹, where H is the
curvature and λ = damping × trace(H) / min(n, dim) (damping relative to the mean non-zero eigenvalue). By default
(`IndexSettings.curvature="fisher"`) H is the Gram of projected gradients on labels drawn from the model itself,
scaled to n examples: the Fisher of its predictions (= the Gauss-Newton matrix for cross-entropy). TRAK's own
choice, H = ΦᵀΦ ("empirical"), under-weights what training fitted (small true-label gradients) and then inverts
that. We store the
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
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from openledger_sdk.modelfactory.config import IndexSettings
from openledger_sdk.modelfactory.data import IGNORE, Example, collate
from openledger_sdk.modelfactory.lora_gradients import (  # re-exported: the index's public names, as before
    Projector,
    TrainingCapture,
    example_losses,
    lora_layout,
    precision_autocast,
    project_gradients,
    project_gradients_and_draws,
    store_frozen_linears_in_bfloat16,
)

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
    "gradient_rows",
    "lora_layout",
    "precision_autocast",
    "project_gradients",
    "query_projection",
    "score",
    "store_frozen_linears_in_bfloat16",
]


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


def gradient_rows(
    model: torch.nn.Module,
    examples: Sequence[Example],
    layout: Sequence[Mapping[str, Any]],
    projector: Projector,
    *,
    batch_size: int,
    pad_id: int,
    seed: int,
    draws: int = 0,
    device: torch.device | str = "cpu",
    autocast: Callable[[], AbstractContextManager] | None = None,
    captured: TrainingCapture | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Φ [n, dim], C [m, dim]) at the model's current weights, dropout off: every example's projected gradient, and
    the rows whose Gram is the index's curvature H = CᵀC — `draws` drawn-label gradients per example (labels drawn
    with a generator seeded by `seed`, batch by batch in `_length_batches` order), scaled by 1/√draws; Φ itself
    when `draws` is 0. With `captured`, the examples it saw keep their training-time features and only get their
    drawn-label gradients here."""
    n = len(examples)
    features = captured.features if captured is not None else torch.empty(n, projector.dim, dtype=torch.float32)
    fresh = [captured is None or not bool(captured.seen[i]) for i in range(n)]
    todo = list(range(n)) if draws else [i for i in range(n) if fresh[i]]
    generator = torch.Generator().manual_seed(int(seed))  # the drawn labels, hence the index, are reproducible
    drawn: list[torch.Tensor] = []
    done = n - sum(fresh)
    was_training = model.training
    model.eval()  # no dropout: the gradient of the model that will serve
    try:
        for chunk in _length_batches([examples[i] for i in todo], batch_size):
            positions = [todo[i] for i in chunk]
            new = [k for k, i in enumerate(positions) if fresh[i]]
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in positions], pad_id).items()}
            rows, samples = project_gradients_and_draws(
                model, batch, layout, projector, autocast, draws=draws, generator=generator, features=bool(new)
            )
            drawn.extend(sample.cpu() for sample in samples)
            if new:
                features[[positions[k] for k in new]] = rows.cpu()[new]
            done += len(new)
            if progress is not None:
                progress(done, n)
    finally:
        model.train(was_training)
    return features, (torch.cat(drawn) / math.sqrt(draws) if draws else features)


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
    draws = settings.curvature_draws if settings.curvature == "fisher" else 0
    features, curvature_rows = gradient_rows(
        model, examples, layout, projector, batch_size=settings.batch_size, pad_id=pad_id, seed=seed, draws=draws,
        device=device, autocast=autocast, captured=captured, progress=progress,
    )  # fmt: skip
    computed = n if captured is None else n - int(captured.seen.sum())
    phi = features.to(torch.float64)
    curvature = curvature_rows.to(torch.float64)
    gram = curvature.T @ curvature
    trace = float(torch.trace(gram))
    lam = settings.damping * trace / max(min(n, dim), 1) if trace > 0 else settings.damping
    chol = torch.linalg.cholesky(gram + lam * torch.eye(dim, dtype=torch.float64))
    preconditioner = torch.cholesky_inverse(chol)
    preconditioned = (phi @ preconditioner).to(torch.float32)
    scale = float(preconditioned.abs().max()) or 1.0
    seconds = time.perf_counter() - started + (captured.seconds if captured is not None else 0.0)
    when = (
        f"weights of the training step that saw it in the last epoch ({n - computed} examples; the other "
        f"{computed} at the final adapter), LoRA dropout undone"
        if captured is not None
        else "final adapter, dropout off"
    )
    meta = {
        "format": FORMAT,
        "projection": {"kind": PROJECTION, "dim": dim, "seed": int(seed), "num_params": num_params},
        "layout": layout,
        "gradient": f"mean cross-entropy over the example's response tokens; LoRA weights only; {when}",
        "gradients": settings.gradients,
        "stored": "preconditioned features F = Φ (H + λI)⁻¹ / scale (float16); score = scale · F q",
        "curvature": (
            f"fisher: H = Gram of gradients on labels drawn from the model, {draws} per example, scaled to n"
            if draws
            else "empirical: H = ΦᵀΦ"
        ),
        "curvature_draws": draws,
        "batch_size": settings.batch_size,
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
