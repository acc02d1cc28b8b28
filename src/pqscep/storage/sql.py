"""The SQL the store runs: helpers shared by its modules, and the statements of every
PKIOperation, built once (constructing a statement costs more than running it on SQLite).
"""

from __future__ import annotations

from collections import namedtuple
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, UniqueConstraint, bindparam, func, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from ..ca.transactions import TxState
from .models import SERIAL_HEX_DIGITS, Base, Certificate, Challenge, Failure, Transaction

_NO_SYNC = {"synchronize_session": False}


# ---------------------------------------------------------------------------- helpers


def _utc(dt: datetime) -> datetime:
    """`dt` in UTC; naive datetimes are a caller bug (their zone would be a guess)."""
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {dt!r}")
    return dt.astimezone(UTC)


def _serial_hex(serial: int) -> str:
    if not isinstance(serial, int) or isinstance(serial, bool):
        raise TypeError(f"serial must be an int, got {type(serial).__name__}")
    if not 0 < serial < 1 << (4 * SERIAL_HEX_DIGITS):
        raise ValueError(f"serial out of range (must be positive, at most 160 bits): {serial}")
    return format(serial, f"0{SERIAL_HEX_DIGITS}x")


def _is_unique_violation(exc: Exception, table: Table, constraint: str) -> bool:
    """Whether `exc` (SQLAlchemy's IntegrityError or the driver's own) is a violation of the
    named unique constraint (and not another one)."""
    orig = getattr(exc, "orig", exc)
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg reports the constraint by name
        return bool(diag.constraint_name == constraint)
    # sqlite3 only reports columns: "UNIQUE constraint failed: t.a, t.b"
    (uq,) = (c for c in table.constraints if isinstance(c, UniqueConstraint) and c.name == constraint)
    columns = ", ".join(f"{table.name}.{col.name}" for col in uq.columns)
    return str(orig) == f"UNIQUE constraint failed: {columns}"


def _rowcount(session: Session, statement: Any) -> int:
    """Rows an UPDATE or DELETE changed. Session.execute is typed as returning Result, which
    has no rowcount; for DML it is a CursorResult, which does."""
    result: CursorResult[Any] = session.execute(statement, execution_options=_NO_SYNC)  # type: ignore[assignment]
    return result.rowcount


def _table(model: type[Base]) -> Table:
    return model.__table__  # type: ignore[return-value]


def _upsert(session: Session, model: type[Base]) -> Any:
    """INSERT ... ON CONFLICT for the session's backend (same API on both dialects)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


# ---------------------------------------------------------------------------- hot statements
# Built once: constructing a statement costs more than running it on SQLite, and these run on
# every PKIOperation. Values are bound per call.

_TX = _table(Transaction)
_CERT = _table(Certificate)
_FAILURE = _table(Failure)
_CHALLENGE = _table(Challenge)
# A transaction is named by (profile, transactionID, the CSR key's fingerprint): an enrollment
# finds its own by its CSR's key; a CertPoll, which carries no CSR, by the key that signed the
# enrollment (the poll's signer), the newest first if two share it (migration 0003).
_GET_TRANSACTION = select(_TX).where(
    _TX.c.profile == bindparam("profile"), _TX.c.transaction_id == bindparam("transaction_id"),
    _TX.c.key_fingerprint == bindparam("key_fingerprint"),
)
_GET_POLLED_TRANSACTION = (
    select(_TX)
    .where(_TX.c.profile == bindparam("profile"), _TX.c.transaction_id == bindparam("transaction_id"),
           _TX.c.signer_key_fingerprint == bindparam("signer_key_fingerprint"))
    .order_by(_TX.c.updated_at.desc(), _TX.c.id.desc())  # HotPath.first reads the first row only
)
_GET_CERTIFICATE = select(_CERT).where(_CERT.c.profile == bindparam("profile"), _CERT.c.serial == bindparam("serial"))
_COUNT_FAILURES = (
    select(func.count())
    .select_from(_FAILURE)
    .where(_FAILURE.c.key == bindparam("key"), _FAILURE.c.at >= bindparam("since"))
)
# Spend a live one-time challenge (in the write transaction of the outcome it leads to).
_SPEND_CHALLENGE = (
    update(_CHALLENGE)
    .where(_CHALLENGE.c.profile == bindparam("profile"), _CHALLENGE.c.digest == bindparam("digest"),
           _CHALLENGE.c.used_at.is_(None), _CHALLENGE.c.expires_at > bindparam("now"))
    .values(used_at=bindparam("now"))
)
# Every column but the generated primary key, for the INSERTs.
_TX_INSERT_COLUMNS = [c.key for c in _TX.columns if c.key != "id"]
_CERT_INSERT_COLUMNS = [c.key for c in _CERT.columns if c.key != "id"]
_SETTLE_COLUMNS = ["state", "signer_key_fingerprint", "message_type", "csr_der", "signer_cert_der", "subject",
                   "cert_serial", "fail_info", "fail_text", "updated_at"]


def _settle_statement(state: TxState) -> Any:
    """The conditional UPDATE that moves a transaction out of `state`. The state is written
    into the SQL (a TxState value, never text from a request), so each compiles once."""
    return _TX.update().where(
        _TX.c.profile == bindparam("w_profile"),
        _TX.c.transaction_id == bindparam("w_transaction_id"),
        _TX.c.key_fingerprint == bindparam("w_key_fingerprint"),
        _TX.c.signer_key_fingerprint == bindparam("w_fingerprint"),
        _TX.c.state == literal_column(f"'{TxState(state).value}'"),
    )


# Rows of the hot reads come back as plain tuples; these give them the attribute names that
# `_tx_record` and `_cert_record` read.
_TxRow = namedtuple("_TxRow", [c.key for c in _TX.columns])  # type: ignore[misc]
_CertRow = namedtuple("_CertRow", [c.key for c in _CERT.columns])  # type: ignore[misc]


