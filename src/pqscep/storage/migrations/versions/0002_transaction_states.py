"""Transaction states of the state machine (ca/transactions.py) instead of loose strings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

Revision 0001 knew "received", "pending", "approved", "issued", "rejected" and "failed", and
told "awaiting an operator" from "awaiting a KEM proof" by whether a kem_challenges row
existed. This revision gives each its own state:

- pending or approved with a KEM challenge row -> awaiting_kem_proof (the challenge is out);
- pending without one -> awaiting_approval;
- failed -> rejected (only tests ever wrote it: a refused request leaves no transaction);
- received rows are deleted (only tests ever wrote them; no request is in that state).

The state column widens to 24 characters ("awaiting_kem_proof" does not fit in 16, which
PostgreSQL enforces). The new CHECK constraint is written out here, like every constraint
of 0001, so that a later change to the enum cannot silently change what this revision
creates; tests/test_storage.py checks that it lists exactly the enum's values.
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The constraint 0001 created, put back by the downgrade.
OLD_CHECK = "state IN ('received', 'pending', 'approved', 'issued', 'rejected', 'failed')"
NEW_CHECK = "state IN ('awaiting_approval', 'approved', 'awaiting_kem_proof', 'issued', 'rejected')"
# 0001 passed full names through the metadata's naming convention, which prefixed them
# again: databases at 0001 hold "ck_scep_transactions_ck_scep_transactions_state". This
# revision names the new constraint as models.py does. op.f marks a name as final.
OLD_CHECK_NAME = "ck_scep_transactions_ck_scep_transactions_state"
NEW_CHECK_NAME = "ck_scep_transactions_state"


def _upgrade_statements(challenges: str) -> list[str]:
    """The state rewrites, reading the KEM challenges from table `challenges`."""
    has_challenge = (
        f"EXISTS (SELECT 1 FROM {challenges} k WHERE k.profile = scep_transactions.profile"
        " AND k.transaction_id = scep_transactions.transaction_id)"
    )
    return [
        "DELETE FROM scep_transactions WHERE state = 'received'",
        "UPDATE scep_transactions SET state = 'awaiting_kem_proof'"
        f" WHERE state IN ('pending', 'approved') AND {has_challenge}",
        "UPDATE scep_transactions SET state = 'awaiting_approval' WHERE state = 'pending'",
        "UPDATE scep_transactions SET state = 'rejected' WHERE state = 'failed'",
    ]


def _downgrade_statements(challenges: str) -> list[str]:
    return [
        "UPDATE scep_transactions SET state = 'pending'"
        " WHERE state IN ('awaiting_approval', 'awaiting_kem_proof')",
    ]


def _rebuild(
    old_name: str, new_name: str, new_check: str, length: int, statements: Callable[[str], list[str]]
) -> None:
    """Replace the state CHECK constraint and column width, rewriting the states between.

    On SQLite, batch mode rebuilds the table, and with foreign_keys=ON (the store always
    sets it) dropping the old scep_transactions table cascades into kem_challenges
    (SQLite's DROP TABLE runs an implicit DELETE with its foreign-key actions, and the pragma
    cannot be turned off inside the migration's transaction). So the challenges are copied
    aside first, the state rewrites read the copy, and the rows are put back at the end.
    """
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    challenges = "kem_challenges_0002" if sqlite else "kem_challenges"
    if sqlite:
        op.execute(f"CREATE TEMPORARY TABLE {challenges} AS SELECT * FROM kem_challenges")
    # Widen the column before the rewrites need it, narrow it after they shortened the values.
    widen = length > 16
    with op.batch_alter_table("scep_transactions") as batch:
        batch.drop_constraint(op.f(old_name), type_="check")
        if widen:
            batch.alter_column("state", type_=sa.String(length), existing_nullable=False)
    for statement in statements(challenges):
        op.execute(statement)
    with op.batch_alter_table("scep_transactions") as batch:
        if not widen:
            batch.alter_column("state", type_=sa.String(length), existing_nullable=False)
        batch.create_check_constraint(op.f(new_name), sa.text(new_check))
    if sqlite:
        op.execute(
            f"INSERT INTO kem_challenges SELECT * FROM {challenges} c WHERE NOT EXISTS"
            " (SELECT 1 FROM kem_challenges k WHERE k.id = c.id)"
        )
        op.execute(f"DROP TABLE {challenges}")


def upgrade() -> None:
    _rebuild(OLD_CHECK_NAME, NEW_CHECK_NAME, NEW_CHECK, 24, _upgrade_statements)


def downgrade() -> None:
    _rebuild(NEW_CHECK_NAME, OLD_CHECK_NAME, OLD_CHECK, 16, _downgrade_statements)
