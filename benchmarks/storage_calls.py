"""CPU and wall time of the store's calls on every PKIOperation, next to the bare driver.

    python benchmarks/storage_calls.py

SQLite in a temp dir, `open_store` as the server opens it (WAL, synchronous=FULL): 2,000
transaction lookups and failure counts, 500 settle writes (transaction row plus certificate,
one commit), then the same kind of SELECT and INSERT+COMMIT on a plain sqlite3 connection,
which is the floor any store on SQLite pays.
"""

from __future__ import annotations

import datetime
import sqlite3
import tempfile
import time

from pqscep.storage.db import open_store
from pqscep.storage.repository import IssuedCertificate


def measure(name: str, call, count: int) -> None:
    start, start_cpu = time.perf_counter(), time.thread_time()
    for i in range(count):
        call(i)
    wall, cpu = time.perf_counter() - start, time.thread_time() - start_cpu
    print(f"{name:28} cpu {1e6 * cpu / count:7.1f} us   wall {1e6 * wall / count:7.1f} us")


def main() -> None:
    folder = tempfile.mkdtemp()
    store = open_store(f"sqlite:///{folder}/bench.db")
    now = datetime.datetime.now(datetime.UTC)

    def settle(i: int) -> None:
        certificate = IssuedCertificate(serial=10**10 + i, der=b"c" * 900, subject="CN=bench", not_before=now,
                                        not_after=now, key_fingerprint=b"f" * 32)
        store.settle_transaction("default", f"tx{i}", expect_state=None, new_state="issued",
                                 signer_key_fingerprint=b"f" * 32, message_type=19, csr_der=b"r" * 700,
                                 signer_cert_der=b"s" * 800, subject="CN=bench", certificate=certificate, now=now)

    measure("Store.get_transaction", lambda i: store.get_transaction("default", f"tx{i}"), 2000)
    measure("Store.count_failures", lambda i: store.count_failures("192.0.2.1", now), 2000)
    measure("Store.settle_transaction", settle, 500)
    store.close()

    raw = sqlite3.connect(f"{folder}/bench.db", isolation_level=None)
    measure("sqlite3 SELECT", lambda i: raw.execute(
        "SELECT * FROM scep_transactions WHERE profile = ? AND transaction_id = ?", ("default", f"tx{i}")).fetchone(),
        2000)

    def insert(i: int) -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO failures (key, at) VALUES (?, ?)", ("k", "2026-01-01 00:00:00.000000"))
        raw.execute("COMMIT")

    measure("sqlite3 INSERT + COMMIT", insert, 500)


if __name__ == "__main__":
    main()
