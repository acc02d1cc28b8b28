"""`Outcome`: what a workflow returns, the CA's answer as data (status, failInfo, certificates,
CRLs, the state to poll with on PENDING) and the facts a caller may want to report
(`issuer_verified`, `renewal_sent_as_pkcs_req`, `saved_signer_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from ..protocol import client as proto
from ..protocol.messages import FailInfo, MessageType, PkiStatus
from .errors import VerificationError
from .requester import PrivateKey, public_key_der

if TYPE_CHECKING:
    from .pending import PendingState
    from .session import ScepSession

__all__ = ["Outcome", "check_issuer", "outcome_of"]


@dataclass
class Outcome:
    status: PkiStatus
    transaction_id: str
    message_type: MessageType
    certificate: x509.Certificate | None = None  # the issued certificate for our key (enroll/renew/poll)
    certificates: list[x509.Certificate] = field(default_factory=list)
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)
    fail_info: FailInfo | None = None
    fail_info_text: str | None = None
    state: PendingState | None = None
    # False: the issued certificate is signed by no certificate of the GetCACert reply (an
    # intermediate CA?); None: not checked (no certificate issued, or not an enrollment).
    issuer_verified: bool | None = None
    # A renewal to a CA that does not list Renewal went as a PKCSReq signed with the existing
    # certificate (RFC 8894 section 3.5.2).
    renewal_sent_as_pkcs_req: bool = False
    # Where the key of a transient request signer was saved, for polling a PENDING request.
    saved_signer_key: Path | None = None


def outcome_of(result: proto.CertRepResult, message_type: MessageType, key: PrivateKey | None = None) -> Outcome:
    """The Outcome of a verified CertRep; with `key`, the certificate issued for it is picked
    (SUCCESS without one is a `VerificationError`)."""
    outcome = Outcome(
        status=result.status,
        transaction_id=result.transaction_id,
        message_type=message_type,
        certificates=list(result.certificates),
        crls=list(result.crls),
        fail_info=result.fail_info,
        fail_info_text=result.fail_info_text,
    )
    if result.status == PkiStatus.SUCCESS and key is not None:
        wanted = public_key_der(key)
        outcome.certificate = next((c for c in result.certificates if public_key_der(c.public_key()) == wanted), None)
        if outcome.certificate is None:
            raise VerificationError("the CertRep holds no certificate for the requested key")
    return outcome


def check_issuer(session: ScepSession, outcome: Outcome) -> None:
    """Set `outcome.issuer_verified`: whether a certificate of the GetCACert reply signed the
    issued certificate."""
    cert = outcome.certificate
    if cert is None:
        return
    issuers = [c for c in session.bundle().all if c.subject == cert.issuer]
    for issuer in issuers:
        try:
            cert.verify_directly_issued_by(issuer)
            outcome.issuer_verified = True
            return
        except Exception:  # InvalidSignature, a key type cryptography cannot verify with...
            continue
    outcome.issuer_verified = False
