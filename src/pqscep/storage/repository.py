"""`Store`: every operation the CA/RA server performs on its database, and the records it returns.

Rules every method follows:

* Each write is exactly one database transaction: it commits whole or not at all.
* Several server processes may share one PostgreSQL database and must behave as one server,
  so every check-and-change is a single conditional UPDATE (whose row count says who won)
  or relies on a unique constraint; nothing reads a row and then writes based on what it saw.
* The store never reads the clock: the caller passes `now` (timezone-aware); all
  timestamps come back timezone-aware in UTC.
* Callers get frozen dataclasses, never ORM objects, so nothing outlives its session.

Serial numbers are Python ints (positive, at most 160 bits); they are stored as fixed-width hex.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine, Table, bindparam, delete, func, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .errors import DuplicateChallenge, DuplicateCrlNumber, DuplicateSerial, TransactionKeyMismatch
from .locks import SqliteWriteLock
from .models import (
    SERIAL_HEX_DIGITS,
    TRANSACTION_STATES,
    Base,
    Certificate,
    Challenge,
    Crl,
    CrlCounter,
    Failure,
    KemChallenge,
    Transaction,
)
from .statements import HotPath

TransactionState = Literal["received", "pending", "approved", "issued", "rejected", "failed"]
CertStatus = Literal["valid", "revoked"]
KemOutcome = Literal["ok", "expired", "spent"]

# A bulk UPDATE/DELETE needs no syncing with a session that holds no objects.
_NO_SYNC = {"synchronize_session": False}


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    profile: str
    serial: int
    der: bytes
    subject: str
    not_before: datetime
    not_after: datetime
    status: CertStatus
    revoked_at: datetime | None
    revocation_reason: str | None
    transaction_id: str | None
    key_fingerprint: bytes
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate to record with its transaction (`Store.settle_transaction`)."""

    serial: int
    der: bytes
    subject: str
    not_before: datetime
    not_after: datetime
    key_fingerprint: bytes


@dataclass(frozen=True, slots=True)
class CrlRecord:
    profile: str
    number: int
    der: bytes
    this_update: datetime
    next_update: datetime


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    profile: str
    transaction_id: str
    signer_key_fingerprint: bytes
    message_type: int
    csr_der: bytes | None
    signer_cert_der: bytes
    subject: str
    state: TransactionState
    cert_serial: int | None
    fail_info: int | None
    fail_text: str | None
    created_at: datetime
    updated_at: datetime
    # True only on the open_transaction call that inserted the row; False when it
    # found an existing one (a retransmission) and whenever the record was read.
    created: bool = False


@dataclass(frozen=True, slots=True)
class ChallengeRecord:
    id: int
    profile: str
    digest: bytes
    expires_at: datetime
    created_at: datetime
    used_at: datetime | None
    note: str | None


@dataclass(frozen=True, slots=True)
class KemChallengeRecord:
    profile: str
    transaction_id: str
    secret: bytes
    csr_digest: bytes
    signer_key_fingerprint: bytes
    expires_at: datetime
    created_at: datetime
    spent_at: datetime | None
    # What take_kem_challenge found: "ok" (it was live and is now spent: the only case in
    # which the secret may be used), "expired" (RFC 8894 failInfo badTime) or "spent"
    # (a replay: badRequest). A challenge both spent and expired reports "spent".
    outcome: KemOutcome


def _cert_record(r: Certificate) -> CertificateRecord:
    return CertificateRecord(
        profile=r.profile,
        serial=int(r.serial, 16),
        der=r.der,
        subject=r.subject,
        not_before=r.not_before,
        not_after=r.not_after,
        status=r.status,  # type: ignore[arg-type]
        revoked_at=r.revoked_at,
        revocation_reason=r.revocation_reason,
        transaction_id=r.transaction_id,
        key_fingerprint=r.key_fingerprint,
        created_at=r.created_at,
    )


def _crl_record(r: Crl) -> CrlRecord:
    return CrlRecord(r.profile, r.number, r.der, r.this_update, r.next_update)


