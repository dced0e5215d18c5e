"""fee reservations: what priced OpenLoRA requests hold, and a lock row per payer (hub.rewards.reservations)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

from hub.rewards.models import Wei

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fee_reservations",
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("payer", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("amount", Wei(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    with op.batch_alter_table("fee_reservations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fee_reservations_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_fee_reservations_payer"), ["payer"], unique=False)

    op.create_table(
        "payer_locks",
        sa.Column("payer", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.PrimaryKeyConstraint("payer"),
    )


def downgrade() -> None:
    op.drop_table("payer_locks")
    with op.batch_alter_table("fee_reservations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fee_reservations_payer"))
        batch_op.drop_index(batch_op.f("ix_fee_reservations_expires_at"))

    op.drop_table("fee_reservations")
