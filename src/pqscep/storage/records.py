"""The records the store hands out: frozen dataclasses, never ORM objects, so nothing
outlives its database session. Timestamps are timezone-aware UTC; serials are Python ints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ..ca.transactions import TxState
from .models import Certificate, Challenge, Crl, Transaction

CertStatus = Literal["valid", "revoked"]
KemOutcome = Literal["ok", "expired", "spent"]



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
    key_fingerprint: bytes  # of the CSR's key: with the profile and ID, the transaction's name
    signer_key_fingerprint: bytes
    message_type: int
    csr_der: bytes | None
    signer_cert_der: bytes
    subject: str
    state: TxState
    cert_serial: int | None
    fail_info: int | None
    fail_text: str | None
    created_at: datetime
    updated_at: datetime


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
    key_fingerprint: bytes
    secret: bytes
    csr_digest: bytes
    signer_key_fingerprint: bytes
    challenge: bytes | None  # the kemPopChallenge value sent (None: made before migration 0003)
    expires_at: datetime
    created_at: datetime
    spent_at: datetime | None
    # What take_kem_challenge found: "ok" (it was live and is now spent: the only case in
    # which the secret may be used), "expired" (RFC 8894 failInfo badTime) or "spent"
    # (a replay: badRequest). A challenge both spent and expired reports "spent".
    outcome: KemOutcome


def cert_record(r: Certificate) -> CertificateRecord:
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


def crl_record(r: Crl) -> CrlRecord:
    return CrlRecord(r.profile, r.number, r.der, r.this_update, r.next_update)


def tx_record(r: Transaction) -> TransactionRecord:
    return TransactionRecord(
        profile=r.profile,
        transaction_id=r.transaction_id,
        key_fingerprint=r.key_fingerprint,
        signer_key_fingerprint=r.signer_key_fingerprint,
        message_type=r.message_type,
        csr_der=r.csr_der,
        signer_cert_der=r.signer_cert_der,
        subject=r.subject,
        state=TxState(r.state),
        cert_serial=None if r.cert_serial is None else int(r.cert_serial, 16),
        fail_info=r.fail_info,
        fail_text=r.fail_text,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def challenge_record(r: Challenge) -> ChallengeRecord:
    return ChallengeRecord(r.id, r.profile, r.digest, r.expires_at, r.created_at, r.used_at, r.note)
