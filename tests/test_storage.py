"""Storage layer: every Store operation on SQLite and PostgreSQL (`db_url` from conftest.py)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.exc import IntegrityError

from pqscep.ca.transactions import Event, TransitionError, TxState
from pqscep.storage import (
    DuplicateChallenge,
    DuplicateCrlNumber,
    DuplicateSerial,
    Store,
    open_store,
)
from pqscep.storage.db import alembic_config
from pqscep.storage.models import Base

# --- helpers -----------------------------------------------------------------------------

NOW = datetime(2030, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
P = "default"  # profile
FP_A, FP_B = hashlib.sha256(b"key A").digest(), hashlib.sha256(b"key B").digest()


def sec(n: float) -> timedelta:
    return timedelta(seconds=n)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with open_store(db_url) as s:
        yield s


def add_cert(store: Store, serial: int, subject: str = "CN=a", profile: str = P) -> None:
    store.record_certificate(
        profile, serial, b"DER%d" % serial, subject, NOW, NOW + timedelta(days=365),
        "tx1", FP_A, NOW,
    )  # fmt: skip


def race(stores: list[Store], fn: Callable[[Store, int], Any], rounds: int) -> list[list[Any]]:
    """Run fn(store, round) on every store at once (a barrier per round), `rounds` times.

    Each Store has its own engine and pool, so the racers are as independent as two
    server processes would be. Returns results[round][racer].
    """
    barrier = threading.Barrier(len(stores), timeout=60)
    results = [[None] * len(stores) for _ in range(rounds)]

    def worker(i: int) -> None:
        try:
            for r in range(rounds):
                barrier.wait()
                results[r][i] = fn(stores[i], r)
        except BaseException:
            barrier.abort()  # the other racers fail now instead of waiting out the timeout
            raise

    with ThreadPoolExecutor(len(stores)) as pool:
        for f in [pool.submit(worker, i) for i in range(len(stores))]:
            f.result()
    return results


@pytest.fixture
def racers(db_url: str, store: Store) -> Iterator[list[Store]]:
    # `store` first, so that the schema exists before the racers open the database.
    extra = [open_store(db_url) for _ in range(2)]
    yield [store, *extra]
    for s in extra:
        s.close()


# --- opening and migrating ---------------------------------------------------------------


def test_migrations_create_schema_and_are_idempotent(db_url: str) -> None:
    with open_store(db_url):
        pass
    with open_store(db_url) as store, store.engine.connect() as conn:  # second open: no-op
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert ctx.get_current_revision() == head == "0003"
        assert set(inspect(conn).get_table_names()) == set(Base.metadata.tables) | {
            "alembic_version"
        }
        # The hand-written migration and the models describe the same schema.
        assert compare_metadata(ctx, Base.metadata) == []
        # Alembic does not compare CHECK constraints: the state machine's enum is the only
        # source of the states the database accepts, and the migrated constraint says so.
        checks = {c["name"]: c["sqltext"] for c in inspect(conn).get_check_constraints("scep_transactions")}
        assert list(checks) == ["ck_scep_transactions_state"]
        assert set(re.findall(r"'([a-z_]+)'", checks["ck_scep_transactions_state"])) == {s.value for s in TxState}


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(text(sql)).all()]


def test_migration_0002_maps_the_old_states(db_url: str) -> None:
    """Databases at revision 0001 keep every live transaction: "pending" splits into
    awaiting_approval and awaiting_kem_proof by its KEM challenge row, the challenges survive
    SQLite's table rebuild, and the downgrade maps back."""
    from alembic import command

    from pqscep.storage.db import create_db_engine, migrate, write_engine

    engine = create_db_engine(db_url)
    try:
        migrate(engine, "0001")
        old = ["received", "pending", "pending", "approved", "approved", "issued", "rejected", "failed"]
        with engine.begin() as conn:
            for i, state in enumerate(old):
                conn.execute(text(
                    "INSERT INTO scep_transactions (profile, transaction_id, signer_key_fingerprint, message_type,"
                    " signer_cert_der, subject, state, created_at, updated_at)"
                    " VALUES ('p', :t, :f, 19, :f, 'CN=x', :s, :n, :n)"), dict(t=f"t{i}", f=b"x", s=state, n=NOW))
            for i in (2, 4):
                conn.execute(text(
                    "INSERT INTO kem_challenges (profile, transaction_id, secret, csr_digest, signer_key_fingerprint,"
                    " expires_at, created_at) VALUES ('p', :t, :f, :f, :f, :n, :n)"), dict(t=f"t{i}", f=b"x", n=NOW))
        migrate(engine)
        with engine.connect() as conn:
            assert _rows(conn, "SELECT transaction_id, state FROM scep_transactions ORDER BY transaction_id") == [
                ("t1", "awaiting_approval"), ("t2", "awaiting_kem_proof"), ("t3", "approved"),
                ("t4", "awaiting_kem_proof"), ("t5", "issued"), ("t6", "rejected"), ("t7", "rejected")]
            assert _rows(conn, "SELECT transaction_id FROM kem_challenges ORDER BY transaction_id") == [
                ("t2",), ("t4",)
            ]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("UPDATE scep_transactions SET state = 'pending' WHERE transaction_id = 't1'"))
        with open_store(db_url) as store:  # the store reads every migrated row
            assert [t.state for t in store.list_transactions("p")] == [
                TxState.AWAITING_APPROVAL, TxState.AWAITING_KEM_PROOF, TxState.APPROVED, TxState.AWAITING_KEM_PROOF,
                TxState.ISSUED, TxState.REJECTED, TxState.REJECTED]

        cfg = alembic_config()
        with write_engine(engine).begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
        with engine.connect() as conn:
            assert _rows(conn, "SELECT state FROM scep_transactions ORDER BY transaction_id") == [
                ("pending",), ("pending",), ("approved",), ("pending",), ("issued",), ("rejected",), ("rejected",)]
            assert _rows(conn, "SELECT transaction_id FROM kem_challenges ORDER BY transaction_id") == [
                ("t2",), ("t4",)
            ]
    finally:
        engine.dispose()


