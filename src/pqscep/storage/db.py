"""Opening the database: engine creation per backend, schema migration, `open_store`.

Two backends are supported:

* SQLite (the embedded default), `sqlite:///path/to/pqscep.db`: the file is created on
  first open; connections use WAL, enforce foreign keys and wait (busy_timeout) instead
  of failing when another connection holds the write lock.
* PostgreSQL, `postgresql://...` or `postgresql+psycopg://...` (always driven by psycopg 3),
  which several server processes may share.

The schema is brought to the newest Alembic revision on every open; the migration scripts
ship inside this package, so no alembic.ini is needed at run time.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from .repository import Store

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# How long a SQLite connection waits for another one's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Key of the PostgreSQL advisory lock held while migrating: an arbitrary constant that
# every pqscep process agrees on ("pqscep" in ASCII).
MIGRATION_LOCK_KEY = 0x707173636570

# Alembic keeps the running migration's context in module globals, so two threads of one
# process must not run it at once (the database locks below only order separate connections
# once they hold them).
_alembic_lock = threading.Lock()

# Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE.
SQLITE_BEGIN_OPTION = "pqscep_sqlite_begin"


def normalize_url(url: str | URL) -> URL:
    """Parse `url`, pin PostgreSQL to psycopg 3 and refuse anything we do not support."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if u.get_driver_name() not in ("psycopg", "postgresql", "postgres", ""):
            raise ValueError(f"unsupported PostgreSQL driver {u.drivername!r}: use psycopg")
        return u.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if u.database in (None, "", ":memory:") or u.database.startswith("file::memory:"):
            # Each pooled connection would see its own empty database.
            raise ValueError("in-memory SQLite is not supported: give a file path")
        return u.set(drivername="sqlite+pysqlite")
    raise ValueError(f"unsupported database URL scheme {u.drivername!r}")


def create_db_engine(url: str | URL, *, pre_ping: bool = True, **kwargs: Any) -> Engine:
    """A configured engine for `url`; extra keyword arguments go to `create_engine`.

    `pre_ping` (PostgreSQL): test each connection as the pool hands it out, so that a
    restarted PostgreSQL does not cost the next request an error. The hot-path engine of
    `open_store` goes without it and handles a dropped connection itself (statements.HotPath).
    """
    u = normalize_url(url)
    # Bound values are challenge digests, KEM proof secrets and CSRs: an error message that
    # SQLAlchemy logs or raises must not carry them.
    kwargs.setdefault("hide_parameters", True)
    if u.get_backend_name() == "postgresql":
        return create_engine(u, pool_pre_ping=pre_ping, **kwargs)

    _create_private(u.database)
    engine = create_engine(u, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module (which skips it before SELECT and DDL)
        # and issue it ourselves in _on_begin, so every transaction is a real one.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # First, so that even switching to WAL waits for a concurrent opener's lock.
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets readers proceed while one writer commits; it is persistent in the file.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # synchronous stays at the default FULL: an issued certificate must survive power loss.
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers start with BEGIN IMMEDIATE: it takes the write lock up front, waiting under
        # busy_timeout. A deferred transaction that reads and then writes would instead fail
        # at once with SQLITE_BUSY when another writer committed in between.
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _create_private(database: str | None) -> None:
    """Create the SQLite file with mode 0600 before SQLite does (it would take the umask): it
    holds KEM proof-of-possession secrets and challenge digests, whoever opens it first
    (`pqscep init`, `pqscep serve` or an admin command). SQLite gives the -wal and -shm files the
    database file's mode."""
    if not database or database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return
    os.chmod(database, 0o600)  # O_CREAT's mode is filtered by the umask; 0600 never loses bits to it


def write_engine(engine: Engine) -> Engine:
    """A view of `engine` (same pool) whose transactions are meant to write."""
    return engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})


def alembic_config() -> Config:
    """An Alembic configuration pointing at the migrations shipped in this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to `revision`, in one transaction.

    On PostgreSQL the transaction first takes an advisory lock, so that server processes
    started together migrate one after the other instead of racing on CREATE TABLE; the
    later ones then find the schema current and do nothing. On SQLite BEGIN IMMEDIATE
    has the same effect.
    """
    cfg = alembic_config()
    with _alembic_lock, write_engine(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            # Transaction-scoped: released by the COMMIT or ROLLBACK, even on error.
            conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def open_store(url: str | URL, *, migrate_schema: bool = True, **engine_kwargs: Any) -> Store:
    """Open (creating if needed) the database at `url`, migrate it and return a `Store`.

    `migrate_schema=False` skips the migration, for tools that must not change the schema.
    """
    engine = create_db_engine(url, **engine_kwargs)
    hot_engine = None
    try:
        if migrate_schema:
            migrate(engine)
        # The statements of every PKIOperation run on a second engine, whose connections
        # statements.HotPath keeps one per thread: so it has no pool to check them out of
        # (NullPool), and on PostgreSQL no pre-ping, which would cost a round trip per statement.
        # Connections open only when used: about one more per worker thread.
        hot_engine = create_db_engine(url, pre_ping=False, **{**engine_kwargs, "poolclass": NullPool})
        return Store(engine, write_engine(engine), hot_engine)
    except BaseException:
        engine.dispose()
        if hot_engine is not None:
            hot_engine.dispose()
        raise
