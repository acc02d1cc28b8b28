"""SCEP message vocabulary (RFC 8894 section 3): message types, statuses, failInfo values, the
SCEP signed attributes, and the small structures carried as messageData.

Attribute values are parsed here from the `{oid: [DER values]}` maps of `cms.signed`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.asn1 import TLV, PrintableString, sequence

from ..asn1 import cms, oids
from ..cms.signed import SignerInfoView, attribute

__all__ = [
    "FAIL_INFO_NAMES",
    "MESSAGE_TYPE_NAMES",
    "FailInfo",
    "IssuerAndSubject",
    "MessageType",
    "PkiStatus",
    "ScepAttributes",
    "ProtocolError",
    "scep_attributes",
]


class MessageType(enum.IntEnum):
    """RFC 8894 section 3.2.1.2 (the names of draft-nourse in comments)."""

    CERT_REP = 3
    RENEWAL_REQ = 17
    PKCS_REQ = 19
    CERT_POLL = 20  # GetCertInitial in draft-nourse
    GET_CERT = 21
    GET_CRL = 22


class PkiStatus(enum.IntEnum):
    SUCCESS = 0
    FAILURE = 2
    PENDING = 3


class FailInfo(enum.IntEnum):
    """RFC 8894 section 3.2.1.4."""

    BAD_ALG = 0
    BAD_MESSAGE_CHECK = 1
    BAD_REQUEST = 2
    BAD_TIME = 3
    BAD_CERT_ID = 4


# The names RFC 8894 gives these values, for logs, the inspector and the client's messages.
MESSAGE_TYPE_NAMES = {
    MessageType.CERT_REP: "CertRep",
    MessageType.RENEWAL_REQ: "RenewalReq",
    MessageType.PKCS_REQ: "PKCSReq",
    MessageType.CERT_POLL: "CertPoll",
    MessageType.GET_CERT: "GetCert",
    MessageType.GET_CRL: "GetCRL",
}
FAIL_INFO_NAMES = {
    FailInfo.BAD_ALG: "badAlg",
    FailInfo.BAD_MESSAGE_CHECK: "badMessageCheck",
    FailInfo.BAD_REQUEST: "badRequest",
    FailInfo.BAD_TIME: "badTime",
    FailInfo.BAD_CERT_ID: "badCertId",
}


class ProtocolError(ValueError):
    """A message that breaks the SCEP rules (a short, one-line reason)."""


@sequence
class IssuerAndSubject:  # RFC 8894 section 3.3.3: the messageData of CertPoll
    issuer: TLV
    subject: TLV


@dataclass(frozen=True)
class ScepAttributes:
    message_type: int | None
    transaction_id: str | None
    sender_nonce: bytes | None
    recipient_nonce: bytes | None
    pki_status: int | None
    fail_info: int | None
    fail_info_text: str | None
    extra: dict  # every other signed attribute, {oid: [DER values]}


_SCEP_OIDS = {
    oids.SCEP_MESSAGE_TYPE,
    oids.SCEP_TRANSACTION_ID,
    oids.SCEP_SENDER_NONCE,
    oids.SCEP_RECIPIENT_NONCE,
    oids.SCEP_PKI_STATUS,
    oids.SCEP_FAIL_INFO,
    oids.SCEP_FAIL_INFO_TEXT,
    oids.CONTENT_TYPE,
    oids.MESSAGE_DIGEST,
    oids.SIGNING_TIME,
    oids.SCEP_RESPONSE_KEY,
}


def read_printable(value: bytes | None, what: str) -> str | None:
    if value is None:
        return None
    # RFC 8894 says PrintableString; some clients send UTF8String or IA5String, so accept any
    # string type whose content is printable ASCII.
    if value[0] not in (0x13, 0x0C, 0x16):
        raise ProtocolError(f"{what} is not a string")
    try:
        text = cms.decode_der(TLV, value).data.tobytes().decode("ascii")
    except (UnicodeDecodeError, cms.Asn1Error):
        raise ProtocolError(f"{what} is not ASCII") from None
    if not text.isprintable():
        raise ProtocolError(f"{what} holds control characters")
    return text


def read_integer_string(value: bytes | None, what: str) -> int | None:
    text = read_printable(value, what)
    if text is None:
        return None
    if not text.isdigit() or len(text) > 3:
        raise ProtocolError(f"{what} {text!r} is not a number")
    return int(text)


def read_octets(value: bytes | None, what: str) -> bytes | None:
    if value is None:
        return None
    try:
        return cms.decode_der(bytes, value)
    except cms.Asn1Error:
        raise ProtocolError(f"{what} is not an OCTET STRING") from None


def scep_attributes(signer: SignerInfoView) -> ScepAttributes:
    get = signer.single
    text = get(oids.SCEP_FAIL_INFO_TEXT)
    return ScepAttributes(
        message_type=read_integer_string(get(oids.SCEP_MESSAGE_TYPE), "messageType"),
        transaction_id=read_printable(get(oids.SCEP_TRANSACTION_ID), "transactionID"),
        sender_nonce=read_octets(get(oids.SCEP_SENDER_NONCE), "senderNonce"),
        recipient_nonce=read_octets(get(oids.SCEP_RECIPIENT_NONCE), "recipientNonce"),
        pki_status=read_integer_string(get(oids.SCEP_PKI_STATUS), "pkiStatus"),
        fail_info=read_integer_string(get(oids.SCEP_FAIL_INFO), "failInfo"),
        fail_info_text=cms.decode_der(str, text) if text is not None and text[0] == 0x0C else None,
        extra={k: v for k, v in signer.signed_attrs.items() if k not in _SCEP_OIDS},
    )


def printable_attribute(oid: x509.ObjectIdentifier, text: str) -> cms.Attribute:
    return attribute(oid, cms.encode(PrintableString(text)))


def octets_attribute(oid: x509.ObjectIdentifier, value: bytes) -> cms.Attribute:
    return attribute(oid, cms.encode(value))


def utf8_attribute(oid: x509.ObjectIdentifier, text: str) -> cms.Attribute:
    return attribute(oid, cms.encode(text))


def request_attributes(message_type: MessageType, transaction_id: str, sender_nonce: bytes) -> list[cms.Attribute]:
    return [
        printable_attribute(oids.SCEP_MESSAGE_TYPE, str(int(message_type))),
        printable_attribute(oids.SCEP_TRANSACTION_ID, transaction_id),
        octets_attribute(oids.SCEP_SENDER_NONCE, sender_nonce),
    ]


def response_key_attribute(public_key) -> cms.Attribute:
    """The responseKey signed attribute (draft Section 6.2, PROVISIONAL OID): the SPKI of an
    ML-KEM key the requester holds, for a requester whose own key cannot decrypt the reply."""
    from cryptography.hazmat.primitives import serialization

    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return attribute(oids.SCEP_RESPONSE_KEY, spki)
