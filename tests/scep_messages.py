"""Build SCEP pkiMessages for tests: correct ones, and ones damaged in one precise place.

`pki_message` assembles the SignedData itself (the same recipe as `pqscep.cms.signed`) so that
a test can leave out an attribute, tamper with one after signing, swap the eContent after the
messageDigest was computed, drop the signer certificate, add a second signer, and so on.
`envelope` does the same for the pkcsPKIEnvelope (unknown cipher OID, odd encryptedContent),
`kem_envelope` for the post-quantum one (a KEMRecipientInfo, RFC 9629, in an AuthEnvelopedData
or EnvelopedData) with every field of the KEMRecipientInfo and of the AES-GCM envelope open to
damage. ML-DSA signers get CMSAlgorithmProtection (RFC 6211), as draft Section 4 asks; a test may
replace it or the signatureAlgorithm. Keys and certificates are made with
`pqscep.protocol.client`, as a real requester would.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.asn1 import SetOf
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ObjectIdentifier
from cryptography.x509.oid import NameOID

from pqscep.asn1 import ber, cms, oids
from pqscep.cms import enveloped, kem
from pqscep.cms.signed import attribute, subject_key_identifier
from pqscep.crypto import signing
from pqscep.crypto.keys import generate_key, key_family
from pqscep.crypto.registry import CIPHERS, DIGESTS, KDFS, KEY_WRAPS, kem_for_key
from pqscep.protocol import client
from pqscep.protocol.messages import MessageType, octets_attribute, printable_attribute, response_key_attribute

__all__ = [
    "Identity",
    "algorithm_protection",
    "auth_envelope",
    "csr_der",
    "envelope",
    "kem_envelope",
    "build_kem_recipient_info",
    "name",
    "now",
    "pki_message",
    "raw_csr",
    "scep_attributes",
    "with_public_key_info",
]

Attrs = list[cms.Attribute]


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def name(cn: str | None) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])


@dataclass
class Identity:
    """A requester: a key and the self-signed certificate that signs its pkiMessages."""

    key: object
    cert: x509.Certificate
    # An ML-KEM-768 key for the responseKey attribute (draft Section 6.2), when the signer key
    # cannot decrypt the reply.
    response_key: object | None = None

    @classmethod
    def new(cls, cn: str = "SCEP requester", *, kind: str = "rsa", bits: int = 2048,
            response_key: bool = False) -> Identity:
        """`kind`: "rsa" (of `bits`), "ec" (P-256), or a pqscep key type ("ml-dsa-65", ...)."""
        if kind == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        elif kind == "ec":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = generate_key(kind)
        cert = client.self_signed_certificate(key, name(cn), now=now(),
                                              serial=int.from_bytes(os.urandom(8), "big") | 1)
        return cls(key, cert, generate_key("ml-kem-768") if response_key else None)

    @property
    def response_key_attribute(self) -> cms.Attribute:
        assert self.response_key is not None
        return response_key_attribute(self.response_key.public_key())

    @property
    def recipients(self) -> list:
        """What opens a CertRep SUCCESS envelope addressed to this requester."""
        found: list = []
        if key_family(self.key) == "rsa":
            found.append(enveloped.KeyTransRecipient(self.cert, self.key))
        if self.response_key is not None:
            ski = kem.key_identifier(self.response_key.public_key())
            found.append(kem.KemRecipient(self.response_key, subject_key_identifier=ski))
        return found


def csr_der(key, cn: str | None, *, challenge: str | None = None, digest=None) -> bytes:
    csr = client.build_csr(key, name(cn), challenge=challenge, digest=digest)
    return csr.public_bytes(serialization.Encoding.DER)


def raw_csr(key, name_der: bytes, attributes_der: bytes) -> bytes:
    """A PKCS#10 request assembled byte by byte (for subjects and attributes that
    `cryptography`'s builder refuses to write), correctly signed with SHA-256 and RSA."""
    from cryptography.hazmat.primitives.asymmetric import padding

    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    info = ber.encode_tlv(0x30, b"\x02\x01\x00" + name_der + spki + ber.encode_tlv(0xA0, attributes_der))
    signature = key.sign(info, padding.PKCS1v15(), hashes.SHA256())
    algorithm = cms.encode_algorithm(oids.SHA256_WITH_RSA, cms.NULL)
    return ber.encode_tlv(0x30, info + algorithm + ber.encode_tlv(0x03, b"\x00" + signature))


