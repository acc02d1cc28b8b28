"""Build SCEP pkiMessages for tests: correct ones, and ones damaged in one precise place.

`pki_message` assembles the SignedData itself (the same recipe as `pqscep.cms.signed`) so that
a test can leave out an attribute, tamper with one after signing, swap the eContent after the
messageDigest was computed, drop the signer certificate, add a second signer, and so on.
`envelope` does the same for the pkcsPKIEnvelope (unknown cipher OID, odd encryptedContent).
Keys and certificates are made with `pqscep.protocol.client`, as a real requester would.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Callable

from cryptography import x509
from cryptography.hazmat.asn1 import SetOf
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from pqscep.asn1 import ber, cms, oids
from pqscep.cms import enveloped
from pqscep.cms.signed import attribute
from pqscep.crypto import signing
from pqscep.crypto.registry import CIPHERS, DIGESTS
from pqscep.protocol import client
from pqscep.protocol.messages import MessageType, octets_attribute, printable_attribute

__all__ = [
    "Identity",
    "csr_der",
    "envelope",
    "name",
    "now",
    "pki_message",
    "raw_csr",
    "scep_attributes",
]

Attrs = list[cms.Attribute]


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def name(cn: str | None) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])


@dataclass
class Identity:
    """A requester: a key and the self-signed certificate that signs its pkiMessages."""

    key: object
    cert: x509.Certificate

    @classmethod
    def new(cls, cn: str = "SCEP requester", *, kind: str = "rsa", bits: int = 2048) -> "Identity":
        if kind == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        elif kind == "ec":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(kind)
        cert = client.self_signed_certificate(key, name(cn), now=now(),
                                              serial=int.from_bytes(os.urandom(8), "big") | 1)
        return cls(key, cert)

    @property
    def recipients(self) -> list:
        """What opens a CertRep SUCCESS envelope addressed to this requester."""
        return [enveloped.KeyTransRecipient(self.cert, self.key)]


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
    [0] encryptedContent TLV (the DER to put there)."""
    algorithm = CIPHERS.by_name(cipher)
    if algorithm.aead:
        raise ValueError("envelope() builds EnvelopedData (CBC ciphers) only")
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


def _signer_info(identity: Identity, e_content: bytes, digest_name: str, scep_attrs: Attrs, *,
                 tamper: Callable[[Attrs], Attrs] | None, flip_signature: bool) -> tuple[cms.SignerInfo, bytes]:
    sig_oid, sig_params, digest = signing.signature_algorithm_for(identity.key, DIGESTS.by_name(digest_name))
    attrs = [
        attribute(oids.CONTENT_TYPE, cms.encode(oids.DATA)),
        attribute(oids.MESSAGE_DIGEST, cms.encode(digest.digest(e_content))),
        *scep_attrs,
    ]
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


_DEFAULT = object()


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
) -> bytes:
    """A ContentInfo(SignedData) pkiMessage: `content` (the messageData) sealed for
    `recipient` unless `pki_envelope` is given, signed by `signer` (and `extra_signers`).

    Damage, each applied after signing: `tamper` rewrites the signed attributes,
    `flip_signature` flips the signature's last bit, `replace_e_content` swaps the eContent;
    `certificates` (default: the signers') may be [] to leave the signer certificate out."""
    e_content = pki_envelope if pki_envelope is not None else envelope(content, recipient, cipher)
    attrs = [*scep_attributes(message_type, transaction_id, sender_nonce), *extra_attributes]
    infos, digest_algs = [], []
    for identity in (signer, *extra_signers):
        info, alg = _signer_info(identity, e_content, digest, attrs, tamper=tamper, flip_signature=flip_signature)
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
