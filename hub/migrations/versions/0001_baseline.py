"""baseline: relay outbox, wallets, datanets, models, rewards

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

from hub.rewards.models import Wei

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datanets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("owner_address", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("license", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("row_schema", sa.JSON(), nullable=False),
        sa.Column("visibility", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("approval", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("chain_id", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=False),
        sa.Column("metadata_hash", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=False),
        sa.Column("dedup_params", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chain_id"),
    )
    with op.batch_alter_table("datanets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datanets_name"), ["name"], unique=True)
        batch_op.create_index(batch_op.f("ix_datanets_owner"), ["owner"], unique=False)

    op.create_table(
        "inference_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("model_id", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=False),
        sa.Column("adapter", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("payer", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("payer_address", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("model_owner", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("fee", Wei(length=80), nullable=False),
        sa.Column("attribution", sa.JSON(), nullable=False),
        sa.Column("attribution_hash", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=True),
        sa.Column("charge_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("charge_reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("record_id"),
        sa.UniqueConstraint("request_id"),
    )
    with op.batch_alter_table("inference_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inference_records_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_inference_records_epoch"), ["epoch"], unique=False)
        batch_op.create_index("ix_inference_records_epoch_payer", ["epoch", "payer"], unique=False)
        batch_op.create_index("ix_inference_records_model_created", ["model", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_inference_records_model_owner"), ["model_owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_inference_records_payer"), ["payer"], unique=False)

    op.create_table(
        "ledger_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signer", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("ref", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("contract", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("function", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=True),
        sa.Column("calldata", sa.Text(), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("gas", sa.BigInteger(), nullable=True),
        sa.Column("max_fee_per_gas", sa.BigInteger(), nullable=True),
        sa.Column("max_priority_fee_per_gas", sa.BigInteger(), nullable=True),
        sa.Column("gas_price", sa.BigInteger(), nullable=True),
        sa.Column("raw_tx", sa.Text(), nullable=True),
        sa.Column("tx_hash", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=True),
        sa.Column("previous_hashes", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("error_name", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("receipt_block", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("confirmed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "ref", name="uq_ledger_outbox_kind_ref"),
    )
    with op.batch_alter_table("ledger_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_outbox_signer_status", ["signer", "status", "id"], unique=False)
        batch_op.create_index("ix_ledger_outbox_status", ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_outbox_tx_hash"), ["tx_hash"], unique=False)

    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("owner_address", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("chain_id", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=False),
        sa.Column("base_model", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("base_model_ref", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("base_weights_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("manifest_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("adapter_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("price_wei", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("datanets", sa.JSON(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("lora_rank", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("price_outbox_id", sa.Integer(), nullable=True),
        sa.Column("price_changes", sa.Integer(), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chain_id"),
    )
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_models_base_model"), ["base_model"], unique=False)
        batch_op.create_index(batch_op.f("ix_models_listed"), ["listed"], unique=False)
        batch_op.create_index(batch_op.f("ix_models_name"), ["name"], unique=True)
        batch_op.create_index(batch_op.f("ix_models_owner"), ["owner"], unique=False)

    op.create_table(
        "reward_charges",
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("payer", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("payer_address", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("amount", Wei(length=80), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("epoch", "payer"),
    )
    op.create_table(
        "reward_credits",
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("amount", Wei(length=80), nullable=False),
        sa.Column("as_owner", Wei(length=80), nullable=False),
        sa.Column("as_contributor", Wei(length=80), nullable=False),
        sa.Column("as_protocol", Wei(length=80), nullable=False),
        sa.PrimaryKeyConstraint("epoch", "account"),
    )
    with op.batch_alter_table("reward_credits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reward_credits_account"), ["account"], unique=False)

    op.create_table(
        "reward_epochs",
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("closed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("settled_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("paid_records", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("fees", Wei(length=80), nullable=False),
        sa.Column("owner_fees", Wei(length=80), nullable=False),
        sa.Column("contributor_fees", Wei(length=80), nullable=False),
        sa.Column("protocol_fees", Wei(length=80), nullable=False),
        sa.Column("records_root", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=True),
        sa.Column("payouts_root", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=True),
        sa.Column("previous_root", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=True),
        sa.Column("treasury", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=True),
        sa.Column("commit_outbox_id", sa.Integer(), nullable=True),
        sa.Column("root_outbox_id", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.PrimaryKeyConstraint("number"),
    )
    with op.batch_alter_table("reward_epochs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reward_epochs_status"), ["status"], unique=False)

    op.create_table(
        "user_wallet",
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("encrypted_key", sa.Text(), nullable=False),
        sa.Column("payout_address", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=True),
        sa.Column("link_nonce", sa.Integer(), nullable=False),
        sa.Column("linked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("username"),
        sa.UniqueConstraint("address"),
    )
    op.create_table(
        "datanet_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("datanet_id", sa.Integer(), nullable=False),
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["datanet_id"],
            ["datanets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("datanet_id", "username", name="uq_datanet_members_user"),
    )
    with op.batch_alter_table("datanet_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datanet_members_datanet_id"), ["datanet_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_datanet_members_username"), ["username"], unique=False)

    op.create_table(
        "datanet_submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("datanet_id", sa.Integer(), nullable=False),
        sa.Column("contributor", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("contributor_address", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reviewed_by", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("reviewed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("filename", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("file_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("file_bytes", sa.Integer(), nullable=True),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["datanet_id"],
            ["datanets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("datanet_submissions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datanet_submissions_contributor"), ["contributor"], unique=False)
        batch_op.create_index("ix_datanet_submissions_datanet_status", ["datanet_id", "status"], unique=False)

    op.create_table(
        "datanet_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("datanet_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("merkle_root", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=False),
        sa.Column("counts_root", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("contributor_counts", sa.JSON(), nullable=False),
        sa.Column("snapshot_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("snapshot_bytes", sa.Integer(), nullable=False),
        sa.Column("tree_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("published_by", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["datanet_id"],
            ["datanets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("datanet_id", "version", name="uq_datanet_versions_version"),
    )
    with op.batch_alter_table("datanet_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datanet_versions_datanet_id"), ["datanet_id"], unique=False)

    op.create_table(
        "datanet_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("datanet_id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("contributor", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("contributor_address", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("row_hash", sqlmodel.sql.sqltypes.AutoString(length=66), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("minhash", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["datanet_id"],
            ["datanets.id"],
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["datanet_submissions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("datanet_id", "row_hash", name="uq_datanet_rows_hash"),
    )
    with op.batch_alter_table("datanet_rows", schema=None) as batch_op:
        batch_op.create_index("ix_datanet_rows_submission", ["submission_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("datanet_rows", schema=None) as batch_op:
        batch_op.drop_index("ix_datanet_rows_submission")

    op.drop_table("datanet_rows")
    with op.batch_alter_table("datanet_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datanet_versions_datanet_id"))

    op.drop_table("datanet_versions")
    with op.batch_alter_table("datanet_submissions", schema=None) as batch_op:
        batch_op.drop_index("ix_datanet_submissions_datanet_status")
        batch_op.drop_index(batch_op.f("ix_datanet_submissions_contributor"))

    op.drop_table("datanet_submissions")
    with op.batch_alter_table("datanet_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datanet_members_username"))
        batch_op.drop_index(batch_op.f("ix_datanet_members_datanet_id"))

    op.drop_table("datanet_members")
    op.drop_table("user_wallet")
    with op.batch_alter_table("reward_epochs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reward_epochs_status"))

    op.drop_table("reward_epochs")
    with op.batch_alter_table("reward_credits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reward_credits_account"))

    op.drop_table("reward_credits")
    op.drop_table("reward_charges")
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_models_owner"))
        batch_op.drop_index(batch_op.f("ix_models_name"))
        batch_op.drop_index(batch_op.f("ix_models_listed"))
        batch_op.drop_index(batch_op.f("ix_models_base_model"))

    op.drop_table("models")
    with op.batch_alter_table("ledger_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_outbox_tx_hash"))
        batch_op.drop_index("ix_ledger_outbox_status")
        batch_op.drop_index("ix_ledger_outbox_signer_status")

    op.drop_table("ledger_outbox")
    with op.batch_alter_table("inference_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inference_records_payer"))
        batch_op.drop_index(batch_op.f("ix_inference_records_model_owner"))
        batch_op.drop_index("ix_inference_records_model_created")
        batch_op.drop_index("ix_inference_records_epoch_payer")
        batch_op.drop_index(batch_op.f("ix_inference_records_epoch"))
        batch_op.drop_index(batch_op.f("ix_inference_records_created_at"))

    op.drop_table("inference_records")
    with op.batch_alter_table("datanets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datanets_owner"))
        batch_op.drop_index(batch_op.f("ix_datanets_name"))

    op.drop_table("datanets")
