"""The errors of the client's workflows, one type per kind of problem, so that a caller (the
`pqscep` command maps them to its exit codes) can tell them apart. Messages are one factual
line; the values a caller may want to word differently are attributes.

`TransportError` (the server could not be reached, or answered with an HTTP error) is not here:
it belongs to `client.transport`.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING

from ..crypto.keys import KeyFamily
from ..protocol.messages import FAIL_INFO_NAMES, FailInfo

if TYPE_CHECKING:
    from .outcome import Outcome

__all__ = [
    "CaFailure",
    "EncryptedKey",
    "EnrollmentError",
    "KeyMismatch",
    "UnusableKey",
    "UnusableReason",
    "VerificationError",
    "describe_failure",
]


class EnrollmentError(Exception):
    """The operation cannot be done as asked (unusable key, bad state file...)."""


class VerificationError(EnrollmentError):
    """A check failed: CA pin, reply signature, nonce, transaction, envelope decryption."""


class UnusableReason(enum.Enum):
    """Why a key cannot be used with this CA."""

    CANNOT_DECRYPT = "cannot-decrypt"  # the CertRep would be encrypted to a key that cannot open it
    NO_KEM_POP = "no-kem-pop"  # an ML-KEM key, and the CA does not list KEMPoP


class UnusableKey(EnrollmentError):
    """The key cannot be used with this CA (e.g. it cannot decrypt the CA's reply)."""

    def __init__(self, message: str, *, reason: UnusableReason, family: KeyFamily | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.family = family  # the key's family (EC, ML-DSA, ...), for CANNOT_DECRYPT


class KeyMismatch(EnrollmentError):
    """A request signer's private key is not the key of its certificate."""


class EncryptedKey(EnrollmentError):
    """A private key file is encrypted and no passphrase was given."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(f"key {path} is encrypted: a passphrase is needed")
        self.path = path


class CaFailure(EnrollmentError):
    """The CA answered CertRep FAILURE."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        super().__init__(describe_failure(outcome.fail_info, outcome.fail_info_text))


def describe_failure(fail_info: FailInfo | None, text: str | None) -> str:
    """failInfo by its RFC 8894 section 3.2.1.4 name and number, then the failInfoText."""
    name = f"{FAIL_INFO_NAMES[fail_info]} ({int(fail_info)})" if fail_info is not None else "no failInfo"
    return f"{name}: {text}" if text else name