def test_migration_0003_names_transactions_by_their_csr_key(db_url: str) -> None:
    """Databases at 0002 get each transaction's CSR key fingerprint (the signer's where no CSR is
    stored) and keep their KEM challenges (without a challenge value: the next request gets a
    fresh one); two keys may then share an ID; the downgrade keeps the newest of those."""
    from alembic import command
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from pqscep.storage.db import create_db_engine, migrate, write_engine

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name.from_rfc4514_string("CN=x")).sign(key, hashes.SHA256()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    engine = create_db_engine(db_url)
    try:
        migrate(engine, "0002")
        with engine.begin() as conn:
            for tid, csr_der in (("t0", csr.public_bytes(serialization.Encoding.DER)), ("t1", None)):
                conn.execute(text(
                    "INSERT INTO scep_transactions (profile, transaction_id, signer_key_fingerprint, message_type,"
                    " csr_der, signer_cert_der, subject, state, created_at, updated_at)"
                    " VALUES ('p', :t, :f, 19, :c, :f, 'CN=x', 'awaiting_kem_proof', :n, :n)"),
                    dict(t=tid, f=FP_A, c=csr_der, n=NOW))
            conn.execute(text(
                "INSERT INTO kem_challenges (profile, transaction_id, secret, csr_digest, signer_key_fingerprint,"
                " expires_at, created_at) VALUES ('p', 't0', :f, :f, :f, :n, :n)"), dict(f=FP_A, n=NOW))
        migrate(engine)
        with engine.connect() as conn:
            assert _rows(conn, "SELECT transaction_id, key_fingerprint FROM scep_transactions ORDER BY id") == [
                ("t0", hashlib.sha256(spki).digest()), ("t1", FP_A)]
            assert _rows(conn, "SELECT transaction_id, key_fingerprint, challenge FROM kem_challenges") == [
                ("t0", hashlib.sha256(spki).digest(), None)]
        with open_store(db_url) as store:
            assert store.settle_transaction("p", "t1", expect_state=None, new_state=TxState.AWAITING_APPROVAL,
                                            signer_key_fingerprint=FP_B, message_type=19, csr_der=b"csr",
                                            signer_cert_der=b"cert", subject="CN=y", now=NOW + sec(1))
            assert len(store.list_transactions("p")) == 3

        cfg = alembic_config()
        with write_engine(engine).begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
        with engine.connect() as conn:
            assert _rows(conn, "SELECT transaction_id, subject FROM scep_transactions ORDER BY id") == [
                ("t0", "CN=x"), ("t1", "CN=y")]
            assert _rows(conn, "SELECT transaction_id FROM kem_challenges") == [("t0",)]
    finally:
        engine.dispose()


OPEN_AT = """
import sys, time
from pqscep.storage import open_store
url, t0 = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, t0 - time.time()))  # imports done: now all start at once
open_store(url).close()
"""


def test_server_processes_starting_together_migrate_once(db_url: str) -> None:
    # Separate processes, as in production: first opens of an empty database race, and the
    # migration lock (advisory lock / BEGIN IMMEDIATE) must make all of them succeed.
    t0 = str(time.time() + 2)
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_AT, db_url, t0], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    with open_store(db_url) as store, store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0003"


