"""The statements run on every PKIOperation, compiled once and executed on the DBAPI connection.

SQLAlchemy writes the SQL and converts the values (its compiler for the dialect, the column
types' own bind and result processors); only the execution is done here, on the connection
that SQLAlchemy's pool hands out. Measured on SQLite (scripts in docs/benchmarks.md): a Core
`connection.execute` of the transaction lookup costs ~230 µs of CPU against ~8 µs for the
same statement on the sqlite3 cursor, and the settle write ~570 µs against ~120 µs. The
difference is SQLAlchemy's per-execution machinery (events, execution contexts, result
metadata), which a fixed statement on the hot path does not need. Everything else in
`Store` keeps the ORM or Core.

Written by hand because no maintained library offers "precompiled statement over a pooled
DBAPI connection with the types' processors" as a public API; the pieces used
(`compile`, `TypeEngine.bind_processor`, `TypeEngine.result_processor`, `raw_connection`)
are all public SQLAlchemy API.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.sql import ClauseElement

Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement compiled for `engine`'s dialect, with its value conversions.

    `columns` are the selected columns of a SELECT (in order), whose result processors turn
    the driver's values into Python ones (for example SQLite's text timestamps into aware
    datetimes, through `models.UtcDateTime`)."""

    def __init__(self, statement: ClauseElement, engine: Engine, *, column_keys: Sequence[str] | None = None):
        dialect = engine.dialect
        # SQLCompiler (what a dialect compiles a statement with) has positiontup and binds; the
        # return type cryptography-style stubs give, Compiled, does not name them.
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
        self.sql: str = compiled.string
        self.positional = compiled.positiontup is not None
        names = list(compiled.positiontup) if self.positional else list(compiled.binds)
        self._binds: list[tuple[str, Processor]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
        ]
        selected = getattr(statement, "selected_columns", None)
        self._results: list[Processor] = (
            [col.type.dialect_impl(dialect).result_processor(dialect, None) for col in selected]
            if selected is not None
            else []
        )

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if self.positional:
            # A list comprehension, not a generator: one call instead of one resume per value.
            return tuple([proc(values[name]) if proc else values[name] for name, proc in self._binds])
        return {name: proc(values[name]) if proc else values[name] for name, proc in self._binds}

    def row(self, raw: Sequence[Any] | None) -> tuple[Any, ...] | None:
        if raw is None:
            return None
        return tuple(proc(v) if proc else v for proc, v in zip(self._results, raw, strict=True))


class ConnectionLost(Exception):
    """The connection was found dead before the transaction was committed: nothing was
    written, and the whole transaction may be run again on a new connection."""