def envelope(
    content: bytes,
    recipient: x509.Certificate,
    cipher: str = "aes256-cbc",
    *,
    cipher_oid: x509.ObjectIdentifier | None = None,
    encrypted_content: bytes | None = None,
) -> bytes:
    """A pkcsPKIEnvelope (EnvelopedData, KeyTransRecipientInfo) of `content` for `recipient`.
    `cipher_oid` replaces the content cipher's OID; `encrypted_content` replaces the whole
    [0] encryptedContent TLV (the DER to put there). An AES-GCM `cipher` gives an
    AuthEnvelopedData (see `auth_envelope`), where the other two do not apply."""
    algorithm = CIPHERS.by_name(cipher)
    if algorithm.aead:
        if cipher_oid is not None or encrypted_content is not None:
            raise ValueError("cipher_oid and encrypted_content are for EnvelopedData (CBC ciphers)")
        originator = enveloped.KeyTransOriginator(recipient)
        return auth_envelope(content, lambda cek: originator.recipient_info(cek, os.urandom), cipher)
    cek, iv = os.urandom(algorithm.key_size), os.urandom(algorithm.iv_size)
    info = enveloped.KeyTransOriginator(recipient).recipient_info(cek, os.urandom)
    eci = cms.EncryptedContentInfo(
        content_type=oids.DATA,
        content_encryption_algorithm=cms.algorithm_tlv(cipher_oid or algorithm.oid, cms.encode(iv)),
        encrypted_content=cms.as_tlv(
            encrypted_content or ber.encode_tlv(0x80, algorithm.encrypt_cbc(cek, iv, content))
        ),
    )
    body = cms.EnvelopedData(version=0, originator_info=None, recipient_infos=SetOf([cms.as_tlv(info)]),
                             encrypted_content_info=eci, unprotected_attrs=None)
    return cms.encode(cms.ContentInfo(content_type=oids.ENVELOPED_DATA, content=cms.as_tlv(cms.encode(body))))


def auth_envelope(
    content: bytes,
    recipient_info: Callable[[bytes], bytes],
    cipher: str = "aes256-gcm",
    *,
    auth_attrs: Attrs | None = None,
    tamper_auth_attrs: Callable[[Attrs], Attrs] | None = None,
    mac: Callable[[bytes], bytes] | None = None,
    icv_len: int = 16,
) -> bytes:
    """An AuthEnvelopedData (RFC 5083, AES-GCM of RFC 5084) of `content`, with the one
    RecipientInfo `recipient_info(cek)` returns (DER).

    `auth_attrs` are authenticated (the AAD is the DER of their SET OF, RFC 5083 section 2.1);
    damage, applied after encryption: `tamper_auth_attrs` rewrites them, `mac` transforms the
    16-byte tag; `icv_len` is what GCMParameters says the tag length is."""
    algorithm = CIPHERS.by_name(cipher)
    assert algorithm.aead, cipher
    cek, nonce = os.urandom(algorithm.key_size), os.urandom(algorithm.iv_size)
    info = recipient_info(cek)
    aad = _set_der(auth_attrs) if auth_attrs else None
    ciphertext, tag = algorithm.encrypt_gcm(cek, nonce, content, aad)
    if tamper_auth_attrs is not None:
        auth_attrs = tamper_auth_attrs(list(auth_attrs or []))
    if mac is not None:
        tag = mac(tag)
    eci = cms.EncryptedContentInfo(
        content_type=oids.DATA,
        content_encryption_algorithm=cms.algorithm_tlv(
            algorithm.oid, cms.encode(cms.GcmParameters(nonce=nonce, icv_len=icv_len))),
        encrypted_content=cms.as_tlv(ber.encode_tlv(0x80, ciphertext)),
    )
    body = cms.AuthEnvelopedData(version=0, originator_info=None, recipient_infos=SetOf([cms.as_tlv(info)]),
                                 auth_encrypted_content_info=eci, auth_attrs=SetOf(auth_attrs) if auth_attrs else None,
                                 mac=tag, unauth_attrs=None)
    return cms.encode(cms.ContentInfo(content_type=oids.AUTH_ENVELOPED_DATA, content=cms.as_tlv(cms.encode(body))))


