"""CMS structures (RFC 5652, RFC 5083, RFC 3211, RFC 9629) as declarative ASN.1 classes.

Built on `cryptography.hazmat.asn1`. That API has no `ANY DEFINED BY` and no OPTIONAL ANY, so an
AlgorithmIdentifier is kept as a whole TLV and taken apart by `parse_algorithm`, and each
RecipientInfo is kept as a TLV and decoded by its tag (`RecipientInfo.parse`).
Only DER is decoded here: `decode` runs BER input through `ber.to_der` first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.asn1 import TLV, Explicit, Implicit, SetOf

from . import ber, der

ObjectIdentifier = x509.ObjectIdentifier


class Asn1Error(ValueError):
    """A structure could not be decoded (a short, one-line reason)."""


def decode(cls: type, data: bytes):
    """Decode `data` as `cls`, accepting BER by normalising it to DER when needed."""
    try:
        return asn1.decode_der(cls, data)
    except ValueError:
        pass
    try:
        der = ber.to_der(data)
        return asn1.decode_der(cls, der)
    except (ValueError, TypeError) as exc:
        raise Asn1Error(f"not a valid {cls.__name__}: {_short(exc)}") from None


def decode_der(cls: type, der: bytes):
    """Decode strict DER (for values this process produced or already normalised)."""
    try:
        return asn1.decode_der(cls, der)
    except (ValueError, TypeError) as exc:
        raise Asn1Error(f"not a valid {cls.__name__}: {_short(exc)}") from None


def encode(value) -> bytes:
    return asn1.encode_der(value)


def tlv_bytes(tlv: TLV) -> bytes:
    """The whole DER encoding (tag, length, content) of a TLV field."""
    return asn1.encode_der(tlv)


def as_tlv(der: bytes) -> TLV:
    return asn1.decode_der(TLV, der)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


# --- AlgorithmIdentifier (RFC 5280 4.1.1.2), handled by hand because parameters is OPTIONAL ANY ---


@dataclass(frozen=True)
class Algorithm:
    oid: ObjectIdentifier
    parameters: bytes | None  # the DER of the parameters, or None when absent

    def encode(self) -> bytes:
        return encode_algorithm(self.oid, self.parameters)

    def tlv(self) -> TLV:
        return as_tlv(self.encode())


NULL = b"\x05\x00"


def parse_algorithm(tlv_or_der: TLV | bytes) -> Algorithm:
    der = tlv_or_der if isinstance(tlv_or_der, bytes | bytearray) else tlv_bytes(tlv_or_der)
    return _parse_algorithm_der(bytes(der))


# A message carries a handful of AlgorithmIdentifiers, nearly always the same few encodings:
# each is taken apart once. Bounded, and only valid ones are kept (errors are not cached).
@functools.lru_cache(maxsize=512)
def _parse_algorithm_der(der: bytes) -> Algorithm:
    try:
        tag, start, stop = ber.read_tlv(der)
        if tag != 0x30:
            raise Asn1Error("AlgorithmIdentifier is not a SEQUENCE")
        oid_tag, oid_start, oid_stop = ber.read_tlv(der, start)
        if oid_tag != 0x06:
            raise Asn1Error("AlgorithmIdentifier has no OID")
        oid = asn1.decode_der(ObjectIdentifier, der[start:oid_stop])
        if oid_stop == stop:
            return Algorithm(oid, None)
        _, _, param_stop = ber.read_tlv(der, oid_stop)
        if param_stop != stop:
            raise Asn1Error("AlgorithmIdentifier has trailing data")
        return Algorithm(oid, bytes(der[oid_stop:stop]))
    except (ber.BerError, ValueError) as exc:
        raise Asn1Error(f"bad AlgorithmIdentifier: {_short(exc)}") from None


def encode_algorithm(oid: ObjectIdentifier, parameters: bytes | None = None) -> bytes:
    # der.oid caches each OID's encoding: encode_der of an OID is ~1.3 us, three per CertRep.
    content = der.oid(oid) + (parameters or b"")
    return ber.encode_tlv(0x30, content)


def algorithm_tlv(oid: ObjectIdentifier, parameters: bytes | None = None) -> TLV:
    return as_tlv(encode_algorithm(oid, parameters))


# --- ContentInfo and SignedData (RFC 5652 sections 3 and 5) ---


@asn1.sequence
class ContentInfo:
    content_type: ObjectIdentifier
    content: Annotated[TLV, Explicit(0)]


@asn1.sequence
class Attribute:
    attr_type: ObjectIdentifier
    attr_values: SetOf[TLV]


@asn1.sequence
class IssuerAndSerialNumber:
    issuer: TLV  # Name, kept as its DER so it compares byte for byte with certificates
    serial_number: int


@asn1.sequence
class EncapsulatedContentInfo:
    e_content_type: ObjectIdentifier
    e_content: Annotated[bytes | None, Explicit(0)]


@asn1.sequence
class SignerInfo:
    version: int
    sid: IssuerAndSerialNumber | Annotated[bytes, Implicit(0)]  # or subjectKeyIdentifier
    digest_algorithm: TLV
    signed_attrs: Annotated[SetOf[Attribute] | None, Implicit(0)]
    signature_algorithm: TLV
    signature: bytes
    unsigned_attrs: Annotated[SetOf[Attribute] | None, Implicit(1)]


@asn1.sequence
class SignedData:
    version: int
    digest_algorithms: SetOf[TLV]
    encap_content_info: EncapsulatedContentInfo
    certificates: Annotated[SetOf[TLV] | None, Implicit(0)]
    crls: Annotated[SetOf[TLV] | None, Implicit(1)]
    signer_infos: SetOf[SignerInfo]


# --- EnvelopedData and AuthEnvelopedData (RFC 5652 section 6, RFC 5083) ---


@asn1.sequence
class OriginatorInfo:
    certs: Annotated[SetOf[TLV] | None, Implicit(0)]
    crls: Annotated[SetOf[TLV] | None, Implicit(1)]


@asn1.sequence
class EncryptedContentInfo:
    content_type: ObjectIdentifier
    content_encryption_algorithm: TLV
    # [0] IMPLICIT OCTET STRING: kept as a TLV because BER senders split it into segments
    # (ber.join_constructed_string). SCEP always carries it, so it is not OPTIONAL here.
    encrypted_content: TLV


@asn1.sequence
class EnvelopedData:
    version: int
    originator_info: Annotated[OriginatorInfo | None, Implicit(0)]
    recipient_infos: SetOf[TLV]
    encrypted_content_info: EncryptedContentInfo
    unprotected_attrs: Annotated[SetOf[Attribute] | None, Implicit(1)]


@asn1.sequence
class AuthEnvelopedData:
    version: int
    originator_info: Annotated[OriginatorInfo | None, Implicit(0)]
    recipient_infos: SetOf[TLV]
    auth_encrypted_content_info: EncryptedContentInfo
    auth_attrs: Annotated[SetOf[Attribute] | None, Implicit(1)]
    mac: bytes
    unauth_attrs: Annotated[SetOf[Attribute] | None, Implicit(2)]


@asn1.sequence
class GcmParameters:  # RFC 5084 section 3.2
    nonce: bytes
    icv_len: Annotated[int, asn1.Default(12)]


# --- RecipientInfo choices ---


@asn1.sequence
class KeyTransRecipientInfo:
    version: int
    rid: IssuerAndSerialNumber | Annotated[bytes, Implicit(0)]
    key_encryption_algorithm: TLV
    encrypted_key: bytes


@asn1.sequence
class AlgorithmWithParameters:
    """An AlgorithmIdentifier whose parameters are present (for IMPLICIT-tagged fields)."""

    algorithm: ObjectIdentifier
    parameters: TLV


@asn1.sequence
class HashAlgorithm:
    """An AlgorithmIdentifier whose parameters are absent or NULL (digests, HMAC PRFs)."""

    algorithm: ObjectIdentifier
    parameters: asn1.Null | None


@asn1.sequence
class PasswordRecipientInfo:  # RFC 3211, [3] IMPLICIT in RecipientInfo
    version: int
    key_derivation_algorithm: Annotated[AlgorithmWithParameters | None, Implicit(0)]
    key_encryption_algorithm: TLV
    encrypted_key: bytes


@asn1.sequence
class OtherRecipientInfo:  # [4] IMPLICIT in RecipientInfo
    ori_type: ObjectIdentifier
    ori_value: TLV


@asn1.sequence
class KEMRecipientInfo:  # RFC 9629 section 3
    version: int
    rid: IssuerAndSerialNumber | Annotated[bytes, Implicit(0)]
    kem: TLV
    kemct: bytes
    kdf: TLV
    kek_length: int
    ukm: Annotated[bytes | None, Explicit(0)]
    wrap: TLV
    encrypted_key: bytes


@asn1.sequence
class CMSORIforKEMOtherInfo:  # RFC 9629 section 5: the KDF's info input
    wrap: TLV
    kek_length: int
    ukm: Annotated[bytes | None, Explicit(0)]


@asn1.sequence
class PBKDF2Params:  # RFC 8018 A.2 (salt only in its `specified` form)
    salt: bytes
    iteration_count: int
    key_length: int | None
    prf: HashAlgorithm | None  # DEFAULT hmacWithSHA1 (RFC 8018): absent means SHA-1


@asn1.sequence
class CMSAlgorithmProtection:  # RFC 6211 section 2 (the module has IMPLICIT TAGS)
    digest_algorithm: HashAlgorithm
    signature_algorithm: Annotated[HashAlgorithm | None, Implicit(1)]
    mac_algorithm: Annotated[HashAlgorithm | None, Implicit(2)]


# --- keys (RFC 5958 OneAsymmetricKey = PKCS#8 v1/v2, RFC 5280 SubjectPublicKeyInfo, RFC 8018) ---


@asn1.sequence
class OneAsymmetricKey:  # RFC 5958 section 2 (PrivateKeyInfo is version 0 of it)
    version: int
    private_key_algorithm: TLV
    private_key: bytes
    attributes: Annotated[SetOf[TLV] | None, Implicit(0)]
    public_key: Annotated[asn1.BitString | None, Implicit(1)]


@asn1.sequence
class SubjectPublicKeyInfo:  # RFC 5280 section 4.1
    algorithm: TLV
    subject_public_key: asn1.BitString


@asn1.sequence
class EncryptedPrivateKeyInfo:  # RFC 5958 section 3
    encryption_algorithm: TLV
    encrypted_data: bytes


@asn1.sequence
class PBES2Params:  # RFC 8018 A.4
    key_derivation_func: TLV
    encryption_scheme: TLV


KTRI_TAG = 0x30
KARI_TAG = 0xA1
KEKRI_TAG = 0xA2
PWRI_TAG = 0xA3
ORI_TAG = 0xA4


def implicit_to_sequence(der: bytes) -> bytes:
    """Re-tag an [n] IMPLICIT SEQUENCE as a SEQUENCE so a sequence class can decode it."""
    return b"\x30" + der[1:]


def sequence_to_implicit(der: bytes, tag: int) -> bytes:
    return bytes((tag,)) + der[1:]


# --- KEM proof of possession (draft Section 7): RFC 9810, RFC 9883, RFC 2986 ---
#
# RFC 9810's module (PKIXCMP-2023, Appendix F) has EXPLICIT TAGS, so kemContext [0] is EXPLICIT.
#   PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String            -- RFC 9810 section 5.1.1


@asn1.sequence
class KemCiphertextInfo:  # RFC 9810 section 5.3.19.18 (and Appendix F)
    # KemCiphertextInfo ::= SEQUENCE {
    #    kem   AlgorithmIdentifier{KEM-ALGORITHM, {...}},
    #    ct    OCTET STRING }
    kem: TLV  # AlgorithmIdentifier, taken apart with parse_algorithm
    ct: bytes


@asn1.sequence
class KemOtherInfo:  # RFC 9810 section 5.1.3.4 (and Appendix F): the KDF's info input
    # KemOtherInfo ::= SEQUENCE {
    #    staticString      PKIFreeText,          -- CMP: "CMP-KEM"; SCEP (draft Section 7.2): "SCEP-KEM-POP"
    #    transactionID     OCTET STRING,
    #    kemContext    [0] OCTET STRING OPTIONAL }
    # SCEP's transactionID is a PrintableString: transactionID here holds its ASCII bytes (the
    # string's content octets, without tag and length). kemContext = SHA-256(DER(CSR)).
    static_string: Annotated[list[str], asn1.Size(1, None)]
    transaction_id: bytes
    kem_context: Annotated[bytes | None, Explicit(0)]


@asn1.sequence
class KemPopProof:  # draft Appendix A and Section 7.2, step 4: the kemPopProof attribute value (PROVISIONAL OID)
    # KemPopProof ::= SEQUENCE {
    #    macAlgorithm  AlgorithmIdentifier,     -- hmacWithSHA256 (RFC 8018 / RFC 4231)
    #    mac           OCTET STRING }            -- HMAC-SHA256(K, DER(CSR))
    mac_algorithm: TLV
    mac: bytes


@asn1.sequence
class CertificateParts:  # RFC 5280 section 4.1, for an OPTIONAL Certificate (no OPTIONAL TLV here)
    tbs_certificate: TLV
    signature_algorithm: TLV
    signature_value: asn1.BitString


@asn1.sequence
class PrivateKeyPossessionStatement:  # RFC 9883 section 3 (and its ASN.1 module)
    # id-at-statementOfPossession OBJECT IDENTIFIER ::= { 1 3 6 1 4 1 22112 2 1 }
    # PrivateKeyPossessionStatement ::= SEQUENCE {
    #    signer  IssuerAndSerialNumber,
    #    cert    Certificate OPTIONAL }
    signer: IssuerAndSerialNumber
    cert: CertificateParts | None


@asn1.sequence
class CertificationRequestInfo:  # RFC 2986 section 4.1 (the module has IMPLICIT TAGS)
    # CertificationRequestInfo ::= SEQUENCE {
    #    version       INTEGER { v1(0) },
    #    subject       Name,
    #    subjectPKInfo SubjectPublicKeyInfo{{ PKInfoAlgorithms }},
    #    attributes    [0] Attributes{{ CRIAttributes }} }      -- SET OF Attribute
    version: int
    subject: TLV  # Name, as its DER
    subject_pk_info: TLV  # SubjectPublicKeyInfo, as its DER
    attributes: Annotated[SetOf[Attribute], Implicit(0)]


@asn1.sequence
class CertificationRequest:  # RFC 2986 section 4.2
    # CertificationRequest ::= SEQUENCE {
    #    certificationRequestInfo CertificationRequestInfo,
    #    signatureAlgorithm AlgorithmIdentifier{{ SignatureAlgorithms }},
    #    signature          BIT STRING }
    certification_request_info: TLV  # kept whole: its exact DER is what the signature covers
    signature_algorithm: TLV
    signature: asn1.BitString


@asn1.sequence
class Extension:  # RFC 5280 section 4.1 (an extensionRequest value is SEQUENCE OF Extension)
    extn_id: ObjectIdentifier
    critical: Annotated[bool, asn1.Default(False)]
    extn_value: bytes
