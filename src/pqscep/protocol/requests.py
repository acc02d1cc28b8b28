"""The requests a SCEP CA receives, as typed, immutable values: one class per messageType
(RFC 8894 section 3.3), each holding what `Responder.receive` verified, decrypted and parsed.

Parsed keys and names are kept on the values: cryptography parses a key again on every
`public_key()` call (about 30 us for an ML-DSA-65 key) and builds a new `Name` on every
`subject` read, and the policy, the CA and the store each need them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from ..crypto.registry import ContentCipher, DigestAlgorithm
from .messages import MessageType, ScepAttributes

__all__ = [
    "CertPollRequest",
    "CertificationRequest",
    "Csr",
    "GetCertRequest",
    "GetCrlRequest",
    "PartialRequest",
    "PkiRequest",
    "SignedRequest",
]


@dataclass(frozen=True, slots=True)
class PartialRequest:
    """What a FAILURE reply needs: taken from the signed attributes, even unverified ones."""

    transaction_id: str
    sender_nonce: bytes
    digest: DigestAlgorithm
    message_type: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedRequest(PartialRequest):
    """A pkiMessage whose signature verified and whose pkcsPKIEnvelope opened."""

    signer_certificate: x509.Certificate
    signer_public_key: PublicKeyTypes
    content: bytes  # the decrypted messageData
    cipher: ContentCipher | None
    envelope_kind: str  # the RecipientInfo that opened it: "ktri", "kemri", "pwri"
    authenticated_envelope: bool  # AuthEnvelopedData (AES-GCM)
    attributes: ScepAttributes
    # The requester's responseKey (draft section 6): an ML-KEM public key for the reply.
    response_key: PublicKeyTypes | None = None
    # The kemPopProof signed attribute value (DER KemPopProof), on any message type.
    kem_pop_proof: bytes | None = None

    @property
    def extra(self) -> dict:
        """Every signed attribute that is not one of SCEP's own, {oid: [DER values]}."""
        return self.attributes.extra


@dataclass(frozen=True, slots=True)
class Csr:
    """A PKCS#10 request with the parts the CA reads, parsed once."""

    der: bytes
    parsed: x509.CertificateSigningRequest
    public_key: PublicKeyTypes
    subject: x509.Name
    subject_text: str  # RFC 4514, what the store and the logs keep
    challenge_password: str | None = None
    # For an ML-KEM key (draft section 7): the (issuer Name DER, serial) its RFC 9883
    # statement names, checked to be the pkiMessage signer's certificate; None otherwise.
    kem_statement: tuple[bytes, int] | None = None

    @classmethod
    def load(cls, der: bytes) -> Csr:
        """A CSR the CA stored with its transaction (it was checked when it arrived)."""
        parsed = x509.load_der_x509_csr(der)
        subject = parsed.subject
        return cls(der, parsed, parsed.public_key(), subject, subject.rfc4514_string())


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificationRequest(SignedRequest):
    """PKCSReq or RenewalReq (RFC 8894 sections 3.3.1 and 3.3.1.2): messageData is a CSR."""

    csr: Csr

    @property
    def is_renewal(self) -> bool:
        return self.message_type == MessageType.RENEWAL_REQ


@dataclass(frozen=True, slots=True, kw_only=True)
class CertPollRequest(SignedRequest):
    """CertPoll, GetCertInitial in draft-nourse (RFC 8894 section 3.3.3): IssuerAndSubject,
    the names kept as DER and compared byte for byte with certificates' encodings."""

    issuer_der: bytes
    subject_der: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class GetCertRequest(SignedRequest):
    """GetCert (RFC 8894 section 3.3.4): IssuerAndSerialNumber of the certificate wanted."""

    issuer_der: bytes
    serial: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GetCrlRequest(SignedRequest):
    """GetCRL (RFC 8894 section 3.3.4): IssuerAndSerialNumber of a certificate of the CA."""

    issuer_der: bytes
    serial: int


PkiRequest = CertificationRequest | CertPollRequest | GetCertRequest | GetCrlRequest