_CERT_RID = object()


def build_kem_recipient_info(
    cek: bytes,
    recipient: x509.Certificate,
    *,
    rid: object = _CERT_RID,
    kem_oid: ObjectIdentifier | None = None,
    kemct: Callable[[bytes], bytes] | None = None,
    kdf: str = "hkdf-sha256",
    kdf_oid: ObjectIdentifier | None = None,
    wrap: str = "aes256-wrap",
    wrap_oid: ObjectIdentifier | None = None,
    kek_length: int | None = None,
    ukm: bytes | None = None,
) -> bytes:
    """A `[4]` OtherRecipientInfo holding a KEMRecipientInfo (RFC 9629) that wraps `cek` for
    the ML-KEM key of `recipient`, built field by field so that each can be wrong.

    The sender is consistent with what it writes unless told otherwise: the KEK is derived with
    `kdf` for `kek_length` bytes (default: the wrap's KEK size) over the CMSORIforKEMOtherInfo of
    the wrap AlgorithmIdentifier it writes, and the CEK is wrapped under that KEK. Damage:
    `kem_oid`, `kdf_oid`, `wrap_oid` replace the OIDs written; `kemct` transforms the KEM
    ciphertext; `rid` is "ski" (the certificate's SKI), bytes (that SKI), another certificate
    (its IssuerAndSerialNumber), or by default the recipient's IssuerAndSerialNumber."""
    shared_secret, ciphertext = recipient.public_key().encapsulate()
    wrap_entry = KEY_WRAPS.by_name(wrap)
    kek_length = wrap_entry.kek_size if kek_length is None else kek_length
    wrap_der = cms.encode_algorithm(wrap_oid or wrap_entry.oid)
    _, kek = kem.derive_kek(shared_secret, KDFS.by_name(kdf), wrap_der, kek_length, ukm)
    if rid is _CERT_RID:
        rid = recipient
    if rid == "ski":
        rid = subject_key_identifier(recipient)
    if isinstance(rid, x509.Certificate):
        rid = cms.IssuerAndSerialNumber(issuer=cms.as_tlv(rid.issuer.public_bytes()), serial_number=rid.serial_number)
    info = cms.KEMRecipientInfo(
        version=0,
        rid=rid,
        kem=cms.algorithm_tlv(kem_oid or kem_for_key(recipient.public_key()).oid),
        kemct=kemct(ciphertext) if kemct is not None else ciphertext,
        kdf=cms.algorithm_tlv(kdf_oid or KDFS.by_name(kdf).oid),
        kek_length=kek_length,
        ukm=ukm,
        wrap=cms.as_tlv(wrap_der),
        encrypted_key=keywrap.aes_key_wrap(kek, cek),
    )
    ori = cms.OtherRecipientInfo(ori_type=oids.ORI_KEM, ori_value=cms.as_tlv(cms.encode(info)))
    return cms.sequence_to_implicit(cms.encode(ori), cms.ORI_TAG)


def kem_envelope(
    content: bytes,
    recipient: x509.Certificate,
    cipher: str = "aes256-gcm",
    *,
    auth_attrs: Attrs | None = None,
    tamper_auth_attrs: Callable[[Attrs], Attrs] | None = None,
    mac: Callable[[bytes], bytes] | None = None,
    icv_len: int = 16,
    **kemri,
) -> bytes:
    """The post-quantum pkcsPKIEnvelope (draft Section 5.1): `content` in an AuthEnvelopedData
    (AES-GCM `cipher`) or an EnvelopedData (CBC `cipher`) with one KEMRecipientInfo for the
    ML-KEM certificate `recipient`. `kemri` goes to `build_kem_recipient_info`, the rest to
    `auth_envelope` (GCM only)."""
    def info(cek: bytes) -> bytes:
        return build_kem_recipient_info(cek, recipient, **kemri)

    algorithm = CIPHERS.by_name(cipher)
    if algorithm.aead:
        return auth_envelope(content, info, cipher, auth_attrs=auth_attrs, tamper_auth_attrs=tamper_auth_attrs,
                             mac=mac, icv_len=icv_len)
    cek, iv = os.urandom(algorithm.key_size), os.urandom(algorithm.iv_size)
    eci = cms.EncryptedContentInfo(
        content_type=oids.DATA,
        content_encryption_algorithm=cms.algorithm_tlv(algorithm.oid, cms.encode(iv)),
        encrypted_content=cms.as_tlv(ber.encode_tlv(0x80, algorithm.encrypt_cbc(cek, iv, content))),
    )
    body = cms.EnvelopedData(version=3, originator_info=None, recipient_infos=SetOf([cms.as_tlv(info(cek))]),
                             encrypted_content_info=eci, unprotected_attrs=None)
    return cms.encode(cms.ContentInfo(content_type=oids.ENVELOPED_DATA, content=cms.as_tlv(cms.encode(body))))


