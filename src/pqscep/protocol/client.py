"""The requester side of SCEP, sans-IO: build pkiMessages, read GetCACert bundles and CertReps.

Bytes in, bytes out: the transport (`pqscep.client.transport`) sends what this builds. Time and
randomness are parameters, like the server side.
"""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from ..asn1 import cms, oids
from ..cms import enveloped, signed
from ..crypto.keys import KeyFamily, key_family
from ..crypto.registry import ContentCipher, DigestAlgorithm
from .messages import (
    FailInfo,
    IssuerAndSubject,
    MessageType,
    PkiStatus,
    ProtocolError,
    request_attributes,
    scep_attributes,
)

__all__ = [
    "CaBundle",
    "CertRepResult",
    "ClientError",
    "build_csr",
    "build_pki_message",
    "parse_ca_certs",
    "parse_cert_rep",
    "self_signed_certificate",
    "poll_content",
    "issuer_and_serial_content",
]

RandomBytes = Callable[[int], bytes]


class ClientError(ValueError):
    """A reply the client cannot accept (bad signature, wrong nonce, undecryptable...)."""


@dataclass
class CaBundle:
    """What GetCACert returned, sorted by role (RFC 8894 section 3.5.1)."""

    ca: x509.Certificate
    signer: x509.Certificate  # signs CertReps: the CA or the RA signing certificate
    encipherer: x509.Certificate  # the request envelope's recipient: the CA or the RA encryption cert
    all: list[x509.Certificate] = field(default_factory=list)
    # The CA's ML-KEM recipient certificate (draft Section 3), found by its key type.
    kem_recipient_cert: x509.Certificate | None = None


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return cert.issuer == cert.subject


def parse_ca_certs(content_type: str, body: bytes) -> CaBundle:
    """Read a GetCACert reply: one DER certificate, or a certs-only SignedData of CA (+ RA)."""
    content_type = content_type.split(";")[0].strip().lower()
    try:
        if content_type == "application/x-x509-ca-cert" or body[:1] == b"\x30" and _looks_like_certificate(body):
            certs = [x509.load_der_x509_certificate(body)]
        else:
            certs = signed.parse_signed_data(body).certificates
    except (ValueError, cms.Asn1Error) as exc:
        raise ClientError(f"GetCACert reply does not parse: {exc}") from None
    if not certs:
        raise ClientError("GetCACert reply holds no certificate")
    cas = [c for c in certs if _is_ca(c)]
    kem = [c for c in certs if not _is_ca(c) and _family(c) == KeyFamily.ML_KEM]
    others = [c for c in certs if not _is_ca(c) and c not in kem]
    # The issuing CA is the one the RA or recipient certificates chain to, else the last CA.
    ca = cas[-1] if cas else certs[0]
    for candidate in cas:
        if any(o.issuer == candidate.subject for o in others + kem):
            ca = candidate
    signer = encipherer = ca
    for cert in others:
        usage = _key_usage(cert)
        if usage is None:
            signer = encipherer = cert
            continue
        if usage.digital_signature:
            signer = cert
        if usage.key_encipherment:
            encipherer = cert
    return CaBundle(ca=ca, signer=signer, encipherer=encipherer, all=certs,
                    kem_recipient_cert=_kem_recipient_cert(kem, ca))


def _kem_recipient_cert(candidates: list[x509.Certificate], ca: x509.Certificate) -> x509.Certificate | None:
    """The CA's ML-KEM recipient certificate (draft Section 3): issued by the CA itself and
    for key encipherment only (RFC 9935 section 4). A bundle whose ML-KEM certificate fails
    that is refused rather than used: someone may have put their own key there."""
    if not candidates:
        return None
    for cert in candidates:
        usage = _key_usage(cert)
        only_encipherment = usage is not None and usage.key_encipherment and not (
            usage.digital_signature or usage.content_commitment or usage.data_encipherment
            or usage.key_agreement or usage.key_cert_sign or usage.crl_sign
        )
        try:
            cert.verify_directly_issued_by(ca)
            issued_by_ca = True
        except Exception:  # InvalidSignature, mismatched issuer, unsupported key type
            issued_by_ca = False
        if only_encipherment and issued_by_ca:
            return cert
    raise ClientError("the ML-KEM certificate in GetCACert is not one the CA issued for key encipherment only")


def _family(cert: x509.Certificate) -> KeyFamily | None:
    try:
        return key_family(cert.public_key())
    except (ValueError, TypeError):  # a key type cryptography cannot load (e.g. ML-KEM-512)
        return None


def _looks_like_certificate(body: bytes) -> bool:
    try:
        x509.load_der_x509_certificate(body)
        return True
    except ValueError:
        return False


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def check_pin(bundle: CaBundle, pin: str | None) -> None:
    """Compare the CA's SHA-256 fingerprint (hex, colons allowed) in constant time."""
    if not pin:
        return
    wanted = pin.replace(":", "").lower().encode()
    if not any(hmac.compare_digest(fingerprint(c).encode(), wanted) for c in bundle.all):
        raise ClientError("the CA certificate does not match the pinned SHA-256 fingerprint")