def _tx_record(r: Transaction, created: bool = False) -> TransactionRecord:
    return TransactionRecord(
        profile=r.profile,
        transaction_id=r.transaction_id,
        signer_key_fingerprint=r.signer_key_fingerprint,
        message_type=r.message_type,
        csr_der=r.csr_der,
        signer_cert_der=r.signer_cert_der,
        subject=r.subject,
        state=r.state,  # type: ignore[arg-type]
        cert_serial=None if r.cert_serial is None else int(r.cert_serial, 16),
        fail_info=r.fail_info,
        fail_text=r.fail_text,
        created_at=r.created_at,
        updated_at=r.updated_at,
        created=created,
    )


def _challenge_record(r: Challenge) -> ChallengeRecord:
    return ChallengeRecord(r.id, r.profile, r.digest, r.expires_at, r.created_at, r.used_at, r.note)


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
    (uq,) = (c for c in table.constraints if c.name == constraint)
    columns = ", ".join(f"{table.name}.{col.name}" for col in uq.columns)
    return str(orig) == f"UNIQUE constraint failed: {columns}"


def _table(model: type[Base]) -> Table:
    return model.__table__  # type: ignore[return-value]


def _upsert(session: Session, model: type[Base]) -> Any:
    """INSERT ... ON CONFLICT for the session's backend (same API on both dialects)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


# ---------------------------------------------------------------------------- hot statements
# Built once: constructing a statement costs more than running it on SQLite, and these run on
# every PKIOperation. Values are bound per call.

_TX = Transaction.__table__
_CERT = Certificate.__table__
_FAILURE = Failure.__table__
_GET_TRANSACTION = select(_TX).where(
    _TX.c.profile == bindparam("profile"), _TX.c.transaction_id == bindparam("transaction_id")
)
_GET_CERTIFICATE = select(_CERT).where(_CERT.c.profile == bindparam("profile"), _CERT.c.serial == bindparam("serial"))
_COUNT_FAILURES = (
    select(func.count()).select_from(_FAILURE).where(_FAILURE.c.key == bindparam("key"), _FAILURE.c.at >= bindparam("since"))
)
# Every column but the generated primary key, for the INSERTs.
_TX_INSERT_COLUMNS = [c.key for c in _TX.columns if c.key != "id"]
_CERT_INSERT_COLUMNS = [c.key for c in _CERT.columns if c.key != "id"]
_SETTLE_COLUMNS = ["state", "signer_key_fingerprint", "message_type", "csr_der", "signer_cert_der", "subject",
                   "cert_serial", "fail_info", "fail_text", "updated_at"]


def _settle_statement(states: tuple[str, ...]):
    """The conditional UPDATE that moves a transaction out of one of `states`. The states are
    written into the SQL (they come from the fixed TRANSACTION_STATES, never from a request),
    so each set of states compiles once."""
    return _TX.update().where(
        _TX.c.profile == bindparam("w_profile"),
        _TX.c.transaction_id == bindparam("w_transaction_id"),
        _TX.c.signer_key_fingerprint == bindparam("w_fingerprint"),
        _TX.c.state.in_([literal_column(f"'{state}'") for state in states]),
    )


# Rows of the hot reads come back as plain tuples; these give them the attribute names that
# `_tx_record` and `_cert_record` read.
_TxRow = namedtuple("_TxRow", [c.key for c in _TX.columns])  # type: ignore[misc]
_CertRow = namedtuple("_CertRow", [c.key for c in _CERT.columns])  # type: ignore[misc]


# ---------------------------------------------------------------------------- the store


class Store:
    """The CA/RA database. Thread-safe: each call uses its own pooled connection.

    Obtain one with `pqscep.storage.open_store(url)`; `close()` releases the pool.
    """

    def __init__(self, engine: Engine, write_engine: Engine | None = None, hot_engine: Engine | None = None) -> None:
        """`write_engine` is `engine` configured for writing (see `db.write_engine`);
        `hot_engine` the engine of the per-PKIOperation statements (statements.HotPath; on
        PostgreSQL a second pool without pre-ping, see db.open_store), by default `engine`."""
        self.engine = engine
        self._hot_engine = hot_engine
        self._write_engine = write_engine or engine
        # SQLite has one writer at a time. Writers, the threads of this process and the other
        # server processes alike, queue on this lock instead of on SQLite's busy handler, which
        # sleeps in growing steps (up to 100 ms) and made the p99 latency of a busy server ten
        # times its median (locks.py). PostgreSQL needs no such lock.
        self._write_lock: Any = (
            SqliteWriteLock(engine.url.database) if engine.dialect.name == "sqlite" and engine.url.database
            else nullcontext()
        )
        # The statements of every PKIOperation skip SQLAlchemy's execution layer (statements.py).
        self._hot = HotPath(hot_engine or engine, self._write_lock)
        self._get_transaction = self._hot.prepare(_GET_TRANSACTION)
        self._get_certificate = self._hot.prepare(_GET_CERTIFICATE)
        self._count_failures = self._hot.prepare(_COUNT_FAILURES)
        self._insert_transaction = self._hot.prepare(_TX.insert(), column_keys=_TX_INSERT_COLUMNS)
        self._insert_certificate = self._hot.prepare(_CERT.insert(), column_keys=_CERT_INSERT_COLUMNS)
        self._settle: dict[tuple[str, ...], Any] = {}
        self._integrity_error = engine.dialect.loaded_dbapi.IntegrityError
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(write_engine or engine, expire_on_commit=False)

    def close(self) -> None:
        self._hot.close()
        self.engine.dispose()
        if isinstance(self._write_lock, SqliteWriteLock):
            self._write_lock.close()
        if self._hot_engine is not None:
            self._hot_engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A write transaction (ORM session), one at a time per process on SQLite."""
        with self._write_lock, self._write.begin() as s:
            yield s

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with self._read() as s:  # closing rolls the read-only transaction back
            yield s

    # -------------------------------------------------------------- certificates

    def record_certificate(
        self,
        profile: str,
        serial: int,
        der: bytes,
        subject: str,
        not_before: datetime,
        not_after: datetime,
        transaction_id: str | None,
        key_fingerprint: bytes,
        now: datetime,
    ) -> None:
        """Record an issued certificate; `DuplicateSerial` if the serial is taken in `profile`."""
        row = Certificate(
            profile=profile,
            serial=_serial_hex(serial),
            der=der,
            subject=subject,
            not_before=_utc(not_before),
            not_after=_utc(not_after),
            status="valid",
            transaction_id=transaction_id,
            key_fingerprint=key_fingerprint,
            created_at=_utc(now),
        )
        try:
            with self._writing() as s:
                s.add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc, _table(Certificate), "uq_certificates_profile_serial"):
                raise DuplicateSerial(profile, serial) from None
            raise

    def get_certificate(self, profile: str, serial: int) -> CertificateRecord | None:
        # statements.py, not the ORM: on the hot path of renewals and GetCert.
        row = self._hot.first(self._get_certificate, {"profile": profile, "serial": _serial_hex(serial)})
        return None if row is None else _cert_record(_CertRow(*row))  # type: ignore[arg-type]

    def find_certificates(
        self,
        profile: str,
        subject: str | None = None,
        status: CertStatus | None = None,
        limit: int = 100,
    ) -> list[CertificateRecord]:
        """Certificates of `profile`, newest first, optionally by exact subject and status."""
        q = select(Certificate).where(Certificate.profile == profile)
        if subject is not None:
            q = q.where(Certificate.subject == subject)
        if status is not None:
            q = q.where(Certificate.status == status)
        q = q.order_by(Certificate.created_at.desc(), Certificate.id.desc()).limit(limit)
        with self._reading() as s:
            return [_cert_record(r) for r in s.scalars(q)]

    def revoke_certificate(self, profile: str, serial: int, reason: str, now: datetime) -> bool:
        """Revoke a valid certificate; False if it is unknown or already revoked."""
        stmt = (
            update(Certificate)
            .where(
                Certificate.profile == profile,
                Certificate.serial == _serial_hex(serial),
                Certificate.status == "valid",
            )
            .values(status="revoked", revoked_at=_utc(now), revocation_reason=reason)
        )
        with self._writing() as s:
            return s.execute(stmt, execution_options=_NO_SYNC).rowcount == 1

    def revoked_certificates(self, profile: str) -> list[tuple[int, datetime, str]]:
        """(serial, revoked_at, reason) of every revoked certificate, for building a CRL."""
        q = (
            select(Certificate.serial, Certificate.revoked_at, Certificate.revocation_reason)
            .where(Certificate.profile == profile, Certificate.status == "revoked")
            .order_by(Certificate.serial)
        )
        with self._reading() as s:
            return [(int(serial, 16), at, reason) for serial, at, reason in s.execute(q)]

    # -------------------------------------------------------------- CRLs

    def next_crl_number(self, profile: str) -> int:
        """The next CRL number of `profile` (1, 2, ...): never repeats, even across processes."""
        with self._writing() as s:
            # Create the counter on first use; ON CONFLICT makes a concurrent creator wait
            # for ours and then do nothing, instead of failing.
            s.execute(
                _upsert(s, CrlCounter)
                .values(profile=profile, last_number=0)
                .on_conflict_do_nothing(index_elements=["profile"])
            )
            # The UPDATE locks the row until commit, so concurrent callers queue here.
            number = s.execute(
                update(CrlCounter)
                .where(CrlCounter.profile == profile)
                .values(last_number=CrlCounter.last_number + 1)
                .returning(CrlCounter.last_number),
                execution_options=_NO_SYNC,
            ).scalar_one()
            return int(number)

    def store_crl(
        self, profile: str, number: int, der: bytes, this_update: datetime, next_update: datetime
    ) -> None:
        """Keep a signed CRL; `DuplicateCrlNumber` if `number` was already stored."""
        row = Crl(
            profile=profile,
            number=number,
            der=der,
            this_update=_utc(this_update),
            next_update=_utc(next_update),
        )
        try:
            with self._writing() as s:
                s.add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc, _table(Crl), "uq_crls_profile_number"):
                raise DuplicateCrlNumber(f"CRL number {number} exists in {profile!r}") from None
            raise

    def latest_crl(self, profile: str) -> CrlRecord | None:
        """The CRL with the highest number in `profile`."""
        q = select(Crl).where(Crl.profile == profile).order_by(Crl.number.desc()).limit(1)
        with self._reading() as s:
            row = s.scalars(q).one_or_none()
            return None if row is None else _crl_record(row)

    # -------------------------------------------------------------- SCEP transactions

    def open_transaction(
        self,
        profile: str,
        transaction_id: str,
        signer_key_fingerprint: bytes,
        message_type: int,
        csr_der: bytes | None,
        signer_cert_der: bytes,
        subject: str,
        now: datetime,
    ) -> TransactionRecord:
        """Start a transaction in state 'received', or return the existing one.

        An existing transaction comes back unchanged with `created=False` if it was opened
        by the same signer key (a retransmission, to be answered idempotently); another
        key raises `TransactionKeyMismatch`.
        """
        existing = self._existing_transaction(profile, transaction_id, signer_key_fingerprint)
        if existing is not None:
            return existing
        now = _utc(now)
        row = Transaction(
            profile=profile,
            transaction_id=transaction_id,
            signer_key_fingerprint=signer_key_fingerprint,
            message_type=message_type,
            csr_der=csr_der,
            signer_cert_der=signer_cert_der,
            subject=subject,
            state="received",
            created_at=now,
            updated_at=now,
        )
        try:
            with self._writing() as s:
                s.add(row)
            return _tx_record(row, created=True)
        except IntegrityError as exc:
            uq = "uq_scep_transactions_profile_transaction_id"
            if not _is_unique_violation(exc, _table(Transaction), uq):
                raise
            # Another process inserted the same transaction between our read and our insert.
            existing = self._existing_transaction(profile, transaction_id, signer_key_fingerprint)
            if existing is None:  # only if it was deleted in the meantime
                raise
            return existing

    def _existing_transaction(
        self, profile: str, transaction_id: str, signer_key_fingerprint: bytes
    ) -> TransactionRecord | None:
        existing = self.get_transaction(profile, transaction_id)
        if existing is not None and existing.signer_key_fingerprint != signer_key_fingerprint:
            raise TransactionKeyMismatch(profile, transaction_id)
        return existing

    def set_transaction_state(
        self,
        profile: str,
        transaction_id: str,
        new_state: TransactionState,
        *,
        expect_state: TransactionState | Iterable[TransactionState] | None = None,
        cert_serial: int | None = None,
        fail_info: int | None = None,
        fail_text: str | None = None,
        now: datetime,
    ) -> bool:
        """Move a transaction to `new_state`, only if it is now in `expect_state` (if given).

        False when the transaction is unknown or in another state, i.e. someone else made
        the transition first. `cert_serial`, `fail_info` and `fail_text` are written when
        given and left as they are otherwise.
        """
        if new_state not in TRANSACTION_STATES:
            raise ValueError(f"unknown transaction state {new_state!r}")
        values: dict[str, Any] = {"state": new_state, "updated_at": _utc(now)}
        if cert_serial is not None:
            values["cert_serial"] = _serial_hex(cert_serial)
        if fail_info is not None:
            values["fail_info"] = fail_info
        if fail_text is not None:
            values["fail_text"] = fail_text
        stmt = update(Transaction).where(
            Transaction.profile == profile, Transaction.transaction_id == transaction_id
        )
        if expect_state is not None:
            expected = (expect_state,) if isinstance(expect_state, str) else tuple(expect_state)
            stmt = stmt.where(Transaction.state.in_(expected))
        with self._writing() as s:
            return s.execute(stmt.values(values), execution_options=_NO_SYNC).rowcount == 1

    def get_transaction(self, profile: str, transaction_id: str) -> TransactionRecord | None:
        # statements.py, not the ORM: this read is on every PKIOperation.
        row = self._hot.first(self._get_transaction, {"profile": profile, "transaction_id": transaction_id})
        return None if row is None else _tx_record(_TxRow(*row))  # type: ignore[arg-type]

    def list_transactions(
        self, profile: str, state: TransactionState | None = None, limit: int | None = None
    ) -> list[TransactionRecord]:
        """Transactions of `profile`, oldest first, optionally only those in `state`."""
        q = select(Transaction).where(Transaction.profile == profile)
        if state is not None:
            q = q.where(Transaction.state == state)
        q = q.order_by(Transaction.created_at, Transaction.id).limit(limit)
        with self._reading() as s:
            return [_tx_record(r) for r in s.scalars(q)]

    def approve(self, profile: str, transaction_id: str, now: datetime) -> bool:
        """An operator approves a pending request (pending -> approved)."""
        return self.set_transaction_state(
            profile, transaction_id, "approved", expect_state="pending", now=now
        )

    def reject(self, profile: str, transaction_id: str, reason: str, now: datetime) -> bool:
        """An operator rejects a pending request (pending -> rejected); `reason` goes to fail_text."""
        return self.set_transaction_state(
            profile, transaction_id, "rejected", expect_state="pending", fail_text=reason, now=now
        )

    def settle_transaction(
        self,
        profile: str,
        transaction_id: str,
        *,
        expect_state: TransactionState | Iterable[TransactionState] | None,
        new_state: TransactionState,
        signer_key_fingerprint: bytes,
        message_type: int,
        csr_der: bytes | None,
        signer_cert_der: bytes,
        subject: str,
        certificate: IssuedCertificate | None = None,
        fail_info: int | None = None,
        fail_text: str | None = None,
        now: datetime,
    ) -> bool:
        """Write the outcome of a request in ONE database transaction: the transaction row in
        `new_state` and, when given, the certificate issued for it. Never one without the other.

        `expect_state=None` inserts a new transaction; False if the ID exists (another request
        with it won the race). Otherwise the existing row must be in `expect_state`; False if
        it is not (another server process moved it first), and nothing is written.
        `DuplicateSerial` if the certificate's serial is taken.
        """
        if new_state not in TRANSACTION_STATES:
            raise ValueError(f"unknown transaction state {new_state!r}")
        now = _utc(now)
        values: dict[str, Any] = dict(
            state=new_state,
            signer_key_fingerprint=signer_key_fingerprint,
            message_type=message_type,
            csr_der=csr_der,
            signer_cert_der=signer_cert_der,
            subject=subject,
            cert_serial=None if certificate is None else _serial_hex(certificate.serial),
            fail_info=fail_info,
            fail_text=fail_text,
            updated_at=now,
        )
        try:
            def write(execute) -> bool:
                if expect_state is None:
                    execute(self._insert_transaction,
                            dict(values, profile=profile, transaction_id=transaction_id, created_at=now))
                else:
                    expected = (expect_state,) if isinstance(expect_state, str) else tuple(expect_state)
                    claim = dict(values, w_profile=profile, w_transaction_id=transaction_id,
                                 w_fingerprint=signer_key_fingerprint)
                    if execute(self._settle_statement(expected), claim) != 1:
                        return False  # nothing was written; the commit is empty
                if certificate is not None:
                    execute(
                        self._insert_certificate,
                        dict(
                            profile=profile,
                            serial=_serial_hex(certificate.serial),
                            der=certificate.der,
                            subject=certificate.subject,
                            not_before=_utc(certificate.not_before),
                            not_after=_utc(certificate.not_after),
                            status="valid",
                            revoked_at=None,
                            revocation_reason=None,
                            transaction_id=transaction_id,
                            key_fingerprint=certificate.key_fingerprint,
                            created_at=now,
                        ),
                    )
                return True

            return self._hot.write(write)
        except self._integrity_error as exc:
            if _is_unique_violation(exc, _CERT, "uq_certificates_profile_serial"):
                raise DuplicateSerial(profile, certificate.serial if certificate else 0) from None
            if _is_unique_violation(exc, _TX, "uq_scep_transactions_profile_transaction_id"):
                return False
            raise

    def _settle_statement(self, states: tuple[str, ...]):
        unknown = set(states) - set(TRANSACTION_STATES)
        if unknown:
            raise ValueError(f"unknown transaction state {sorted(unknown)!r}")
        stmt = self._settle.get(states)
        if stmt is None:
            stmt = self._settle[states] = self._hot.prepare(_settle_statement(states), column_keys=_SETTLE_COLUMNS)
        return stmt

    # -------------------------------------------------------------- challenge passwords

    def add_challenge(
        self,
        profile: str,
        digest: bytes,
        expires_at: datetime,
        now: datetime,
        note: str | None = None,
    ) -> int:
        """Register a one-time challenge password by its SHA-256 `digest`; returns its id."""
        row = Challenge(
            profile=profile,
            digest=digest,
            expires_at=_utc(expires_at),
            created_at=_utc(now),
            note=note,
        )
        try:
            with self._writing() as s:
                s.add(row)
        except IntegrityError as exc:
            if _is_unique_violation(exc, _table(Challenge), "uq_challenges_profile_digest"):
                raise DuplicateChallenge(f"challenge already registered in {profile!r}") from None
            raise
        return row.id

    def consume_challenge(self, profile: str, digest: bytes, now: datetime) -> bool:
        """Use up a live challenge. True for exactly one caller, however many race."""
        now = _utc(now)
        stmt = (
            update(Challenge)
            .where(
                Challenge.profile == profile,
                Challenge.digest == digest,
                Challenge.used_at.is_(None),
                Challenge.expires_at > now,
            )
            .values(used_at=now)
        )
        with self._writing() as s:
            return s.execute(stmt, execution_options=_NO_SYNC).rowcount == 1

    def list_challenges(self, profile: str, include_used: bool = False) -> list[ChallengeRecord]:
        """Challenges of `profile`, oldest first; unused ones (expired or not) unless include_used."""
        q = select(Challenge).where(Challenge.profile == profile)
        if not include_used:
            q = q.where(Challenge.used_at.is_(None))
        q = q.order_by(Challenge.created_at, Challenge.id)
        with self._reading() as s:
            return [_challenge_record(r) for r in s.scalars(q)]

    def purge_expired_challenges(self, now: datetime) -> int:
        """Delete expired challenges (used or not) of every profile; returns how many."""
        stmt = delete(Challenge).where(Challenge.expires_at <= _utc(now))
        with self._writing() as s:
            return s.execute(stmt, execution_options=_NO_SYNC).rowcount

    # -------------------------------------------------------------- rate limiting

    def record_failure(self, key: str, now: datetime) -> None:
        """Note one failed attempt under `key` (e.g. a client address or a subject)."""
        with self._writing() as s:
            s.add(Failure(key=key, at=_utc(now)))

    def count_failures(self, key: str, since: datetime) -> int:
        """Failed attempts under `key` at or after `since`."""
        row = self._hot.first(self._count_failures, {"key": key, "since": _utc(since)})
        return int(row[0])  # type: ignore[index]

    def prune_failures(self, before: datetime) -> int:
        """Forget failures older than `before`; returns how many."""
        with self._writing() as s:
            stmt = delete(Failure).where(Failure.at < _utc(before))
            return s.execute(stmt, execution_options=_NO_SYNC).rowcount

    # -------------------------------------------------------------- KEM proof of possession

    def put_kem_challenge(
        self,
        profile: str,
        transaction_id: str,
        secret: bytes,
        csr_digest: bytes,
        signer_key_fingerprint: bytes,
        expires_at: datetime,
        now: datetime,
    ) -> None:
        """Set the KEM challenge of an (existing) transaction, replacing any earlier one.

        Replacing makes the previous secret worthless, so a challenge re-issued after a
        retransmission cannot be answered with the old one.
        """
        values = {
            "secret": secret,
            "csr_digest": csr_digest,
            "signer_key_fingerprint": signer_key_fingerprint,
            "expires_at": _utc(expires_at),
            "created_at": _utc(now),
            "spent_at": None,
        }
        with self._writing() as s:
            stmt = _upsert(s, KemChallenge).values(
                profile=profile, transaction_id=transaction_id, **values
            )
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=["profile", "transaction_id"], set_=values
                )
            )

    def has_kem_challenge(self, profile: str, transaction_id: str) -> bool:
        """Whether a KEM challenge (live, expired or spent) was ever set for the transaction:
        tells a request waiting for its proof of possession from one waiting for approval."""
        where = (KemChallenge.profile == profile, KemChallenge.transaction_id == transaction_id)
        with self._reading() as s:
            return s.scalars(select(KemChallenge.id).where(*where)).first() is not None

    def take_kem_challenge(
        self, profile: str, transaction_id: str, now: datetime
    ) -> KemChallengeRecord | None:
        """Spend the KEM challenge of a transaction; None if there is none.

        The record's `outcome` is "ok" only for the one caller that found it live and
        spent it; otherwise it says why not ("expired" or "spent").
        """
        now = _utc(now)
        where = (KemChallenge.profile == profile, KemChallenge.transaction_id == transaction_id)
        with self._writing() as s:
            taken = (
                s.execute(
                    update(KemChallenge)
                    .where(*where, KemChallenge.spent_at.is_(None), KemChallenge.expires_at > now)
                    .values(spent_at=now),
                    execution_options=_NO_SYNC,
                ).rowcount
                == 1
            )
            row = s.scalars(select(KemChallenge).where(*where)).one_or_none()
            if row is None:
                return None
            outcome: KemOutcome = (
                "ok" if taken else "spent" if row.spent_at is not None else "expired"
            )
            return KemChallengeRecord(
                profile=row.profile,
                transaction_id=row.transaction_id,
                secret=row.secret,
                csr_digest=row.csr_digest,
                signer_key_fingerprint=row.signer_key_fingerprint,
                expires_at=row.expires_at,
                created_at=row.created_at,
                spent_at=row.spent_at,
                outcome=outcome,
            )
