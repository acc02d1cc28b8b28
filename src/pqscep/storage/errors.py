"""Exceptions raised by the storage layer.

Only conditions a caller is expected to handle get their own class; anything else
(a lost connection, a full disk) surfaces as the underlying SQLAlchemy or driver error, and
`is_unavailable` tells whether such an error means "the database cannot be used right now".
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class DuplicateSerial(StoreError):
    """A certificate with this serial already exists in the profile.

    The CA draws serials at random, so the right reaction is to draw a new one and retry.
    """

    def __init__(self, profile: str, serial: int) -> None:
        super().__init__(f"serial {serial:#x} already used in profile {profile!r}")
        self.profile = profile
        self.serial = serial


class DuplicateChallenge(StoreError):
    """This challenge password (its digest) is already registered in the profile.

    Two live rows with one digest would make single use ambiguous, so it is refused.
    """


class ChallengeUnavailable(StoreError):
    """The one-time challenge a request used is no longer live when its outcome is written
    (another request spent it first, or it expired): nothing was written."""


class DuplicateCrlNumber(StoreError):
    """A CRL with this number was already stored for the profile (RFC 5280 needs them unique)."""


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached or used right now (a lost or
    refused connection, a database that was dropped or is shutting down, a locked SQLite
    file past its busy timeout), as opposed to a bug or a constraint: the request may
    succeed if retried later, so the HTTP layer answers 503, not 500."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    # The hot path (statements.py) raises the driver's own exceptions.
    import sqlite3

    driver_errors: list[type] = [sqlite3.OperationalError, sqlite3.InterfaceError]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    else:
        driver_errors += [psycopg.OperationalError, psycopg.InterfaceError]
    return isinstance(exc, tuple(driver_errors))
