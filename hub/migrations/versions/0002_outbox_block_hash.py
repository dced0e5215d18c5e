"""outbox: the hash of the block a confirmed write was mined in (the reconciler re-checks it)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("receipt_block_hash", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger_outbox", schema=None) as batch_op:
        batch_op.drop_column("receipt_block_hash")
