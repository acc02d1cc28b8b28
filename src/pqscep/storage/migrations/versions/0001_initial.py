"""Initial schema: certificates, CRLs, SCEP transactions, challenges, failures, KEM challenges.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out by hand rather than imported from models.py, so that later model changes
cannot silently change what this revision creates; a test compares the two.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Timestamps are timestamptz on PostgreSQL; on SQLite the application stores UTC.
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("not_before", TS, nullable=False),
        sa.Column("not_after", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revocation_reason", sa.String(64), nullable=True),
        sa.Column("transaction_id", sa.String(255), nullable=True),
        sa.Column("key_fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_certificates"),
        sa.UniqueConstraint("profile", "serial", name="uq_certificates_profile_serial"),
        sa.CheckConstraint("status IN ('valid', 'revoked')", name="ck_certificates_status"),
    )
    op.create_index("ix_certificates_profile_subject", "certificates", ["profile", "subject"])
    op.create_index("ix_certificates_profile_status", "certificates", ["profile", "status"])

    op.create_table(
        "crl_counters",
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("profile", name="pk_crl_counters"),
    )

    op.create_table(
        "crls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("this_update", TS, nullable=False),
        sa.Column("next_update", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_crls"),
        sa.UniqueConstraint("profile", "number", name="uq_crls_profile_number"),
    )

    op.create_table(
        "scep_transactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=False),
        sa.Column("signer_key_fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("message_type", sa.Integer(), nullable=False),
        sa.Column("csr_der", sa.LargeBinary(), nullable=True),
        sa.Column("signer_cert_der", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cert_serial", sa.String(40), nullable=True),
        sa.Column("fail_info", sa.Integer(), nullable=True),
        sa.Column("fail_text", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scep_transactions"),
        sa.UniqueConstraint(
            "profile", "transaction_id", name="uq_scep_transactions_profile_transaction_id"
        ),
        sa.CheckConstraint(
            "state IN ('received', 'pending', 'approved', 'issued', 'rejected', 'failed')",
            name="ck_scep_transactions_state",
        ),
    )
    op.create_index("ix_scep_transactions_profile_state", "scep_transactions", ["profile", "state"])

    op.create_table(
        "challenges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_challenges"),
        sa.UniqueConstraint("profile", "digest", name="uq_challenges_profile_digest"),
    )
    op.create_index("ix_challenges_expires_at", "challenges", ["expires_at"])

    op.create_table(
        "failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_failures"),
    )
    op.create_index("ix_failures_key_at", "failures", ["key", "at"])
    op.create_index("ix_failures_at", "failures", ["at"])

    op.create_table(
        "kem_challenges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("csr_digest", sa.LargeBinary(), nullable=False),
        sa.Column("signer_key_fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("spent_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_kem_challenges"),
        sa.UniqueConstraint(
            "profile", "transaction_id", name="uq_kem_challenges_profile_transaction_id"
        ),
        sa.ForeignKeyConstraint(
            ["profile", "transaction_id"],
            ["scep_transactions.profile", "scep_transactions.transaction_id"],
            name="fk_kem_challenges_profile_scep_transactions",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    for table in (
        "kem_challenges",
        "failures",
        "challenges",
        "scep_transactions",
        "crls",
        "crl_counters",
        "certificates",
    ):
        op.drop_table(table)
