"""Transactions named by (profile, transactionID, the CSR key), and KEM challenges kept whole.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08

micromdm, strongSwan and others derive the transactionID from the device's public key, so a
transactionID unique per profile let anyone who can enroll take a device's ID first and lock
it out. From this revision a transaction is named by the profile, the transactionID and
`key_fingerprint`, the SHA-256 of the CSR's SubjectPublicKeyInfo (ca.policy.key_fingerprint):
a request with a known ID but another key is another transaction.

- scep_transactions gains key_fingerprint, filled from the stored CSR (the signer's
  fingerprint where no CSR is stored), and its unique constraint becomes
  (profile, transaction_id, key_fingerprint).
- kem_challenges names its transaction by the same three columns (its foreign key needs a
  unique key on the parent), and gains `challenge`: the kemPopChallenge value sent, so that a
  repeated request gets the same challenge again (RFC 8894 section 3.3.1; draft Section 7.2).
  Challenges made before this revision have none: the next request without a proof gets a
  fresh one.

kem_challenges is dropped and created again around the change (on SQLite, rebuilding
scep_transactions with foreign_keys=ON would cascade into it; see 0002), its rows kept aside.
The downgrade keeps, of transactions sharing an ID, the newest.
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
OLD_UNIQUE = "uq_scep_transactions_profile_transaction_id"
NEW_UNIQUE = "uq_scep_transactions_profile_transaction_id_key_fingerprint"
OLD_KEM_UNIQUE = "uq_kem_challenges_profile_transaction_id"
NEW_KEM_UNIQUE = "uq_kem_challenges_profile_transaction_id_key_fingerprint"
KEM_FK = "fk_kem_challenges_profile_scep_transactions"
KEEP = "kem_challenges_0003"


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(start of the content, end of the element, tag) of the DER element at `at`."""
    tag, first = data[at], data[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        length = int.from_bytes(data[at:at + count], "big")
        at += count
    return at, at + length, tag


def csr_key_fingerprint(csr_der: bytes) -> bytes:
    """SHA-256 of the SubjectPublicKeyInfo of a PKCS #10 request (RFC 2986 section 4.1:
    CertificationRequest { info { version, subject, subjectPKInfo, ... }, ... }), read from
    the DER without loading the key (an ML-KEM key need not be loadable here)."""
    start, _, _ = _tlv(csr_der, 0)  # CertificationRequest
    at, _, _ = _tlv(csr_der, start)  # certificationRequestInfo: its content
    for _ in range(2):  # skip version and subject
        _, at, _ = _tlv(csr_der, at)
    _, end, tag = _tlv(csr_der, at)
    if tag != 0x30:
        raise ValueError("not a CertificationRequest")
    return hashlib.sha256(csr_der[at:end]).digest()


def _keep_challenges() -> None:
    op.execute(f"CREATE TABLE {KEEP} AS SELECT * FROM kem_challenges")
    op.drop_table("kem_challenges")


def _create_challenges(*, new: bool) -> None:
    columns: list[sa.Column[object]] = [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=False),
    ]
    if new:
        columns.append(sa.Column("key_fingerprint", sa.LargeBinary(), nullable=False))
    columns += [
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("csr_digest", sa.LargeBinary(), nullable=False),
        sa.Column("signer_key_fingerprint", sa.LargeBinary(), nullable=False),
    ]
    if new:
        columns.append(sa.Column("challenge", sa.LargeBinary(), nullable=True))
    names = ["profile", "transaction_id", *(["key_fingerprint"] if new else [])]
    op.create_table(
        "kem_challenges",
        *columns,
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("spent_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_kem_challenges"),
        sa.UniqueConstraint(*names, name=NEW_KEM_UNIQUE if new else OLD_KEM_UNIQUE),
        sa.ForeignKeyConstraint(names, [f"scep_transactions.{n}" for n in names], name=KEM_FK, ondelete="CASCADE"),
    )


def upgrade() -> None:
    _keep_challenges()
    with op.batch_alter_table("scep_transactions") as batch:
        batch.add_column(sa.Column("key_fingerprint", sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, csr_der, signer_key_fingerprint FROM scep_transactions")).all()
    for row_id, csr_der, signer in rows:
        try:
            fingerprint = csr_key_fingerprint(bytes(csr_der)) if csr_der else bytes(signer)
        except (IndexError, ValueError):
            fingerprint = bytes(signer)
        bind.execute(sa.text("UPDATE scep_transactions SET key_fingerprint = :f WHERE id = :i"),
                     {"f": fingerprint, "i": row_id})
    with op.batch_alter_table("scep_transactions") as batch:
        batch.alter_column("key_fingerprint", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_constraint(OLD_UNIQUE, type_="unique")
        batch.create_unique_constraint(NEW_UNIQUE, ["profile", "transaction_id", "key_fingerprint"])
    _create_challenges(new=True)
    op.execute(
        "INSERT INTO kem_challenges (id, profile, transaction_id, key_fingerprint, secret, csr_digest,"
        " signer_key_fingerprint, challenge, expires_at, created_at, spent_at)"
        " SELECT k.id, k.profile, k.transaction_id, t.key_fingerprint, k.secret, k.csr_digest,"
        f" k.signer_key_fingerprint, NULL, k.expires_at, k.created_at, k.spent_at FROM {KEEP} k"
        " JOIN scep_transactions t ON t.profile = k.profile AND t.transaction_id = k.transaction_id"
    )
    op.drop_table(KEEP)


def downgrade() -> None:
    _keep_challenges()
    # One transaction per ID again: the newest of those sharing one stays.
    op.execute(
        "DELETE FROM scep_transactions WHERE EXISTS (SELECT 1 FROM scep_transactions n"
        " WHERE n.profile = scep_transactions.profile AND n.transaction_id = scep_transactions.transaction_id"
        " AND n.id > scep_transactions.id)"
    )
    op.execute(
        f"DELETE FROM {KEEP} WHERE NOT EXISTS (SELECT 1 FROM scep_transactions t WHERE t.profile = {KEEP}.profile"
        f" AND t.transaction_id = {KEEP}.transaction_id AND t.key_fingerprint = {KEEP}.key_fingerprint)"
    )
    with op.batch_alter_table("scep_transactions") as batch:
        batch.drop_constraint(NEW_UNIQUE, type_="unique")
        batch.create_unique_constraint(OLD_UNIQUE, ["profile", "transaction_id"])
        batch.drop_column("key_fingerprint")
    _create_challenges(new=False)
    op.execute(
        "INSERT INTO kem_challenges (id, profile, transaction_id, secret, csr_digest, signer_key_fingerprint,"
        " expires_at, created_at, spent_at)"
        " SELECT id, profile, transaction_id, secret, csr_digest, signer_key_fingerprint,"
        f" expires_at, created_at, spent_at FROM {KEEP}"
    )
    op.drop_table(KEEP)
