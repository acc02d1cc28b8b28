"""PKCS #10 (RFC 2986) for a key that cannot sign: the request built and signed by another key,
taken apart, and checked with a given public key.

An ML-KEM key cannot sign its own CertificationRequest. Its CSR is signed by another key (the
SCEP pkiMessage signer's) and carries the RFC 9883 privateKeyPossessionStatement naming that
key's certificate (`possession`). Why by hand: cryptography's CertificateSigningRequestBuilder
always signs with the subject's own key, and ``is_signature_valid`` checks with the CSR's own
(here ML-KEM) key. `build_kem_csr` makes such a request, `verify_csr_with` checks its signature
with the public key it is given, `parse_csr` returns every part as the DER it arrived in (the
signature covers those bytes; nothing is re-encoded).

Errors are `CsrError` (see `errors` for the reasons).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.asn1 import PrintableString, SetOf
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509 import ObjectIdentifier

from ..asn1 import ber, cms, oids
from ..crypto.keys import KeyFamily, key_family
from ..crypto.registry import DIGESTS, DigestAlgorithm, UnknownAlgorithm, kem_for_key
from ..crypto.signing import ECDSA_BY_DIGEST, VERIFIERS, SignatureError, ml_dsa_oid, sign, verify
from .errors import CsrError
from .possession import build_possession_statement, read_possession_statement

__all__ = [
    "CsrView",
    "build_kem_csr",
    "csr_possession_statement",
    "parse_csr",
    "verify_csr_with",
]


@dataclass(frozen=True)
class CsrView:
    """A CertificationRequest taken apart, every part as the DER it arrived in."""

    info_der: bytes  # the CertificationRequestInfo the signature covers
    subject_der: bytes
    spki_der: bytes
    attributes: dict[ObjectIdentifier, list[bytes]]  # {oid: [value DER, ...]}
    signature_algorithm: cms.Algorithm
    signature: bytes


def parse_csr(csr_der: bytes) -> CsrView:
    """Take a DER CertificationRequest apart (CsrError "malformed" when it is not one)."""
    try:
        csr = cms.decode_der(cms.CertificationRequest, bytes(csr_der))
        info_der = cms.tlv_bytes(csr.certification_request_info)
        info = cms.decode_der(cms.CertificationRequestInfo, info_der)
        if info.version != 0:
            raise ValueError(f"CertificationRequestInfo version {info.version} is not v1(0)")
        if csr.signature.padding_bits() != 0:
            raise ValueError("the signature BIT STRING has unused bits")
        algorithm = cms.parse_algorithm(csr.signature_algorithm)
    except (cms.Asn1Error, TypeError, ValueError) as exc:
        raise CsrError(f"not a PKCS #10 CertificationRequest: {exc}") from None
    attributes: dict[ObjectIdentifier, list[bytes]] = {}
    for attr in info.attributes.as_list():
        attributes.setdefault(attr.attr_type, []).extend(cms.tlv_bytes(v) for v in attr.attr_values.as_list())
    return CsrView(
        info_der=info_der,
        subject_der=cms.tlv_bytes(info.subject),
        spki_der=cms.tlv_bytes(info.subject_pk_info),
        attributes=attributes,
        signature_algorithm=algorithm,
        signature=csr.signature.as_bytes(),
    )


def csr_possession_statement(csr: bytes | CsrView) -> tuple[bytes, int, x509.Certificate | None]:
    """`possession.read_possession_statement` of the CSR's one statementOfPossession value
    (CsrError "malformed" when there is none, or more than one: RFC 9883 defines a single-valued
    attribute)."""
    view = csr if isinstance(csr, CsrView) else parse_csr(csr)
    values = view.attributes.get(oids.PRIVATE_KEY_POSSESSION_STATEMENT, [])
    if len(values) != 1:
        raise CsrError(f"the CSR has {len(values)} privateKeyPossessionStatement values; it needs exactly one")
    return read_possession_statement(values[0])


_RSA_BY_DIGEST = {
    oids.SHA1: oids.SHA1_WITH_RSA,
    oids.SHA224: oids.SHA224_WITH_RSA,
    oids.SHA256: oids.SHA256_WITH_RSA,
    oids.SHA384: oids.SHA384_WITH_RSA,
    oids.SHA512: oids.SHA512_WITH_RSA,
}


def _x509_signature_algorithm(key: PrivateKeyTypes, digest: DigestAlgorithm) -> tuple[ObjectIdentifier, bytes | None]:
    """The X.509 signatureAlgorithm for a signing key (unlike a CMS SignerInfo, it names the digest:
    sha256WithRSAEncryption with NULL parameters, ecdsa-with-SHA256 and ML-DSA without)."""
    family = key_family(key)
    if family == KeyFamily.RSA:
        return _RSA_BY_DIGEST[digest.oid], cms.NULL
    if family == KeyFamily.EC:
        return ECDSA_BY_DIGEST[digest.oid], None
    if family == KeyFamily.ML_DSA:
        return ml_dsa_oid(key), None  # RFC 9881: pure ML-DSA, parameters absent
    raise ValueError(f"a {family} key cannot sign a CSR")


def _directory_string(text: str) -> bytes:
    # challengePassword is a DirectoryString (RFC 2985 5.4.1): PrintableString when it fits.
    try:
        return cms.encode(PrintableString(text))
    except (ValueError, TypeError):
        return cms.encode(text)  # UTF8String


def _attribute(oid: ObjectIdentifier, value_der: bytes) -> cms.Attribute:
    return cms.Attribute(attr_type=oid, attr_values=SetOf([cms.as_tlv(value_der)]))


def build_kem_csr(
    kem_public_key: PublicKeyTypes,
    subject: x509.Name | bytes,
    signer_key: PrivateKeyTypes,
    signer_cert: x509.Certificate,
    *,
    challenge_password: str | None = None,
    extensions: list[x509.Extension] | None = None,
    include_certificate: bool = True,
    digest: str = "sha256",
) -> bytes:
    """A DER PKCS #10 request for `kem_public_key` (ML-KEM), signed by `signer_key`, the private key
    of `signer_cert`, with attributes challengePassword (when given), extensionRequest (when
    `extensions` are given) and the RFC 9883 privateKeyPossessionStatement naming `signer_cert`.

    The result is checked before it is returned: cryptography must load it and its signature must
    verify with the signer certificate's public key (ValueError otherwise). `digest` is for RSA and
    ECDSA signers; ML-DSA signs the request as it is (RFC 9881)."""
    kem_for_key(kem_public_key)  # an ML-KEM public key this build supports
    subject_der = subject if isinstance(subject, (bytes, bytearray)) else subject.public_bytes()
    spki = kem_public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    attrs: list[cms.Attribute] = []
    if challenge_password is not None:
        if not challenge_password:
            raise ValueError("an empty challengePassword (RFC 2985: SIZE(1..ub-challenge-password))")
        attrs.append(_attribute(oids.CHALLENGE_PASSWORD, _directory_string(challenge_password)))
    if extensions:
        seq = b"".join(
            cms.encode(cms.Extension(extn_id=e.oid, critical=e.critical, extn_value=e.value.public_bytes()))
            for e in extensions
        )
        attrs.append(_attribute(oids.EXTENSION_REQUEST, ber.encode_tlv(0x30, seq)))
    attrs.append(_attribute(oids.PRIVATE_KEY_POSSESSION_STATEMENT,
                            build_possession_statement(signer_cert, include_certificate=include_certificate)))
    info_der = cms.encode(cms.CertificationRequestInfo(
        version=0,
        subject=cms.as_tlv(bytes(subject_der)),
        subject_pk_info=cms.as_tlv(spki),
        attributes=SetOf(attrs),
    ))
    digest_entry = DIGESTS.by_name(digest)
    sig_oid, sig_params = _x509_signature_algorithm(signer_key, digest_entry)
    signature = sign(signer_key, info_der, digest_entry)
    csr_der = cms.encode(cms.CertificationRequest(
        certification_request_info=cms.as_tlv(info_der),
        signature_algorithm=cms.algorithm_tlv(sig_oid, sig_params),
        signature=asn1.BitString(signature, 0),
    ))
    x509.load_der_x509_csr(csr_der)  # cryptography must read what we send
    try:
        verify_csr_with(csr_der, signer_cert.public_key())
    except CsrError as exc:
        raise ValueError(f"the CSR does not verify with the signer certificate's key: {exc}") from None
    return csr_der


def verify_csr_with(csr_der: bytes | CsrView, public_key: PublicKeyTypes) -> None:
    """Check the CSR's signature with `public_key` (the signer certificate's, not the CSR's own).

    CsrError: "malformed" (not a CSR), "algorithm" (a signatureAlgorithm that is not an X.509
    signature algorithm we verify, or does not fit the key), "signature" (it does not verify)."""
    view = csr_der if isinstance(csr_der, CsrView) else parse_csr(csr_der)
    algorithm = view.signature_algorithm
    entry = VERIFIERS.get(algorithm.oid)
    if entry is None or entry.legacy:
        raise CsrError(f"CSR signature algorithm {algorithm.oid.dotted_string} is not supported", "algorithm")
    if entry.digest_oid is None and entry.family != KeyFamily.ML_DSA:
        # rsaEncryption / ecPublicKey name a key, not a signature algorithm (fine in a CMS
        # SignerInfo, which carries the digest apart; not in an X.509 signatureAlgorithm).
        raise CsrError(f"{entry.name} is not an X.509 signature algorithm", "algorithm")
    allowed = (None, cms.NULL) if entry.family == KeyFamily.RSA else (None,)
    if algorithm.parameters not in allowed:
        raise CsrError(f"{entry.name} with unexpected parameters", "algorithm")
    try:
        family = key_family(public_key)
    except ValueError as exc:
        raise CsrError(str(exc), "algorithm") from None
    if family != entry.family or (family == KeyFamily.ML_DSA and ml_dsa_oid(public_key) != entry.oid):
        raise CsrError(f"CSR signature algorithm {entry.name} does not fit the {family} key", "algorithm")
    digest = DIGESTS.by_oid(entry.digest_oid or oids.SHA512)
    try:
        verify(public_key, algorithm.oid, digest, view.signature, view.info_der)
    except UnknownAlgorithm as exc:  # pragma: no cover - filtered above
        raise CsrError(str(exc), "algorithm") from None
    except (SignatureError, ValueError):
        # SignatureError: the signature is wrong; ValueError: it is not even well-formed (e.g. an
        # ECDSA signature that is not a DER Ecdsa-Sig-Value). Either way: it does not verify.
        raise CsrError("the CSR signature does not verify with this key", "signature") from None
