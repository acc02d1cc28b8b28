"""KEMRecipientInfo (RFC 9629) with ML-KEM (RFC 9936): the recipient and originator objects that
`enveloped.open_envelope` / `seal_envelope` use, and the steps between them, public for tests.

A KEMRecipientInfo travels as `[4] IMPLICIT OtherRecipientInfo { oriType id-ori-kem, oriValue }`.
Sender: (ss, kemct) = Encapsulate(ek); KEK = KDF(IKM = ss, salt = empty, L = kekLength,
info = DER(CMSORIforKEMOtherInfo { wrap, kekLength, ukm })); encryptedKey = AES-KW(KEK, CEK).
Receiver: the same backwards. As the draft (docs/draft), Section 5.1, requires, every
`recipient_info` call encapsulates afresh; nothing here keeps a shared secret or a KEK after the
call that made it.

Error flags (`EnvelopeError`), which the protocol layer turns into failInfo:
- bad_algorithm: a KEM, KDF or wrap this side does not implement or that does not fit the key,
  parameters where RFC 8619/3565/9936 say absent, and a kekLength that differs from the wrap's
  KEK size (a mismatched parameter: RFC 9629 section 3 ties kekLength to the wrap algorithm);
- decryption: the AES key unwrap fails (a wrong key or a tampered ciphertext: ML-KEM's implicit
  rejection turns a bad kemct into a wrong KEK, so it ends here too);
- neither: malformed input, e.g. a kemct whose length is not the KEM's ciphertext size.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import keywrap, serialization
from cryptography.x509 import ObjectIdentifier

from ..asn1 import cms, oids
from ..crypto.registry import (
    KDFS,
    KEMS,
    KEY_WRAPS,
    KemAlgorithm,
    KeyDerivation,
    KeyWrap,
    UnknownAlgorithm,
    kem_for_key,
)
from ..crypto.spki import public_key_from_spki
from .enveloped import EnvelopeError, RandomBytes
from .signed import subject_key_identifier as certificate_ski

__all__ = [
    "KemOriginator",
    "KemRecipient",
    "KemRecipientInfoView",
    "derive_kek",
    "key_identifier",
    "ml_kem_public_key_from_spki",
    "ml_kem_spki",
    "parse_kem_recipient_info",
    "unwrap_with_shared_secret",
]


# --- lookups ---


def _kdf(kdf: KeyDerivation | ObjectIdentifier | str) -> KeyDerivation:
    if isinstance(kdf, KeyDerivation):
        return kdf
    return KDFS.by_oid(kdf) if isinstance(kdf, ObjectIdentifier) else KDFS.by_name(kdf)


def _wrap(wrap: KeyWrap | ObjectIdentifier | str) -> KeyWrap:
    if isinstance(wrap, KeyWrap):
        return wrap
    return KEY_WRAPS.by_oid(wrap) if isinstance(wrap, ObjectIdentifier) else KEY_WRAPS.by_name(wrap)


def _no_parameters(algorithm: cms.Algorithm, what: str) -> None:
    # RFC 8619 (HKDF), RFC 3565 (AES key wrap), RFC 9936 (ML-KEM): parameters MUST be absent.
    # A NULL is tolerated on input, as for other AlgorithmIdentifiers some encoders pad with it.
    if algorithm.parameters not in (None, cms.NULL):
        raise EnvelopeError(f"{what} {algorithm.oid.dotted_string} must have no parameters", bad_algorithm=True)


# --- the KDF step ---


def derive_kek(
    shared_secret: bytes,
    kdf: KeyDerivation | ObjectIdentifier | str,
    wrap: KeyWrap | ObjectIdentifier | str | bytes,
    kek_length: int,
    ukm: bytes | None = None,
) -> tuple[bytes, bytes]:
    """(info, KEK): info = DER(CMSORIforKEMOtherInfo), KEK = KDF(ss, salt empty, info, kekLength).

    `wrap` may be the wrap AlgorithmIdentifier's DER exactly as a message carried it (the
    receiver must put those very bytes into info), or a registry entry / OID / name (encoded
    without parameters, as RFC 3565 says)."""
    wrap_der = bytes(wrap) if isinstance(wrap, (bytes, bytearray)) else cms.encode_algorithm(_wrap(wrap).oid)
    if not 1 <= kek_length <= 65535:
        raise ValueError(f"kekLength {kek_length} is outside 1..65535 (RFC 9629)")
    info = cms.encode(cms.CMSORIforKEMOtherInfo(wrap=cms.as_tlv(wrap_der), kek_length=kek_length, ukm=ukm))
    return info, _kdf(kdf).derive(shared_secret, kek_length, info)


# --- parsing a KEMRecipientInfo ---


@dataclass(frozen=True)
class KemRecipientInfoView:
    """A KEMRecipientInfo taken apart (the raw fields; nothing checked beyond the syntax)."""

    version: int
    rid_issuer_der: bytes | None  # IssuerAndSerialNumber form
    rid_serial: int | None
    rid_ski: bytes | None  # [0] subjectKeyIdentifier form
    kem: cms.Algorithm
    kemct: bytes
    kdf: cms.Algorithm
    kek_length: int
    ukm: bytes | None
    wrap: cms.Algorithm
    wrap_der: bytes  # the wrap AlgorithmIdentifier as carried: it goes into the KDF's info
    encrypted_key: bytes


def _kemri_der(info_der: bytes) -> bytes | None:
    """The KEMRecipientInfo SEQUENCE inside a `[4]` ORI, None if the ORI is of another type.
    A bare KEMRecipientInfo SEQUENCE is accepted as well."""
    if info_der[:1] == b"\x30":
        return info_der
    if info_der[:1] != bytes((cms.ORI_TAG,)):
        raise cms.Asn1Error("not an OtherRecipientInfo")
    ori = cms.decode_der(cms.OtherRecipientInfo, cms.implicit_to_sequence(info_der))
    if ori.ori_type != oids.ORI_KEM:
        return None
    return cms.tlv_bytes(ori.ori_value)


def parse_kem_recipient_info(info_der: bytes) -> KemRecipientInfoView:
    """Decode a `[4]` OtherRecipientInfo holding a KEMRecipientInfo (or the bare SEQUENCE).

    Raises cms.Asn1Error when malformed, EnvelopeError when the ORI is not id-ori-kem."""
    der = _kemri_der(info_der)
    if der is None:
        raise EnvelopeError("the OtherRecipientInfo is not a KEMRecipientInfo (oriType is not id-ori-kem)")
    info = cms.decode_der(cms.KEMRecipientInfo, der)
    if isinstance(info.rid, bytes):
        issuer, serial, ski = None, None, info.rid
    else:
        issuer, serial, ski = cms.tlv_bytes(info.rid.issuer), info.rid.serial_number, None
    return KemRecipientInfoView(
        version=info.version,
        rid_issuer_der=issuer,
        rid_serial=serial,
        rid_ski=ski,
        kem=cms.parse_algorithm(info.kem),
        kemct=info.kemct,
        kdf=cms.parse_algorithm(info.kdf),
        kek_length=info.kek_length,
        ukm=info.ukm,
        wrap=cms.parse_algorithm(info.wrap),
        wrap_der=cms.tlv_bytes(info.wrap),
        encrypted_key=info.encrypted_key,
    )


def _checked(view: KemRecipientInfoView) -> tuple[KeyDerivation, KeyWrap]:
    """The KDF and wrap of a KEMRecipientInfo, with everything that does not need the key checked."""
    if view.version != 0:
        raise EnvelopeError(f"KEMRecipientInfo version {view.version} is not 0 (RFC 9629)")
    try:
        kdf = KDFS.by_oid(view.kdf.oid)
    except UnknownAlgorithm as exc:
        raise EnvelopeError(str(exc), bad_algorithm=True) from None
    try:
        wrap = KEY_WRAPS.by_oid(view.wrap.oid)
    except UnknownAlgorithm as exc:
        raise EnvelopeError(str(exc), bad_algorithm=True) from None
    _no_parameters(view.kdf, "KDF")
    _no_parameters(view.wrap, "key wrap")
    if view.kek_length != wrap.kek_size:
        # Not a decryption failure but a mismatched parameter: kekLength must be the size of the
        # wrap algorithm's key (RFC 9629 section 3), so this is reported like an unusable algorithm.
        raise EnvelopeError(
            f"kekLength {view.kek_length} does not match {wrap.name}, which needs a {wrap.kek_size}-byte KEK",
            bad_algorithm=True,
        )
    if len(view.encrypted_key) < 24 or len(view.encrypted_key) % 8:
        raise EnvelopeError(f"encryptedKey of {len(view.encrypted_key)} bytes is not an AES key wrap output")
    return kdf, wrap


def unwrap_with_shared_secret(info_der: bytes | KemRecipientInfoView, shared_secret: bytes) -> bytes:
    """The CEK of a KEMRecipientInfo, given the KEM shared secret (the steps after Decapsulate)."""
    view = info_der if isinstance(info_der, KemRecipientInfoView) else parse_kem_recipient_info(info_der)
    kdf, _wrap_entry = _checked(view)
    _, kek = derive_kek(shared_secret, kdf, view.wrap_der, view.kek_length, view.ukm)
    try:
        return keywrap.aes_key_unwrap(kek, view.encrypted_key)
    except (keywrap.InvalidUnwrap, ValueError):
        raise EnvelopeError("the encrypted key does not unwrap with the KEK this recipient derives",
                            decryption=True) from None


# --- recipient (decrypting side) ---


class KemRecipient:
    """An ML-KEM private key that opens KEMRecipientInfos addressed to it.

    The rid names this key when it is the IssuerAndSerialNumber of `certificate`, or a
    subjectKeyIdentifier equal to the certificate's SKI or to `subject_key_identifier`. With
    neither a certificate nor an SKI, every KEMRecipientInfo of this key's KEM is tried.
    """

    tag = cms.ORI_TAG
    kind = "kemri"

    def __init__(self, private_key, certificate: x509.Certificate | None = None,
                 subject_key_identifier: bytes | None = None):
        self.private_key = private_key
        self.kem: KemAlgorithm = kem_for_key(private_key)
        self.certificate = certificate
        self.subject_key_identifier = subject_key_identifier
        self._skis: set[bytes] = set()
        if subject_key_identifier is not None:
            self._skis.add(bytes(subject_key_identifier))
        if certificate is not None:
            with contextlib.suppress(ValueError, TypeError):  # a key cryptography cannot hash
                self._skis.add(certificate_ski(certificate))
            self._issuer = certificate.issuer.public_bytes()

    def __repr__(self) -> str:
        return f"KemRecipient({self.kem.name}, certificate={self.certificate is not None})"

    def matches(self, info_der: bytes) -> bool:
        der = _kemri_der(info_der)
        if der is None:
            return False
        view = parse_kem_recipient_info(der)
        if self.certificate is None and not self._skis:
            return view.kem.oid == self.kem.oid
        if view.rid_ski is not None:
            return view.rid_ski in self._skis
        return (
            self.certificate is not None
            and view.rid_serial == self.certificate.serial_number
            and view.rid_issuer_der == self._issuer
        )

    def unwrap(self, info_der: bytes, *, allow_legacy: bool = False) -> bytes:
        view = parse_kem_recipient_info(info_der)
        if view.kem.oid != self.kem.oid:
            entry = KEMS.get(view.kem.oid)
            named = entry.name if entry else view.kem.oid.dotted_string
            raise EnvelopeError(f"KEMRecipientInfo uses {named} but this recipient's key is {self.kem.name}",
                                bad_algorithm=True)
        _no_parameters(view.kem, "KEM")
        _checked(view)
        if len(view.kemct) != self.kem.ciphertext_size:
            raise EnvelopeError(
                f"kemct has {len(view.kemct)} bytes; {self.kem.name} ciphertexts have {self.kem.ciphertext_size}"
            )
        try:
            shared_secret = self.private_key.decapsulate(view.kemct)
        except ValueError as exc:  # pragma: no cover - the length was checked above
            raise EnvelopeError(f"decapsulation failed: {exc}", decryption=True) from None
        return unwrap_with_shared_secret(view, shared_secret)


# --- originator (encrypting side) ---


def key_identifier(public_key) -> bytes:
    """RFC 5280 4.2.1.2 method 1 key identifier (SHA-1 of the subjectPublicKey BIT STRING)."""
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest


class KemOriginator:
    """Encrypt the CEK to an ML-KEM public key (KEMRecipientInfo version 0 inside a `[4]` ORI).

    rid: the certificate's IssuerAndSerialNumber when a certificate is given, else the
    subjectKeyIdentifier `subject_key_identifier` (default: the RFC 5280 method-1 identifier of
    the public key). `public_key` may be None when a certificate is given.
    """

    version_needed = 3  # RFC 5652 6.1: EnvelopedData version 3 with an ori (AuthEnvelopedData: 0)

    def __init__(self, public_key, *, certificate: x509.Certificate | None = None,
                 subject_key_identifier: bytes | None = None,
                 kdf: KeyDerivation | ObjectIdentifier | str = "hkdf-sha256",
                 wrap: KeyWrap | ObjectIdentifier | str = "aes256-wrap", ukm: bytes | None = None):
        if public_key is None:
            if certificate is None:
                raise ValueError("KemOriginator needs a public key or a certificate")
            public_key = certificate.public_key()
        elif certificate is not None and certificate.public_key() != public_key:
            raise ValueError("the public key is not the certificate's")
        try:
            self.kem = kem_for_key(public_key)
        except UnknownAlgorithm as exc:
            raise ValueError(f"not an ML-KEM key this build supports: {exc}") from None
        self.public_key = public_key
        self.certificate = certificate
        self.subject_key_identifier = (
            subject_key_identifier if subject_key_identifier is not None or certificate is not None
            else key_identifier(public_key)
        )
        self.kdf = _kdf(kdf)
        self.wrap = _wrap(wrap)
        self.ukm = ukm

    def _rid(self):
        if self.certificate is not None:
            return cms.IssuerAndSerialNumber(
                issuer=cms.as_tlv(self.certificate.issuer.public_bytes()),
                serial_number=self.certificate.serial_number,
            )
        return bytes(self.subject_key_identifier)

    def recipient_info(self, cek: bytes, random_bytes: RandomBytes | None = None) -> bytes:
        """The whole `[4] IMPLICIT OtherRecipientInfo` DER. A fresh encapsulation every call
        (cryptography draws its randomness; `random_bytes` is not used by ML-KEM)."""
        shared_secret, kemct = self.public_key.encapsulate()
        kek_length = self.wrap.kek_size
        _, kek = derive_kek(shared_secret, self.kdf, self.wrap, kek_length, self.ukm)
        del shared_secret
        kemri = cms.KEMRecipientInfo(
            version=0,
            rid=self._rid(),
            kem=cms.algorithm_tlv(self.kem.oid),
            kemct=kemct,
            kdf=cms.algorithm_tlv(self.kdf.oid),
            kek_length=kek_length,
            ukm=self.ukm,
            wrap=cms.algorithm_tlv(self.wrap.oid),
            encrypted_key=keywrap.aes_key_wrap(kek, cek),
        )
        ori = cms.OtherRecipientInfo(ori_type=oids.ORI_KEM, ori_value=cms.as_tlv(cms.encode(kemri)))
        return cms.sequence_to_implicit(cms.encode(ori), cms.ORI_TAG)


# --- public keys (the responseKey attribute, draft Section 6.2) ---


def ml_kem_public_key_from_spki(der: bytes):
    """The ML-KEM public key in a DER SubjectPublicKeyInfo (a responseKey attribute value).

    ValueError (key_errors.UnsupportedKeyForm for ML-KEM-512) when it is not a usable ML-KEM key."""
    key = public_key_from_spki(der)
    try:
        kem_for_key(key)
    except UnknownAlgorithm:
        raise ValueError(f"the SubjectPublicKeyInfo holds a {type(key).__name__}, not an ML-KEM key") from None
    return key


def ml_kem_spki(public_key) -> bytes:
    """DER SubjectPublicKeyInfo of an ML-KEM public key (what a responseKey attribute carries)."""
    kem_for_key(public_key)
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
