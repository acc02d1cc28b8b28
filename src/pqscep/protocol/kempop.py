"""Proof of possession for ML-KEM keys (design section 5): the sans-IO core.

No I/O, no clock, no randomness of its own: the only random draw is the one cryptography's ML-KEM
``encapsulate`` makes inside `issue_challenge`. Keeping the shared secret under the
transactionID, expiring it and spending it after the first proof is the caller's job (the
server's challenge store); this module only computes and checks.

Challenge-response (design 5 a), RFC 9810's direct method with a MAC instead of returning a
decrypted value, so the CA is never a decryption oracle)::

    CA      (ss, ct) = Encapsulate(ek of the CSR)
            kemPopChallenge = DER(KemCiphertextInfo { kem, ct })          -- RFC 9810 5.3.19.18
    client  ss = Decapsulate(dk, ct)
            K = HKDF-SHA256(IKM = ss, salt = empty, L = 32,
                            info = DER(KemOtherInfo { staticString {"SCEP-KEM-POP"},
                                                      transactionID (ASCII bytes),
                                                      kemContext [0] SHA-256(DER(CSR)) }))
                                                                          -- RFC 9810 5.1.3.4
            kemPopProof = DER(KemPopProof { hmacWithSHA256, HMAC-SHA256(K, DER(CSR)) })
    CA      recompute the MAC from its ss and compare in constant time

"DER(CSR)" is the exact CertificationRequest octets the PKCSReq carried: both sides hash the
bytes they have, nothing is re-encoded.

The CSR for an ML-KEM key is signed by another key (the pkiMessage signer's) and carries the
RFC 9883 privateKeyPossessionStatement naming that signer's certificate: `build_kem_csr` makes
one (cryptography's CertificateSigningRequestBuilder always signs with the subject's own key),
`verify_csr_with` checks its signature with a given public key (``is_signature_valid`` would use
the CSR's own, ML-KEM, key).

Errors are `PopError(fail_info, text)` with RFC 8894 failInfo values: badRequest for malformed
input, badAlg for an algorithm this side does not implement, badMessageCheck for a MAC or a
CSR signature that does not verify (the text never says where it differs).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.asn1 import PrintableString, SetOf
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ObjectIdentifier

from ..asn1 import ber, cms, oids
from ..cms.signed import attribute
from ..crypto.keys import key_family
from ..crypto.registry import DIGESTS, KDFS, KEMS, DigestAlgorithm, KemAlgorithm, UnknownAlgorithm, kem_for_key
from ..crypto.signing import ECDSA_BY_DIGEST, VERIFIERS, SignatureError, ml_dsa_oid, sign, verify
from ..crypto.spki import public_key_from_spki
from .messages import FailInfo

__all__ = [
    "KemChallenge",
    "PopError",
    "CsrView",
    "STATIC_STRING",
    "MAC_LENGTH",
    "build_kem_csr",
    "challenge_attribute",
    "proof_attribute",
    "build_possession_statement",
    "certificate_issuer_der",
    "csr_possession_statement",
    "kem_other_info",
    "derive_pop_key",
    "issue_challenge",
    "make_proof",
    "parse_csr",
    "read_challenge",
    "read_possession_statement",
    "verify_csr_with",
    "verify_proof",
]

STATIC_STRING = "SCEP-KEM-POP"  # design section 5 a) 3 (RFC 9810 uses "CMP-KEM" for CMP)
KEY_LENGTH = 32  # L of the HKDF, the HMAC-SHA256 key size
MAC_LENGTH = 32  # HMAC-SHA256 output

_HKDF = KDFS.by_oid(oids.HKDF_SHA256)


class PopError(ValueError):
    """A proof-of-possession step failed; `fail_info` is the RFC 8894 failInfo to answer with."""

    def __init__(self, fail_info: FailInfo, text: str):
        super().__init__(text)
        self.fail_info = FailInfo(fail_info)
        self.text = text

    def __repr__(self) -> str:
        return f"PopError({self.fail_info.name}, {self.text!r})"


@dataclass(frozen=True)
class KemChallenge:
    """What the CA keeps under the transactionID (the shared secret is not shown by repr)."""

    kem_oid: ObjectIdentifier
    ciphertext: bytes = field(repr=False)
    shared_secret: bytes = field(repr=False)


# --- the challenge (CA side) ---


def _kem_public_key(csr_public_key):
    if isinstance(csr_public_key, (bytes, bytearray)):
        try:
            return public_key_from_spki(bytes(csr_public_key))
        except ValueError as exc:
            raise PopError(FailInfo.BAD_ALG, f"the CSR's key is not a usable ML-KEM key: {exc}") from None
    return csr_public_key


def issue_challenge(csr_public_key) -> tuple[KemChallenge, bytes]:
    """Encapsulate to the CSR's ML-KEM-768/1024 key (a key object or its SubjectPublicKeyInfo DER).

    Returns (KemChallenge(kem_oid, ciphertext, shared_secret), the kemPopChallenge attribute value
    = DER(KemCiphertextInfo { kem (parameters absent, RFC 9936), ct })).
    A fresh encapsulation every call."""
    key = _kem_public_key(csr_public_key)
    try:
        kem = kem_for_key(key)
    except UnknownAlgorithm:
        raise PopError(FailInfo.BAD_ALG,
                       f"a {type(key).__name__} is not an ML-KEM key this CA can challenge") from None
    if isinstance(key, kem.private_key_class):
        raise ValueError("issue_challenge takes the CSR's public key, not a private key")
    shared_secret, ciphertext = key.encapsulate()
    value = cms.encode(cms.KemCiphertextInfo(kem=cms.algorithm_tlv(kem.oid), ct=ciphertext))
    return KemChallenge(kem.oid, ciphertext, shared_secret), value


def _kem_entry(oid: ObjectIdentifier) -> KemAlgorithm:
    entry = KEMS.get(oid)
    if entry is None or not entry.available:
        named = entry.name if entry is not None else oid.dotted_string
        raise PopError(FailInfo.BAD_ALG, f"KEM {named} is not supported")
    return entry


def read_challenge(attribute_der: bytes) -> tuple[ObjectIdentifier, bytes]:
    """(kem OID, ciphertext) of a kemPopChallenge value, with the ciphertext length checked
    against the KEM (ML-KEM-768: 1088 bytes, ML-KEM-1024: 1568). Unknown KEM: badAlg."""
    try:
        info = cms.decode_der(cms.KemCiphertextInfo, bytes(attribute_der))
        kem = cms.parse_algorithm(info.kem)
    except (cms.Asn1Error, TypeError, ValueError) as exc:
        raise PopError(FailInfo.BAD_REQUEST, f"kemPopChallenge is not a KemCiphertextInfo: {exc}") from None
    entry = _kem_entry(kem.oid)
    if kem.parameters is not None:  # RFC 9936 / RFC 9935: ML-KEM parameters are absent
        raise PopError(FailInfo.BAD_ALG, f"{entry.name} AlgorithmIdentifier must have no parameters")
    if len(info.ct) != entry.ciphertext_size:
        raise PopError(FailInfo.BAD_REQUEST,
                       f"kemPopChallenge ct has {len(info.ct)} bytes; {entry.name} ciphertexts have "
                       f"{entry.ciphertext_size}")
    return kem.oid, info.ct


# --- the key (both sides) ---


def _transaction_id_bytes(transaction_id: str) -> bytes:
    # The SCEP transactionID is a PrintableString (RFC 8894 3.2.1.1); KemOtherInfo.transactionID
    # is an OCTET STRING (RFC 9810): it holds the string's ASCII octets.
    if not isinstance(transaction_id, str) or not transaction_id:
        raise PopError(FailInfo.BAD_REQUEST, "the transactionID is empty")
    try:
        data = transaction_id.encode("ascii")
    except UnicodeEncodeError:
        raise PopError(FailInfo.BAD_REQUEST, "the transactionID is not ASCII") from None
    if not transaction_id.isprintable():
        raise PopError(FailInfo.BAD_REQUEST, "the transactionID holds control characters")
    return data


def kem_other_info(transaction_id: str, csr_der: bytes) -> bytes:
    """DER(KemOtherInfo { {"SCEP-KEM-POP"}, transactionID ASCII octets, [0] SHA-256(csr_der) })."""
    return cms.encode(cms.KemOtherInfo(
        static_string=[STATIC_STRING],
        transaction_id=_transaction_id_bytes(transaction_id),
        kem_context=hashlib.sha256(bytes(csr_der)).digest(),
    ))


def derive_pop_key(shared_secret: bytes, transaction_id: str, csr_der: bytes) -> tuple[bytes, bytes]:
    """(info, K): info = DER(KemOtherInfo), K = HKDF-SHA256(IKM = ss, salt = empty, L = 32, info)."""
    if len(shared_secret) != 32:  # every ML-KEM shared secret is 32 bytes (FIPS 203)
        raise ValueError(f"an ML-KEM shared secret has 32 bytes, not {len(shared_secret)}")
    info = kem_other_info(transaction_id, csr_der)
    return info, _HKDF.derive(bytes(shared_secret), KEY_LENGTH, info, salt=b"")


def _mac(key: bytes, csr_der: bytes) -> bytes:
    return hmac.new(key, bytes(csr_der), hashlib.sha256).digest()


# --- the proof (client side) ---


def make_proof(private_key, challenge_attribute_der: bytes, transaction_id: str, csr_der: bytes) -> bytes:
    """The kemPopProof attribute value: decapsulate the challenge with the new ML-KEM private key,
    derive K, and return DER(KemPopProof { hmacWithSHA256, HMAC-SHA256(K, csr_der) })."""
    kem_oid, ciphertext = read_challenge(challenge_attribute_der)
    try:
        own = kem_for_key(private_key)
    except UnknownAlgorithm:
        raise PopError(FailInfo.BAD_ALG, f"a {type(private_key).__name__} is not an ML-KEM private key") from None
    if own.oid != kem_oid or not isinstance(private_key, own.private_key_class):
        raise PopError(FailInfo.BAD_ALG,
                       f"the challenge is for {KEMS.by_oid(kem_oid).name}; the key is not a private key of it")
    try:
        shared_secret = private_key.decapsulate(ciphertext)
    except ValueError as exc:  # pragma: no cover - the length was checked by read_challenge
        raise PopError(FailInfo.BAD_REQUEST, f"decapsulation failed: {exc}") from None
    _, key = derive_pop_key(shared_secret, transaction_id, csr_der)
    # hmacWithSHA256 with NULL parameters, as RFC 8018 writes it (absent is accepted on input).
    return cms.encode(cms.KemPopProof(
        mac_algorithm=cms.algorithm_tlv(oids.HMAC_WITH_SHA256, cms.NULL),
        mac=_mac(key, csr_der),
    ))


# --- the check (CA side) ---


def verify_proof(shared_secret: bytes, proof_attribute_der: bytes, transaction_id: str, csr_der: bytes) -> None:
    """Accept the kemPopProof only if its MAC is exactly HMAC-SHA256(K, csr_der); else PopError:
    badRequest (malformed attribute or transactionID), badAlg (macAlgorithm is not hmacWithSHA256),
    badMessageCheck (any other MAC, compared in constant time; the text says nothing more)."""
    try:
        proof = cms.decode_der(cms.KemPopProof, bytes(proof_attribute_der))
        mac_algorithm = cms.parse_algorithm(proof.mac_algorithm)
    except (cms.Asn1Error, TypeError, ValueError):
        raise PopError(FailInfo.BAD_REQUEST, "kemPopProof is not a KemPopProof") from None
    if mac_algorithm.oid != oids.HMAC_WITH_SHA256:
        raise PopError(FailInfo.BAD_ALG,
                       f"kemPopProof macAlgorithm {mac_algorithm.oid.dotted_string} is not hmacWithSHA256")
    if mac_algorithm.parameters not in (None, cms.NULL):
        raise PopError(FailInfo.BAD_ALG, "hmacWithSHA256 parameters must be absent or NULL")
    _, key = derive_pop_key(shared_secret, transaction_id, csr_der)
    expected = _mac(key, csr_der)
    # compare_digest takes time independent of where the bytes differ; a MAC of another length
    # is simply not equal (the length is public anyway).
    if not hmac.compare_digest(expected, proof.mac):
        raise PopError(FailInfo.BAD_MESSAGE_CHECK, "the KEM proof-of-possession MAC does not verify")


# --- the signed attributes (PROVISIONAL OIDs, design section 6) ---


def challenge_attribute(value_der: bytes) -> cms.Attribute:
    """The kemPopChallenge signed attribute (1.3.6.1.5.5.7.24.2, provisional) of a CertRep PENDING."""
    return attribute(oids.SCEP_KEM_POP_CHALLENGE, value_der)


def proof_attribute(value_der: bytes) -> cms.Attribute:
    """The kemPopProof signed attribute (1.3.6.1.5.5.7.24.3, provisional) of the poll message."""
    return attribute(oids.SCEP_KEM_POP_PROOF, value_der)


# --- RFC 9883 privateKeyPossessionStatement ---


def _certificate_parts(cert: x509.Certificate | bytes) -> tuple[bytes, cms.CertificateParts]:
    der = cert if isinstance(cert, (bytes, bytearray)) else cert.public_bytes(serialization.Encoding.DER)
    return bytes(der), cms.decode_der(cms.CertificateParts, bytes(der))


def certificate_issuer_der(cert: x509.Certificate | bytes) -> bytes:
    """The issuer Name exactly as the certificate's tbsCertificate carries it (not re-encoded)."""
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

    A certificate that is not the one `signer` names is refused (badRequest): the two would name
    different keys and only one of them signed the CSR."""
    try:
        statement = cms.decode_der(cms.PrivateKeyPossessionStatement, bytes(der))
        issuer = cms.tlv_bytes(statement.signer.issuer)
        tag, _, stop = ber.read_tlv(issuer)
        if tag != 0x30 or stop != len(issuer):
            raise ValueError("signer issuer is not a Name")
    except (cms.Asn1Error, ber.BerError, TypeError, ValueError) as exc:
        raise PopError(FailInfo.BAD_REQUEST, f"privateKeyPossessionStatement is malformed: {exc}") from None
    serial = statement.signer.serial_number
    if statement.cert is None:
        return issuer, serial, None
    try:
        cert = x509.load_der_x509_certificate(cms.encode(statement.cert))
        cert_issuer = certificate_issuer_der(cert)
    except (ValueError, ber.BerError, cms.Asn1Error) as exc:
        raise PopError(FailInfo.BAD_REQUEST,
                       f"privateKeyPossessionStatement cert is not a certificate: {exc}") from None
    if cert.serial_number != serial or cert_issuer != issuer:
        raise PopError(FailInfo.BAD_REQUEST,
                       "privateKeyPossessionStatement cert is not the certificate its signer names")
    return issuer, serial, cert


# --- PKCS #10 for an ML-KEM key, signed by another key ---


@dataclass(frozen=True)
class CsrView:
    """A CertificationRequest taken apart, every part as the DER it arrived in."""

    info_der: bytes  # the CertificationRequestInfo the signature covers
    subject_der: bytes
    spki_der: bytes
    attributes: dict  # {oid: [value DER, ...]}
    signature_algorithm: cms.Algorithm
    signature: bytes


def parse_csr(csr_der: bytes) -> CsrView:
    """Take a DER CertificationRequest apart (badRequest when it is not one)."""
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
        raise PopError(FailInfo.BAD_REQUEST, f"not a PKCS #10 CertificationRequest: {exc}") from None
    attributes: dict = {}
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
    """`read_possession_statement` of the CSR's one statementOfPossession value (badRequest when
    there is none, or more than one: RFC 9883 defines a single-valued attribute)."""
    view = csr if isinstance(csr, CsrView) else parse_csr(csr)
    values = view.attributes.get(oids.PRIVATE_KEY_POSSESSION_STATEMENT, [])
    if len(values) != 1:
        raise PopError(FailInfo.BAD_REQUEST,
                       f"the CSR has {len(values)} privateKeyPossessionStatement values; it needs exactly one")
    return read_possession_statement(values[0])


_RSA_BY_DIGEST = {
    oids.SHA1: oids.SHA1_WITH_RSA,
    oids.SHA224: oids.SHA224_WITH_RSA,
    oids.SHA256: oids.SHA256_WITH_RSA,
    oids.SHA384: oids.SHA384_WITH_RSA,
    oids.SHA512: oids.SHA512_WITH_RSA,
}
def _x509_signature_algorithm(key, digest: DigestAlgorithm) -> tuple[ObjectIdentifier, bytes | None]:
    """The X.509 signatureAlgorithm for a signing key (unlike a CMS SignerInfo, it names the digest:
    sha256WithRSAEncryption with NULL parameters, ecdsa-with-SHA256 and ML-DSA without)."""
    family = key_family(key)
    if family == "rsa":
        return _RSA_BY_DIGEST[digest.oid], cms.NULL
    if family == "ec":
        return ECDSA_BY_DIGEST[digest.oid], None
    if family == "ml-dsa":
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
    kem_public_key,
    subject: x509.Name | bytes,
    signer_key,
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
    attrs = []
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
    except PopError as exc:
        raise ValueError(f"the CSR does not verify with the signer certificate's key: {exc}") from None
    return csr_der


def verify_csr_with(csr_der: bytes | CsrView, public_key) -> None:
    """Check the CSR's signature with `public_key` (the signer certificate's, not the CSR's own).

    PopError: badRequest (not a CSR), badAlg (a signatureAlgorithm that is not an X.509 signature
    algorithm we verify, or does not fit the key), badMessageCheck (the signature does not verify)."""
    view = csr_der if isinstance(csr_der, CsrView) else parse_csr(csr_der)
    algorithm = view.signature_algorithm
    entry = VERIFIERS.get(algorithm.oid)
    if entry is None or entry.legacy:
        raise PopError(FailInfo.BAD_ALG, f"CSR signature algorithm {algorithm.oid.dotted_string} is not supported")
    if entry.digest_oid is None and entry.family != "ml-dsa":
        # rsaEncryption / ecPublicKey name a key, not a signature algorithm (fine in a CMS
        # SignerInfo, which carries the digest apart; not in an X.509 signatureAlgorithm).
        raise PopError(FailInfo.BAD_ALG, f"{entry.name} is not an X.509 signature algorithm")
    allowed = (None, cms.NULL) if entry.family == "rsa" else (None,)
    if algorithm.parameters not in allowed:
        raise PopError(FailInfo.BAD_ALG, f"{entry.name} with unexpected parameters")
    try:
        family = key_family(public_key)
    except ValueError as exc:
        raise PopError(FailInfo.BAD_ALG, str(exc)) from None
    if family != entry.family or (family == "ml-dsa" and ml_dsa_oid(public_key) != entry.oid):
        raise PopError(FailInfo.BAD_ALG, f"CSR signature algorithm {entry.name} does not fit the {family} key")
    digest = DIGESTS.by_oid(entry.digest_oid or oids.SHA512)
    try:
        verify(public_key, algorithm.oid, digest, view.signature, view.info_der)
    except UnknownAlgorithm as exc:  # pragma: no cover - filtered above
        raise PopError(FailInfo.BAD_ALG, str(exc)) from None
    except (SignatureError, ValueError):
        # SignatureError: the signature is wrong; ValueError: it is not even well-formed (e.g. an
        # ECDSA signature that is not a DER Ecdsa-Sig-Value). Either way: it does not verify.
        raise PopError(FailInfo.BAD_MESSAGE_CHECK, "the CSR signature does not verify with this key") from None
