"""SQL tables of the datanets feature (sqlmodel; schema changes need an Alembic revision in hub/migrations)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC: sqlmodel's datetime columns refuse naive values (they store and return UTC)."""
    return datetime.now(UTC)


class Visibility(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


class Approval(StrEnum):
    OWNER = "owner"  # the owner (or a validator) approves each submission
    AUTO = "auto"  # valid submissions are approved at once; validators may still reject them


class Role(StrEnum):
    MEMBER = "member"  # sees a private datanet and contributes to it
    VALIDATOR = "validator"  # a member who also approves and rejects submissions


class SubmissionStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Datanet(SQLModel, table=True):
    __tablename__ = "datanets"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    owner: str = Field(max_length=255, index=True)  # hub user name
    owner_address: str = Field(max_length=42)
    summary: str = Field(default="", max_length=300)
    description: str = Field(default="", sa_type=Text)  # Markdown
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    license: str = Field(max_length=64)  # SPDX id
    row_schema: dict[str, Any] = Field(sa_type=JSON)
    visibility: str = Field(default=Visibility.PUBLIC, max_length=16)
    approval: str = Field(default=Approval.OWNER, max_length=16)
    # Lower-cased name, summary, description and tags: what `search` matches.
    search_text: str = Field(default="", sa_type=Text)
    chain_id: str = Field(max_length=66, unique=True)  # bytes32 id in DatanetRegistry (0x hex)
    metadata_hash: str = Field(max_length=66)
    dedup_params: str = Field(default="", max_length=64)  # how the stored MinHash signatures were made
    latest_version: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class DatanetMember(SQLModel, table=True):
    __tablename__ = "datanet_members"
    __table_args__ = (UniqueConstraint("datanet_id", "username", name="uq_datanet_members_user"),)

    id: int | None = Field(default=None, primary_key=True)
    datanet_id: int = Field(foreign_key="datanets.id", index=True)
    username: str = Field(max_length=255, index=True)
    role: str = Field(default=Role.MEMBER, max_length=16)


class Submission(SQLModel, table=True):
    """One contribution: the rows of one call or one uploaded file, approved or rejected together."""

    __tablename__ = "datanet_submissions"
    __table_args__ = (Index("ix_datanet_submissions_datanet_status", "datanet_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    datanet_id: int = Field(foreign_key="datanets.id")
    contributor: str = Field(max_length=255, index=True)
    contributor_address: str = Field(max_length=42)
    status: str = Field(default=SubmissionStatus.PENDING, max_length=16)
    reason: str = Field(default="", sa_type=Text)
    reviewed_by: str | None = Field(default=None, max_length=255)
    reviewed_at: datetime | None = None
    source: str = Field(max_length=16)  # "rows" or "file"
    filename: str | None = Field(default=None, max_length=255)  # sanitised base name, only ever displayed
    file_digest: str | None = Field(default=None, max_length=64)  # the uploaded file in the blob store
    file_bytes: int | None = None
    row_count: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class DatanetRow(SQLModel, table=True):
    """One accepted row. The unique (datanet, row hash) makes exactly one of two concurrent equal uploads win."""

    __tablename__ = "datanet_rows"
    __table_args__ = (
        UniqueConstraint("datanet_id", "row_hash", name="uq_datanet_rows_hash"),
        Index("ix_datanet_rows_submission", "submission_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    datanet_id: int = Field(foreign_key="datanets.id")
    submission_id: int = Field(foreign_key="datanet_submissions.id")
    contributor: str = Field(max_length=255)
    contributor_address: str = Field(max_length=42)
    line: int = 0  # where it was in the upload
    row_hash: str = Field(max_length=66)  # 0x keccak256 of `data`
    data: str = Field(sa_type=Text)  # the canonical JSON that was hashed
    minhash: bytes | None = Field(default=None, sa_type=LargeBinary)  # near-dup signature (None: too short)
    created_at: datetime = Field(default_factory=utcnow)


class DatanetVersion(SQLModel, table=True):
    __tablename__ = "datanet_versions"
    __table_args__ = (UniqueConstraint("datanet_id", "version", name="uq_datanet_versions_version"),)

    id: int | None = Field(default=None, primary_key=True)
    datanet_id: int = Field(foreign_key="datanets.id", index=True)
    version: int
    merkle_root: str = Field(max_length=66)
    counts_root: str = Field(max_length=66)
    row_count: int
    # [{"address", "user", "rows"}] sorted by address: the leaves of the counts tree.
    contributor_counts: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    snapshot_digest: str = Field(max_length=64)
    snapshot_bytes: int
    tree_digest: str | None = Field(default=None, max_length=64)  # the rows tree's dump, for proofs without a rebuild
    published_by: str = Field(max_length=255)
    outbox_id: int | None = None  # the relay's row that writes the root on-chain
    created_at: datetime = Field(default_factory=utcnow)
