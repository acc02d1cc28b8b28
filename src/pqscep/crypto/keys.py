"""Key types by name (rsa-2048, ec-p256, ml-dsa-65, ml-kem-768, ...): generation, loading and
storage. A key type is one entry in `KEY_TYPES`; each is of a `KeyFamily` (RSA, EC, ML-DSA,
ML-KEM), which `key_family` also finds for a key object.

Private keys at rest are PKCS#8 encrypted with a passphrase (`BestAvailableEncryption`, which is
PBES2 with AES-256-CBC and a strong KDF in cryptography 50) and written with file mode 0600.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, mlkem, rsa

__all__ = [
    "KEY_TYPES",
    "KeyFamily",
    "KeyType",
    "generate_key",
    "key_family",
    "load_private_key",
    "private_key_pem",
    "write_private_key",
]


class KeyFamily(StrEnum):
    """The kinds of key this project handles. A member is its value as a string (`str`
    equality, formatting and JSON), which is also how a profile's key_types names it."""

    RSA = "rsa"
    EC = "ec"
    ML_DSA = "ml-dsa"
    ML_KEM = "ml-kem"


@dataclass(frozen=True)
class KeyType:
    name: str
    family: KeyFamily
    generate: Callable[[], object]
    can_sign: bool
    can_decrypt: bool  # can open a KeyTransRecipientInfo (RSA) or a KEMRecipientInfo (ML-KEM)


def _rsa(bits: int) -> Callable[[], object]:
    return lambda: rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _ec(curve: type[ec.EllipticCurve]) -> Callable[[], object]:
    return lambda: ec.generate_private_key(curve())


KEY_TYPES: dict[str, KeyType] = {
    t.name: t
    for t in [
        KeyType("rsa-2048", KeyFamily.RSA, _rsa(2048), True, True),
        KeyType("rsa-3072", KeyFamily.RSA, _rsa(3072), True, True),
        KeyType("rsa-4096", KeyFamily.RSA, _rsa(4096), True, True),
        KeyType("ec-p256", KeyFamily.EC, _ec(ec.SECP256R1), True, False),
        KeyType("ec-p384", KeyFamily.EC, _ec(ec.SECP384R1), True, False),
        KeyType("ec-p521", KeyFamily.EC, _ec(ec.SECP521R1), True, False),
        KeyType("ml-dsa-44", KeyFamily.ML_DSA, mldsa.MLDSA44PrivateKey.generate, True, False),
        KeyType("ml-dsa-65", KeyFamily.ML_DSA, mldsa.MLDSA65PrivateKey.generate, True, False),
        KeyType("ml-dsa-87", KeyFamily.ML_DSA, mldsa.MLDSA87PrivateKey.generate, True, False),
        KeyType("ml-kem-768", KeyFamily.ML_KEM, mlkem.MLKEM768PrivateKey.generate, False, True),
        KeyType("ml-kem-1024", KeyFamily.ML_KEM, mlkem.MLKEM1024PrivateKey.generate, False, True),
    ]
}


def generate_key(name: str):
    try:
        return KEY_TYPES[name.lower()].generate()
    except KeyError:
        raise ValueError(f"unknown key type {name!r}; choose one of {', '.join(KEY_TYPES)}") from None


_PUBLIC_FAMILIES: tuple[tuple[tuple[type, ...], KeyFamily], ...] = (
    ((rsa.RSAPrivateKey, rsa.RSAPublicKey), KeyFamily.RSA),
    ((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey), KeyFamily.EC),
    (
        (
            mldsa.MLDSA44PrivateKey,
            mldsa.MLDSA44PublicKey,
            mldsa.MLDSA65PrivateKey,
            mldsa.MLDSA65PublicKey,
            mldsa.MLDSA87PrivateKey,
            mldsa.MLDSA87PublicKey,
        ),
        KeyFamily.ML_DSA,
    ),
    (
        (mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey, mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey),
        KeyFamily.ML_KEM,
    ),
)


_FAMILY_BY_TYPE: dict[type, KeyFamily] = {}


def key_family(key: object) -> KeyFamily:
    """The `KeyFamily` of a private or public key object."""
    # Cached by concrete type: the isinstance checks go through ABCs and are on the hot path.
    family = _FAMILY_BY_TYPE.get(type(key))
    if family is not None:
        return family
    for classes, family in _PUBLIC_FAMILIES:
        if isinstance(key, classes):
            _FAMILY_BY_TYPE[type(key)] = family
            return family
    raise ValueError(f"unsupported key type {type(key).__name__}")


def load_private_key(data: bytes, passphrase: bytes | None = None):
    """Load a PEM or DER (PKCS#8, PKCS#1, SEC1) private key, encrypted or not, including
    ML-KEM/ML-DSA keys in every RFC 9935/9881 form (OpenSSL 3.5+ writes seed and expanded key
    together, which cryptography alone cannot read): see `pkcs8.load_any_private_key`."""
    from .pkcs8 import load_any_private_key

    return load_any_private_key(data, passphrase)


def private_key_pem(key, passphrase: bytes | None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def write_private_key(path: Path, key, passphrase: bytes | None) -> None:
    """Write a private key as PKCS#8 PEM, created with mode 0600 (never world-readable, not
    even for an instant: the mode is set by open(), not by a chmod afterwards)."""
    data = private_key_pem(key, passphrase)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)
