"""Alembic environment for the pqscep store.

At run time `pqscep.storage.db.migrate` passes an open connection (already inside the
transaction that holds the migration lock) in `config.attributes["connection"]`. For a
developer's `alembic` command line, give the database with `-x url=...`, e.g.
`alembic -c /dev/null -x url=sqlite:///dev.db revision --autogenerate -m "..."`
(with script_location pointed here).
"""

from __future__ import annotations

from typing import Any

from alembic import context

from pqscep.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        render_as_batch=True,
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=context.get_x_argument(as_dictionary=True)["url"], literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    # Command-line use: open our own engine, configured like the server's.
    from pqscep.storage.db import create_db_engine, write_engine

    engine = create_db_engine(context.get_x_argument(as_dictionary=True)["url"])
    try:
        with write_engine(engine).begin() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
