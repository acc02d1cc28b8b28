"""Proof of possession for ML-KEM keys, the draft (docs/draft), Section 7: the sans-IO core.

No I/O, no clock, no randomness of its own: the only random draw is the one cryptography's ML-KEM
``encapsulate`` makes inside `issue_challenge`. Keeping the shared secret under the
transactionID, expiring it and spending it after the first proof is the caller's job (the
server's challenge store); this module only computes and checks.

Challenge-response (draft Section 7.2, RFC 9810's direct method with a MAC instead of returning a
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
bytes they have, nothing is re-encoded. That CSR, signed by another key and carrying the RFC 9883
privateKeyPossessionStatement, is built and checked by `pqscep.csr.pkcs10`.

Errors are `PopError(fail_info, text)` with RFC 8894 failInfo values: badRequest for malformed
input, badAlg for an algorithm this side does not implement, badMessageCheck for a MAC that does
not verify (the text never says where it differs).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.x509 import ObjectIdentifier

from ..asn1 import cms, oids
from ..cms.signed import attribute
from ..crypto.registry import KDFS, KEMS, KemAlgorithm, UnknownAlgorithm, kem_for_key
from ..crypto.spki import public_key_from_spki
from .messages import FailInfo

__all__ = [
    "KemChallenge",
    "PopError",
    "STATIC_STRING",
    "MAC_LENGTH",
    "challenge_attribute",
    "proof_attribute",
    "kem_other_info",
    "derive_pop_key",
    "issue_challenge",
    "make_proof",
    "read_challenge",
    "verify_proof",
]

STATIC_STRING = "SCEP-KEM-POP"  # draft Section 7.2, step 3 (RFC 9810 uses "CMP-KEM" for CMP)
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
    if kem.private_key_class is not None and isinstance(key, kem.private_key_class):
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
    if own.oid != kem_oid or own.private_key_class is None or not isinstance(private_key, own.private_key_class):
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


# --- the signed attributes (PROVISIONAL OIDs, draft Section 8) ---


def challenge_attribute(value_der: bytes) -> cms.Attribute:
    """The kemPopChallenge signed attribute (1.3.6.1.5.5.7.24.2, provisional) of a CertRep PENDING."""
    return attribute(oids.SCEP_KEM_POP_CHALLENGE, value_der)


def proof_attribute(value_der: bytes) -> cms.Attribute:
    """The kemPopProof signed attribute (1.3.6.1.5.5.7.24.3, provisional) of the poll message."""
    return attribute(oids.SCEP_KEM_POP_PROOF, value_der)
