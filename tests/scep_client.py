"""A small SCEP requester for tests, built directly on the sans-IO `pqscep.protocol.client`
(so server tests do not depend on the CLI), speaking real HTTP with httpx."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pqscep.cms import enveloped
from pqscep.cms.kem import KemOriginator, KemRecipient
from pqscep.cms.password import PasswordOriginator, PasswordRecipient
from pqscep.crypto.keys import generate_key
from pqscep.crypto.registry import CIPHERS, DIGESTS
from pqscep.protocol import client as scep
from pqscep.protocol.messages import MessageType, response_key_attribute


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class Device:
    """A requester: key, transient self-signed certificate, and its open transaction."""

    cn: str
    key: object = None
    cert: x509.Certificate | None = None
    transaction_id: str = field(default_factory=lambda: os.urandom(16).hex())
    csr: x509.CertificateSigningRequest | None = None

    key_type: str = "rsa-2048"

    def __post_init__(self):
        if self.key is None:
            self.key = generate_key(self.key_type)
        subject = x509.Name.from_rfc4514_string(f"CN={self.cn}")
        if self.cert is None:
            self.cert = scep.self_signed_certificate(self.key, subject, now=now(),
                                                     serial=int.from_bytes(os.urandom(8), "big") | 1)


class Requester:
    def __init__(self, url: str, *, cipher: str = "aes256-cbc", digest: str = "sha256",
                 client: httpx.Client | None = None, response_key: bool | None = None, password: str | None = None):
        """`response_key`: send a fresh ML-KEM responseKey and encrypt to the CA's ML-KEM
        recipient (post-quantum SCEP); None = when the CA has an ML-KEM recipient. `password`:
        encrypt to the challenge password instead (PasswordRecipientInfo, RFC 8894 3.1)."""
        self.url = url
        self.password = password
        self.http = client or httpx.Client(timeout=30)
        self.cipher = CIPHERS.by_name(cipher)
        self.digest = DIGESTS.by_name(digest)
        reply = self.http.get(url, params={"operation": "GetCACert"})
        reply.raise_for_status()
        self.bundle = scep.parse_ca_certs(reply.headers["content-type"], reply.content)
        self.response_key = self.bundle.kem_recipient_cert is not None if response_key is None else response_key

    def send(self, device: Device, message_type: MessageType, content: bytes, *, signer_key=None, signer_cert=None,
             nonce: bytes | None = None, reply_recipients: list | None = None) -> scep.CertRepResult:
        """`reply_recipients`: the keys that may open the CertRep (default: the signer's, and
        the responseKey's when one is sent)."""
        nonce = nonce or os.urandom(16)
        recipients = [enveloped.KeyTransRecipient(signer_cert or device.cert, signer_key or device.key)]
        extra = []
        if self.response_key:
            kem_key = generate_key("ml-kem-768")
            extra.append(response_key_attribute(kem_key.public_key()))
            ski = x509.SubjectKeyIdentifier.from_public_key(kem_key.public_key()).digest
            recipients.append(KemRecipient(kem_key, subject_key_identifier=ski))
        if self.password is not None:
            originator = PasswordOriginator(self.password.encode(), 1000)
            recipients.append(PasswordRecipient(self.password.encode()))
        elif self.bundle.kem_recipient_cert is not None:
            kem_cert = self.bundle.kem_recipient_cert
            originator = KemOriginator(kem_cert.public_key(), certificate=kem_cert)
        else:
            originator = enveloped.KeyTransOriginator(self.bundle.encipherer)
        body = scep.build_pki_message(
            message_type=message_type,
            transaction_id=device.transaction_id,
            sender_nonce=nonce,
            content=content,
            extra_attributes=extra,
            originator=originator,
            cipher=self.cipher,
            signer_key=signer_key or device.key,
            signer_cert=signer_cert or device.cert,
            digest=self.digest,
            random_bytes=os.urandom,
        )
        reply = self.http.post(self.url, params={"operation": "PKIOperation"}, content=body,
                               headers={"Content-Type": "application/x-pki-message"})
        assert reply.status_code == 200, f"HTTP {reply.status_code}: {reply.text[:200]}"
        return scep.parse_cert_rep(
            reply.content,
            bundle=self.bundle,
            transaction_id=device.transaction_id,
            sender_nonce=nonce,
            recipients=recipients if reply_recipients is None else reply_recipients,
        )

    def enroll(self, device: Device, challenge: str | None) -> scep.CertRepResult:
        subject = x509.Name.from_rfc4514_string(f"CN={device.cn}")
        device.csr = device.csr or scep.build_csr(device.key, subject, challenge=challenge)
        return self.send(device, MessageType.PKCS_REQ, device.csr.public_bytes(serialization.Encoding.DER))

    def poll(self, device: Device) -> scep.CertRepResult:
        subject = x509.Name.from_rfc4514_string(f"CN={device.cn}")
        return self.send(device, MessageType.CERT_POLL, scep.poll_content(self.bundle.ca.subject, subject))

    def renew(self, device: Device, old_cert: x509.Certificate, old_key, new_key=None) -> scep.CertRepResult:
        new_key = new_key or generate_key("rsa-2048")
        device.csr = scep.build_csr(new_key, old_cert.subject)
        device.transaction_id = os.urandom(16).hex()
        return self.send(device, MessageType.RENEWAL_REQ, device.csr.public_bytes(serialization.Encoding.DER),
                         signer_key=old_key, signer_cert=old_cert)

    def get_cert(self, device: Device, serial: int) -> scep.CertRepResult:
        device.transaction_id = os.urandom(16).hex()
        return self.send(device, MessageType.GET_CERT, scep.issuer_and_serial_content(self.bundle.ca.subject, serial))

    def get_crl(self, device: Device, serial: int) -> scep.CertRepResult:
        device.transaction_id = os.urandom(16).hex()
        return self.send(device, MessageType.GET_CRL, scep.issuer_and_serial_content(self.bundle.ca.subject, serial))
