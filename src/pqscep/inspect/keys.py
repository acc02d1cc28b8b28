"""What the inspector decrypts and verifies with: private keys (`load_key_file`, every form
`pkcs8.load_any_private_key` reads: PKCS#8 in every RFC 9881/9935 ML-DSA/ML-KEM form, PKCS#1,
SEC1; PEM or DER), each paired with its certificate when one is given (`KeyEntry`), and the
passphrase of encrypted ones, read from an environment variable, never from the command line."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ..crypto import key_errors, pkcs8
from .reader import InputError

__all__ = ["KeyEntry", "load_key_entries", "load_key_file", "passphrase_from_env"]


@dataclass
class KeyEntry:
    """A private key to decrypt with, under the label that names it in the output."""

    label: str  # the file it came from
    key: Any
    certificate: x509.Certificate | None = None  # its certificate, when one of --cert matches


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def passphrase_from_env(variable: str | None) -> bytes | None:
    """The passphrase held by the environment variable named `variable` (--key-passphrase-env).
    Errors never repeat what was given: it might be a passphrase typed in the wrong place."""
    if variable is None:
        return None
    if not _ENV_NAME.match(variable):
        raise InputError("--key-passphrase-env takes the NAME of an environment variable that holds the "
                         "passphrase, not the passphrase itself")
    value = os.environ.get(variable)
    if value is None:
        raise InputError("the environment variable named by --key-passphrase-env is not set")
    return value.encode("utf-8")


def load_key_file(path: Path, passphrase: bytes | None) -> Any:
    """A private key through `pkcs8.load_any_private_key` (every RFC 9881/9935 form), with a
    one-line InputError that never contains the passphrase."""
    data = path.read_bytes()
    try:
        try:
            return pkcs8.load_any_private_key(data, passphrase)
        except TypeError:
            if passphrase is None:
                raise
            return pkcs8.load_any_private_key(data, None)  # the passphrase was for another --key
    except TypeError:
        raise InputError(f"{path} is an encrypted key: put its passphrase in an environment variable and "
                         "name that variable with --key-passphrase-env VAR") from None
    except key_errors.UnsupportedKeyForm as exc:
        raise InputError(f"{path}: this build cannot use the key: {str(exc)[:300]}") from None
    except key_errors.InvalidPrivateKey as exc:
        raise InputError(f"{path} is not a valid private key: {str(exc)[:300]}") from None
    except UnsupportedAlgorithm as exc:
        raise InputError(f"{path}: this cryptography build cannot load the key ({exc})") from None
    except ValueError as exc:
        wrong = " (or the passphrase is wrong)" if passphrase is not None else ""
        raise InputError(f"{path} is not a private key{wrong}: {str(exc)[:120]}") from None


def load_key_entries(key_files: Iterable[Path], cert_files: Iterable[Path],
                     passphrase: bytes | None = None) -> tuple[list[KeyEntry], list[x509.Certificate]]:
    """The --cert certificates (PEM bundles or DER), and a `KeyEntry` per --key file, paired with
    the certificate of the same public key when there is one (it picks that key's RecipientInfo)."""
    certs: list[x509.Certificate] = []
    for path in cert_files:
        data = path.read_bytes()
        try:
            if b"-----BEGIN" in data:
                certs.extend(x509.load_pem_x509_certificates(data))
            else:
                certs.append(x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise InputError(f"{path} is not a certificate: {exc}") from None
    entries = []
    for path in key_files:
        key = load_key_file(path, passphrase)
        entry = KeyEntry(str(path), key)
        public = _spki(key)
        entry.certificate = next((c for c in certs if _spki(c) == public), None)
        entries.append(entry)
    return entries, certs


def _spki(key_or_cert: Any) -> bytes | None:
    try:
        public = key_or_cert.public_key()
        return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except Exception:  # a key type without a SubjectPublicKeyInfo encoding here
        return None
