"""Self-tests of the shared fixtures in conftest.py (no pqscep import)."""

from sqlalchemy import create_engine, inspect, text


def test_db_url_is_fresh_and_writable(db_url):
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            assert inspect(conn).get_table_names() == []  # nothing left by another test
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(10))"))
            conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'x')"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT v FROM t")).scalar_one() == "x"
    finally:
        engine.dispose()
