"""Shared fixtures: database URLs for SQLite and a real PostgreSQL.

Generic on purpose: nothing here imports pqscep, so these fixtures work whatever the package
looks like. ``scripts/start-postgres.sh`` starts the server and prints the URL that
``PQSCEP_TEST_POSTGRES_URL`` must hold (``scripts/test.sh`` does both).
"""

from __future__ import annotations

import os
import uuid

import pytest
from peers import unavailable as _unavailable


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the PostgreSQL test database (the server's shared one)."""
    url = os.environ.get("PQSCEP_TEST_POSTGRES_URL")
    if not url:
        _unavailable("PQSCEP_TEST_POSTGRES_URL is not set: "
                     "export PQSCEP_TEST_POSTGRES_URL=$(scripts/start-postgres.sh)")
    return url


def _fresh_postgres_database(base_url: str):
    """CREATE a uniquely named database owned by the test role, yield its URL, DROP it after.

    A whole database (not a schema) per test, so migrations, enum types and extensions are as
    isolated as in production; creating one from template1 takes ~50 ms.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    name = f"pqscep_t_{uuid.uuid4().hex[:16]}"
    admin = psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432,
                            user=url.username, password=url.password, dbname=url.database,
                            autocommit=True)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            # WITH (FORCE) (PostgreSQL 13+) drops it even if the test leaked connections.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh, empty database URL for each test, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pqscep.sqlite3'}"
    else:
        yield from _fresh_postgres_database(request.getfixturevalue("postgres_url"))
