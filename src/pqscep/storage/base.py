"""`StoreBase`: the engines, pools, write lock and sessions every part of the `Store` uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..ca.transactions import TxState
from .locks import SqliteWriteLock
from .sql import (
    _CERT,
    _CERT_INSERT_COLUMNS,
    _COUNT_FAILURES,
    _GET_CERTIFICATE,
    _GET_POLLED_TRANSACTION,
    _GET_TRANSACTION,
    _SPEND_CHALLENGE,
    _TX,
    _TX_INSERT_COLUMNS,
)
from .statements import HotPath, Prepared


class StoreBase:
    """The CA/RA database. Thread-safe: each call uses its own pooled connection.

    Obtain one with `pqscep.storage.open_store(url)`; `close()` releases the pool.
    """

    def __init__(self, engine: Engine, write_engine: Engine | None = None, hot_engine: Engine | None = None) -> None:
        """`write_engine` is `engine` configured for writing (see `db.write_engine`);
        `hot_engine` the engine of the per-PKIOperation statements (statements.HotPath; on
        PostgreSQL a second pool without pre-ping, see db.open_store), by default `engine`."""
        self.engine = engine
        self._hot_engine = hot_engine
        self._write_engine = write_engine or engine
        # SQLite has one writer at a time. Writers, the threads of this process and the other
        # server processes alike, queue on this lock instead of on SQLite's busy handler, which
        # sleeps in growing steps (up to 100 ms) and made the p99 latency of a busy server ten
        # times its median (locks.py). PostgreSQL needs no such lock.
        self._write_lock: Any = (
            SqliteWriteLock(engine.url.database) if engine.dialect.name == "sqlite" and engine.url.database
            else nullcontext()
        )
        # The statements of every PKIOperation skip SQLAlchemy's execution layer (statements.py).
        self._hot = HotPath(hot_engine or engine, self._write_lock)
        self._get_transaction = self._hot.prepare(_GET_TRANSACTION)
        self._get_polled_transaction = self._hot.prepare(_GET_POLLED_TRANSACTION)
        self._get_certificate = self._hot.prepare(_GET_CERTIFICATE)
        self._count_failures = self._hot.prepare(_COUNT_FAILURES)
        self._insert_transaction = self._hot.prepare(_TX.insert(), column_keys=_TX_INSERT_COLUMNS)
        self._insert_certificate = self._hot.prepare(_CERT.insert(), column_keys=_CERT_INSERT_COLUMNS)
        self._spend_challenge = self._hot.prepare(_SPEND_CHALLENGE)
        self._settle: dict[TxState, Prepared] = {}
        self._integrity_error = engine.dialect.loaded_dbapi.IntegrityError
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(write_engine or engine, expire_on_commit=False)

    def close(self) -> None:
        self._hot.close()
        self.engine.dispose()
        if isinstance(self._write_lock, SqliteWriteLock):
            self._write_lock.close()
        if self._hot_engine is not None:
            self._hot_engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A write transaction (ORM session), one at a time per process on SQLite."""
        with self._write_lock, self._write.begin() as s:
            yield s

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with self._read() as s:  # closing rolls the read-only transaction back
            yield s

