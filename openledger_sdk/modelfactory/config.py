"""Fine-tuning settings, their validation, and the config hash recorded in the provenance manifest.

No torch here: the widget panel validates settings with these checks before anything heavy is loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from openledger_sdk.modelfactory.errors import FinetuneError

DEFAULT_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
MIN_MAX_LEN = 16  # below this not even a chat template's role markers fit
DEVICES = ("auto", "cpu", "cuda")
INDEX_PRECISIONS = ("auto", "training", "bfloat16")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapter shape: rank `r`, scaling `alpha / r`, dropout on the adapter input, and which Linear layers."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        # Accept a list or a single name; keep a tuple so the settings stay hashable and canonical.
        targets = self.target_modules
        if isinstance(targets, str):
            targets = (targets,)
        object.__setattr__(self, "target_modules", tuple(targets))


@dataclass(frozen=True)
class IndexSettings:
    """The attribution index: projection dimension and seed, TRAK damping, per-example gradient batch size.

    `seed=None` uses the training seed. `damping` is λ relative to the mean non-zero eigenvalue of the curvature H.

    `curvature` is the H that TRAK's preconditioner (H + λI)⁻¹ inverts. "fisher" (the default): the Gram of
    gradients on labels drawn from the model itself, `curvature_draws` per example (the Fisher of the model's
    predictions, which for cross-entropy equals the Gauss-Newton matrix). Each draw is one more backward pass over the
    training set, sharing the forward pass of the features. "empirical": ΦᵀΦ, the Gram of the features themselves
    (free, but at the end of training the fitted examples' gradients are small, so their directions are
    under-weighted and the inverse blows them up). On the LDS benchmark (bench/attribution_eval.py) the empirical
    Gram scored below the plain gradient dot product, and the Fisher above it.

    `gradients="final"` (the default) takes every example's gradient at the final adapter, dropout off, in one extra
    forward + backward pass over the training set after training: exact TRAK features, computed like the query
    gradients they are compared with. That pass *is* a forward and backward pass (~70% of it matmuls of the frozen
    base model), so in float32 it costs about 0.9 of an epoch. `precision` picks what it computes in:

    * "auto" (the default): bfloat16 where the device computes it natively (GPUs with bf16; CPUs with AMX or
      AVX512-BF16), otherwise training's own precision. bf16 autocast with the LM head and loss kept in float32, and
      the queries of the index computed the same way (the index records its precision): the features' pass costs
      20-25% of a 2-epoch run on this project's CPUs (41-54% in float32), 37% with the default Fisher curvature's
      drawn-label pass (bench/finetune_bench.py). Quality in
      bench/attribution_eval.py, paired against float32 on the same adapter and queries: no significant difference
      after 1, 2 or 50 epochs (gradient z-scores Spearman ≥ 0.98; one paraphrase in 40 ranked differently after 50).
    * "training": training's own precision (bf16 autocast on GPUs that support it, float32 on CPU): exact.
    * "bfloat16": bf16 as in "auto", on any device (emulated, so slower, on CPUs without native bf16).

    `gradients="last_epoch"` keeps the gradients of the last epoch's own backward passes (~1% of training with
    `curvature="empirical"`; the Fisher curvature still needs its drawn-label pass at the final weights). After
    long training (50 epochs) it ranks like the final pass (gradient z-scores Spearman 0.997), but after the 1-2
    epochs ModelFactory usually runs, each row is taken at weights far from the final ones (Spearman 0.49-0.70):
    gradient-ranked precision@1 falls 0.975 → 0.85 on paraphrases after 2 epochs and 0.175 → 0.05 on verbatim
    answers after 1 (paired 95% intervals below 0). Reusing only the last steps' gradients (≤ 5% of the
    learning-rate schedule left) and recomputing the rest was tried too: significantly worse after 2 epochs (stale
    rows mixed with final ones), so it is not offered.
    """

    enabled: bool = True
    dim: int = 1024
    seed: int | None = None
    damping: float = 0.1
    batch_size: int = 8
    span_index: bool = True
    gradients: str = "final"
    precision: str = "auto"
    curvature: str = "fisher"
    curvature_draws: int = 1


@dataclass(frozen=True)
class TrainConfig:
    """Every setting that changes the trained adapter; its canonical JSON hash goes into the manifest."""

    base: str
    lora: LoraSettings = field(default_factory=LoraSettings)
    lr: float = 2e-4
    epochs: int = 1
    batch_size: int = 4
    grad_accum: int = 1
    max_len: int = 512
    seed: int = 0
    eval_split: float = 0.1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    max_steps: int | None = None  # cap on optimizer steps (quick trials, benchmarks); None = all epochs
    index: IndexSettings = field(default_factory=IndexSettings)

    def validate(self) -> None:
        """Raise `FinetuneError` naming the first bad setting (cheap checks; no model or data needed)."""
        problems = validation_problems(self)
        if problems:
            raise FinetuneError(problems[0])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lora"]["target_modules"] = list(self.lora.target_modules)
        return data

    def config_hash(self) -> str:
        return canonical_hash(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["lora"] = LoraSettings(**data.get("lora", {}))
        # A config recorded before `precision` existed reads back as what its index did: training's own precision.
        values["index"] = IndexSettings(**{"precision": "training", **data.get("index", {})})
        return cls(**values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validation_problems(config: TrainConfig) -> list[str]:
    """Every problem with the settings, as messages a user can act on (empty when all is well)."""
    problems: list[str] = []
    lora = config.lora
    if not isinstance(config.base, str) or not config.base.strip():
        problems.append("base model: give a catalog name (e.g. 'smollm2-135m-instruct') or a local model folder")
    if not _is_int(lora.r) or lora.r <= 0:
        problems.append(f"LoRA rank r must be a positive integer (got {lora.r!r}); typical values are 4 to 64")
    if not _is_number(lora.alpha) or lora.alpha <= 0:
        problems.append(f"LoRA alpha must be a positive number (got {lora.alpha!r}); 2 x r is a common choice")
    if not _is_number(lora.dropout) or not 0 <= lora.dropout < 1:
        problems.append(f"LoRA dropout must be in [0, 1) (got {lora.dropout!r})")
    if not lora.target_modules or not all(isinstance(t, str) and t for t in lora.target_modules):
        problems.append("target_modules: name at least one Linear layer, e.g. ('q_proj', 'v_proj')")
    if not _is_number(config.lr) or config.lr <= 0:
        problems.append(f"learning rate lr must be a positive number (got {config.lr!r}); try 1e-4 to 1e-3 for LoRA")
    elif config.lr >= 1:
        problems.append(f"learning rate lr={config.lr} is far too large for LoRA; try 1e-4 to 1e-3")
    if not _is_int(config.epochs) or config.epochs < 1:
        problems.append(f"epochs must be an integer >= 1 (got {config.epochs!r})")
    if not _is_int(config.batch_size) or config.batch_size < 1:
        problems.append(f"batch_size must be an integer >= 1 (got {config.batch_size!r})")
    if not _is_int(config.grad_accum) or config.grad_accum < 1:
        problems.append(f"grad_accum must be an integer >= 1 (got {config.grad_accum!r})")
    if not _is_int(config.max_len) or config.max_len < MIN_MAX_LEN:
        problems.append(
            f"max_len={config.max_len!r} is too small: it must be an integer >= {MIN_MAX_LEN} tokens "
            "(prompt, template markers and response must fit)"
        )
    if not _is_int(config.seed) or config.seed < 0:
        problems.append(f"seed must be a non-negative integer (got {config.seed!r})")
    if not _is_number(config.eval_split) or not 0 <= config.eval_split < 1:
        problems.append(f"eval_split must be a fraction in [0, 1) (got {config.eval_split!r}); 0 disables evaluation")
    if not _is_number(config.weight_decay) or config.weight_decay < 0:
        problems.append(f"weight_decay must be >= 0 (got {config.weight_decay!r})")
    if not _is_number(config.warmup_ratio) or not 0 <= config.warmup_ratio < 1:
        problems.append(f"warmup_ratio must be in [0, 1) (got {config.warmup_ratio!r})")
    if config.max_grad_norm is not None and (not _is_number(config.max_grad_norm) or config.max_grad_norm <= 0):
        problems.append(f"max_grad_norm must be positive or None (got {config.max_grad_norm!r})")
    if config.max_steps is not None and (not _is_int(config.max_steps) or config.max_steps < 1):
        problems.append(f"max_steps must be a positive integer or None (got {config.max_steps!r})")
    index = config.index
    if index.enabled:
        if not _is_int(index.dim) or index.dim < 1:
            problems.append(f"attribution index dim must be a positive integer (got {index.dim!r}); default 1024")
        if index.seed is not None and (not _is_int(index.seed) or index.seed < 0):
            problems.append(f"attribution index seed must be a non-negative integer or None (got {index.seed!r})")
        if not _is_number(index.damping) or index.damping <= 0:
            problems.append(f"attribution index damping must be positive (got {index.damping!r})")
        if not _is_int(index.batch_size) or index.batch_size < 1:
            problems.append(f"attribution index batch_size must be >= 1 (got {index.batch_size!r})")
        if index.gradients not in ("final", "last_epoch"):
            problems.append(f"attribution index gradients must be 'final' or 'last_epoch' (got {index.gradients!r})")
        if index.curvature not in ("fisher", "empirical"):
            problems.append(f"attribution index curvature must be 'fisher' or 'empirical' (got {index.curvature!r})")
        if not _is_int(index.curvature_draws) or index.curvature_draws < 1:
            problems.append(f"attribution index curvature_draws must be >= 1 (got {index.curvature_draws!r})")
        if index.precision not in INDEX_PRECISIONS:
            problems.append(
                f"attribution index precision must be one of {', '.join(INDEX_PRECISIONS)} (got {index.precision!r})"
            )
    return problems


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same settings always give the same bytes (and hash)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def canonical_hash(data: Any) -> str:
    return hashlib.sha256(canonical_json(data)).hexdigest()
