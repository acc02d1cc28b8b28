"""The fixed inputs of the test vectors: key seeds, times, the challenge password, and the
deterministic random streams. FOR TEST VECTORS ONLY: every key here is public.

Every seed is SHAKE-256("pqscep vectors/" || name), as many octets as the key needs (32 for
ML-DSA, FIPS 204 xi; 64 for ML-KEM, FIPS 203 d || z); the ECDSA P-256 scalar is the first 32
such octets as a big-endian integer, reduced modulo the group order n. Random streams (nonces,
IVs, CEKs, serials, PBKDF2 salts, ML-KEM m) are `DeterministicRandom("pqscep vectors/" || name)`.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, mlkem

from .fips import DeterministicRandom
from .keys import VectorECKey, VectorMLDSAKey, ec_key, mldsa_key

__all__ = ["KEY_NAMES", "Material", "label", "seed", "stream", "utc"]

PREFIX = b"pqscep vectors/"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

CHALLENGE_PASSWORD = "pqscep-vectors-challenge"
PWRI_ITERATIONS = 100_000  # the profile default (ca.profile.ProfileSettings.pwri_iterations)

# (name, kind, role) of every key; kind: ML-DSA-65, ML-KEM-768 or P-256.
KEY_NAMES: list[tuple[str, str, str]] = [
    ("ca", "ML-DSA-65", "the CA: signs certificates and every CertRep"),
    ("kem-recipient", "ML-KEM-768", "the CA's ML-KEM recipient certificate (GetCACert)"),
    ("device", "ML-DSA-65", "pq-enrollment: the requester's key, certified"),
    ("response-key", "ML-KEM-768", "pq-enrollment: the responseKey the CertRep is encrypted to"),
    ("challenge-signer", "ML-DSA-65", "kem-pop-challenge: transient self-signed signer"),
    ("challenge-kem", "ML-KEM-768", "kem-pop-challenge: the ML-KEM key certified"),
    ("encrypted-signer", "ML-DSA-65", "kem-pop-encrypted-cert: transient self-signed signer"),
    ("encrypted-kem", "ML-KEM-768", "kem-pop-encrypted-cert: the ML-KEM key certified"),
    ("statement-identity", "ML-DSA-65", "kem-pop-statement: device identity key (certificate by the CA)"),
    ("statement-kem", "ML-KEM-768", "kem-pop-statement: the ML-KEM key certified"),
    ("password-device", "P-256", "password-recipient: the ECDSA requester's key, certified"),
]


def label(name: str) -> bytes:
    return PREFIX + name.encode("ascii")


def seed(name: str, size: int) -> bytes:
    return hashlib.shake_256(label(name)).digest(size)


def stream(name: str) -> DeterministicRandom:
    return DeterministicRandom(label(name))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)


# Times. Certificates are back-dated 5 minutes by the CA (ca.authority.CLOCK_SKEW), so the CA's
# own validity starts at 2026-01-01T00:00:00Z.
CA_TIME = utc(2026, 1, 1, 0, 5)
CA_DAYS = 3653  # to 2036-01-01T00:05:00Z
IDENTITY_TIME = utc(2026, 1, 15, 9, 0)  # kem-pop-statement: the device identity certificate
REQUEST_TIME = utc(2026, 2, 1, 12, 0)  # every request and CertRep, a minute apart within a flow


@dataclass
class Material:
    """The keys: Vector* keys that sign deterministically, and cryptography's own objects of
    the same seeds (for the builders' templates, decryption, and the service in tests)."""

    dsa: dict[str, VectorMLDSAKey]
    kem: dict[str, mlkem.MLKEM768PrivateKey]
    ec: dict[str, VectorECKey]

    @classmethod
    def load(cls) -> Material:
        dsa, kem, ecs = {}, {}, {}
        for name, kind, _ in KEY_NAMES:
            if kind == "ML-DSA-65":
                dsa[name] = mldsa_key(seed(name, 32), kind)
            elif kind == "ML-KEM-768":
                kem[name] = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed(name, 64))
            else:
                scalar = int.from_bytes(seed(name, 32), "big") % P256_ORDER
                ecs[name] = ec_key(scalar, ec.SECP256R1())
        return cls(dsa, kem, ecs)

    def private_key(self, name: str):
        """The key object (Vector* for signing keys, cryptography's for ML-KEM)."""
        return self.dsa.get(name) or self.kem.get(name) or self.ec[name]

    def real(self, name: str):
        """cryptography's own private key object."""
        key = self.private_key(name)
        return getattr(key, "real", key)
