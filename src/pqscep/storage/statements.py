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

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
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
        compiled = statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
        self.sql: str = compiled.string
        self.positional = compiled.positiontup is not None
        names = list(compiled.positiontup) if self.positional else list(compiled.binds)
        self._binds: list[tuple[str, Processor]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
        ]
        selected = getattr(statement, "selected_columns", None)
        self._results: list[Processor] = (
            [col.type.dialect_impl(dialect).result_processor(dialect, None) for col in selected] if selected is not None else []
        )

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if self.positional:
            return tuple(proc(values[name]) if proc else values[name] for name, proc in self._binds)
        return {name: proc(values[name]) if proc else values[name] for name, proc in self._binds}

    def row(self, raw: Sequence[Any] | None) -> tuple[Any, ...] | None:
        if raw is None:
            return None
        return tuple(proc(v) if proc else v for proc, v in zip(self._results, raw, strict=True))


class HotPath:
    """Runs `Prepared` statements on pooled DBAPI connections of one engine.

    SQLite connections come from db.py in autocommit mode (`isolation_level=None`), so a
    single SELECT needs no BEGIN, and a write is bracketed by BEGIN IMMEDIATE / COMMIT here.
    psycopg connections are switched to autocommit for single reads (no BEGIN/ROLLBACK
    round trips) and use the driver's transaction for writes.
    """

    def __init__(self, engine: Engine, write_lock: threading.Lock | Any):
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._write_lock = write_lock

    def prepare(self, statement: ClauseElement, *, column_keys: Sequence[str] | None = None) -> Prepared:
        return Prepared(statement, self.engine, column_keys=column_keys)

    def first(self, stmt: Prepared, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a single-statement read, converted, or None."""
        conn = self.engine.raw_connection()
        try:
            if not self.sqlite:
                conn.driver_connection.autocommit = True  # type: ignore[union-attr]
            try:
                cur = conn.cursor()
                cur.execute(stmt.sql, stmt.parameters(values))
                raw = cur.fetchone()
                cur.close()
            finally:
                if not self.sqlite:
                    conn.driver_connection.autocommit = False  # type: ignore[union-attr]
            return stmt.row(raw)
        finally:
            conn.close()  # back to the pool

    @contextmanager
    def writing(self) -> Iterator[Callable[[Prepared, Mapping[str, Any]], int]]:
        """One write transaction: yields `execute(stmt, values) -> rowcount`; commits on a
        normal exit, rolls back on an exception (which propagates, as the DBAPI raised it)."""
        with self._write_lock:
            conn = self.engine.raw_connection()
            try:
                cur = conn.cursor()
                if self.sqlite:
                    # Take SQLite's write lock up front, as db.py's BEGIN IMMEDIATE does.
                    cur.execute("BEGIN IMMEDIATE")

                def execute(stmt: Prepared, values: Mapping[str, Any]) -> int:
                    cur.execute(stmt.sql, stmt.parameters(values))
                    return cur.rowcount

                try:
                    yield execute
                    if self.sqlite:
                        cur.execute("COMMIT")
                    else:
                        conn.commit()
                except BaseException:
                    conn.rollback()  # sqlite3 and psycopg both roll back an open transaction
                    raise
                finally:
                    cur.close()
            finally:
                conn.close()
