"""What a fine-tuning run will train, computed by the platform itself: it never takes a token count from a kernel.

From the run's settings (the `TrainConfig` the kernel will use), the rows (the datanet version's snapshot the platform
stores, or rows sent in the request) and the base model's tokenizer (the platform's own copy), it runs the SDK's
`prepare()` and step plan, exactly as `finetune()` does, and counts every optimizer step's tokens.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from hub.auth import HubUser
from hub.models.bases import ref_name
from hub.platform.runtime import PlatformRuntime
from openledger_sdk.modelfactory.config import IndexSettings, LoraSettings, TrainConfig, validation_problems
from openledger_sdk.modelfactory.data import prepare
from openledger_sdk.modelfactory.errors import FinetuneError
from openledger_sdk.modelfactory.step_plan import plan_steps, step_tokens

MAX_EPOCHS = 1000  # planning is per epoch: a run asking for more is refused before any work
MAX_PASSES = 20_000_000  # epochs x training examples: the plan lists every example of every epoch
MAX_STEPS = 200_000  # every step's token count is stored with the run: bounded so one row stays small
RUN_ID_PATTERN = r"^[0-9a-f]{32}$"


class PlanError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class RunRequest(BaseModel):
    """A kernel's request to train: no payer and no token count, the platform works both out."""

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = Field(
        default=None, pattern=RUN_ID_PATTERN, description="32 hex digits chosen by the kernel; a retry reuses it"
    )
    datanet: str | None = Field(default=None, min_length=1, max_length=255)
    version: Annotated[int, Field(ge=1, le=10**18)] | Annotated[str, Field(pattern=r"^(latest|[0-9]{1,18})$")] = Field(
        default="latest", description="a version number or 'latest'"
    )
    rows: list[dict[str, Any]] | None = Field(default=None, description="rows passed to finetune() directly")
    config: dict[str, Any] = Field(description="TrainConfig.to_dict() of the run")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class PlannedRun:
    base: str
    datanet: str | None
    version: int | None
    root: str | None
    rows_sha256: str
    config_hash: str
    step_tokens: list[int]

    @property
    def tokens(self) -> int:
        return sum(self.step_tokens)


def train_config(data: dict[str, Any]) -> TrainConfig:
    """The run's settings, checked as finetune() checks them (400 with the first problem)."""
    try:
        known = {key: value for key, value in data.items() if key not in ("lora", "index")}
        config = TrainConfig(
            **known,
            lora=LoraSettings(**data.get("lora", {})),
            index=IndexSettings(**data.get("index", {})),
        )
        problems = validation_problems(config)
    except (TypeError, ValueError, AttributeError) as err:  # wrong field names or types in any part
        raise PlanError(400, f"config: {err}") from None
    if problems:
        raise PlanError(400, f"config: {problems[0]}")
    if config.epochs > MAX_EPOCHS:
        raise PlanError(400, f"config: epochs={config.epochs} is more than {MAX_EPOCHS}; train in shorter runs")
    return config


_tokenizers: dict[tuple[str, int], Any] = {}
_tokenizers_lock = threading.Lock()


def base_tokenizer(runtime: PlatformRuntime, base: str) -> tuple[str, Any]:
    """The platform's base model folder for `base` (a catalog name or a kernel's path to it) and its tokenizer."""
    name = ref_name(base)
    folder = Path(runtime.settings.data_dir) / "models" / name
    if not name or not (folder / "config.json").is_file():
        have = sorted(p.parent.name for p in (Path(runtime.settings.data_dir) / "models").glob("*/config.json"))
        raise PlanError(
            422,
            f"this platform has no base model {name!r} to price the run with; paid training uses one of its base "
            f"models: {', '.join(have) or 'none installed'}",
        )
    key = (str(folder), (folder / "config.json").stat().st_mtime_ns)
    with _tokenizers_lock:
        if key not in _tokenizers:
            from transformers import AutoTokenizer

            _tokenizers[key] = AutoTokenizer.from_pretrained(folder)
        return name, _tokenizers[key]


def datanet_rows(runtime: PlatformRuntime, user: HubUser, name: str, version: int | str) -> tuple[list, int, str]:
    """The version's rows as the kernel reads them (its Parquet snapshot, in order), its number and Merkle root."""
    import pyarrow.parquet as pq

    from hub.datanets.service import DatanetError

    service = runtime.extras.get("datanets")
    if service is None:
        raise PlanError(503, "datanets are not available on this platform yet")
    try:
        meta = service.version(user, name, version)  # 404 when the user may not read it
    except DatanetError as err:
        raise PlanError(err.status, str(err.detail)) from None
    table = pq.read_table(io.BytesIO(service.blobs.get(meta["snapshot"]["digest"])))
    return table.to_pylist(), int(meta["version"]), meta["merkle_root"]


def plan_run(runtime: PlatformRuntime, user: HubUser, request: RunRequest) -> PlannedRun:
    if (request.datanet is None) == (request.rows is None):
        raise PlanError(400, "name exactly one of `datanet` (with `version`) or `rows`")
    # No base named (a quote, e.g. for workshop funding): the base model this platform serves.
    config = train_config({"base": ref_name(str(runtime.settings.models.base_model))} | request.config)
    base, tokenizer = base_tokenizer(runtime, config.base)
    if request.datanet is not None:
        rows, number, root = datanet_rows(runtime, user, request.datanet, request.version)
    else:
        rows, number, root = list(request.rows or []), None, None
    try:
        prepared = prepare(rows, tokenizer, max_len=config.max_len, eval_split=config.eval_split, seed=config.seed)
    except FinetuneError as err:
        raise PlanError(400, str(err)) from None
    except Exception as err:  # noqa: BLE001 - rows a kernel sent may be anything: a 400 naming the problem
        raise PlanError(400, f"the rows cannot be tokenized ({type(err).__name__}: {err})"[:500]) from None
    per_epoch = math.ceil(math.ceil(len(prepared.train) / config.batch_size) / config.grad_accum)
    steps = min(per_epoch * config.epochs, config.max_steps or per_epoch * config.epochs)
    if steps > MAX_STEPS or config.epochs * len(prepared.train) > MAX_PASSES:
        raise PlanError(
            400,
            f"the run is too long to price: {steps} optimizer steps (at most {MAX_STEPS}) over {config.epochs} "
            f"epochs of {len(prepared.train)} examples (at most {MAX_PASSES} together); train in shorter runs",
        )
    plan = plan_steps(prepared.train, config)
    return PlannedRun(
        base, request.datanet, number, root, prepared.rows_sha256, config.config_hash(),
        step_tokens(prepared.train, plan, config.grad_accum),
    )  # fmt: skip
