"""Table definitions (SQLAlchemy 2 typed declarative models) of the SCEP CA/RA store.

These classes are internal to the storage package: `repository.Store` converts rows into
frozen record dataclasses before handing them out. The schema itself is created and
changed only by the Alembic migrations in `migrations/versions/`; a test checks that
the migrated schema and these models agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from ..ca.transactions import TxState

CERT_STATUSES = ("valid", "revoked")
# The CHECK constraint on scep_transactions.state comes from the state machine's enum, so a
# state cannot exist in the database that ca/transactions.py does not know (migration 0002).
TRANSACTION_STATES = tuple(state.value for state in TxState)
# Long enough for every TxState value; the migration that widened the column checks it.
STATE_LENGTH = 24

# Hex digits of a serial column: serials are positive and at most 20 octets (RFC 5280 4.1.2.2).
SERIAL_HEX_DIGITS = 40


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL has `timestamptz`; SQLite has no time zones, so UTC is stored naive and
    tzinfo is attached again on read. Naive datetimes are refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store needs timezone-aware UTC")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text, which is only right if every value has the same
        # zone and format; SQLAlchemy's fixed format plus UTC everywhere guarantees that.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    # Deterministic constraint names, so migrations and error handling can refer to them.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Certificate(Base):
    """Every certificate the CA issued, with its revocation state."""

    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("profile", "serial"),
        CheckConstraint(_in("status", CERT_STATUSES), name="status"),
        Index(None, "profile", "subject"),
        Index(None, "profile", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile: Mapped[str] = mapped_column(String(64))
    # Zero-padded lowercase hex: 160-bit serials overflow every integer column type, and
    # fixed width makes text order equal numeric order.
    serial: Mapped[str] = mapped_column(String(SERIAL_HEX_DIGITS))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(64))
    transaction_id: Mapped[str | None] = mapped_column(String(255))
    key_fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CrlCounter(Base):
    """The last CRL number handed out per profile; a row lock on it serializes issuers."""

    __tablename__ = "crl_counters"

    profile: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_number: Mapped[int] = mapped_column(BigInteger)


class Crl(Base):
    """Every CRL the CA signed (the newest one is served)."""

    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("profile", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile: Mapped[str] = mapped_column(String(64))
    number: Mapped[int] = mapped_column(BigInteger)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    this_update: Mapped[datetime] = mapped_column(UtcDateTime)
    next_update: Mapped[datetime] = mapped_column(UtcDateTime)


class Transaction(Base):
    """One SCEP transaction and where it stands: named by the profile, the RFC 8894
    transactionID and the CSR's key (`key_fingerprint`), so that a request under a known ID
    with another key is another transaction and cannot lock the device out (migration 0003)."""

    __tablename__ = "scep_transactions"
    __table_args__ = (
        UniqueConstraint("profile", "transaction_id", "key_fingerprint"),
        CheckConstraint(_in("state", TRANSACTION_STATES), name="state"),
        Index(None, "profile", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile: Mapped[str] = mapped_column(String(64))
    transaction_id: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the CSR's SubjectPublicKeyInfo (ca.policy.key_fingerprint).
    key_fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    signer_key_fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    message_type: Mapped[int] = mapped_column(Integer)
    csr_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    signer_cert_der: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    cert_serial: Mapped[str | None] = mapped_column(String(SERIAL_HEX_DIGITS))
    fail_info: Mapped[int | None] = mapped_column(Integer)
    fail_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Challenge(Base):
    """One-time challenge passwords, kept only as SHA-256 digests."""

    __tablename__ = "challenges"
    __table_args__ = (UniqueConstraint("profile", "digest"), Index(None, "expires_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile: Mapped[str] = mapped_column(String(64))
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    note: Mapped[str | None] = mapped_column(Text)


class Failure(Base):
    """One failed attempt (bad challenge, bad signature...) under a rate-limit key."""

    __tablename__ = "failures"
    __table_args__ = (Index(None, "key", "at"), Index(None, "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class KemChallenge(Base):
    """A KEM proof-of-possession challenge, at most one per SCEP transaction."""

    __tablename__ = "kem_challenges"
    __table_args__ = (
        UniqueConstraint("profile", "transaction_id", "key_fingerprint"),
        # A challenge is meaningless without its transaction, and goes away with it.
        ForeignKeyConstraint(
            ["profile", "transaction_id", "key_fingerprint"],
            ["scep_transactions.profile", "scep_transactions.transaction_id", "scep_transactions.key_fingerprint"],
            ondelete="CASCADE",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile: Mapped[str] = mapped_column(String(64))
    transaction_id: Mapped[str] = mapped_column(String(255))
    key_fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    csr_digest: Mapped[bytes] = mapped_column(LargeBinary)
    signer_key_fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    # The kemPopChallenge value sent (KemCiphertextInfo DER), sent again unchanged to a
    # repeated request while the challenge is live (RFC 8894 3.3.1, draft Section 7.2);
    # None for a challenge made before migration 0003.
    challenge: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    spent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
