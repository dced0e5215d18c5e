"""training runs: paid ModelFactory runs, from reservation to charge (hub.rewards.training_models)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

from hub.rewards.models import Wei

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_runs",
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("payer", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("payer_address", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("base", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("datanet", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("datanet_version", sa.BigInteger(), nullable=True),
        sa.Column("datanet_root", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=True),
        sa.Column("rows_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("config_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("planned_steps", sa.BigInteger(), nullable=False),
        sa.Column("planned_tokens", sa.BigInteger(), nullable=False),
        sa.Column("step_tokens", sa.JSON(), nullable=False),
        sa.Column("price_wei", Wei(), nullable=False),
        sa.Column("reserved", Wei(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("steps", sa.BigInteger(), nullable=True),
        sa.Column("tokens", sa.BigInteger(), nullable=True),
        sa.Column("amount", Wei(), nullable=True),
        sa.Column("reported", sa.JSON(), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("treasury", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=True),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
        sa.UniqueConstraint("model"),
    )
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_runs_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_training_runs_payer"), ["payer"], unique=False)
        batch_op.create_index(batch_op.f("ix_training_runs_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_runs_status"))
        batch_op.drop_index(batch_op.f("ix_training_runs_payer"))
        batch_op.drop_index(batch_op.f("ix_training_runs_expires_at"))

    op.drop_table("training_runs")
