"""PasswordRecipientInfo (RFC 3211, RFC 5652 section 6.2.4) keyed by the SCEP challenge password,
which RFC 8894 section 3.1 allows when the CA has no key that can decrypt.

keyDerivationAlgorithm: PBKDF2 (RFC 8018) with a 16-byte random salt and HMAC-SHA-256 (read:
HMAC-SHA-1, PBKDF2's DEFAULT when the prf is absent, and HMAC-SHA-384/512 too).
keyEncryptionAlgorithm, both read:
- id-alg-PWRI-KEK (RFC 3211 section 2.3): the CEK, with a length byte and a check value, padded
  and encrypted twice in CBC mode with a block cipher (AES, 3DES) under the KEK. This is what
  OpenSSL's `cms -encrypt -pwri_password` writes and `cms -decrypt -pwri_password` reads, and what
  `PasswordOriginator` writes by default (AES-256-CBC).
- id-aes128/192/256-wrap (RFC 3394 key wrap of the CEK under the PBKDF2 output), on request.

Iteration counts below 1000 or above 10,000,000 are refused on input (a request must not make
the CA spend minutes in PBKDF2: a denial-of-service guard) and not written either.
"""

from __future__ import annotations

from cryptography.hazmat.asn1 import Null
from cryptography.hazmat.primitives import keywrap
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.x509 import ObjectIdentifier

from ..asn1 import cms, oids
from ..crypto.registry import CIPHERS, KEY_WRAPS, PBKDF2_PRFS, ContentCipher, KeyWrap, UnknownAlgorithm
from .enveloped import EnvelopeError, RandomBytes

__all__ = [
    "MAX_ITERATIONS",
    "MIN_ITERATIONS",
    "PWRI_KEK",
    "PasswordOriginator",
    "PasswordRecipient",
    "pwri_kek_unwrap",
    "pwri_kek_wrap",
]

MIN_ITERATIONS = 1000
MAX_ITERATIONS = 10_000_000
PWRI_KEK = "pwri-kek"  # the `wrap` name of id-alg-PWRI-KEK
SALT_SIZE = 16


def _check_iterations(count: int) -> None:
    if not MIN_ITERATIONS <= count <= MAX_ITERATIONS:
        raise EnvelopeError(
            f"PBKDF2 iteration count {count} is outside {MIN_ITERATIONS}..{MAX_ITERATIONS:,}: refused as a "
            "denial-of-service guard",
            bad_algorithm=True,
        )


# --- RFC 3211 section 2.3 key wrap ---


