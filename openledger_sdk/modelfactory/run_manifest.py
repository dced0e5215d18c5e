"""The manifest saved with every adapter: everything needed to reproduce and verify the run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openledger_sdk.modelfactory.config import TrainConfig
from openledger_sdk.modelfactory.data import PreparedData, held_out_record
from openledger_sdk.modelfactory.model_setup import cached_weights_hash
from openledger_sdk.modelfactory.train_loop import TrainingPlan


def run_manifest(
    config: TrainConfig,
    base: str,
    base_dir: Path,
    sources: list[dict],
    prepared: PreparedData,
    plan: TrainingPlan,
    training: dict[str, Any],
    evaluation: dict[str, Any] | None,
    attribution: Any,
    device: str,
    precision: str,
) -> dict[str, Any]:
    from openledger_sdk.modelfactory.manifest import library_versions

    stopped = training["stopped"]
    training = {key: value for key, value in training.items() if key != "stopped"}
    index_summary = None
    if attribution is not None:
        meta = attribution.meta
        index_summary = {
            key: meta[key]
            for key in (
                "projection",
                "gradients",
                "curvature",
                "curvature_draws",
                "damping",
                "lambda",
                "examples",
                "build_seconds",
                "seconds_per_1k_examples",
                "precision",
                "span_build_seconds",
            )
        }
        index_summary["bytes_per_example"] = meta["bytes_per_example"]
    return {
        "complete": not stopped,
        "stop_reason": f"stopped by the user at step {training['steps']} of {training['total_steps']}"
        if stopped
        else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": {
            "id": base,
            "weights_sha256": cached_weights_hash(base_dir),
            "architecture": (_read_json(base_dir / "config.json").get("architectures") or [None])[0],
        },
        "datanets": sources,
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        "seed": config.seed,
        "data": {
            "format": prepared.format,
            "fields": list(prepared.fields),
            "template": prepared.template,
            "rows_sha256": prepared.rows_sha256,
            "train_rows": len(prepared.train),
            "eval_rows": len(prepared.eval),
            **held_out_record(prepared),
            "skipped_rows": prepared.skipped,
            "order_hash": plan.order_hash,
        },
        "training": {**training, "device": device, "precision": precision},
        "eval": evaluation,
        "attribution_index": index_summary,
        "libraries": library_versions(),
    }


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
