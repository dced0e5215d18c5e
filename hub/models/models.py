"""SQL table of the models feature (sqlmodel; schema changes need an Alembic revision in hub/migrations)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)  # aware: sqlmodel's datetime columns store and return UTC


class PublishedModel(SQLModel, table=True):
    """One published LoRA adapter. Unlisting keeps the row (and its name): the on-chain record stays, and inference
    records that name the model must still resolve."""

    __tablename__ = "models"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)  # the OpenLoRA `model` id
    owner: str = Field(max_length=255, index=True)  # hub user name
    owner_address: str = Field(max_length=42)  # their custodial wallet: the ModelRegistry owner
    chain_id: str = Field(max_length=66, unique=True)  # bytes32 id in ModelRegistry (0x hex)
    base_model: str = Field(max_length=255, index=True)  # the platform's name of the base model
    base_model_ref: str = Field(max_length=1000)  # what the manifest called it (a catalog name or a path)
    base_weights_sha256: str = Field(max_length=64)
    manifest_hash: str = Field(max_length=64)  # sha256 hex, as sealed by ModelFactory
    adapter_sha256: str = Field(max_length=64)
    # Base units (18 decimals) as decimal text: uint256 does not fit SQL integers.
    price_wei: str = Field(max_length=80)
    # [{"name", "version", "root"}]: the datanet versions it was trained on, checked against the platform.
    datanets: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    # {file name: {"digest": sha256, "bytes": n}}; every file is a blob named by its digest.
    files: dict[str, dict[str, Any]] = Field(default_factory=dict, sa_type=JSON)
    lora_rank: int = 0
    outbox_id: int | None = None  # the relay's registerModel row
    price_outbox_id: int | None = None  # the relay's row of the latest setPrice
    price_changes: int = 0  # setPrice writes so far: each gets its own outbox ref
    listed: bool = Field(default=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
