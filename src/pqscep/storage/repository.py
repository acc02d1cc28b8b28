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

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..ca.transactions import Event, TxState, check_write, sources_of, target_of
from .challenges import ChallengeStore
from .errors import ChallengeUnavailable, DuplicateCrlNumber, DuplicateSerial
from .models import Certificate, Crl, CrlCounter, Transaction
from .records import (
    CertificateRecord,
    CertStatus,
    CrlRecord,
    IssuedCertificate,
    TransactionRecord,
    cert_record,
    crl_record,
    tx_record,
)
from .sql import (
    _CERT,
    _NO_SYNC,
    _SETTLE_COLUMNS,
    _TX,
    _CertRow,
    _is_unique_violation,
    _rowcount,
    _serial_hex,
    _settle_statement,
    _table,
    _TxRow,
    _upsert,
    _utc,
)

__all__ = ["CertificateRecord", "IssuedCertificate", "Store", "TransactionRecord"]


class _Ambiguous(Exception):
    """An operator's decision that would move more than one transaction (apply_operator_event)."""


class Store(ChallengeStore):
    """The CA/RA database. Thread-safe: each call uses its own pooled connection.

    Obtain one with `pqscep.storage.open_store(url)`; `close()` releases the pool.
    """

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
        return None if row is None else cert_record(_CertRow(*row))  # type: ignore[arg-type]

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
            return [cert_record(r) for r in s.scalars(q)]

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
            return _rowcount(s, stmt) == 1

    def revoked_certificates(self, profile: str) -> list[tuple[int, datetime, str | None]]:
        """(serial, revoked_at, reason) of every revoked certificate, for building a CRL."""
        q = (
            select(Certificate.serial, Certificate.revoked_at, Certificate.revocation_reason)
            .where(Certificate.profile == profile, Certificate.status == "revoked")
            .order_by(Certificate.serial)
        )
        with self._reading() as s:
            # revoked_at is set whenever status is "revoked" (revoke_certificate writes both).
            return [(int(serial, 16), at, reason) for serial, at, reason in s.execute(q) if at is not None]

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
            return None if row is None else crl_record(row)

    # -------------------------------------------------------------- SCEP transactions

    def get_transaction(self, profile: str, transaction_id: str,
                        key_fingerprint: bytes | None = None) -> TransactionRecord | None:
        """The transaction named by `transaction_id` and the CSR key `key_fingerprint`; without
        a key (operators, tests), the oldest of those under the ID."""
        if key_fingerprint is None:
            q = (select(Transaction).where(Transaction.profile == profile, Transaction.transaction_id == transaction_id)
                 .order_by(Transaction.id).limit(1))
            with self._reading() as s:
                found = s.scalars(q).one_or_none()
                return None if found is None else tx_record(found)
        # statements.py, not the ORM: this read is on every PKIOperation.
        row = self._hot.first(self._get_transaction, {"profile": profile, "transaction_id": transaction_id,
                                                      "key_fingerprint": key_fingerprint})
        return None if row is None else tx_record(_TxRow(*row))  # type: ignore[arg-type]

    def get_polled_transaction(self, profile: str, transaction_id: str,
                               signer_key_fingerprint: bytes) -> TransactionRecord | None:
        """The transaction a CertPoll continues: a poll carries no CSR (RFC 8894 3.3.3), so
        it is the one under `transaction_id` whose request was signed by the poll's signer
        key (the newest, if that key signed more than one)."""
        row = self._hot.first(self._get_polled_transaction, {"profile": profile, "transaction_id": transaction_id,
                                                             "signer_key_fingerprint": signer_key_fingerprint})
        return None if row is None else tx_record(_TxRow(*row))  # type: ignore[arg-type]

    def list_transactions(
        self, profile: str, state: TxState | None = None, limit: int | None = None
    ) -> list[TransactionRecord]:
        """Transactions of `profile`, oldest first, optionally only those in `state`."""
        q = select(Transaction).where(Transaction.profile == profile)
        if state is not None:
            q = q.where(Transaction.state == state.value)
        q = q.order_by(Transaction.created_at, Transaction.id).limit(limit)
        with self._reading() as s:
            return [tx_record(r) for r in s.scalars(q)]

    def apply_operator_event(self, profile: str, transaction_id: str, event: Event, now: datetime,
                             reason: str | None = None) -> bool:
        """An operator's decision on a transaction (ca.transactions: APPROVE or REJECT), made only
        from a state the transition table allows it from; False if the transaction is unknown or
        in another state. `reason` goes to fail_text (what a rejected device is told).

        An ID names a transaction only together with its CSR key, so two may share one (another
        key's request under a device's key-derived ID): then nothing is changed and the answer
        is False, so that approving a device's ID never approves a request that took it too."""
        if event not in (Event.APPROVE, Event.REJECT):
            raise ValueError(f"not an operator's decision: {event}")
        new = target_of(next(iter(sources_of(event))), event)
        values: dict[str, Any] = {"state": new.value, "updated_at": _utc(now)}
        if reason is not None:
            values["fail_text"] = reason
        stmt = update(Transaction).where(
            Transaction.profile == profile,
            Transaction.transaction_id == transaction_id,
            Transaction.state.in_(sorted(state.value for state in sources_of(event))),
        )
        try:
            with self._writing() as s:
                changed = _rowcount(s, stmt.values(values))
                if changed > 1:
                    raise _Ambiguous  # rolls the update back
                return changed == 1
        except _Ambiguous:
            return False

    def approve(self, profile: str, transaction_id: str, now: datetime) -> bool:
        """An operator approves a request held for approval."""
        return self.apply_operator_event(profile, transaction_id, Event.APPROVE, now)

    def reject(self, profile: str, transaction_id: str, reason: str, now: datetime) -> bool:
        """An operator rejects a request that is not finished; `reason` goes to fail_text."""
        return self.apply_operator_event(profile, transaction_id, Event.REJECT, now, reason)

    def settle_transaction(
        self,
        profile: str,
        transaction_id: str,
        *,
        expect_state: TxState | None,
        new_state: TxState,
        signer_key_fingerprint: bytes,
        message_type: int,
        csr_der: bytes | None,
        signer_cert_der: bytes,
        subject: str,
        certificate: IssuedCertificate | None = None,
        fail_info: int | None = None,
        fail_text: str | None = None,
        spend_challenge: bytes | None = None,
        key_fingerprint: bytes | None = None,
        now: datetime,
    ) -> bool:
        """Write the outcome of a request in ONE database transaction: the transaction row in
        `new_state`, when given the certificate issued for it, and when given the one-time
        challenge (by digest) the request used, spent. All or nothing: a crash or a database
        error leaves the challenge live and no certificate; `ChallengeUnavailable` (nothing
        written) if the challenge is no longer live.

        The transaction is named by (profile, `transaction_id`, `key_fingerprint`: the CSR
        key's; by default the signer's, for requests signed by their own key).
        `expect_state=None` inserts a new transaction; False if it exists (another request
        for it won the race). Otherwise the existing row must be in `expect_state`; False if
        it is not (another server process moved it first), and nothing is written.
        `DuplicateSerial` if the certificate's serial is taken; `TransitionError` if the
        transition table (ca.transactions) has no move from `expect_state` to `new_state`.
        """
        check_write(expect_state, new_state)
        now = _utc(now)
        key_fingerprint = signer_key_fingerprint if key_fingerprint is None else key_fingerprint
        values: dict[str, Any] = dict(
            state=new_state.value,
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
                            dict(values, profile=profile, transaction_id=transaction_id,
                                 key_fingerprint=key_fingerprint, created_at=now))
                else:
                    claim = dict(values, w_profile=profile, w_transaction_id=transaction_id,
                                 w_key_fingerprint=key_fingerprint, w_fingerprint=signer_key_fingerprint)
                    if execute(self._settle_statement(expect_state), claim) != 1:
                        return False  # nothing was written; the commit is empty
                if spend_challenge is not None and execute(
                    self._spend_challenge, dict(profile=profile, digest=spend_challenge, now=now)
                ) != 1:
                    raise ChallengeUnavailable(profile)  # rolls back the row written above
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
            if _is_unique_violation(exc, _TX, "uq_scep_transactions_profile_transaction_id_key_fingerprint"):
                return False
            raise

    def _settle_statement(self, state: TxState) -> Any:
        stmt = self._settle.get(state)
        if stmt is None:
            stmt = self._settle[state] = self._hot.prepare(_settle_statement(state), column_keys=_SETTLE_COLUMNS)
        return stmt