def test_sqlite_file_created_with_pragmas(tmp_path: Any) -> None:
    path = tmp_path / "new.db"
    with open_store(f"sqlite:///{path}") as store, store.engine.connect() as conn:
        assert path.exists()
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://x@h/db"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)


def test_timestamps_are_utc_and_naive_ones_refused(store: Store) -> None:
    plus2 = NOW.astimezone(timezone(timedelta(hours=2)))
    store.record_failure("k", plus2)
    assert store.count_failures("k", NOW) == 1 and store.count_failures("k", NOW + sec(1)) == 0
    add_cert(store, 1)
    cert = store.get_certificate(P, 1)
    assert cert is not None and cert.created_at == NOW and cert.created_at.tzinfo == UTC
    with pytest.raises(ValueError):
        store.record_failure("k", NOW.replace(tzinfo=None))


# --- certificates --------------------------------------------------------------------------


def test_certificates(store: Store) -> None:
    big = (1 << 159) + 12345  # a 160-bit serial
    add_cert(store, big, "CN=a")
    add_cert(store, 2, "CN=b")
    add_cert(store, 3, "CN=a", profile="other")

    c = store.get_certificate(P, big)
    assert c is not None
    assert (c.serial, c.der, c.subject, c.status, c.transaction_id) == (
        big, b"DER%d" % big, "CN=a", "valid", "tx1"
    )
    assert (c.not_before, c.not_after, c.key_fingerprint) == (NOW, NOW + timedelta(days=365), FP_A)
    assert c.revoked_at is None and c.revocation_reason is None
    assert store.get_certificate(P, 3) is None  # profiles are separate

    assert [r.serial for r in store.find_certificates(P)] == [2, big]  # newest first
    assert [r.serial for r in store.find_certificates(P, subject="CN=a")] == [big]
    assert len(store.find_certificates(P, limit=1)) == 1

    assert store.revoke_certificate(P, big, "keyCompromise", NOW + sec(5))
    assert not store.revoke_certificate(P, big, "superseded", NOW + sec(6))  # already revoked
    assert not store.revoke_certificate(P, 999, "keyCompromise", NOW)  # unknown
    c = store.get_certificate(P, big)
    assert c is not None and c.status == "revoked" and c.revoked_at == NOW + sec(5)
    assert c.revocation_reason == "keyCompromise"
    assert [r.serial for r in store.find_certificates(P, status="valid")] == [2]
    assert store.revoked_certificates(P) == [(big, NOW + sec(5), "keyCompromise")]
    assert store.revoked_certificates("other") == []


def test_duplicate_serial(store: Store) -> None:
    add_cert(store, 42)
    with pytest.raises(DuplicateSerial):
        add_cert(store, 42, "CN=other")
    add_cert(store, 42, profile="other")  # unique per profile only
    assert store.get_certificate(P, 42).subject == "CN=a"  # type: ignore[union-attr]


@pytest.mark.parametrize("serial", [0, -1, 1 << 160])
def test_serial_range(store: Store, serial: int) -> None:
    with pytest.raises(ValueError):
        add_cert(store, serial)


# --- CRLs ----------------------------------------------------------------------------------