def with_public_key_info(cert: x509.Certificate, signing_key, spki_der: bytes) -> x509.Certificate:
    """`cert` with its subjectPublicKeyInfo replaced by `spki_der` (for key types cryptography
    cannot build a certificate for, e.g. SLH-DSA) and signed again by `signing_key` (RSA)."""
    from cryptography.hazmat.primitives.asymmetric import padding

    der = cert.public_bytes(serialization.Encoding.DER)
    _, start, _ = ber.read_tlv(der)
    _, tbs_start, tbs_stop = ber.read_tlv(der, start)
    fields, pos = [], tbs_start
    while pos < tbs_stop:
        _, _, stop = ber.read_tlv(der, pos)
        fields.append(der[pos:stop])
        pos = stop
    fields[6] = spki_der  # [0] version, serial, signature, issuer, validity, subject, SPKI
    tbs = ber.encode_tlv(0x30, b"".join(fields))
    signature = signing_key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    algorithm = cms.encode_algorithm(oids.SHA256_WITH_RSA, cms.NULL)
    signature_value = ber.encode_tlv(0x03, b"\x00" + signature)
    return x509.load_der_x509_certificate(ber.encode_tlv(0x30, tbs + algorithm + signature_value))


def algorithm_protection(digest_oid: ObjectIdentifier, signature_oid: ObjectIdentifier) -> bytes:
    """DER of a CMSAlgorithmProtection value (RFC 6211) naming these two algorithms."""
    return cms.encode(cms.CMSAlgorithmProtection(
        digest_algorithm=cms.HashAlgorithm(algorithm=digest_oid, parameters=None),
        signature_algorithm=cms.HashAlgorithm(algorithm=signature_oid, parameters=None),
        mac_algorithm=None,
    ))


def scep_attributes(message_type: int | str | None, transaction_id: str | None, sender_nonce: bytes | None) -> Attrs:
    """messageType, transactionID and senderNonce; None leaves one out. A str messageType
    is written as given (e.g. "abc")."""
    attrs = []
    if message_type is not None:
        attrs.append(printable_attribute(oids.SCEP_MESSAGE_TYPE, str(int(message_type))
                                         if isinstance(message_type, int) else message_type))
    if transaction_id is not None:
        attrs.append(printable_attribute(oids.SCEP_TRANSACTION_ID, transaction_id))
    if sender_nonce is not None:
        attrs.append(octets_attribute(oids.SCEP_SENDER_NONCE, sender_nonce))
    return attrs


def _set_der(attrs: Attrs) -> bytes:
    """The DER of SET OF Attribute, which the signature covers (RFC 5652 section 5.4)."""
    return ber.encode_tlv(0x31, b"".join(sorted(cms.encode(a) for a in attrs)))


_DEFAULT = object()