def _cbc(cipher: ContentCipher, key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    algorithm = cipher.make(cipher.expand_key(key))
    context = Cipher(algorithm, modes.CBC(iv))  # type: ignore[arg-type]
    op = context.encryptor() if encrypt else context.decryptor()
    return op.update(data) + op.finalize()


def _block_size(cipher: ContentCipher) -> int:
    return cipher.make(cipher.expand_key(bytes(cipher.key_size))).block_size // 8  # type: ignore[attr-defined]


def pwri_kek_wrap(cipher: ContentCipher, kek: bytes, iv: bytes, cek: bytes, random_bytes: RandomBytes) -> bytes:
    """RFC 3211 2.3.1: length byte, check value, CEK, random padding to >= 2 blocks; CBC twice."""
    if not 3 <= len(cek) <= 255:
        raise ValueError("RFC 3211 key wrap takes keys of 3 to 255 bytes")
    block = _block_size(cipher)
    content = bytes((len(cek),)) + bytes(b ^ 0xFF for b in cek[:3]) + cek
    size = max(2 * block, -(-len(content) // block) * block)
    content += random_bytes(size - len(content))
    inner = _cbc(cipher, kek, iv, content, encrypt=True)
    return _cbc(cipher, kek, inner[-block:], inner, encrypt=True)


def pwri_kek_unwrap(cipher: ContentCipher, kek: bytes, iv: bytes, wrapped: bytes) -> bytes:
    """RFC 3211 2.3.2. EnvelopeError(decryption=True) when the check value or length fails."""
    block = _block_size(cipher)
    if len(wrapped) < 2 * block or len(wrapped) % block:
        raise EnvelopeError(f"PWRI encryptedKey of {len(wrapped)} bytes is not two or more {cipher.name} blocks")
    last = _cbc(cipher, kek, wrapped[-2 * block : -block], wrapped[-block:], encrypt=False)
    inner = _cbc(cipher, kek, last, wrapped[:-block], encrypt=False) + last
    content = _cbc(cipher, kek, iv, inner, encrypt=False)
    length = content[0]
    check = all(content[1 + i] ^ content[4 + i] == 0xFF for i in range(3))
    if not check or length < 3 or 4 + length > len(content):
        raise EnvelopeError("the password does not unwrap the content-encryption key", decryption=True)
    return content[4 : 4 + length]


# --- recipient ---


class PasswordRecipient:
    """Opens PasswordRecipientInfos with a password (the SCEP challenge password, as bytes)."""

    tag = cms.PWRI_TAG
    kind = "pwri"

    def __init__(self, password: bytes, *, max_iterations: int = MAX_ITERATIONS):
        if isinstance(password, str):
            password = password.encode("utf-8")
        self.password = password
        # The most PBKDF2 rounds one request may make this side spend (a CPU-cost guard).
        self.max_iterations = max_iterations

    def __repr__(self) -> str:
        return "PasswordRecipient(***)"

    def matches(self, info_der: bytes) -> bool:
        # A PWRI names no key: every one is a candidate (the check value or the content tells).
        cms.decode_der(cms.PasswordRecipientInfo, cms.implicit_to_sequence(info_der))
        return True

    def unwrap(self, info_der: bytes, *, allow_legacy: bool = False) -> bytes:
        info = cms.decode_der(cms.PasswordRecipientInfo, cms.implicit_to_sequence(info_der))
        if info.version != 0:
            raise EnvelopeError(f"PasswordRecipientInfo version {info.version} is not 0 (RFC 3211)")
        kda = info.key_derivation_algorithm
        if kda is None:
            raise EnvelopeError("PasswordRecipientInfo without keyDerivationAlgorithm: the KEK would have to be "
                                "agreed out of band", bad_algorithm=True)
        if kda.algorithm != oids.PBKDF2:
            raise EnvelopeError(f"key derivation {kda.algorithm.dotted_string} is not supported (PBKDF2 is)",
                                bad_algorithm=True)
        params = cms.decode_der(cms.PBKDF2Params, cms.tlv_bytes(kda.parameters))
        _check_iterations(params.iteration_count)
        if params.iteration_count > self.max_iterations:
            # Refused before any derivation, with the answer of a wrong password: a count above
            # this side's cap is not worth telling apart, and telling costs nothing here.
            raise EnvelopeError(f"PBKDF2 iteration count {params.iteration_count} is above this side's cap",
                                decryption=True)
        try:
            prf = PBKDF2_PRFS.by_oid(params.prf.algorithm if params.prf is not None else oids.HMAC_WITH_SHA1)
        except UnknownAlgorithm as exc:
            raise EnvelopeError(str(exc), bad_algorithm=True) from None

        kea = cms.parse_algorithm(info.key_encryption_algorithm)
        if kea.oid == oids.PWRI_KEK:
            if kea.parameters is None:
                raise EnvelopeError("id-alg-PWRI-KEK without its KEK cipher", bad_algorithm=True)
            inner = cms.parse_algorithm(kea.parameters)
            try:
                cipher = CIPHERS.by_oid(inner.oid, allow_legacy=allow_legacy)
            except UnknownAlgorithm as exc:
                raise EnvelopeError(f"PWRI KEK cipher: {exc}", bad_algorithm=True) from None
            if cipher.aead or inner.parameters is None:
                raise EnvelopeError(f"PWRI KEK cipher {cipher.name} must be a CBC cipher with an IV",
                                    bad_algorithm=True)
            iv = cms.decode_der(bytes, inner.parameters)
            if len(iv) != cipher.iv_size:
                raise EnvelopeError(f"{cipher.name} IV must be {cipher.iv_size} bytes")
            kek_size = cipher.key_size
        else:
            try:
                wrap = KEY_WRAPS.by_oid(kea.oid)
            except UnknownAlgorithm:
                raise EnvelopeError(f"key encryption algorithm {kea.oid.dotted_string} is not supported for a "
                                    "PasswordRecipientInfo", bad_algorithm=True) from None
            if kea.parameters not in (None, cms.NULL):
                raise EnvelopeError(f"{wrap.name} must have no parameters", bad_algorithm=True)
            kek_size = wrap.kek_size
        if params.key_length is not None and params.key_length != kek_size:
            raise EnvelopeError(f"PBKDF2 keyLength {params.key_length} does not fit the {kek_size}-byte KEK",
                                bad_algorithm=True)
        kek = PBKDF2HMAC(prf.hash_factory(), kek_size, params.salt, params.iteration_count).derive(self.password)
        if kea.oid == oids.PWRI_KEK:
            return pwri_kek_unwrap(cipher, kek, iv, info.encrypted_key)
        try:
            return keywrap.aes_key_unwrap(kek, info.encrypted_key)
        except (keywrap.InvalidUnwrap, ValueError):
            raise EnvelopeError("the password does not unwrap the content-encryption key", decryption=True) from None


# --- originator ---


class PasswordOriginator:
    """Encrypt the CEK under a password: PasswordRecipientInfo version 0, PBKDF2 with a 16-byte
    salt. `wrap` is "pwri-kek" (RFC 3211 wrap with `kek_cipher`, default AES-256-CBC: what
    OpenSSL reads) or an AES key wrap name ("aes128-wrap", "aes192-wrap", "aes256-wrap")."""

    version_needed = 3  # RFC 5652 6.1: EnvelopedData version 3 with a pwri

    def __init__(self, password: bytes, iterations: int, *, wrap: str | ObjectIdentifier | KeyWrap = PWRI_KEK,
                 kek_cipher: str = "aes256-cbc", prf: str = "hmac-sha256"):
        if isinstance(password, str):
            password = password.encode("utf-8")
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise ValueError(
                f"iterations must be within {MIN_ITERATIONS}..{MAX_ITERATIONS:,} (a reader refuses others)"
            )
        self.password = password
        self.iterations = iterations
        self.prf = PBKDF2_PRFS.by_name(prf)
        self.wrap: KeyWrap | None
        self.kek_cipher: ContentCipher | None
        if wrap == PWRI_KEK or wrap == oids.PWRI_KEK:
            self.wrap, self.kek_cipher = None, CIPHERS.by_name(kek_cipher)
            if self.kek_cipher.aead or self.kek_cipher.legacy:
                raise ValueError(f"{self.kek_cipher.name} cannot be the PWRI KEK cipher")
        elif isinstance(wrap, KeyWrap):
            self.wrap, self.kek_cipher = wrap, None
        else:
            self.wrap = KEY_WRAPS.by_oid(wrap) if isinstance(wrap, ObjectIdentifier) else KEY_WRAPS.by_name(wrap)
            self.kek_cipher = None

    def __repr__(self) -> str:
        return f"PasswordOriginator(***, {self.iterations}, wrap={self.wrap.name if self.wrap else PWRI_KEK})"

    def recipient_info(self, cek: bytes, random_bytes: RandomBytes) -> bytes:
        """The whole `[3] IMPLICIT PasswordRecipientInfo` DER."""
        salt = random_bytes(SALT_SIZE)
        kek_size = self.kek_cipher.key_size if self.kek_cipher else self.wrap.kek_size  # type: ignore[union-attr]
        kek = PBKDF2HMAC(self.prf.hash_factory(), kek_size, salt, self.iterations).derive(self.password)
        if self.kek_cipher is not None:
            iv = random_bytes(self.kek_cipher.iv_size)
            encrypted = pwri_kek_wrap(self.kek_cipher, kek, iv, cek, random_bytes)
            kek_cipher_der = cms.encode_algorithm(self.kek_cipher.oid, cms.encode(iv))
            kea = cms.algorithm_tlv(oids.PWRI_KEK, kek_cipher_der)
        else:
            encrypted = keywrap.aes_key_wrap(kek, cek)
            kea = cms.algorithm_tlv(self.wrap.oid)  # type: ignore[union-attr]
        params = cms.PBKDF2Params(
            salt=salt,
            iteration_count=self.iterations,
            key_length=None,
            prf=cms.HashAlgorithm(algorithm=self.prf.oid, parameters=Null()),
        )
        info = cms.PasswordRecipientInfo(
            version=0,
            key_derivation_algorithm=cms.AlgorithmWithParameters(
                algorithm=oids.PBKDF2, parameters=cms.as_tlv(cms.encode(params))
            ),
            key_encryption_algorithm=kea,
            encrypted_key=encrypted,
        )
        return cms.sequence_to_implicit(cms.encode(info), cms.PWRI_TAG)
