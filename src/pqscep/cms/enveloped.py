"""CMS EnvelopedData (RFC 5652 section 6) and AuthEnvelopedData (RFC 5083): open and seal.

A recipient is something that can recover the content-encryption key from one RecipientInfo.
Each RecipientInfo form is one class here with a `tag` (its CHOICE tag), `matches` and
`unwrap`; `open_envelope` tries the caller's recipients against the message's RecipientInfos.
`seal_envelope` encrypts for one recipient with the content cipher the caller picks.
Randomness (CEK, IV, nonce) comes from the caller's `random_bytes`, so a run can be replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from ..asn1 import ber, cms, der, oids
from ..crypto.registry import CIPHERS, ContentCipher, DecryptionError, UnknownAlgorithm
from .signed import subject_key_identifier

__all__ = [
    "EnvelopeError",
    "OpenedEnvelope",
    "KeyTransRecipient",
    "KeyTransOriginator",
    "open_envelope",
    "seal_envelope",
]

RandomBytes = Callable[[int], bytes]
# Bounds on what one envelope can make this side do (a request is unauthenticated): the first
# MAX_RECIPIENT_INFOS RecipientInfos are looked at, the rest are not; of those, at most
# MAX_PASSWORD_INFOS PasswordRecipientInfos are tried (each is a PBKDF2 derivation and a guess
# at the password), the others count as recipients that did not decrypt.
MAX_RECIPIENT_INFOS = 4
MAX_PASSWORD_INFOS = 1


class EnvelopeError(ValueError):
    """An envelope that cannot be opened. `no_recipient` tells that no RecipientInfo named us."""

    def __init__(self, message: str, *, no_recipient: bool = False, bad_algorithm: bool = False,
                 decryption: bool = False):
        super().__init__(message)
        self.no_recipient = no_recipient
        self.bad_algorithm = bad_algorithm
        self.decryption = decryption  # the keys or the content did not decrypt (vs malformed)


@dataclass
class OpenedEnvelope:
    content: bytes
    content_type: x509.ObjectIdentifier
    cipher: ContentCipher
    recipient_kind: str  # "ktri", "pwri", "kemri"
    authenticated: bool  # AuthEnvelopedData (AES-GCM)


class Recipient(Protocol):
    tag: int
    kind: str

    def matches(self, info_der: bytes) -> bool: ...

    def unwrap(self, info_der: bytes, *, allow_legacy: bool) -> bytes: ...


def _rid_matches(rid, cert: x509.Certificate) -> bool:
    if isinstance(rid, bytes):
        return rid == subject_key_identifier(cert)
    return rid.serial_number == cert.serial_number and cms.tlv_bytes(rid.issuer) == der.issuer(cert)


@dataclass
class KeyTransRecipient:
    """An RSA private key and its certificate (KeyTransRecipientInfo, RSAES-PKCS1-v1_5).

    With no certificate (a bare key given to `pqscep inspect --key`), every KTRI is tried.
    """

    certificate: x509.Certificate | None
    private_key: object
    tag = cms.KTRI_TAG
    kind = "ktri"

    def matches(self, info_der: bytes) -> bool:
        if self.certificate is None:
            return True
        info = cms.decode_der(cms.KeyTransRecipientInfo, info_der)
        return _rid_matches(info.rid, self.certificate)

    def unwrap(self, info_der: bytes, *, allow_legacy: bool) -> bytes:
        info = cms.decode_der(cms.KeyTransRecipientInfo, info_der)
        algorithm = cms.parse_algorithm(info.key_encryption_algorithm)
        if algorithm.oid != oids.RSA_ENCRYPTION:
            raise EnvelopeError(
                f"key transport algorithm {algorithm.oid.dotted_string} is not supported", bad_algorithm=True
            )
        try:
            return self.private_key.decrypt(info.encrypted_key, padding.PKCS1v15())  # type: ignore[attr-defined]
        except ValueError:
            raise EnvelopeError(
                "the encrypted key does not decrypt with this recipient's key", decryption=True
            ) from None


# RFC 8017 A.1 / RFC 3370 4.2.1: rsaEncryption with NULL parameters.
_RSA_ENCRYPTION_ALGORITHM = cms.encode_algorithm(oids.RSA_ENCRYPTION, cms.NULL)


class Originator(Protocol):
    """Who an envelope is sealed to: it makes the RecipientInfo that carries the content key
    (KeyTransOriginator here, cms.kem.KemOriginator, cms.password.PasswordOriginator)."""

    def recipient_info(self, cek: bytes, random_bytes: RandomBytes) -> bytes: ...


@dataclass
class KeyTransOriginator:
    """Encrypt the CEK to an RSA certificate (KeyTransRecipientInfo, version 0)."""

    certificate: x509.Certificate

    def recipient_info(self, cek: bytes, random_bytes: RandomBytes) -> bytes:
        public_key = self.certificate.public_key()
        encrypted = public_key.encrypt(cek, padding.PKCS1v15())  # type: ignore[union-attr]
        # KeyTransRecipientInfo (RFC 5652 6.2.1), version 0 with an IssuerAndSerialNumber rid.
        return der.sequence(
            der.integer(0),
            der.issuer_and_serial(self.certificate),
            _RSA_ENCRYPTION_ALGORITHM,
            der.octet_string(encrypted),
        )

    version_needed = 0


def _cipher_parameters(cipher: ContentCipher, params: bytes | None) -> tuple[bytes, int]:
    """(IV or nonce, tag length) from a content-encryption AlgorithmIdentifier's parameters."""
    if params is None:
        raise EnvelopeError(f"{cipher.name} without parameters", bad_algorithm=True)
    if cipher.aead:
        gcm = cms.decode_der(cms.GcmParameters, params)
        return gcm.nonce, gcm.icv_len
    return cms.decode_der(bytes, params), 0


