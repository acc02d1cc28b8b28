"""Persistent state of the SCEP CA/RA: SQLite by default, PostgreSQL for several processes.

Open with `open_store(url)`; everything else goes through the returned `Store`.
"""

from .db import open_store
from .errors import (
    ChallengeUnavailable,
    DuplicateChallenge,
    DuplicateCrlNumber,
    DuplicateSerial,
    StoreError,
    is_unavailable,
)
from .records import (
    CertificateRecord,
    ChallengeRecord,
    CrlRecord,
    KemChallengeRecord,
    TransactionRecord,
)
from .repository import Store

__all__ = [
    "is_unavailable",
    "CertificateRecord",
    "ChallengeRecord",
    "CrlRecord",
    "DuplicateChallenge",
    "DuplicateCrlNumber",
    "DuplicateSerial",
    "ChallengeUnavailable",
    "KemChallengeRecord",
    "Store",
    "StoreError",
    "TransactionRecord",
    "open_store",
]
