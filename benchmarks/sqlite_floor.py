"""What SQLite itself costs for the durable write of one issued certificate, next to what
pqscep's `Store.settle_transaction` costs for the same write, in the same run.

    python benchmarks/sqlite_floor.py [--profile classic|pq] [--count 1000] [--interleave 3] [--json]

All three write the same two rows (the transaction and its certificate, in one BEGIN IMMEDIATE ...
COMMIT, `synchronous=FULL`) into one database made by `open_store`, so the schema, indexes
and pragmas are the server's. Three ways, alternating write by write so that the machine's
drift falls on all alike:

* `sqlite`: the statements `Store` compiles, their parameters converted before the clock, on
  a plain sqlite3 connection: SQLite's work and the fsync, nothing else;
* `hotpath`: the same converted parameters through `HotPath.write` (statements.py), the
  server's own write path: adds the cross-process write lock and the held connection;
* `pqscep`: `Store.settle_transaction`, as a PKIOperation calls it: adds the conversion of
  the values (timestamps, blobs) and the Python that builds them.

`--interleave N` makes N RSA-2048 signatures between writes, untimed, so that the caches are
as cold as in a server that does crypto between its writes.

Row sizes are those of a real enrollment: classic (RSA-2048 device) CSR 626, signer
certificate 673, issued certificate 834 bytes; pq (ML-DSA-65 device at the ML-DSA-65 CA)
5,357, 5,402 and 5,568 bytes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pqscep.ca.transactions import TxState
from pqscep.service.setup import init_data_dir
from pqscep.storage.db import SQLITE_BUSY_TIMEOUT_MS, open_store
from pqscep.storage.records import IssuedCertificate
from pqscep.storage.sql import _serial_hex

SIZES = {"classic": (626, 673, 834), "pq": (5357, 5402, 5568)}


class _Converted:
    """A `statements.Prepared` look-alike whose parameters are already converted, so that
    `HotPath.write` can be timed without the conversion."""

    def __init__(self, sql: str):
        self.sql = sql

    def parameters(self, values):
        return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(SIZES), default="classic")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--interleave", type=int, default=3, help="untimed RSA-2048 signatures between writes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    csr_size, signer_size, cert_size = SIZES[args.profile]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    os.environ.setdefault("PQSCEP_CA_PASSPHRASE", "benchmark-passphrase")
    with tempfile.TemporaryDirectory() as tmp:
        config = init_data_dir(Path(tmp) / "data", challenge="secret")
        store = open_store(config.database_url)
        insert_tx, insert_cert = store._insert_transaction, store._insert_certificate
        now = datetime.datetime.now(datetime.UTC)
        later = now + datetime.timedelta(days=365)

        def row(i: int) -> dict:
            serial = int.from_bytes(os.urandom(8), "big") | (1 << 63)
            return dict(transaction_id=os.urandom(16).hex(), csr_der=os.urandom(csr_size),
                        signer_cert_der=os.urandom(signer_size), fingerprint=os.urandom(32),
                        certificate=IssuedCertificate(serial=serial, der=os.urandom(cert_size), subject=f"CN=bench-{i}",
                                                      not_before=now, not_after=later, key_fingerprint=os.urandom(32)))

        def settle(r: dict) -> None:
            assert store.settle_transaction(
                "default", r["transaction_id"], expect_state=None, new_state=TxState.ISSUED,
                signer_key_fingerprint=r["fingerprint"], message_type=19, csr_der=r["csr_der"],
                signer_cert_der=r["signer_cert_der"], subject=r["certificate"].subject,
                certificate=r["certificate"], now=now)

        def raw_parameters(r: dict) -> tuple:
            cert = r["certificate"]
            tx = insert_tx.parameters(dict(
                profile="default", transaction_id=r["transaction_id"], signer_key_fingerprint=r["fingerprint"],
                key_fingerprint=r["fingerprint"],
                message_type=19, csr_der=r["csr_der"], signer_cert_der=r["signer_cert_der"], subject=cert.subject,
                state="issued", cert_serial=_serial_hex(cert.serial), fail_info=None, fail_text=None, created_at=now,
                updated_at=now))
            certificate = insert_cert.parameters(dict(
                profile="default", serial=_serial_hex(cert.serial), der=cert.der, subject=cert.subject,
                not_before=cert.not_before, not_after=cert.not_after, status="valid", revoked_at=None,
                revocation_reason=None, transaction_id=r["transaction_id"], key_fingerprint=cert.key_fingerprint,
                created_at=now))
            return tx, certificate

        raw = sqlite3.connect(config.database_url.removeprefix("sqlite:///"), isolation_level=None)
        raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # as db.py sets it
        raw.execute("PRAGMA foreign_keys=ON")
        cursor = raw.cursor()

        def floor_write(parameters: tuple) -> None:
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(insert_tx.sql, parameters[0])
            cursor.execute(insert_cert.sql, parameters[1])
            cursor.execute("COMMIT")

        converted_tx, converted_cert = _Converted(insert_tx.sql), _Converted(insert_cert.sql)

        def hotpath_write(parameters: tuple) -> None:
            def body(execute) -> None:
                execute(converted_tx, parameters[0])
                execute(converted_cert, parameters[1])

            store._hot.write(body)

        writes = args.count + 20
        rows = [row(i) for i in range(3 * writes)]  # each written once: unique IDs and serials
        floor_rows = [raw_parameters(r) for r in rows[writes:2 * writes]]
        hotpath_rows = [raw_parameters(r) for r in rows[2 * writes:]]
        timings: dict[str, list[tuple[float, float]]] = {"sqlite": [], "hotpath": [], "pqscep": []}
        for i in range(writes):
            ways = (("sqlite", floor_write, floor_rows[i]), ("hotpath", hotpath_write, hotpath_rows[i]),
                    ("pqscep", settle, rows[i]))
            for name, write, value in ways:
                for _ in range(args.interleave):
                    rsa_key.sign(b"cache", padding.PKCS1v15(), hashes.SHA256())
                wall, cpu = time.perf_counter(), time.thread_time()
                write(value)
                if i >= 20:  # the first writes warm up the connections and the page cache
                    timings[name].append((time.thread_time() - cpu, time.perf_counter() - wall))
        raw.close()
        store.close()

    def us(values: list[float]) -> float:
        return round(1e6 * statistics.mean(values), 1)

    result = {"profile": args.profile, "count": args.count, "interleave": args.interleave}
    for name, samples in timings.items():
        result[f"{name}_cpu_us_per_write"] = us([cpu for cpu, _ in samples])
        result[f"{name}_wall_us_per_write"] = us([wall for _, wall in samples])
    result["pqscep_over_sqlite_cpu_us"] = round(
        result["pqscep_cpu_us_per_write"] - result["sqlite_cpu_us_per_write"], 1
    )
    result["hotpath_over_sqlite_cpu_us"] = round(
        result["hotpath_cpu_us_per_write"] - result["sqlite_cpu_us_per_write"], 1
    )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