def _signer_info(identity: Identity, e_content: bytes, digest_name: str, scep_attrs: Attrs, *,
                 tamper: Callable[[Attrs], Attrs] | None, flip_signature: bool,
                 signature_oid: ObjectIdentifier | None = None, protection=_DEFAULT) -> tuple[cms.SignerInfo, bytes]:
    sig_oid, sig_params, digest = signing.signature_algorithm_for(identity.key, DIGESTS.by_name(digest_name))
    sig_oid = signature_oid or sig_oid
    if protection is _DEFAULT:
        # RFC 9882 section 3.4 / draft Section 4: ML-DSA SignerInfos carry CMSAlgorithmProtection.
        protection = algorithm_protection(digest.oid, sig_oid) if key_family(identity.key) == "ml-dsa" else None
    attrs = [
        attribute(oids.CONTENT_TYPE, cms.encode(oids.DATA)),
        attribute(oids.MESSAGE_DIGEST, cms.encode(digest.digest(e_content))),
        *scep_attrs,
    ]
    if protection is not None:
        attrs.append(attribute(oids.CMS_ALGORITHM_PROTECTION, protection))
    signature = signing.sign(identity.key, _set_der(attrs), digest)
    if flip_signature:
        signature = signature[:-1] + bytes([signature[-1] ^ 0x01])
    if tamper is not None:
        attrs = tamper(attrs)
    digest_alg = cms.encode_algorithm(digest.oid, None)
    info = cms.SignerInfo(
        version=1,
        sid=cms.IssuerAndSerialNumber(issuer=cms.as_tlv(identity.cert.issuer.public_bytes()),
                                      serial_number=identity.cert.serial_number),
        digest_algorithm=cms.as_tlv(digest_alg),
        signed_attrs=SetOf(attrs),
        signature_algorithm=cms.as_tlv(cms.encode_algorithm(sig_oid, sig_params)),
        signature=signature,
        unsigned_attrs=None,
    )
    return info, digest_alg


def pki_message(
    *,
    signer: Identity,
    content: bytes,
    recipient: x509.Certificate | None,
    message_type: int | str | None = MessageType.PKCS_REQ,
    transaction_id: str | None,
    sender_nonce: bytes | None,
    cipher: str = "aes256-cbc",
    digest: str = "sha256",
    pki_envelope: bytes | None = None,
    certificates=_DEFAULT,
    extra_signers: tuple[Identity, ...] = (),
    no_signers: bool = False,
    tamper: Callable[[Attrs], Attrs] | None = None,
    flip_signature: bool = False,
    replace_e_content: bytes | None = None,
    extra_attributes: Attrs = (),  # type: ignore[assignment]
    signature_oid: ObjectIdentifier | None = None,
    protection=_DEFAULT,
) -> bytes:
    """A ContentInfo(SignedData) pkiMessage: `content` (the messageData) sealed for
    `recipient` unless `pki_envelope` is given, signed by `signer` (and `extra_signers`).

    Damage, each applied after signing: `tamper` rewrites the signed attributes,
    `flip_signature` flips the signature's last bit, `replace_e_content` swaps the eContent;
    `certificates` (default: the signers') may be [] to leave the signer certificate out.
    `signature_oid` replaces the signatureAlgorithm written (the signature is still made with
    the signer's own scheme); `protection` is the DER of the CMSAlgorithmProtection value to
    sign (default: the true algorithms for ML-DSA signers, none for others; None: none)."""
    e_content = pki_envelope if pki_envelope is not None else envelope(content, recipient, cipher)
    attrs = [*scep_attributes(message_type, transaction_id, sender_nonce), *extra_attributes]
    infos, digest_algs = [], []
    for identity in (signer, *extra_signers):
        info, alg = _signer_info(identity, e_content, digest, attrs, tamper=tamper, flip_signature=flip_signature,
                                 signature_oid=signature_oid, protection=protection)
        infos.append(info)
        if alg not in digest_algs:
            digest_algs.append(alg)
    if no_signers:
        infos = []
    certs = [i.cert for i in (signer, *extra_signers)] if certificates is _DEFAULT else certificates
    signed = cms.SignedData(
        version=1,
        digest_algorithms=SetOf([cms.as_tlv(a) for a in digest_algs]),
        encap_content_info=cms.EncapsulatedContentInfo(
            e_content_type=oids.DATA, e_content=replace_e_content if replace_e_content is not None else e_content
        ),
        certificates=SetOf([cms.as_tlv(c.public_bytes(serialization.Encoding.DER)) for c in certs]) if certs else None,
        crls=None,
        signer_infos=SetOf(infos),
    )
    return cms.encode(cms.ContentInfo(content_type=oids.SIGNED_DATA, content=cms.as_tlv(cms.encode(signed))))
