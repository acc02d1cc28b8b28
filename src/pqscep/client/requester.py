"""The requester's key material: loading its keys and certificates from files, whether a key can
open the CA's reply, the transactionID a key gives, and the recipient by which an ML-KEM key
opens a CertRep.

Key types: the CertRep envelope is a KeyTransRecipientInfo (RSA key transport) encrypted to the
certificate that signed the request, so that certificate's key must be able to decrypt, i.e.
be RSA, unless the CA lists ML-KEM: then the reply goes to a fresh ML-KEM responseKey and any
signing key type works (EC, ML-DSA); otherwise they are refused (`check_can_decrypt`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..cms.kem import KemRecipient, key_identifier
from ..crypto import keys as keymod
from .errors import EncryptedKey, EnrollmentError, UnusableKey, UnusableReason
from .transport import CaCaps

__all__ = [
    "PrivateKey",
    "cert_pem",
    "check_can_decrypt",
    "check_kem_pop",
    "reply_kem_recipient",
    "key_transaction_id",
    "load_certificate_file",
    "load_private_key_file",
    "public_key_der",
]

# Any private key type of `crypto.keys.KEY_TYPES` (RSA, EC, ML-DSA, ML-KEM): they share no base class.
PrivateKey = Any


def load_private_key_file(path: Path | str, passphrase: bytes | None = None) -> PrivateKey:
    """A PEM or DER private key from a file (`crypto.keys.load_private_key`)."""
    try:
        return keymod.load_private_key(Path(path).read_bytes(), passphrase)
    except OSError as exc:
        raise EnrollmentError(f"cannot read key {path}: {exc.strerror or exc}") from None
    except TypeError:
        raise EncryptedKey(path) from None
    except ValueError as exc:
        raise EnrollmentError(f"key {path} does not load: {exc}") from None


def load_certificate_file(path: Path | str) -> x509.Certificate:
    """A PEM or DER certificate from a file."""
    try:
        data = Path(path).read_bytes()
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except OSError as exc:
        raise EnrollmentError(f"cannot read certificate {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise EnrollmentError(f"{path} is not a certificate: {exc}") from None


def check_can_decrypt(key: PrivateKey, what: str = "the key", caps: CaCaps | None = None) -> None:
    """The CertRep is encrypted to the request signer's RSA key (RFC 8894), or, with a CA that
    lists ML-KEM, to the responseKey the client sends (draft Section 6.1, rule 2), so any key type works."""
    family = keymod.key_family(key)
    if family == keymod.KeyFamily.RSA or (caps is not None and caps.ml_kem):
        return
    raise UnusableKey(
        f"{what} is {family}: it cannot decrypt the CA's reply, which RFC 8894 encrypts with RSA key "
        "transport to the request's signer",
        reason=UnusableReason.CANNOT_DECRYPT,
        family=family,
    )


def check_kem_pop(caps: CaCaps) -> None:
    """An ML-KEM key can be certified only by a CA that lists KEMPoP (draft Section 2)."""
    if "KEMPoP" not in caps:
        raise UnusableKey("the CA does not list KEMPoP: it does not certify ML-KEM keys (an ML-KEM key cannot "
                          "sign its own request; post-quantum SCEP proves possession another way)",
                          reason=UnusableReason.NO_KEM_POP, family=keymod.KeyFamily.ML_KEM)


def public_key_der(key: Any) -> bytes:
    """The SubjectPublicKeyInfo of a private key, public key or certificate."""
    public = key.public_key() if hasattr(key, "public_key") else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_transaction_id(key: Any) -> str:
    """RFC 8894 section 3.2.1.1: a hash of the public key (here SHA-256 of the SPKI, hex)."""
    return hashlib.sha256(public_key_der(key)).hexdigest().upper()


def reply_kem_recipient(key: PrivateKey) -> KemRecipient:
    """The new ML-KEM key opens the CertRep (draft Section 6.1, rule 1), named by its SKI (RFC
    5280 4.2.1.2 method 1, as the CA names it)."""
    return KemRecipient(key, subject_key_identifier=key_identifier(key.public_key()))


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