def open_envelope(data: bytes, recipients: list, *, allow_legacy: bool = False) -> OpenedEnvelope:
    """Decrypt a ContentInfo holding an EnvelopedData or AuthEnvelopedData (BER accepted)."""
    content_info = cms.decode(cms.ContentInfo, data)
    body = cms.tlv_bytes(content_info.content)
    if content_info.content_type == oids.ENVELOPED_DATA:
        env = cms.decode_der(cms.EnvelopedData, body)
        infos, eci, authenticated = env.recipient_infos, env.encrypted_content_info, False
    elif content_info.content_type == oids.AUTH_ENVELOPED_DATA:
        env = cms.decode_der(cms.AuthEnvelopedData, body)
        infos, eci, authenticated = env.recipient_infos, env.auth_encrypted_content_info, True
    else:
        raise EnvelopeError(f"content type {content_info.content_type.dotted_string} is not an envelope")
    algorithm = cms.parse_algorithm(eci.content_encryption_algorithm)
    try:
        cipher = CIPHERS.by_oid(algorithm.oid, allow_legacy=allow_legacy)
    except UnknownAlgorithm as exc:
        raise EnvelopeError(str(exc), bad_algorithm=True) from None
    if cipher.aead != authenticated:
        raise EnvelopeError(f"{cipher.name} does not fit a{'n Auth' if authenticated else 'n '}EnvelopedData",
                            bad_algorithm=True)
    iv, tag_len = _cipher_parameters(cipher, algorithm.parameters)
    try:
        ciphertext = ber.join_constructed_string(cms.tlv_bytes(eci.encrypted_content))
    except ber.BerError as exc:
        raise EnvelopeError(f"bad encryptedContent: {exc}") from None

    aad = None
    if authenticated and env.auth_attrs is not None:  # RFC 5083 section 2.1: AAD is the DER SET OF
        aad = ber.encode_tlv(0x31, b"".join(sorted(cms.encode(a) for a in env.auth_attrs.as_list())))
    # Each key the recipients recover is tried on the content: RSA PKCS#1 v1.5 decryption with
    # implicit rejection (OpenSSL 3.2+) returns random bytes for a wrong key instead of failing,
    # so only the content's padding or tag tells a right key from a wrong one.
    error: EnvelopeError | None = None
    for cek, kind in _candidate_keys([cms.tlv_bytes(i) for i in infos.as_list()], recipients, allow_legacy):
        try:
            if len(cek) != cipher.key_size:
                raise DecryptionError(f"recovered key has {len(cek)} bytes, {cipher.name} needs {cipher.key_size}")
            if authenticated:
                if len(env.mac) != tag_len:
                    raise DecryptionError("mac length differs from the GCM parameters' icvLen")
                plaintext = cipher.decrypt_gcm(cek, iv, ciphertext, env.mac, aad)
            else:
                plaintext = cipher.decrypt_cbc(cek, iv, ciphertext)
        except DecryptionError as exc:
            error = EnvelopeError(str(exc), decryption=True)
            continue
        return OpenedEnvelope(plaintext, eci.content_type, cipher, kind, authenticated)
    raise error or EnvelopeError("no RecipientInfo is addressed to a key this side holds", no_recipient=True)


