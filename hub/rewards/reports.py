"""Read-only views: one record with its inclusion proof, a model's revenue for dashboards, workshop counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, func, select

from hub.ledger.contracts import Ledger
from hub.ledger.errors import LedgerError
from hub.rewards.models import ChargeStatus, EpochCharge, EpochStatus, InferenceRecordRow, RewardEpoch
from hub.rewards.trees import leaf_of, records_tree

TOP_CONTRIBUTORS = 10


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite returns naive UTC


def record_view(session: Session, row: InferenceRecordRow, ledger: Ledger | None, show_payer: bool) -> dict[str, Any]:
    """The record, its attribution document, and once its epoch is committed the inclusion proof and the records
    root read from the AttributionLedger (None while the chain has not confirmed it)."""
    view: dict[str, Any] = {
        "request_id": row.request_id,
        "record_id": row.record_id,
        "model": row.model,
        "model_id": row.model_id,
        "adapter": row.adapter,
        "payer": row.payer if show_payer else None,
        "payer_address": row.payer_address,
        "tokens": row.tokens,
        "fee": str(row.fee),
        "attribution": row.attribution,
        "attribution_hash": row.attribution_hash,
        "epoch": row.epoch,
        "charge_status": row.charge_status,
        "charge_reason": row.charge_reason,
        "created_at": aware(row.created_at).isoformat(),
        "proof": None,
    }
    epoch = session.get(RewardEpoch, row.epoch) if row.epoch is not None else None
    if epoch is None or epoch.records_root is None or row.charge_status != ChargeStatus.PAID:
        return view
    tree = records_tree(session, epoch)
    view["proof"] = {
        "epoch": epoch.number,
        "epoch_status": epoch.status,
        "records_root": epoch.records_root,
        "chain_records_root": _chain_records_root(ledger, epoch),
        "leaf": ["0x" + value.hex() if isinstance(value, bytes) else value for value in leaf_of(row).leaf_values()],
        "proof": tree.get_proof(leaf_of(row).leaf_values()),
    }
    return view


def _chain_records_root(ledger: Ledger | None, epoch: RewardEpoch) -> str | None:
    if ledger is None or epoch.status not in (EpochStatus.COMMITTING, EpochStatus.SETTLED, EpochStatus.FAILED):
        return None
    try:
        return "0x" + ledger.attribution.get_epoch(epoch.number).records_root.hex()
    except LedgerError:
        return None  # not mined yet (UnknownEpoch)
    except Exception:  # noqa: BLE001 - the chain may be down while the platform is up: the record still shows
        return None


def model_revenue(session: Session, model: str, days: int, now: datetime | None = None) -> dict[str, Any]:
    """Requests, tokens and fees per day over the last `days` days, the split of the fees, the top contributors.

    Counts every record (paid, unpaid and not settled yet) with its charge status; amounts are base units."""
    since = (now or datetime.now(UTC)) - timedelta(days=days)
    rows = session.exec(
        select(InferenceRecordRow)
        .where(InferenceRecordRow.model == model, InferenceRecordRow.created_at >= since)
        .order_by(InferenceRecordRow.created_at)
    )
    per_day: dict[str, dict[str, int]] = {}
    totals = {"requests": 0, "tokens": 0, "fees": 0, "owner": 0, "contributors": 0, "protocol": 0, "unpaid": 0}
    contributors: dict[str, int] = {}
    for row in rows:
        doc = row.attribution
        day = per_day.setdefault(row.created_at.date().isoformat(), {"requests": 0, "tokens": 0, "fees": 0, "owner": 0})
        owner = int(doc["owner"]["amount"]) + (int(doc["unattributed"]) if doc["unattributed_to"] == "owner" else 0)
        day["requests"] += 1
        day["tokens"] += row.tokens
        day["fees"] += row.fee
        day["owner"] += owner  # the owner dashboard plots its revenue per day
        totals["requests"] += 1
        totals["tokens"] += row.tokens
        totals["fees"] += row.fee
        totals["owner"] += owner
        totals["protocol"] += row.fee - owner - sum(int(part["amount"]) for part in doc["contributors"])
        totals["unpaid"] += row.fee if row.charge_status == ChargeStatus.UNPAID else 0
        for part in doc["contributors"]:
            contributors[part["address"]] = contributors.get(part["address"], 0) + int(part["amount"])
            totals["contributors"] += int(part["amount"])
    top = sorted(contributors.items(), key=lambda item: (-item[1], item[0]))[:TOP_CONTRIBUTORS]
    return {
        "model": model,
        "days": days,
        "totals": {key: value if key in ("requests", "tokens") else str(value) for key, value in totals.items()},
        "per_day": [
            {
                "date": date,
                "requests": day["requests"],
                "tokens": day["tokens"],
                "fees": str(day["fees"]),
                "owner": str(day["owner"]),
            }
            for date, day in sorted(per_day.items())
        ],
        "top_contributors": [{"address": address, "amount": str(amount)} for address, amount in top],
    }


def inference_counts(session: Session, usernames: list[str]) -> dict[str, dict[str, int]]:
    """Workshop progress column: inferences each user made (PROGRESS_PROVIDERS)."""
    query = (
        select(InferenceRecordRow.payer, func.count())
        .where(InferenceRecordRow.payer.in_(usernames))  # type: ignore[attr-defined]
        .group_by(InferenceRecordRow.payer)
    )
    counts = dict(session.exec(query).all())
    return {name: {"inferences": counts.get(name, 0)} for name in usernames}


def epoch_report(session: Session, epoch: RewardEpoch | None, admin: bool = False) -> dict[str, Any]:
    """An epoch as the API shows it; payers' names and charges only for admins."""
    if epoch is None:
        return {"status": "unknown"}
    report: dict[str, Any] = {
        "epoch": epoch.number,
        "status": epoch.status,
        "closed_at": aware(epoch.closed_at).isoformat(),
        "settled_at": aware(epoch.settled_at).isoformat() if epoch.settled_at else None,
        "records": epoch.records,
        "paid_records": epoch.paid_records,
        "tokens": epoch.tokens,
        "totals": {
            "fees": str(epoch.fees),
            "owner": str(epoch.owner_fees),
            "contributors": str(epoch.contributor_fees),
            "protocol": str(epoch.protocol_fees),
        },
        "records_root": epoch.records_root,
        "payouts_root": epoch.payouts_root,
        "previous_root": epoch.previous_root,
        "treasury": epoch.treasury,
        "error": epoch.error,
        # The governed parameters its records were split with, read at its start block (on chain with its commit).
        "parameters": epoch.parameters,
    }
    if admin:
        charges = session.exec(select(EpochCharge).where(EpochCharge.epoch == epoch.number).order_by(EpochCharge.payer))
        report["charges"] = [
            {
                "payer": charge.payer,
                "address": charge.payer_address,
                "amount": str(charge.amount),
                "records": charge.records,
                "status": charge.status,
                "reason": charge.reason,
            }
            for charge in charges
        ]
    return report


def records_page(session: Session, condition: Any, limit: int, offset: int, show_payer: bool) -> dict[str, Any]:
    """One page of inference records matching `condition`, newest first, with the total count (for paging)."""
    total = session.exec(select(func.count()).select_from(InferenceRecordRow).where(condition)).one()
    rows = session.exec(
        select(InferenceRecordRow)
        .where(condition)
        .order_by(InferenceRecordRow.created_at.desc(), InferenceRecordRow.id.desc())  # type: ignore[attr-defined]
        .offset(offset)
        .limit(limit)
    ).all()
    records = [
        {
            "request_id": row.request_id,
            "record_id": row.record_id,
            "model": row.model,
            "payer": row.payer if show_payer else None,
            "tokens": row.tokens,
            "fee": str(row.fee),
            "charge_status": row.charge_status,
            "epoch": row.epoch,
            "created_at": aware(row.created_at).isoformat(),
        }
        for row in rows
    ]
    return {"records": records, "total": total, "limit": limit, "offset": offset}
