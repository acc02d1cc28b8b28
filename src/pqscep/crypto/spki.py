"""SubjectPublicKeyInfo (RFC 5280 section 4.1.2.7): public keys of every type, and the raw key
bytes of algorithms cryptography does not implement (ML-KEM-512).
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509 import ObjectIdentifier

from ..asn1 import cms
from .key_errors import UnsupportedKeyForm
from .pkcs8 import pq_algorithm_name

__all__ = ["public_key_from_spki", "spki_raw_public_key"]


def public_key_from_spki(der: bytes) -> PublicKeyTypes:
    """A public key object from a DER SubjectPublicKeyInfo (any type cryptography knows).

    ML-KEM-512 and other PQ keys outside cryptography 50 get a clear UnsupportedKeyForm."""
    try:
        return serialization.load_der_public_key(der)
    except UnsupportedAlgorithm:
        pass
    except ValueError as exc:
        raise ValueError(f"not a valid SubjectPublicKeyInfo: {_first_line(exc)}") from None
    try:
        spki = cms.decode_der(cms.SubjectPublicKeyInfo, der)
        oid = cms.parse_algorithm(spki.algorithm).oid
    except cms.Asn1Error as exc:
        raise ValueError(f"not a valid SubjectPublicKeyInfo: {exc}") from None
    name = pq_algorithm_name(oid)
    raise UnsupportedKeyForm(f"{name or oid.dotted_string} is not supported")


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160]


def spki_raw_public_key(der: bytes) -> tuple[ObjectIdentifier, bytes]:
    """(algorithm OID, subjectPublicKey bytes) of a DER SubjectPublicKeyInfo, any algorithm.

    Decoded here, not by cryptography, which refuses to load a key it does not implement."""
    spki = cms.decode_der(cms.SubjectPublicKeyInfo, der)
    return cms.parse_algorithm(spki.algorithm).oid, spki.subject_public_key.as_bytes()