def _candidate_keys(infos: list[bytes], recipients: list, allow_legacy: bool):
    """Yield (content-encryption key, recipient kind) for every RecipientInfo one of our
    recipients matches; errors of single RecipientInfos are remembered, raised if none works."""
    errors: list[EnvelopeError] = []
    passwords = 0
    for info in infos[:MAX_RECIPIENT_INFOS]:
        if info[0] == cms.PWRI_TAG:
            passwords += 1
            if passwords > MAX_PASSWORD_INFOS or not any(r.tag == cms.PWRI_TAG for r in recipients):
                # Not tried: answered as a PWRI whose password is wrong (RFC 8894 section 3.1 makes
                # the PWRI optional; a side without one cannot tell a right password from a wrong one).
                errors.append(EnvelopeError("PasswordRecipientInfo not tried", decryption=True))
                continue
        for recipient in recipients:
            if info[0] != recipient.tag:
                continue
            try:
                if not recipient.matches(info):
                    continue
                yield recipient.unwrap(info, allow_legacy=allow_legacy), recipient.kind
            except cms.Asn1Error as exc:
                errors.append(EnvelopeError(str(exc)))
            except EnvelopeError as exc:
                if exc.bad_algorithm:
                    raise
                errors.append(exc)
    if errors:
        raise errors[0]


def seal_envelope(
    content: bytes,
    originator: Originator,
    cipher: ContentCipher,
    random_bytes: RandomBytes,
    *,
    content_type: x509.ObjectIdentifier = oids.DATA,
) -> bytes:
    """Encrypt `content` for one recipient; AES-GCM ciphers give an AuthEnvelopedData."""
    cek = random_bytes(cipher.key_size)
    iv = random_bytes(cipher.iv_size)
    info_der = originator.recipient_info(cek, random_bytes)
    # Written with the asn1.der writers in the layout of cms.EnvelopedData/AuthEnvelopedData
    # (tests/test_der.py checks the two agree): one of these per CertRep and per request.
    infos = der.set_of([info_der])
    if cipher.aead:
        # RFC 5084 3.2: GCMParameters with a 16-byte ICV (the DEFAULT is 12, so it is written).
        params = der.sequence(der.octet_string(iv), der.integer(16))
        ciphertext, tag = cipher.encrypt_gcm(cek, iv, content, None)
        eci = _encrypted_content_info(content_type, cms.encode_algorithm(cipher.oid, params), ciphertext)
        # AuthEnvelopedData version 0 (RFC 5083 section 2.1), no attributes.
        body = der.sequence(der.integer(0), infos, eci, der.octet_string(tag))
        outer = oids.AUTH_ENVELOPED_DATA
    else:
        ciphertext = cipher.encrypt_cbc(cek, iv, content)
        eci = _encrypted_content_info(content_type, cms.encode_algorithm(cipher.oid, der.octet_string(iv)), ciphertext)
        version = max(getattr(originator, "version_needed", 0), 0)
        body = der.sequence(der.integer(version), infos, eci)
        outer = oids.ENVELOPED_DATA
    return der.sequence(der.oid(outer), der.context(0, body))


def _encrypted_content_info(content_type: x509.ObjectIdentifier, algorithm_der: bytes, ciphertext: bytes) -> bytes:
    # encryptedContent is [0] IMPLICIT OCTET STRING: primitive, tag 0x80.
    return der.sequence(der.oid(content_type), algorithm_der, ber.encode_tlv(0x80, ciphertext))
