"""Parameter periods: which governed parameters inference metering uses, fixed per settlement epoch.

A period starts when the platform first sees the chain and again each time settlement closes an epoch: it holds the
ProtocolParameters values at that block. Metering (the OpenLoRA process too) reads the newest period, so every
record of an epoch is priced and split with the parameters in force at the epoch's start block, and a vote executed
mid-epoch takes effect at the next epoch. The epoch records the period it ran under (its block and hash), and so
does each record's attribution document.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from hub.db import session_scope
from hub.governance.parameters import GovernedParameters, from_settings, parameters_in_force, rewards_with
from hub.rewards.config import RewardSettings

if TYPE_CHECKING:
    from hub.ledger.contracts import Ledger

log = logging.getLogger("hub.governance")


def utcnow() -> datetime:
    return datetime.now(UTC)


class ParameterPeriod(SQLModel, table=True):
    __tablename__ = "parameter_periods"

    start_block: int = Field(primary_key=True, sa_type=BigInteger)  # ProtocolParameters were read at this block
    parameters: dict[str, Any] = Field(sa_type=JSON)  # GovernedParameters.as_dict()
    parameters_hash: str = Field(max_length=66)
    started_at: datetime = Field(default_factory=utcnow)


def current_period(session: Session) -> GovernedParameters | None:
    """The parameters of the newest period, None before the platform first saw the chain."""
    row = session.exec(select(ParameterPeriod).order_by(ParameterPeriod.start_block.desc()).limit(1)).first()  # type: ignore[attr-defined]
    return GovernedParameters.from_dict(row.parameters) if row is not None else None


def start_period(session: Session, parameters: GovernedParameters) -> None:
    """Add the period starting at `parameters.block` to the caller's transaction (once per block). Only parameters
    read from the chain start a period: without governance, metering keeps following the settings."""
    if parameters.source == "chain" and session.get(ParameterPeriod, parameters.block) is None:
        session.add(
            ParameterPeriod(
                start_block=parameters.block, parameters=parameters.as_dict(), parameters_hash=parameters.hash
            )
        )


def parameters_for_metering(session: Session, rewards: RewardSettings) -> GovernedParameters:
    """What an inference recorded now is split with: the current period's, else the settings'."""
    return current_period(session) or from_settings(rewards)


def rewards_in_force(engine: Engine, rewards: RewardSettings) -> RewardSettings:
    """`rewards` with the current period's governed values (for reserving a request's maximum fee)."""
    with Session(engine) as session:
        return rewards_with(rewards, parameters_for_metering(session, rewards))


def parameters_or_none(ledger: Ledger | None, rewards: RewardSettings) -> GovernedParameters | None:
    """The parameters in force now; None when the chain cannot be read (the current period then goes on)."""
    try:
        return parameters_in_force(ledger, rewards)
    except Exception as err:  # noqa: BLE001 - chain down: connection errors come from several libraries
        log.warning("cannot read the governed parameters now (%s): the current period goes on", err)
        return None


def ensure_first_period(engine: Engine, ledger: Ledger | None, rewards: RewardSettings) -> None:
    """Start the first period once the chain is up (metering used the settings until then)."""
    with Session(engine) as session:
        if current_period(session) is not None:
            return
    parameters = parameters_or_none(ledger, rewards)
    if parameters is not None:
        with session_scope(engine) as session:
            start_period(session, parameters)
        log.info("parameter period from block %d (%s)", parameters.block, parameters.hash)
