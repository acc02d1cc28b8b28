"""Deterministic stand-ins for cryptography's key objects, FOR TEST VECTORS ONLY.

The project's CMS and SCEP code signs with ``crypto.signing.sign(key, ...)`` (which calls
``key.sign``) and encrypts to ML-KEM keys with ``public_key.encapsulate()``. cryptography 50
hedges ML-DSA signatures, randomizes ECDSA and draws ML-KEM's m itself, so the same inputs
give new bytes every run. The classes here are subclasses of cryptography's own abstract key
classes (``MLDSA65PrivateKey``, ``MLKEM768PublicKey``, ``EllipticCurvePrivateKey``...), so the
project's dispatch by key type (``crypto.keys.key_family``, ``crypto.registry.kem_for_key``)
accepts them unchanged: **no production module knows about them**. Only their randomized
operation differs:

* `VectorMLDSAKey.sign`: FIPS 204 ML-DSA.Sign with rnd = 0 (the deterministic variant),
  pure mode, from the 32-byte seed (`fips.mldsa_sign_deterministic`).
* `VectorMLKEMPublicKey.encapsulate`: FIPS 203 ML-KEM.Encaps_internal(ek, m) with m drawn from
  a `DeterministicRandom`; each encapsulation is recorded (m, ss, ct) for the vectors' value
  listings.
* `VectorECKey.sign`: ECDSA with RFC 6979 deterministic nonces (cryptography's
  ``ECDSA(hash, deterministic_signing=True)``).

Everything else is delegated to the real cryptography key made from the same seed or scalar.
`resign_certificate` and `resign_csr` put a deterministic signature on a certificate or a CSR
that cryptography's builders made (and signed randomly) from the same key: the to-be-signed
part and the signatureAlgorithm are kept byte for byte (RFC 5280 section 4.1, RFC 2986 section
4.2), only the signature BIT STRING is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, mlkem

from ..asn1 import ber
from ..crypto import signing
from ..crypto.registry import DIGESTS
from .fips import DeterministicRandom, mldsa_sign_deterministic, mlkem_encaps_deterministic

__all__ = [
    "Encapsulation",
    "VectorECKey",
    "VectorMLDSAKey",
    "VectorMLKEMPublicKey",
    "mldsa_key",
    "mlkem_public_key",
    "ec_key",
    "resign_certificate",
    "resign_csr",
]


# --- ML-DSA -----------------------------------------------------------------------------------

_DSA_REAL: dict[str, type[mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey]] = {
    "ML-DSA-44": mldsa.MLDSA44PrivateKey,
    "ML-DSA-65": mldsa.MLDSA65PrivateKey,
    "ML-DSA-87": mldsa.MLDSA87PrivateKey,
}


class VectorMLDSAKey:
    """Mixin: an ML-DSA private key from a 32-byte seed whose sign() is deterministic."""

    parameter_set: str

    def __init__(self, seed: bytes):
        self.seed = bytes(seed)
        self.real = _DSA_REAL[self.parameter_set].from_seed_bytes(self.seed)

    def public_key(self):
        return self.real.public_key()

    def private_bytes(self, encoding, format, encryption_algorithm):
        return self.real.private_bytes(encoding, format, encryption_algorithm)

    def private_bytes_raw(self) -> bytes:
        return self.real.private_bytes_raw()

    def sign(self, data, context=None) -> bytes:
        # FIPS 204 Algorithm 2 (pure ML-DSA) with rnd = {0}^32: the deterministic variant.
        return mldsa_sign_deterministic(self.seed, bytes(data), self.parameter_set, bytes(context or b""))

    def sign_mu(self, mu) -> bytes:  # pragma: no cover - the project never signs a precomputed mu
        raise NotImplementedError("sign_mu is not used for vectors")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class _VectorMLDSA44(VectorMLDSAKey, mldsa.MLDSA44PrivateKey):
    parameter_set = "ML-DSA-44"


class _VectorMLDSA65(VectorMLDSAKey, mldsa.MLDSA65PrivateKey):
    parameter_set = "ML-DSA-65"


class _VectorMLDSA87(VectorMLDSAKey, mldsa.MLDSA87PrivateKey):
    parameter_set = "ML-DSA-87"


def mldsa_key(seed: bytes, parameter_set: str = "ML-DSA-65") -> VectorMLDSAKey:
    cls = {"ML-DSA-44": _VectorMLDSA44, "ML-DSA-65": _VectorMLDSA65, "ML-DSA-87": _VectorMLDSA87}[parameter_set]
    return cls(seed)


# --- ML-KEM -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encapsulation:
    """One recorded ML-KEM encapsulation: the 32 random bytes m, the shared secret, the ciphertext."""

    m: bytes
    shared_secret: bytes
    ciphertext: bytes


class VectorMLKEMPublicKey:
    """Mixin: an ML-KEM public key whose encapsulate() takes m from a DeterministicRandom and
    appends an `Encapsulation` to `log`."""

    parameter_set: str

    def __init__(self, real, random: DeterministicRandom, log: list[Encapsulation]):
        self.real = real
        self.random = random
        self.log = log

    def encapsulate(self) -> tuple[bytes, bytes]:
        m = self.random(32)  # FIPS 203 Algorithm 20 draws m; here it is fixed by the label
        shared_secret, ciphertext = mlkem_encaps_deterministic(self.real.public_bytes_raw(), m, self.parameter_set)
        self.log.append(Encapsulation(m, shared_secret, ciphertext))
        return shared_secret, ciphertext

    def public_bytes(self, encoding, format):
        return self.real.public_bytes(encoding, format)

    def public_bytes_raw(self) -> bytes:
        return self.real.public_bytes_raw()

    def __eq__(self, other) -> bool:
        try:
            return other.public_bytes_raw() == self.real.public_bytes_raw()
        except AttributeError:
            return NotImplemented

    def __hash__(self) -> int:
        return hash(self.real.public_bytes_raw())

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class _VectorMLKEM768(VectorMLKEMPublicKey, mlkem.MLKEM768PublicKey):
    parameter_set = "ML-KEM-768"


class _VectorMLKEM1024(VectorMLKEMPublicKey, mlkem.MLKEM1024PublicKey):
    parameter_set = "ML-KEM-1024"


def mlkem_public_key(real, random: DeterministicRandom, log: list[Encapsulation]) -> VectorMLKEMPublicKey:
    """Wrap a cryptography ML-KEM public key (or the public key of a private key)."""
    if hasattr(real, "decapsulate"):
        real = real.public_key()
    cls = _VectorMLKEM1024 if isinstance(real, mlkem.MLKEM1024PublicKey) else _VectorMLKEM768
    return cls(real, random, log)


# --- ECDSA ------------------------------------------------------------------------------------


class VectorECKey(ec.EllipticCurvePrivateKey):
    """An EC private key from a fixed scalar whose sign() uses RFC 6979 deterministic nonces."""

    def __init__(self, scalar: int, curve: ec.EllipticCurve):
        self.real = ec.derive_private_key(scalar, curve)

    def sign(self, data, signature_algorithm):
        algorithm = signature_algorithm.algorithm
        return self.real.sign(data, ec.ECDSA(algorithm, deterministic_signing=True))

    def exchange(self, algorithm, peer_public_key):  # pragma: no cover - not used by SCEP
        return self.real.exchange(algorithm, peer_public_key)

    def public_key(self):
        return self.real.public_key()

    @property
    def curve(self):
        return self.real.curve

    @property
    def key_size(self) -> int:
        return self.real.key_size

    def private_numbers(self):
        return self.real.private_numbers()

    def private_bytes(self, encoding, format, encryption_algorithm):
        return self.real.private_bytes(encoding, format, encryption_algorithm)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def ec_key(scalar: int, curve: ec.EllipticCurve | None = None) -> VectorECKey:
    return VectorECKey(scalar, curve or ec.SECP256R1())


# --- re-signing what cryptography's builders made ---------------------------------------------


def _children(der: bytes) -> list[bytes]:
    _, start, stop = ber.read_tlv(der)
    out, pos = [], start
    while pos < stop:
        _, _, end = ber.read_tlv(der, pos)
        out.append(der[pos:end])
        pos = end
    return out


def _resign(signed_der: bytes, key) -> bytes:
    """SEQUENCE { toBeSigned, signatureAlgorithm, BIT STRING signature } with a new signature by
    `key` (a Vector* key) over the toBeSigned DER; the first two elements are kept as they are."""
    tbs, algorithm, _old = _children(signed_der)
    # crypto.signing.sign: ML-DSA signs the message itself; ECDSA and RSA use the digest (SHA-256
    # is what cryptography's builders were given: see `_template_hash`).
    signature = signing.sign(key, tbs, DIGESTS.by_name("sha256"))
    return ber.encode_tlv(0x30, tbs + algorithm + ber.encode_tlv(0x03, b"\x00" + signature))


def template_hash(key):
    """The hash cryptography's builders take for `key` (None for ML-DSA, RFC 9881)."""
    return None if isinstance(key, VectorMLDSAKey) else hashes.SHA256()


def resign_certificate(template: x509.Certificate, key) -> x509.Certificate:
    der = _resign(template.public_bytes(serialization.Encoding.DER), key)
    cert = x509.load_der_x509_certificate(der)
    assert cert.tbs_certificate_bytes == template.tbs_certificate_bytes
    return cert


def resign_csr(template: x509.CertificateSigningRequest | bytes, key) -> bytes:
    der = template if isinstance(template, bytes) else template.public_bytes(serialization.Encoding.DER)
    return _resign(der, key)
