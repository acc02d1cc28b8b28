"""Signature schemes for CMS SignerInfos, by signatureAlgorithm OID and by key family.

Verification looks the SignerInfo's signatureAlgorithm up in `VERIFIERS`; signing picks the
scheme for the key's family in `SIGNERS`. RSA signatures are written with signatureAlgorithm
rsaEncryption (RFC 8894 section 3.1 and what strongSwan insists on: it refuses
sha1WithRSAEncryption), ECDSA with ecdsa-with-SHAxxx (RFC 5753), ML-DSA in pure mode with an
empty context and SHA-512 as the digest algorithm (RFC 9882 section 3). Each scheme's name is
its OID's in `asn1.oid_names`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509 import ObjectIdentifier

from ..asn1 import oids
from .keys import KeyFamily, key_family
from .registry import DIGESTS, DigestAlgorithm, NamedByOid, Registry, UnknownAlgorithm

__all__ = ["SignatureError", "VERIFIERS", "SignatureVerifier", "sign", "signature_algorithm_for", "verify"]


class SignatureError(ValueError):
    """A signature that does not verify, or whose declared algorithm does not fit the key (an
    integrity failure too: badMessageCheck). `reason` "algorithm" is for callers that refuse an
    algorithm outright."""

    def __init__(self, message: str, reason: str = "signature"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SignatureVerifier(NamedByOid):
    oid: ObjectIdentifier
    family: KeyFamily  # the public key must be of this family
    digest_oid: ObjectIdentifier | None  # fixed digest, or None: use SignerInfo.digestAlgorithm
    parameters: bytes | None = None  # what we write when signing with this entry
    legacy: bool = False


VERIFIERS: Registry[SignatureVerifier] = Registry(
    "signature algorithm",
    [
        SignatureVerifier(oids.RSA_ENCRYPTION, KeyFamily.RSA, None, b"\x05\x00"),
        SignatureVerifier(oids.MD5_WITH_RSA, KeyFamily.RSA, oids.MD5, b"\x05\x00", legacy=True),
        SignatureVerifier(oids.SHA1_WITH_RSA, KeyFamily.RSA, oids.SHA1, b"\x05\x00"),
        SignatureVerifier(oids.SHA224_WITH_RSA, KeyFamily.RSA, oids.SHA224, b"\x05\x00"),
        SignatureVerifier(oids.SHA256_WITH_RSA, KeyFamily.RSA, oids.SHA256, b"\x05\x00"),
        SignatureVerifier(oids.SHA384_WITH_RSA, KeyFamily.RSA, oids.SHA384, b"\x05\x00"),
        SignatureVerifier(oids.SHA512_WITH_RSA, KeyFamily.RSA, oids.SHA512, b"\x05\x00"),
        SignatureVerifier(oids.EC_PUBLIC_KEY, KeyFamily.EC, None),
        SignatureVerifier(oids.ECDSA_WITH_SHA1, KeyFamily.EC, oids.SHA1),
        SignatureVerifier(oids.ECDSA_WITH_SHA224, KeyFamily.EC, oids.SHA224),
        SignatureVerifier(oids.ECDSA_WITH_SHA256, KeyFamily.EC, oids.SHA256),
        SignatureVerifier(oids.ECDSA_WITH_SHA384, KeyFamily.EC, oids.SHA384),
        SignatureVerifier(oids.ECDSA_WITH_SHA512, KeyFamily.EC, oids.SHA512),
        SignatureVerifier(oids.ML_DSA_44, KeyFamily.ML_DSA, None),
        SignatureVerifier(oids.ML_DSA_65, KeyFamily.ML_DSA, None),
        SignatureVerifier(oids.ML_DSA_87, KeyFamily.ML_DSA, None),
    ],
)

# ecdsa-with-SHAxxx by digest OID: the signatureAlgorithm for CMS and X.509 alike (RFC 5758).
ECDSA_BY_DIGEST = {
    oids.SHA1: oids.ECDSA_WITH_SHA1,
    oids.SHA224: oids.ECDSA_WITH_SHA224,
    oids.SHA256: oids.ECDSA_WITH_SHA256,
    oids.SHA384: oids.ECDSA_WITH_SHA384,
    oids.SHA512: oids.ECDSA_WITH_SHA512,
}
_ML_DSA_BY_SIZE = {1312: oids.ML_DSA_44, 1952: oids.ML_DSA_65, 2592: oids.ML_DSA_87}


def ml_dsa_oid(key) -> ObjectIdentifier:
    public = key.public_key() if hasattr(key, "public_key") else key
    from cryptography.hazmat.primitives import serialization

    size = len(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    return _ML_DSA_BY_SIZE[size]


def signature_algorithm_for(key, digest: DigestAlgorithm) -> tuple[ObjectIdentifier, bytes | None, DigestAlgorithm]:
    """(signatureAlgorithm OID, its parameters, the digest to actually use) for a signing key."""
    family = key_family(key)
    if family == KeyFamily.RSA:
        return oids.RSA_ENCRYPTION, b"\x05\x00", digest
    if family == KeyFamily.EC:
        return ECDSA_BY_DIGEST[digest.oid], None, digest
    if family == KeyFamily.ML_DSA:
        # RFC 9882 section 3.3: SHA-512 is the digest for all ML-DSA parameter sets.
        return ml_dsa_oid(key), None, DIGESTS.by_oid(oids.SHA512)
    raise SignatureError(f"a {family} key cannot sign")


def sign(key, data: bytes, digest: DigestAlgorithm) -> bytes:
    family = key_family(key)
    if family == KeyFamily.RSA:
        return key.sign(data, padding.PKCS1v15(), digest.hash())
    if family == KeyFamily.EC:
        return key.sign(data, ec.ECDSA(digest.hash()))
    if family == KeyFamily.ML_DSA:
        return key.sign(data)  # pure ML-DSA, empty context (RFC 9882 section 3.3)
    raise SignatureError(f"a {family} key cannot sign")


def verify(
    public_key,
    signature_algorithm: ObjectIdentifier,
    digest: DigestAlgorithm,
    signature: bytes,
    data: bytes,
    *,
    allow_legacy: bool = False,
) -> None:
    """Check `signature` over `data`; raise SignatureError (or UnknownAlgorithm)."""
    entry = VERIFIERS.by_oid(signature_algorithm, allow_legacy=allow_legacy)
    family = key_family(public_key)
    if family != entry.family:
        raise SignatureError(f"signature algorithm {entry.name} does not fit a {family} key")
    if entry.digest_oid is not None:
        digest = DIGESTS.by_oid(entry.digest_oid, allow_legacy=allow_legacy)
    try:
        if family == KeyFamily.RSA:
            public_key.verify(signature, data, padding.PKCS1v15(), digest.hash())
        elif family == KeyFamily.EC:
            public_key.verify(signature, data, ec.ECDSA(digest.hash()))
        else:
            if entry.oid != ml_dsa_oid(public_key):
                raise SignatureError(f"{entry.name} signature with a key of another ML-DSA size")
            public_key.verify(signature, data)
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None


__all__ += ["UnknownAlgorithm", "ml_dsa_oid"]