def test_crls(store: Store) -> None:
    assert [store.next_crl_number(P) for _ in range(3)] == [1, 2, 3]
    assert store.next_crl_number("other") == 1
    assert store.latest_crl(P) is None
    store.store_crl(P, 1, b"CRL1", NOW, NOW + sec(3600))
    store.store_crl(P, 2, b"CRL2", NOW + sec(60), NOW + sec(3660))
    latest = store.latest_crl(P)
    assert latest is not None
    assert (latest.number, latest.der, latest.this_update, latest.next_update) == (
        2, b"CRL2", NOW + sec(60), NOW + sec(3660)
    )
    with pytest.raises(DuplicateCrlNumber):
        store.store_crl(P, 2, b"again", NOW, NOW)


# --- SCEP transactions ---------------------------------------------------------------------


def test_operator_events_follow_the_transition_table(store: Store) -> None:
    """approve/reject act only from the states ca.transactions allows them from."""
    t = NOW + sec(1)
    assert _settle(store, "T1", expect=None, state=TxState.AWAITING_APPROVAL, profile=P)
    first = store.get_transaction(P, "T1")
    assert first is not None and first.state is TxState.AWAITING_APPROVAL and first.created_at == NOW
    assert (first.csr_der, first.signer_cert_der, first.message_type) == (b"csr", b"cert", 19)
    with pytest.raises(TransitionError):  # no issuing past the operator
        _settle(store, "T1", expect=TxState.AWAITING_APPROVAL, state=TxState.ISSUED, profile=P)
    assert not store.approve(P, "nope", t)

    assert store.approve(P, "T1", NOW + sec(2))
    tx = store.get_transaction(P, "T1")
    assert tx is not None and tx.state is TxState.APPROVED and tx.updated_at == NOW + sec(2)
    assert not store.approve(P, "T1", NOW + sec(3))  # only from awaiting_approval
    assert _settle(store, "T1", expect=TxState.APPROVED, state=TxState.ISSUED, certificate=_issued(1 << 159),
                   profile=P)
    tx = store.get_transaction(P, "T1")
    assert tx is not None and tx.state is TxState.ISSUED and tx.cert_serial == 1 << 159
    assert not store.reject(P, "T1", "too late", NOW + sec(3))  # finished

    assert _settle(store, "T2", expect=None, state=TxState.AWAITING_APPROVAL, profile=P)
    assert store.reject(P, "T2", "unknown device", NOW + sec(4))
    assert _settle(store, "T3", expect=None, state=TxState.AWAITING_KEM_PROOF, profile=P)
    assert store.reject(P, "T3", "lost device", NOW + sec(4))
    t2, t3 = store.get_transaction(P, "T2"), store.get_transaction(P, "T3")
    assert t2 is not None and (t2.state, t2.fail_text) == (TxState.REJECTED, "unknown device")
    assert t3 is not None and (t3.state, t3.fail_text) == (TxState.REJECTED, "lost device")
    assert not store.approve(P, "T2", NOW + sec(5))

    assert [x.transaction_id for x in store.list_transactions(P)] == ["T1", "T2", "T3"]
    assert [x.transaction_id for x in store.list_transactions(P, state=TxState.REJECTED)] == ["T2", "T3"]
    with pytest.raises(ValueError):
        store.apply_operator_event(P, "T2", Event.ISSUE, t)
    with pytest.raises(TransitionError):
        _settle(store, "T4", expect=None, state="bogus", profile=P)  # type: ignore[arg-type]


def test_finished_transaction_starts_again_under_its_id(store: Store) -> None:
    """A new request under an issued or rejected transaction's ID (same key) starts over."""
    assert _settle(store, "T1", expect=None, state=TxState.ISSUED, certificate=_issued(5), profile=P)
    assert _settle(store, "T1", expect=TxState.ISSUED, state=TxState.AWAITING_APPROVAL, profile=P)
    assert store.reject(P, "T1", "no", NOW)
    assert _settle(store, "T1", expect=TxState.REJECTED, state=TxState.ISSUED, certificate=_issued(6), profile=P)
    assert _settle(store, "T1", expect=None, state=TxState.ISSUED, profile="other")  # per profile


# --- one-time challenge passwords ----------------------------------------------------------


