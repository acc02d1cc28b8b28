"""CMS SignedData (RFC 5652 section 5): parse, verify, build; and certs-only bundles.

Recipes on top of `asn1.cms` (structures) and `crypto.signing` (primitives). Signed attributes
are handled as `{oid: [DER of each value]}`; the signature covers the DER of the SET OF
attributes (RFC 5652 section 5.4), which `asn1.cms.decode` has already put in DER order.
"""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.asn1 import SetOf
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ObjectIdentifier

from ..asn1 import ber, cms, der, oids
from ..crypto import signing
from ..crypto.registry import DIGESTS, DigestAlgorithm, UnknownAlgorithm

__all__ = [
    "SignedMessage",
    "SignerInfoView",
    "SignedDataError",
    "parse_signed_data",
    "build_signed_data",
    "build_certs_only",
    "attribute",
    "subject_key_identifier",
]


class SignedDataError(ValueError):
    """A SignedData that cannot be used. `reason` says why, for the failInfo it maps to:
    "malformed" (badRequest), "algorithm" (unsupported or not allowed: badAlg) or "signature"
    (it does not verify: badMessageCheck)."""

    def __init__(self, message: str, reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason


Attributes = dict[ObjectIdentifier, list[bytes]]


@dataclass
class SignerInfoView:
    raw: cms.SignerInfo
    issuer_der: bytes | None
    serial: int | None
    subject_key_id: bytes | None
    digest_algorithm: cms.Algorithm
    signature_algorithm: cms.Algorithm
    signature: bytes
    signed_attrs: Attributes
    signed_attrs_der: bytes | None  # DER of the SET OF Attribute, which the signature covers

    def single(self, oid: ObjectIdentifier) -> bytes | None:
        """The DER of the single value of attribute `oid`, None if absent; error if repeated."""
        values = self.signed_attrs.get(oid)
        if values is None:
            return None
        if len(values) != 1:
            raise SignedDataError(f"attribute {oid.dotted_string} must have exactly one value")
        return values[0]


@dataclass
class SignedMessage:
    content_type: ObjectIdentifier
    content: bytes | None
    certificates: list[x509.Certificate]
    crls: list[x509.CertificateRevocationList]
    signer_infos: list[SignerInfoView]
    raw_certificates: list[bytes] = field(default_factory=list)

    def signer_certificate(self, signer: SignerInfoView) -> x509.Certificate | None:
        for cert in self.certificates:
            if signer.serial is not None:
                if cert.serial_number == signer.serial and cert.issuer.public_bytes() == signer.issuer_der:
                    return cert
            elif signer.subject_key_id is not None and subject_key_identifier(cert) == signer.subject_key_id:
                return cert
        return None

    def verify(self, signer: SignerInfoView, cert: x509.Certificate, *, allow_legacy: bool = False) -> DigestAlgorithm:
        """Verify `signer` with `cert`'s key; return the digest algorithm used."""
        return verify_signer(self, signer, cert.public_key(), allow_legacy=allow_legacy)


def subject_key_identifier(cert: x509.Certificate) -> bytes:
    """The certificate's SKI extension, or the RFC 5280 4.2.1.2 method-1 value when absent."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _attributes(attrs: SetOf | None) -> tuple[Attributes, bytes | None]:
    if attrs is None:
        return {}, None
    result: Attributes = {}
    for attr in attrs.as_list():
        if attr.attr_type in result:
            raise SignedDataError(f"attribute {attr.attr_type.dotted_string} appears twice")
        result[attr.attr_type] = [cms.tlv_bytes(v) for v in attr.attr_values.as_list()]
    # The SET OF encoded again, with the universal SET tag: what the signature covers (RFC 5652
    # 5.4). The decoder took strict DER, so these are the very bytes that arrived.
    return result, cms.encode(attrs)


# What cryptography raises for a certificate or CSR that does not parse, at load or when one
# of its fields is first read (it parses them lazily).
X509_PARSE_ERRORS = (ValueError, x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def _load_certificates(items) -> tuple[list[x509.Certificate], list[bytes]]:
    certs, raws = [], []
    for tlv in items.as_list() if items is not None else []:
        der = cms.tlv_bytes(tlv)
        if der[0] != 0x30:  # other CertificateChoices (attribute certs, other): not used by SCEP
            continue
        try:
            cert = x509.load_der_x509_certificate(der)
            _check_parses(cert)
        except X509_PARSE_ERRORS as exc:
            raise SignedDataError(f"a certificate in the SignedData does not parse: {str(exc)[:120]}") from None
        certs.append(cert)
        raws.append(der)
    return certs, raws


def _check_parses(cert: x509.Certificate) -> None:
    """cryptography parses a certificate's fields only when they are first read, so a damaged
    issuer, subject, validity or extension would otherwise raise deep inside the policy code.
    Read them here, where the error can still become a clear answer (ValueError)."""
    cert.issuer  # noqa: B018 - read for the check
    cert.subject  # noqa: B018
    cert.not_valid_before_utc  # noqa: B018
    cert.not_valid_after_utc  # noqa: B018
    cert.extensions  # noqa: B018


def parse_signed_data(data: bytes) -> SignedMessage:
    """Decode a ContentInfo holding a SignedData (BER accepted)."""
    content_info = cms.decode(cms.ContentInfo, data)
    if content_info.content_type != oids.SIGNED_DATA:
        raise SignedDataError(f"content type is {content_info.content_type.dotted_string}, not signedData")
    body = cms.tlv_bytes(content_info.content)
    try:
        signed = cms.decode_der(cms.SignedData, body)
    except cms.Asn1Error:
        # micromdm's scepserver lists certificates out of DER order; the schema-less BER
        # normaliser cannot know [0]/[1] are SET OFs, so sort them here and try once more.
        signed = cms.decode_der(cms.SignedData, _sort_implicit_sets(body))
    certs, raws = _load_certificates(signed.certificates)
    crls = []
    for tlv in signed.crls.as_list() if signed.crls is not None else []:
        try:
            crls.append(x509.load_der_x509_crl(cms.tlv_bytes(tlv)))
        except ValueError:
            raise SignedDataError("a CRL in the SignedData does not parse") from None
    signers = []
    for si in signed.signer_infos.as_list():
        attrs, attrs_der = _attributes(si.signed_attrs)
        if isinstance(si.sid, bytes):
            issuer_der, serial, ski = None, None, si.sid
        else:
            issuer_der, serial, ski = cms.tlv_bytes(si.sid.issuer), si.sid.serial_number, None
        signers.append(
            SignerInfoView(
                raw=si,
                issuer_der=issuer_der,
                serial=serial,
                subject_key_id=ski,
                digest_algorithm=cms.parse_algorithm(si.digest_algorithm),
                signature_algorithm=cms.parse_algorithm(si.signature_algorithm),
                signature=si.signature,
                signed_attrs=attrs,
                signed_attrs_der=attrs_der,
            )
        )
    encap = signed.encap_content_info
    return SignedMessage(
        content_type=encap.e_content_type,
        content=encap.e_content,
        certificates=certs,
        crls=crls,
        signer_infos=signers,
        raw_certificates=raws,
    )


def _sort_implicit_sets(signed_der: bytes) -> bytes:
    """SignedData with its [0] IMPLICIT certificates and [1] IMPLICIT crls SET OFs sorted
    (X.690 11.6); anything unreadable comes back unchanged for the decoder to refuse."""
    try:
        tag, start, stop = ber.read_tlv(signed_der)
        fields, pos = [], start
        while pos < stop:
            field_tag, field_start, field_stop = ber.read_tlv(signed_der, pos)
            if field_tag in (0xA0, 0xA1):
                elements, item = [], field_start
                while item < field_stop:
                    _, _, item_stop = ber.read_tlv(signed_der, item)
                    elements.append(signed_der[item:item_stop])
                    item = item_stop
                fields.append(ber.encode_tlv(field_tag, b"".join(sorted(elements))))
            else:
                fields.append(signed_der[pos:field_stop])
            pos = field_stop
        return ber.encode_tlv(tag, b"".join(fields))
    except ber.BerError:
        return signed_der


def normalise(data: bytes) -> bytes:
    """A ContentInfo as DER, with a SignedData's certificate and CRL sets sorted too; input
    that is not BER comes back unchanged (for `pqscep inspect`, which shows what it can)."""
    try:
        der = ber.to_der(data)
        tag, start, stop = ber.read_tlv(der)
        _, _, oid_stop = ber.read_tlv(der, start)
        wrap_tag, wrap_start, wrap_stop = ber.read_tlv(der, oid_stop)
    except ber.BerError:
        return data
    if tag != 0x30 or wrap_tag != 0xA0 or der[start:oid_stop] != cms.encode(oids.SIGNED_DATA):
        return der
    inner = _sort_implicit_sets(der[wrap_start:wrap_stop])
    return ber.encode_tlv(0x30, der[start:oid_stop] + ber.encode_tlv(0xA0, inner))


def verify_signer(
    message: SignedMessage, signer: SignerInfoView, public_key, *, allow_legacy: bool = False
) -> DigestAlgorithm:
    try:
        digest = DIGESTS.by_oid(signer.digest_algorithm.oid, allow_legacy=allow_legacy)
    except UnknownAlgorithm as exc:
        raise SignedDataError(str(exc), "algorithm") from None
    if signer.signed_attrs_der is None:
        # RFC 8894 section 3.2.1: SCEP messages always carry signed attributes.
        raise SignedDataError("SignerInfo has no signed attributes")
    content_type = signer.single(oids.CONTENT_TYPE)
    if content_type is None or cms.decode_der(ObjectIdentifier, content_type) != message.content_type:
        raise SignedDataError("contentType attribute missing or different from the content's type")
    message_digest = signer.single(oids.MESSAGE_DIGEST)
    if message_digest is None:
        raise SignedDataError("messageDigest attribute missing")
    expected = digest.digest(message.content or b"")
    if not hmac.compare_digest(cms.decode_der(bytes, message_digest), expected):
        raise SignedDataError("messageDigest does not match the content", "signature")
    protection = signer.single(oids.CMS_ALGORITHM_PROTECTION)
    if protection is not None:
        _check_algorithm_protection(protection, signer)
    try:
        signing.verify(
            public_key,
            signer.signature_algorithm.oid,
            digest,
            signer.signature,
            signer.signed_attrs_der,
            allow_legacy=allow_legacy,
        )
    except signing.SignatureError as exc:
        raise SignedDataError(str(exc), exc.reason) from None
    except UnknownAlgorithm as exc:
        raise SignedDataError(str(exc), "algorithm") from None
    return digest


def _check_algorithm_protection(value_der: bytes, signer: SignerInfoView) -> None:
    """RFC 6211 section 3: the protected algorithms must equal the SignerInfo's."""
    try:
        protected = cms.decode_der(cms.CMSAlgorithmProtection, value_der)
    except cms.Asn1Error as exc:
        raise SignedDataError(f"CMSAlgorithmProtection attribute: {exc}", "malformed") from None
    signature = protected.signature_algorithm
    if (
        protected.digest_algorithm.algorithm != signer.digest_algorithm.oid
        or signature is None
        or signature.algorithm != signer.signature_algorithm.oid
    ):
        raise SignedDataError("CMSAlgorithmProtection does not match the SignerInfo's algorithms", "signature")


def attribute(oid: ObjectIdentifier, *values_der: bytes) -> cms.Attribute:
    return cms.Attribute(attr_type=oid, attr_values=SetOf([cms.as_tlv(v) for v in values_der]))


def attribute_der(oid: ObjectIdentifier, *values_der: bytes) -> bytes:
    """The DER of an Attribute (what `attribute` gives, encoded), straight from its values."""
    return der.sequence(der.oid(oid), der.set_of(values_der))


@functools.lru_cache(maxsize=64)
def certificate_der(cert: x509.Certificate) -> bytes:
    """`cert`'s DER. cryptography encodes the parsed certificate again on every
    `public_bytes` call; the CA's and RA's certificates go into every CertRep, and a newly
    issued one is both stored and sent. Certificates hash and compare by their DER."""
    return cert.public_bytes(serialization.Encoding.DER)


def build_signed_data(
    *,
    content_type: ObjectIdentifier,
    content: bytes | None,
    signer_key,
    signer_cert: x509.Certificate,
    digest: DigestAlgorithm,
    attributes: list[cms.Attribute | bytes],
    certificates: list[x509.Certificate] | None = None,
) -> bytes:
    """A ContentInfo(SignedData) with one SignerInfo over `content`, DER encoded.

    With `content` None the eContent is absent and messageDigest covers the empty string (what
    a SCEP CertRep PENDING or FAILURE carries, RFC 8894 section 3.3.2).

    contentType and messageDigest are added here; `attributes` holds the rest, each a
    `cms.Attribute` or the DER of one (`attribute_der`). ML-DSA signers also get
    CMSAlgorithmProtection (RFC 9882 section 3.4 recommends it).

    Written with the asn1.der writers (the layout of cms.SignedData and cms.SignerInfo, which
    tests check it against): this runs for every CertRep and every request.
    """
    sig_oid, sig_params, digest = signing.signature_algorithm_for(signer_key, digest)
    digest_alg = cms.encode_algorithm(digest.oid, None)
    attrs = [
        attribute_der(oids.CONTENT_TYPE, der.oid(content_type)),
        attribute_der(oids.MESSAGE_DIGEST, der.octet_string(digest.digest(content or b""))),
        *(a if isinstance(a, bytes) else cms.encode(a) for a in attributes),
    ]
    if sig_oid in (oids.ML_DSA_44, oids.ML_DSA_65, oids.ML_DSA_87):
        attrs.append(attribute_der(oids.CMS_ALGORITHM_PROTECTION, _protection_der(digest.oid, sig_oid)))
    # RFC 5652 5.4: the signature covers the DER of the SET OF (tag 0x31); the SignerInfo
    # carries the same content octets under [0] IMPLICIT.
    attrs_content = b"".join(sorted(attrs))
    signature = signing.sign(signer_key, ber.encode_tlv(0x31, attrs_content), digest)
    signer_info = der.sequence(
        der.integer(1),
        der.issuer_and_serial(signer_cert),
        digest_alg,
        der.context(0, attrs_content),
        cms.encode_algorithm(sig_oid, sig_params),
        der.octet_string(signature),
    )
    certs = certificates if certificates is not None else [signer_cert]
    encap = der.oid(content_type) + (b"" if content is None else der.context(0, der.octet_string(content)))
    signed = der.sequence(
        der.integer(1),
        der.set_of([digest_alg]),
        der.sequence(encap),
        _choices(0, [certificate_der(c) for c in certs]),
        der.set_of([signer_info]),
    )
    return _content_info(oids.SIGNED_DATA, signed)


def _protection_der(digest_oid: ObjectIdentifier, sig_oid: ObjectIdentifier) -> bytes:
    return cms.encode(
        cms.CMSAlgorithmProtection(
            digest_algorithm=cms.HashAlgorithm(algorithm=digest_oid, parameters=None),
            signature_algorithm=cms.HashAlgorithm(algorithm=sig_oid, parameters=None),
            mac_algorithm=None,
        )
    )


def build_certs_only(
    certificates: list[x509.Certificate], crls: list[x509.CertificateRevocationList] | None = None
) -> bytes:
    """A degenerate certs-only SignedData (RFC 8894 section 3.4; RFC 5652 section 5.2)."""
    signed = der.sequence(
        der.integer(1),
        der.set_of([]),
        der.sequence(der.oid(oids.DATA)),
        _choices(0, [certificate_der(c) for c in certificates]),
        _choices(1, [c.public_bytes(serialization.Encoding.DER) for c in crls or ()]),
        der.set_of([]),
    )
    return _content_info(oids.SIGNED_DATA, signed)


def _choices(number: int, encodings: list[bytes]) -> bytes:
    """SignedData's certificates [0] or crls [1]: an IMPLICIT SET OF in DER order, absent
    when empty (RFC 5652 5.1)."""
    return der.context(number, b"".join(sorted(encodings))) if encodings else b""


def _content_info(content_type: ObjectIdentifier, content_der: bytes) -> bytes:
    return der.sequence(der.oid(content_type), der.context(0, content_der))
