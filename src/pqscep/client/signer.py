"""`RequestSigner`: who signs a pkiMessage and with what. RFC 8894 section 3.2 signs every
request with a certificate and its private key: the requester's existing certificate (a
renewal, GetCert, GetCRL, the signer of an ML-KEM key's request), or a transient self-signed
certificate made for the request (section 2.3), and a digest for the signature (section 3.5.2:
what GetCACaps lists; None leaves the choice to the session). A request that may be polled later
also needs the file the key is in, since the saved pending state holds no secret
(`client.pending`).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..cms import enveloped
from ..crypto import keys as keymod
from ..crypto.registry import DigestAlgorithm
from ..protocol import client as proto
from .errors import KeyMismatch
from .requester import PrivateKey, load_certificate_file, load_private_key_file, public_key_der

__all__ = ["RequestSigner", "TRANSIENT_SUBJECT"]

# The subject of a transient certificate made for a request that names no subject (GetCert, GetCRL).
TRANSIENT_SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pqscep transient signer")])


@dataclasses.dataclass(frozen=True)
class RequestSigner:
    """The certificate a request's SignerInfo names, its private key, the file that key is in
    (None when it is not in a file: such a request cannot be polled later), and the digest of the
    signature (None: the one the session chooses from the CA's capabilities)."""

    certificate: x509.Certificate
    private_key: PrivateKey
    key_path: Path | None = None
    digest: DigestAlgorithm | None = None

    @classmethod
    def transient(cls, key: PrivateKey, subject: x509.Name | None = None, *,
                  random_bytes: Callable[[int], bytes], now: datetime.datetime,
                  key_path: Path | None = None) -> RequestSigner:
        """`key` with a self-signed certificate for it (RFC 8894 section 2.3), named `subject`
        (the request's subject; by default `TRANSIENT_SUBJECT`), valid from five minutes before
        `now`, with a random positive serial of at most 127 bits drawn from `random_bytes`."""
        subject = subject or TRANSIENT_SUBJECT
        serial = (int.from_bytes(random_bytes(16), "big") >> 1) or 1
        return cls(proto.self_signed_certificate(key, subject, now=now, serial=serial), key, key_path)

    @classmethod
    def generate(cls, key_type: str, subject: x509.Name | None = None, *,
                 random_bytes: Callable[[int], bytes], now: datetime.datetime) -> RequestSigner:
        """A new key of `key_type` (`crypto.keys.KEY_TYPES`) with a transient certificate."""
        return cls.transient(keymod.generate_key(key_type), subject, random_bytes=random_bytes, now=now)

    @classmethod
    def from_files(cls, certificate_path: Path, key_path: Path) -> RequestSigner:
        """An existing certificate (PEM or DER) and its unencrypted private key, read from files
        (the certificate first). Whether they belong together is checked by `check_key_matches`."""
        certificate = load_certificate_file(certificate_path)
        return cls(certificate, load_private_key_file(key_path), key_path)

    def with_key_path(self, key_path: Path) -> RequestSigner:
        return dataclasses.replace(self, key_path=key_path)

    def defaulting_digest(self, digest: DigestAlgorithm) -> RequestSigner:
        """This signer, signing with `digest` unless it names a digest of its own."""
        return self if self.digest is not None else dataclasses.replace(self, digest=digest)

    def check_key_matches(self) -> None:
        """Raise `KeyMismatch` unless the private key is that of the certificate."""
        if public_key_der(self.certificate) != public_key_der(self.private_key):
            raise KeyMismatch("the request signer's private key is not the key of its certificate")

    @property
    def family(self) -> keymod.KeyFamily:
        """The signing key's family (`crypto.keys.key_family`): RSA, EC or ML-DSA."""
        return keymod.key_family(self.private_key)

    def reply_recipient(self) -> enveloped.KeyTransRecipient:
        """RFC 8894 section 3.3.2: a CertRep is encrypted to the request's signer certificate;
        with an RSA key, this recipient opens it."""
        return enveloped.KeyTransRecipient(self.certificate, self.private_key)