def test_challenges(store: Store) -> None:
    d1, d2, d3 = (hashlib.sha256(p).digest() for p in (b"one", b"two", b"three"))
    id1 = store.add_challenge(P, d1, NOW + sec(60), NOW, note="for router 7")
    store.add_challenge(P, d2, NOW + sec(10), NOW)
    store.add_challenge(P, d3, NOW + sec(60), NOW)
    with pytest.raises(DuplicateChallenge):
        store.add_challenge(P, d1, NOW + sec(60), NOW)

    assert not store.consume_challenge("other", d1, NOW)  # wrong profile
    assert store.consume_challenge(P, d1, NOW + sec(1))
    assert not store.consume_challenge(P, d1, NOW + sec(2))  # single use
    assert not store.consume_challenge(P, d2, NOW + sec(10))  # expired (expires_at == now)
    assert not store.consume_challenge(P, hashlib.sha256(b"x").digest(), NOW)

    assert [c.digest for c in store.list_challenges(P)] == [d2, d3]
    used = store.list_challenges(P, include_used=True)[0]
    assert (used.id, used.used_at, used.note) == (id1, NOW + sec(1), "for router 7")

    assert store.purge_expired_challenges(NOW + sec(30)) == 1  # d2 only
    assert store.purge_expired_challenges(NOW + sec(60)) == 2  # d1 (used) and d3
    assert store.list_challenges(P, include_used=True) == []


# --- rate limiting -------------------------------------------------------------------------


def test_failures(store: Store) -> None:
    for i in range(3):
        store.record_failure("10.0.0.1", NOW + sec(i))
    store.record_failure("10.0.0.2", NOW)
    assert store.count_failures("10.0.0.1", NOW) == 3
    assert store.count_failures("10.0.0.1", NOW + sec(1)) == 2
    assert store.prune_failures(NOW + sec(2)) == 3
    assert store.count_failures("10.0.0.1", NOW) == 1


# --- KEM proof-of-possession challenges ----------------------------------------------------


def test_kem_challenges(store: Store) -> None:
    assert store.take_kem_challenge(P, "T1", NOW) is None
    with pytest.raises(IntegrityError):  # needs its transaction (foreign key)
        store.put_kem_challenge(P, "T1", b"s", b"d", FP_A, NOW + sec(60), NOW)
    _settle(store, "T1", expect=None, state=TxState.AWAITING_KEM_PROOF, profile=P, fingerprint=FP_A)
    put = store.put_kem_challenge(P, "T1", b"secret1", b"csrdig", FP_A, NOW + sec(60), NOW, challenge=b"ct1")
    assert (put.secret, put.challenge) == (b"secret1", b"ct1")
    # A live challenge stands: a second one is not written, and the first is what to send.
    kept = store.put_kem_challenge(P, "T1", b"secret9", b"csrdig", FP_A, NOW + sec(90), NOW, challenge=b"ct9")
    assert (kept.secret, kept.challenge, kept.expires_at) == (b"secret1", b"ct1", NOW + sec(60))

    got = store.take_kem_challenge(P, "T1", NOW + sec(1))
    assert got is not None and got.outcome == "ok"
    assert (got.secret, got.csr_digest, got.signer_key_fingerprint) == (b"secret1", b"csrdig", FP_A)
    assert got.spent_at == NOW + sec(1) and got.expires_at == NOW + sec(60)
    again = store.take_kem_challenge(P, "T1", NOW + sec(2))
    assert again is not None and again.outcome == "spent"

    # A new challenge replaces the spent one; this one is left to expire.
    store.put_kem_challenge(P, "T1", b"secret2", b"csrdig", FP_A, NOW + sec(120), NOW + sec(3))
    late = store.take_kem_challenge(P, "T1", NOW + sec(120))
    assert late is not None and (late.outcome, late.secret, late.spent_at) == (
        "expired", b"secret2", None
    )


# --- atomicity -----------------------------------------------------------------------------