class HotPath:
    """Runs `Prepared` statements on pooled DBAPI connections of one engine.

    SQLite connections come from db.py in autocommit mode (`isolation_level=None`), so a
    single SELECT needs no BEGIN, and a write is bracketed by BEGIN IMMEDIATE / COMMIT here.
    psycopg connections are switched to autocommit for single reads (no BEGIN/ROLLBACK
    round trips) and use the driver's transaction for writes.

    On PostgreSQL the engine given here has no pre-ping (db.py): checking every connection
    before use would cost a round trip per statement, about a third of the store's time per
    PKIOperation. A connection that a restarted or failed-over server has dropped is found on
    its first statement instead: the pool is then renewed and the read, or the whole write
    transaction, runs once more. A connection lost during COMMIT is not retried: whether the
    transaction committed is unknown, and the error goes up.
    """

    def __init__(self, engine: Engine, write_lock: threading.Lock | Any):
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._write_lock = write_lock
        # Each thread keeps one connection for as long as it lives. Checking a connection out
        # of SQLAlchemy's pool and back in (with its reset) for every statement cost about as
        # much CPU as the statements themselves (~50 us per PKIOperation on SQLite; see
        # docs/benchmarks.md). `engine` should therefore have no pool of its own to exhaust
        # (db.open_store gives it a NullPool).
        self._local = threading.local()
        self._held: weakref.WeakSet[_HeldConnection] = weakref.WeakSet()
        self._held_lock = threading.Lock()

    def _connection(self):
        """This thread's connection, opened on first use or after the last one was lost."""
        held = getattr(self._local, "held", None)
        if held is not None and held.conn is not None and held.conn.is_valid:
            return held.conn
        held = _HeldConnection(self.engine.raw_connection())
        self._local.held = held
        with self._held_lock:
            self._held.add(held)
        return held.conn

    def _forget(self, conn) -> None:
        held = getattr(self._local, "held", None)
        if held is not None and held.conn is conn:
            self._local.held = None
            held.close()

    def close(self) -> None:
        """Close every thread's connection (the threads open new ones if used again)."""
        with self._held_lock:
            held, self._held = list(self._held), weakref.WeakSet()
        for h in held:
            h.close()

    def prepare(self, statement: ClauseElement, *, column_keys: Sequence[str] | None = None) -> Prepared:
        return Prepared(statement, self.engine, column_keys=column_keys)

    def _lost(self, exc: Exception, conn, cursor) -> bool:
        """Whether `exc` says the connection is gone; if so, renew the pool (the other pooled
        connections were very likely dropped by the same event)."""
        dbapi = self.engine.dialect.loaded_dbapi
        if not isinstance(exc, dbapi.Error) or not self.engine.dialect.is_disconnect(
            exc, conn.dbapi_connection, cursor
        ):
            return False
        conn.invalidate(exc)
        self._forget(conn)
        self.engine.dispose(close=False)
        return True

    def first(self, stmt: Prepared, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a single-statement read, converted, or None."""
        try:
            return self._first(stmt, values)
        except ConnectionLost:
            pass
        try:
            return self._first(stmt, values)  # once more, on a new connection
        except ConnectionLost as lost:
            assert lost.__cause__ is not None  # HotPath always chains the driver's error
            raise lost.__cause__ from None  # the driver's error: the database is unreachable

    def _first(self, stmt: Prepared, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        conn = self._connection()
        cur = None
        try:
            if not self.sqlite:
                # Inside the try: on a connection the driver already knows is closed, this
                # raises, and _lost must see it (else the thread would keep the dead one).
                conn.driver_connection.autocommit = True
            cur = conn.cursor()
            cur.execute(stmt.sql, stmt.parameters(values))
            raw = cur.fetchone()
            cur.close()
        except Exception as exc:
            if self._lost(exc, conn, cur):
                raise ConnectionLost() from exc
            raise
        finally:
            if not self.sqlite and conn.is_valid:
                conn.driver_connection.autocommit = False
        return stmt.row(raw)

    def write(self, body: Callable[[Callable[[Prepared, Mapping[str, Any]], int]], Any]) -> Any:
        """Run `body(execute)` in one write transaction and return what it returns; `execute(stmt,
        values)` returns the row count. Commits on a normal return, rolls back on an exception
        (which propagates as the driver raised it). Run once more if the connection turned out
        to be dead before the commit."""
        try:
            return self._write(body)
        except ConnectionLost:
            pass
        try:
            return self._write(body)  # once more, on a new connection
        except ConnectionLost as lost:
            assert lost.__cause__ is not None  # HotPath always chains the driver's error
            raise lost.__cause__ from None  # the driver's error: the database is unreachable

    def _write(self, body):
        with self._write_lock:
            conn = self._connection()
            cur = None
            committing = False
            try:
                cur = conn.cursor()
                if self.sqlite:
                    # Take SQLite's write lock up front, as db.py's BEGIN IMMEDIATE does.
                    cur.execute("BEGIN IMMEDIATE")

                def execute(stmt: Prepared, values: Mapping[str, Any]) -> int:
                    cur.execute(stmt.sql, stmt.parameters(values))
                    return cur.rowcount

                result = body(execute)
                committing = True
                if self.sqlite:
                    cur.execute("COMMIT")
                else:
                    conn.commit()
                return result
            except BaseException as exc:
                if isinstance(exc, Exception) and not committing and self._lost(exc, conn, cur):
                    raise ConnectionLost() from exc
                if conn.is_valid:
                    conn.rollback()  # sqlite3 and psycopg both roll back an open transaction
                raise
            finally:
                if cur is not None and conn.is_valid:
                    cur.close()


class _HeldConnection:
    """A connection one thread keeps (HotPath._connection). Closed by `HotPath.close`, or when
    its thread ends and the thread's local storage lets go of it."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn):
        self.conn = conn

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def __del__(self) -> None:
        self.close()
