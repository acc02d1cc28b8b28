"""The algorithm registry: every digest, content cipher, key wrap, KDF, KEM and PBKDF2 PRF the
project knows, by OID and by name. Adding an algorithm is adding one entry to a table in this
module (signature schemes are in `signing.py`, key types in `keys.py`, built the same way), with
its OID in `asn1.oids` and its name in `asn1.oid_names`.

Each entry says whether it is *legacy* (single DES, MD5): legacy algorithms are refused unless
a profile opts in (RFC 8894 section 3.5.2 lets a CA advertise what it supports; MD5 and single
DES are broken and only kept for old devices such as micromdm's scepclient 2.1.0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509 import ObjectIdentifier

from ..asn1 import oids
from ..asn1.oid_names import oid_name

__all__ = [
    "ContentCipher",
    "DigestAlgorithm",
    "KeyWrap",
    "NamedByOid",
    "Registry",
    "UnknownAlgorithm",
    "CIPHERS",
    "DIGESTS",
    "KEY_WRAPS",
    "DecryptionError",
    "KDFS",
    "KEMS",
    "PBKDF2_PRFS",
    "KemAlgorithm",
    "KeyDerivation",
    "Pbkdf2Prf",
]


class UnknownAlgorithm(ValueError):
    """An OID or name that is not in the registry (or is legacy and not allowed)."""


class DecryptionError(ValueError):
    """Content could not be decrypted (wrong key, bad padding, tampered tag)."""


class NamedByOid:
    """A registry entry, named by its OID: the name is the one `asn1.oid_names` gives the OID, so
    the registries, configuration and `pqscep inspect` spell an algorithm alike."""

    oid: ObjectIdentifier

    @property
    def name(self) -> str:
        return oid_name(self.oid)


E = TypeVar("E")


class Registry(Generic[E]):
    """A lookup table of algorithm entries by OID and by lower-case name."""

    def __init__(self, kind: str, entries: list[E]):
        self.kind = kind
        self._by_oid = {e.oid: e for e in entries}  # type: ignore[attr-defined]
        self._by_name = {e.name.lower(): e for e in entries}  # type: ignore[attr-defined]

    def by_oid(self, oid: ObjectIdentifier, *, allow_legacy: bool = True) -> E:
        entry = self._by_oid.get(oid)
        if entry is None:
            raise UnknownAlgorithm(f"unsupported {self.kind} {oid.dotted_string}")
        if entry.legacy and not allow_legacy:  # type: ignore[attr-defined]
            raise UnknownAlgorithm(f"legacy {self.kind} {entry.name} is not enabled")  # type: ignore[attr-defined]
        return entry

    def by_name(self, name: str) -> E:
        entry = self._by_name.get(name.lower())
        if entry is None:
            raise UnknownAlgorithm(f"unknown {self.kind} {name!r}")
        return entry

    def get(self, oid: ObjectIdentifier) -> E | None:
        return self._by_oid.get(oid)

    def __iter__(self):
        return iter(self._by_oid.values())


# --- digests ---


@dataclass(frozen=True)
class DigestAlgorithm(NamedByOid):
    oid: ObjectIdentifier
    hash_factory: Callable[[], hashes.HashAlgorithm]
    legacy: bool = False

    def hash(self) -> hashes.HashAlgorithm:
        return self.hash_factory()

    def digest(self, data: bytes) -> bytes:
        h = hashes.Hash(self.hash_factory())
        h.update(data)
        return h.finalize()


DIGESTS: Registry[DigestAlgorithm] = Registry(
    "digest algorithm",
    [
        DigestAlgorithm(oids.MD5, hashes.MD5, legacy=True),
        # SHA-1 is weak but still what most deployed SCEP clients send (RFC 8894 section 3.5.2
        # keeps it as the default when a CA does not advertise SHA-256): accepted by default.
        DigestAlgorithm(oids.SHA1, hashes.SHA1),
        DigestAlgorithm(oids.SHA224, hashes.SHA224),
        DigestAlgorithm(oids.SHA256, hashes.SHA256),
        DigestAlgorithm(oids.SHA384, hashes.SHA384),
        DigestAlgorithm(oids.SHA512, hashes.SHA512),
    ],
)


# --- content encryption (RFC 8894 section 3.5.2, RFC 3565 AES-CBC, RFC 5084 AES-GCM) ---


@dataclass(frozen=True)
class ContentCipher(NamedByOid):
    oid: ObjectIdentifier
    key_size: int  # bytes
    iv_size: int  # bytes: the CBC IV or the GCM nonce
    aead: bool
    make: Callable[[bytes], object]  # key -> cryptography cipher algorithm (CBC) or AESGCM
    legacy: bool = False
    # The key the algorithm object gets from our key_size-byte key (single DES runs as 3DES K|K|K).
    expand_key: Callable[[bytes], bytes] = staticmethod(lambda k: k)

    def encrypt_cbc(self, key: bytes, iv: bytes, plaintext: bytes) -> bytes:
        algorithm = self.make(self.expand_key(key))
        padder = padding.PKCS7(algorithm.block_size).padder()  # type: ignore[attr-defined]
        data = padder.update(plaintext) + padder.finalize()
        enc = Cipher(algorithm, modes.CBC(iv)).encryptor()  # type: ignore[arg-type]
        return enc.update(data) + enc.finalize()

    def decrypt_cbc(self, key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
        if len(key) != self.key_size:
            raise DecryptionError(f"{self.name} needs a {self.key_size}-byte key, got {len(key)}")
        if len(iv) != self.iv_size:
            raise DecryptionError(f"{self.name} needs a {self.iv_size}-byte IV, got {len(iv)}")
        algorithm = self.make(self.expand_key(key))
        block = algorithm.block_size // 8  # type: ignore[attr-defined]
        if not ciphertext or len(ciphertext) % block:
            raise DecryptionError("ciphertext is not a whole number of blocks")
        dec = Cipher(algorithm, modes.CBC(iv)).decryptor()  # type: ignore[arg-type]
        data = dec.update(ciphertext) + dec.finalize()
        unpadder = padding.PKCS7(algorithm.block_size).unpadder()  # type: ignore[attr-defined]
        try:
            return unpadder.update(data) + unpadder.finalize()
        except ValueError:
            raise DecryptionError("bad padding: wrong key or corrupted content") from None

    def encrypt_gcm(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes | None) -> tuple[bytes, bytes]:
        """Return (ciphertext, 16-byte tag)."""
        sealed = AESGCM(key).encrypt(nonce, plaintext, aad)
        return sealed[:-16], sealed[-16:]

    def decrypt_gcm(self, key: bytes, nonce: bytes, ciphertext: bytes, tag: bytes, aad: bytes | None) -> bytes:
        if len(key) != self.key_size:
            raise DecryptionError(f"{self.name} needs a {self.key_size}-byte key, got {len(key)}")
        if len(tag) < 12 or len(tag) > 16:
            raise DecryptionError("GCM tag length out of range (RFC 5084: 12 to 16 bytes)")
        try:
            return AESGCM(key).decrypt(nonce, ciphertext + tag, aad)
        except (InvalidTag, ValueError):
            raise DecryptionError("authentication tag does not verify: content or attributes were altered") from None


def _aes(key: bytes) -> object:
    return algorithms.AES(key)


def _des3(key: bytes) -> object:
    return TripleDES(key)


CIPHERS: Registry[ContentCipher] = Registry(
    "content encryption algorithm",
    [
        ContentCipher(oids.DES_CBC, 8, 8, False, _des3, legacy=True, expand_key=lambda k: k * 3),
        ContentCipher(oids.DES_EDE3_CBC, 24, 8, False, _des3),
        ContentCipher(oids.AES128_CBC, 16, 16, False, _aes),
        ContentCipher(oids.AES192_CBC, 24, 16, False, _aes),
        ContentCipher(oids.AES256_CBC, 32, 16, False, _aes),
        ContentCipher(oids.AES128_GCM, 16, 12, True, AESGCM),
        ContentCipher(oids.AES192_GCM, 24, 12, True, AESGCM),
        ContentCipher(oids.AES256_GCM, 32, 12, True, AESGCM),
    ],
)


# --- key wrap (RFC 3394), used by PasswordRecipientInfo and KEMRecipientInfo ---


@dataclass(frozen=True)
class KeyWrap(NamedByOid):
    oid: ObjectIdentifier
    kek_size: int
    legacy: bool = False


KEY_WRAPS: Registry[KeyWrap] = Registry(
    "key wrap algorithm",
    [
        KeyWrap(oids.AES128_WRAP, 16),
        KeyWrap(oids.AES192_WRAP, 24),
        KeyWrap(oids.AES256_WRAP, 32),
    ],
)


# --- key derivation for KEMRecipientInfo (RFC 9629 section 5, RFC 8619 HKDF OIDs) ---


@dataclass(frozen=True)
class KeyDerivation(NamedByOid):
    oid: ObjectIdentifier
    hash_factory: Callable[[], hashes.HashAlgorithm]
    legacy: bool = False

    def derive(self, ikm: bytes, length: int, info: bytes, salt: bytes = b"") -> bytes:
        """HKDF (RFC 5869) as RFC 9629 uses it: IKM = the KEM shared secret, salt empty."""
        return HKDF(self.hash_factory(), length, salt, info).derive(ikm)


KDFS: Registry[KeyDerivation] = Registry(
    "key derivation function",
    [
        KeyDerivation(oids.HKDF_SHA256, hashes.SHA256),
        KeyDerivation(oids.HKDF_SHA384, hashes.SHA384),
        KeyDerivation(oids.HKDF_SHA512, hashes.SHA512),
    ],
)


# --- KEM algorithms (RFC 9936 ML-KEM in CMS, FIPS 203) ---


@dataclass(frozen=True)
class KemAlgorithm(NamedByOid):
    oid: ObjectIdentifier
    public_key_size: int  # bytes of ek
    ciphertext_size: int
    shared_secret_size: int
    private_key_class: type[Any] | None  # None: known but not implemented by cryptography 50
    public_key_class: type[Any] | None
    legacy: bool = False

    @property
    def available(self) -> bool:
        return self.private_key_class is not None

    def fits(self, key) -> bool:
        """True when `key` (private or public) is a key of this KEM."""
        classes = tuple(c for c in (self.private_key_class, self.public_key_class) if c is not None)
        return bool(classes) and isinstance(key, classes)


KEMS: Registry[KemAlgorithm] = Registry(
    "KEM algorithm",
    [
        # ML-KEM-512 is known (so messages and keys can name it) but cryptography 50 lacks it.
        KemAlgorithm(oids.ML_KEM_512, 800, 768, 32, None, None),
        KemAlgorithm(oids.ML_KEM_768, 1184, 1088, 32, mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey),
        KemAlgorithm(oids.ML_KEM_1024, 1568, 1568, 32, mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey),
    ],
)


def kem_for_key(key) -> KemAlgorithm:
    """The KEM entry of an ML-KEM private or public key object."""
    for entry in KEMS:
        if entry.fits(key):
            return entry
    raise UnknownAlgorithm(f"{type(key).__name__} is not a key of a supported KEM")


# --- PBKDF2 pseudo-random functions (RFC 8018 B.1.2), for PasswordRecipientInfo ---


@dataclass(frozen=True)
class Pbkdf2Prf(NamedByOid):
    oid: ObjectIdentifier
    hash_factory: Callable[[], hashes.HashAlgorithm]
    legacy: bool = False


PBKDF2_PRFS: Registry[Pbkdf2Prf] = Registry(
    "PBKDF2 PRF",
    [
        # hmacWithSHA1 is PBKDF2's DEFAULT (an absent prf means it): read, never written.
        Pbkdf2Prf(oids.HMAC_WITH_SHA1, hashes.SHA1),
        Pbkdf2Prf(oids.HMAC_WITH_SHA256, hashes.SHA256),
        Pbkdf2Prf(oids.HMAC_WITH_SHA384, hashes.SHA384),
        Pbkdf2Prf(oids.HMAC_WITH_SHA512, hashes.SHA512),
    ],
)

__all__ += ["kem_for_key"]