def fail_on(store: Store, sql_start: str) -> Callable[[], None]:
    """Make the next statement starting with `sql_start` raise; returns the undo function."""

    def hook(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(sql_start):
            raise RuntimeError("injected failure")

    event.listen(store.engine, "before_cursor_execute", hook)
    return lambda: event.remove(store.engine, "before_cursor_execute", hook)


def test_error_inside_a_write_leaves_nothing(store: Store) -> None:
    # next_crl_number inserts the counter row, then bumps it: fail the bump.
    undo = fail_on(store, "UPDATE CRL_COUNTERS")
    with pytest.raises(RuntimeError):
        store.next_crl_number(P)
    undo()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM crl_counters")).scalar() == 0
    assert store.next_crl_number(P) == 1

    # take_kem_challenge marks the challenge spent, then reads it: fail the read.
    _settle(store, "T1", expect=None, state=TxState.AWAITING_KEM_PROOF, profile=P, fingerprint=FP_A)
    store.put_kem_challenge(P, "T1", b"s", b"d", FP_A, NOW + sec(60), NOW)
    undo = fail_on(store, "SELECT")
    with pytest.raises(RuntimeError):
        store.take_kem_challenge(P, "T1", NOW)
    undo()
    got = store.take_kem_challenge(P, "T1", NOW)  # the failed call did not spend it
    assert got is not None and got.outcome == "ok"


# --- concurrency: several stores (as several processes) racing -----------------------------

ROUNDS = 25


def test_race_consume_challenge(racers: list[Store]) -> None:
    digests = [hashlib.sha256(b"pw%d" % r).digest() for r in range(ROUNDS)]
    for d in digests:
        racers[0].add_challenge(P, d, NOW + sec(60), NOW)
    results = race(racers, lambda s, r: s.consume_challenge(P, digests[r], NOW), ROUNDS)
    assert all(sum(round_) == 1 for round_ in results), results


def test_race_new_transaction(racers: list[Store]) -> None:
    """Several processes inserting the same new transaction: exactly one wins each round."""
    results = race(racers, lambda s, r: _settle(s, f"T{r}", expect=None, state=TxState.AWAITING_APPROVAL,
                                                profile=P), ROUNDS)
    assert all(sum(round_) == 1 for round_ in results), results
    assert len(racers[0].list_transactions(P)) == ROUNDS


def test_race_next_crl_number(racers: list[Store]) -> None:
    results = race(racers, lambda s, r: s.next_crl_number(P), ROUNDS)
    numbers = [n for round_ in results for n in round_]
    assert sorted(numbers) == list(range(1, len(numbers) + 1))  # no duplicates, no gaps
    for i in range(len(racers)):  # monotonic as seen by each process
        mine = [round_[i] for round_ in results]
        assert mine == sorted(mine)


def test_transactions_are_named_by_id_and_csr_key(store):
    """Another key under the same ID is another transaction; a poll finds its own by its signer;
    an operator's decision on an ID two transactions share changes neither."""
    for key in (FP_A, FP_B):
        assert store.settle_transaction(P, "T1", expect_state=None, new_state=TxState.AWAITING_APPROVAL,
                                        signer_key_fingerprint=key, message_type=19, csr_der=b"csr" + key,
                                        signer_cert_der=b"cert", subject="CN=x", now=NOW)
    assert store.get_transaction(P, "T1", FP_A).csr_der == b"csr" + FP_A
    assert store.get_transaction(P, "T1", FP_B).csr_der == b"csr" + FP_B
    assert store.get_polled_transaction(P, "T1", FP_B).key_fingerprint == FP_B
    assert store.get_polled_transaction(P, "T1", b"x" * 32) is None
    assert not store.approve(P, "T1", NOW)
    assert {t.state for t in store.list_transactions(P)} == {TxState.AWAITING_APPROVAL}


# --- settle_transaction: the one write of a PKIOperation -------------------------------------


def _issued(serial: int):
    from pqscep.storage.repository import IssuedCertificate

    return IssuedCertificate(serial=serial, der=b"\x30\x00", subject="CN=x", not_before=NOW, not_after=NOW,
                             key_fingerprint=b"k" * 32)


def _settle(store, txid, *, expect, state, certificate=None, fingerprint=b"f" * 32, profile="p"):
    return store.settle_transaction(
        profile, txid, expect_state=expect, new_state=state, signer_key_fingerprint=fingerprint, message_type=19,
        csr_der=b"csr", signer_cert_der=b"cert", subject="CN=x", certificate=certificate, now=NOW)


def test_settle_inserts_transaction_and_certificate_together(store):
    assert _settle(store, "t1", expect=None, state=TxState.ISSUED, certificate=_issued(7))
    record = store.get_transaction("p", "t1")
    assert (record.state, record.cert_serial) == (TxState.ISSUED, 7)
    assert store.get_certificate("p", 7).transaction_id == "t1"
    # The same transaction inserted again (another process) loses, and writes nothing.
    assert not _settle(store, "t1", expect=None, state=TxState.ISSUED, certificate=_issued(8))
    assert store.get_certificate("p", 8) is None


def test_settle_duplicate_serial_leaves_nothing(store):
    assert _settle(store, "t1", expect=None, state=TxState.ISSUED, certificate=_issued(7))
    with pytest.raises(DuplicateSerial):
        _settle(store, "t2", expect=None, state=TxState.ISSUED, certificate=_issued(7))
    assert store.get_transaction("p", "t2") is None
    assert _settle(store, "t3", expect=None, state=TxState.AWAITING_APPROVAL)
    assert store.approve("p", "t3", NOW)
    with pytest.raises(DuplicateSerial):
        _settle(store, "t3", expect=TxState.APPROVED, state=TxState.ISSUED, certificate=_issued(7))
    assert store.get_transaction("p", "t3").state is TxState.APPROVED


def test_settle_is_conditional_on_state_and_key(store):
    assert _settle(store, "t1", expect=None, state=TxState.AWAITING_APPROVAL)
    assert not _settle(store, "t1", expect=TxState.APPROVED, state=TxState.ISSUED, certificate=_issued(9))
    assert store.approve("p", "t1", NOW)
    assert not _settle(store, "t1", expect=TxState.APPROVED, state=TxState.ISSUED, certificate=_issued(9),
                       fingerprint=b"g" * 32)
    assert _settle(store, "t1", expect=TxState.APPROVED, state=TxState.ISSUED, certificate=_issued(9))
    assert not _settle(store, "t1", expect=TxState.APPROVED, state=TxState.ISSUED, certificate=_issued(10))
    assert store.get_certificate("p", 10) is None


# --- a PostgreSQL that dropped every connection -----------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_hot_path_survives_dropped_postgres_connections(db_url: str) -> None:
    """The per-PKIOperation statements run on a pool without pre-ping (storage/statements.py):
    after the server drops every connection (what a restart or failover does), the next
    lookup, count and settle write must each work, on a fresh connection, with nothing lost or
    written twice."""
    import psycopg
    from sqlalchemy.engine import make_url

    from pqscep.storage.repository import IssuedCertificate

    url = db_url
    with open_store(url) as store:
        settle = dict(expect_state=None, new_state=TxState.ISSUED, signer_key_fingerprint=FP_A, message_type=19,
                      csr_der=b"CSR", signer_cert_der=b"SIGNER", subject="CN=a", now=NOW)
        cert = IssuedCertificate(serial=7, der=b"DER7", subject="CN=a", not_before=NOW,
                                 not_after=NOW + timedelta(days=1), key_fingerprint=FP_A)
        assert store.settle_transaction(P, "T1", certificate=cert, **settle)
        assert store.get_transaction(P, "T1").state is TxState.ISSUED  # the pool now holds live connections

        target = make_url(url)
        with psycopg.connect(host=target.host, port=target.port, user=target.username,
                             password=target.password, dbname=target.database, autocommit=True) as admin:
            # Our role's sessions only: an autovacuum worker on this database is a superuser
            # process that a non-superuser may not terminate (InsufficientPrivilege).
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND usename = current_user "
                "AND pid <> pg_backend_pid()").fetchone()[0]
        assert killed >= 1

        assert store.get_transaction(P, "T1").state is TxState.ISSUED
        store.record_failure("10.0.0.9", NOW)  # the ORM pool (with pre-ping) as well
        assert store.count_failures("10.0.0.9", NOW) == 1
        with psycopg.connect(host=target.host, port=target.port, user=target.username,
                             password=target.password, dbname=target.database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND usename = current_user "
                          "AND pid <> pg_backend_pid()")
        cert2 = IssuedCertificate(serial=8, der=b"DER8", subject="CN=b", not_before=NOW,
                                  not_after=NOW + timedelta(days=1), key_fingerprint=FP_A)
        assert store.settle_transaction(P, "T2", certificate=cert2, **settle)
        assert store.get_transaction(P, "T2").cert_serial == 8
        assert sorted(c.serial for c in store.find_certificates(P)) == [7, 8]