def build_csr(
    key,
    subject: x509.Name,
    *,
    challenge: str | None = None,
    dns_names: list[str] = (),  # type: ignore[assignment]
    digest: hashes.HashAlgorithm | None = None,
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if challenge:
        # PKCS #9 challengePassword (RFC 8894 section 3.3.1), a PrintableString or UTF8String.
        builder = builder.add_attribute(oids.CHALLENGE_PASSWORD, challenge.encode("utf-8"))
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    family = key_family(key)
    # cryptography's stubs name the concrete hash classes sign() takes; callers pass one of them.
    algorithm: Any = None if family == KeyFamily.ML_DSA else (digest or hashes.SHA256())
    return builder.sign(key, algorithm)


def self_signed_certificate(key, subject: x509.Name, *, now: datetime.datetime, serial: int,
                            days: int = 30) -> x509.Certificate:
    """The transient certificate that signs an initial PKCSReq (RFC 8894 section 2.3)."""
    if not subject.rdns:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SCEP requester")])
    family = key_family(key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    return builder.sign(key, None if family == KeyFamily.ML_DSA else hashes.SHA256())


def poll_content(issuer: x509.Name, subject: x509.Name) -> bytes:
    """messageData of CertPoll / GetCertInitial: IssuerAndSubject (RFC 8894 section 3.3.3)."""
    return cms.encode(
        IssuerAndSubject(issuer=cms.as_tlv(issuer.public_bytes()), subject=cms.as_tlv(subject.public_bytes()))
    )


def issuer_and_serial_content(issuer: x509.Name, serial: int) -> bytes:
    """messageData of GetCert and GetCRL (RFC 8894 sections 3.3.4, 3.3.5)."""
    return cms.encode(cms.IssuerAndSerialNumber(issuer=cms.as_tlv(issuer.public_bytes()), serial_number=serial))


def build_pki_message(
    *,
    message_type: MessageType,
    transaction_id: str,
    sender_nonce: bytes,
    content: bytes,
    originator,
    cipher: ContentCipher,
    signer_key,
    signer_cert: x509.Certificate,
    digest: DigestAlgorithm,
    random_bytes: RandomBytes,
    extra_attributes: list[cms.Attribute] = (),  # type: ignore[assignment]
) -> bytes:
    envelope = enveloped.seal_envelope(content, originator, cipher, random_bytes)
    return signed.build_signed_data(
        content_type=oids.DATA,
        content=envelope,
        signer_key=signer_key,
        signer_cert=signer_cert,
        digest=digest,
        attributes=[*request_attributes(message_type, transaction_id, sender_nonce), *extra_attributes],
        certificates=[signer_cert],
    )


@dataclass
class CertRepResult:
    status: PkiStatus
    transaction_id: str
    fail_info: FailInfo | None = None
    fail_info_text: str | None = None
    certificates: list[x509.Certificate] = field(default_factory=list)
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)


def parse_cert_rep(
    body: bytes,
    *,
    bundle: CaBundle,
    transaction_id: str,
    sender_nonce: bytes,
    recipients: list,
    allow_legacy: bool = True,
) -> CertRepResult:
    """Verify a CertRep against the CA bundle, match it to our request, open its envelope."""
    try:
        message = signed.parse_signed_data(body)
    except (cms.Asn1Error, signed.SignedDataError) as exc:
        raise ClientError(f"reply is not a pkiMessage: {exc}") from None
    if len(message.signer_infos) != 1:
        raise ClientError("reply must have exactly one signer")
    signer_info = message.signer_infos[0]
    trusted = [bundle.signer, bundle.ca, *bundle.all]
    signer_cert = next(
        (
            c
            for c in trusted
            if (signer_info.serial == c.serial_number and signer_info.issuer_der == c.issuer.public_bytes())
            or (
                signer_info.subject_key_id is not None
                and signer_info.subject_key_id == signed.subject_key_identifier(c)
            )
        ),
        None,
    )
    if signer_cert is None:
        raise ClientError("reply is not signed by the CA or its RA")
    try:
        signed.verify_signer(message, signer_info, signer_cert.public_key(), allow_legacy=allow_legacy)
        attrs = scep_attributes(signer_info)
    except (signed.SignedDataError, ProtocolError) as exc:
        raise ClientError(f"reply signature or attributes invalid: {exc}") from None
    if attrs.message_type != MessageType.CERT_REP:
        raise ClientError(f"reply messageType is {attrs.message_type}, not CertRep")
    if attrs.transaction_id != transaction_id:
        raise ClientError("reply transactionID does not match the request")
    if attrs.recipient_nonce is None or not hmac.compare_digest(attrs.recipient_nonce, sender_nonce):
        raise ClientError("reply recipientNonce does not match our senderNonce")
    try:
        status = PkiStatus(attrs.pki_status)  # type: ignore[arg-type]
    except ValueError:
        raise ClientError(f"unknown pkiStatus {attrs.pki_status}") from None
    result = CertRepResult(status=status, transaction_id=transaction_id, attributes=attrs.extra)
    if status == PkiStatus.FAILURE:
        try:
            result.fail_info = FailInfo(attrs.fail_info)  # type: ignore[arg-type]
        except ValueError:
            result.fail_info = None
        result.fail_info_text = attrs.fail_info_text
        return result
    if status == PkiStatus.PENDING:
        return result
    if not message.content:
        raise ClientError("SUCCESS reply without a pkcsPKIEnvelope")
    try:
        opened = enveloped.open_envelope(message.content, recipients, allow_legacy=allow_legacy)
        inner = signed.parse_signed_data(opened.content)
    except (enveloped.EnvelopeError, cms.Asn1Error, signed.SignedDataError) as exc:
        raise ClientError(f"cannot open the reply's envelope: {exc}") from None
    result.certificates = inner.certificates
    result.crls = inner.crls
    return result


def certificate_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
