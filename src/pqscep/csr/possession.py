"""The RFC 9883 privateKeyPossessionStatement: build it, read it, and the certificate issuer
Name it carries.

A key that cannot sign (ML-KEM) gets a CSR signed by another key; the statement, a CSR attribute,
names the certificate of that other key by IssuerAndSerialNumber and may carry the certificate
itself. The CA checks the CSR signature with that certificate's key
(`pkcs10.verify_csr_with`) and that the certificate is the one it expects.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..asn1 import ber, cms
from .errors import CsrError

__all__ = ["build_possession_statement", "certificate_issuer_der", "read_possession_statement"]


def _certificate_parts(cert: x509.Certificate | bytes) -> tuple[bytes, cms.CertificateParts]:
    der = cert if isinstance(cert, (bytes, bytearray)) else cert.public_bytes(serialization.Encoding.DER)
    return bytes(der), cms.decode_der(cms.CertificateParts, bytes(der))


def certificate_issuer_der(cert: x509.Certificate | bytes) -> bytes:
    """The issuer Name exactly as the certificate's tbsCertificate carries it (not re-encoded)."""
    # Walked by hand rather than cert.issuer.public_bytes(), which re-encodes the parsed Name:
    # an IssuerAndSerialNumber is matched on the bytes the issuer wrote.
    _, parts = _certificate_parts(cert)
    tbs = cms.tlv_bytes(parts.tbs_certificate)
    _, pos, end = ber.read_tlv(tbs)
    tag, _, stop = ber.read_tlv(tbs, pos)
    if tag == 0xA0:  # [0] EXPLICIT version
        pos = stop
    for _skip in ("serialNumber", "signature"):
        _, _, pos = ber.read_tlv(tbs, pos)
    tag, _, stop = ber.read_tlv(tbs, pos)
    if tag != 0x30 or stop > end:
        raise ValueError("tbsCertificate has no issuer Name where RFC 5280 puts it")
    return tbs[pos:stop]


def build_possession_statement(signer_cert: x509.Certificate, *, include_certificate: bool = True) -> bytes:
    """DER(PrivateKeyPossessionStatement { signer IssuerAndSerialNumber, cert }) (RFC 9883) for the
    certificate whose key signs the CSR (the pkiMessage signer's); `cert` is left out on request."""
    _, parts = _certificate_parts(signer_cert)
    return cms.encode(cms.PrivateKeyPossessionStatement(
        signer=cms.IssuerAndSerialNumber(
            issuer=cms.as_tlv(certificate_issuer_der(signer_cert)),
            serial_number=signer_cert.serial_number,
        ),
        cert=parts if include_certificate else None,
    ))


def read_possession_statement(der: bytes) -> tuple[bytes, int, x509.Certificate | None]:
    """(issuer Name DER, serial number, certificate or None) of a statementOfPossession value.

    CsrError "malformed" when it is not one, and when its certificate is not the one `signer`
    names: the two would name different keys and only one of them signed the CSR."""
    try:
        statement = cms.decode_der(cms.PrivateKeyPossessionStatement, bytes(der))
        issuer = cms.tlv_bytes(statement.signer.issuer)
        tag, _, stop = ber.read_tlv(issuer)
        if tag != 0x30 or stop != len(issuer):
            raise ValueError("signer issuer is not a Name")
    except (cms.Asn1Error, ber.BerError, TypeError, ValueError) as exc:
        raise CsrError(f"privateKeyPossessionStatement is malformed: {exc}") from None
    serial = statement.signer.serial_number
    if statement.cert is None:
        return issuer, serial, None
    try:
        cert = x509.load_der_x509_certificate(cms.encode(statement.cert))
        cert_issuer = certificate_issuer_der(cert)
    except (ValueError, ber.BerError, cms.Asn1Error) as exc:
        raise CsrError(f"privateKeyPossessionStatement cert is not a certificate: {exc}") from None
    if cert.serial_number != serial or cert_issuer != issuer:
        raise CsrError("privateKeyPossessionStatement cert is not the certificate its signer names")
    return issuer, serial, cert
