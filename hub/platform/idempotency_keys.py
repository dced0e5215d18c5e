"""The table behind `Idempotency-Key` (hub.platform.idempotency): kept apart so migrations import no web code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.rewards.models import utcnow


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("username", "endpoint", "key", name="uq_idempotency_user_endpoint_key"),)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=255)
    endpoint: str = Field(max_length=1024)  # "POST /services/platform/api/datanets/x/rows"
    key: str = Field(max_length=255)
    status: int | None = None  # None while the first request runs
    response: dict[str, Any] | list[Any] | None = Field(default=None, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, index=True)
