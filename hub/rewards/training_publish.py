"""Publishing checks the training charge a manifest names: a model registers with a real, paid, complete run.

A manifest from `finetune()` on a hub carries `training_charge.run_id`. The platform then requires that run to be
the publisher's own, complete, paid (its transfer confirmed), trained on the same settings and rows, and not
already backing another published model. A manifest without a run (trained outside a hub) is published as unpaid:
the platform never charged for it, and says so in the model's record. The charge is inside the manifest, so the
manifest hash registered on-chain commits to it.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from hub.models.errors import ModelError
from hub.rewards.training_charges import follow_transfer
from hub.rewards.training_models import TrainingRun, TrainingStatus


def training_run_of(session: Session, manifest: dict[str, Any], publisher: str) -> TrainingRun | None:
    """The paid run behind the manifest, checked (422/409 saying what is wrong); None for an unpaid manifest."""
    charge = manifest.get("training_charge")
    run_id = charge.get("run_id") if isinstance(charge, dict) else None
    if run_id is None:
        return None
    run = session.get(TrainingRun, str(run_id)[:64])
    if run is None or run.payer != publisher:
        raise ModelError(422, f"the manifest names training run {str(run_id)[:64]!r}, which is not one of yours")
    if follow_transfer(session, run) == TrainingStatus.CHARGING:
        raise ModelError(409, f"training run {run.run_id}'s payment is still being confirmed: publish in a moment")
    if run.status not in (TrainingStatus.PAID, TrainingStatus.FREE) or run.outcome != "complete":
        raise ModelError(
            422, f"training run {run.run_id} is not a complete, paid run ({run.outcome}, {run.status}): train again"
        )
    data = manifest.get("data") or {}
    if manifest.get("config_hash") != run.config_hash or data.get("rows_sha256") != run.rows_sha256:
        raise ModelError(422, f"the manifest's settings or rows are not those training run {run.run_id} paid for")
    if str(charge.get("amount_wei")) != str(run.amount):
        raise ModelError(422, f"the manifest's training charge differs from run {run.run_id}'s: {run.amount} paid")
    if run.model is not None:
        raise ModelError(409, f"training run {run.run_id} already backs model {run.model!r}: one run, one model")
    return run


def training_of_model(session: Session, name: str) -> dict[str, Any]:
    """What training the model's publisher paid for (shown with the model's record)."""
    run = session.exec(select(TrainingRun).where(TrainingRun.model == name)).first()
    if run is None:
        return {"paid": False, "detail": "not trained on this platform: no training charge"}
    return {"paid": True, "run_id": run.run_id, "tokens": run.tokens, "amount_wei": str(run.amount)}
