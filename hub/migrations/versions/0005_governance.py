"""governance: parameter periods (hub.governance.periods) and each epoch's governed parameters

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parameter_periods",
        sa.Column("start_block", sa.BigInteger(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("parameters_hash", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("start_block"),
    )
    with op.batch_alter_table("reward_epochs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parameters_block", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("parameters_hash", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=True))
        batch_op.add_column(sa.Column("parameters", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reward_epochs", schema=None) as batch_op:
        batch_op.drop_column("parameters")
        batch_op.drop_column("parameters_hash")
        batch_op.drop_column("parameters_block")
    op.drop_table("parameter_periods")
