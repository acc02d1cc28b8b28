"""SCEP service behaviour on SQLite and on PostgreSQL (the `db_url` fixture): enrollment,
one-time challenges, approval, renewal and its window, GetCert, revocation and GetCRL,
idempotent retransmission, in this process on a fake clock (tests/inprocess.py); and, over
real HTTP, two `pqscep serve` processes sharing one PostgreSQL and the database going away."""

from __future__ import annotations

import concurrent.futures
import datetime
import re

import pytest
import scep_client
from cryptography import x509
from inprocess import InProcessServer
from scep_client import Device, Requester
from server_proc import ServerProcess, init_data, pqscep

from pqscep.protocol.messages import FailInfo, PkiStatus

CONFIG = """
[server]
database = "{database}"
default_profile = "default"

[profiles.default]
ca_subject = "CN=service test CA"
challenge_file = "secrets/challenge-default"
one_time_challenges = true
rate_limit_failures = 1000

[profiles.approval]
ca_subject = "CN=service approval CA"
challenge_file = "secrets/challenge-default"
manual_approval = true

[profiles.renewal]
ca_subject = "CN=service renewal CA"
challenge_file = "secrets/challenge-default"
renewal_window_days = 30
"""


@pytest.fixture
def server(db_url, tmp_path):
    """The service in this process on a fake clock (the admin commands run as processes on its
    data directory and database, as an operator runs them)."""
    data = init_data(tmp_path / "data", challenge="secret", config_text=CONFIG.format(database=db_url))
    with InProcessServer(data) as ca:
        yield ca


def one_time_challenges(server, count=1, profile="default") -> list[str]:
    out = pqscep("admin", "challenge", "create", "--data", server.data_dir, "--profile", profile,
                 "--count", str(count)).stdout.decode().split()
    assert len(out) == count
    return out


def test_enroll_static_and_one_time_challenge(server):
    scep = Requester(server.url(), client=server.http)
    result = scep.enroll(Device("static-1"), "secret")
    assert result.status == PkiStatus.SUCCESS
    assert result.certificates[0].subject.rfc4514_string() == "CN=static-1"
    result.certificates[0].verify_directly_issued_by(scep.bundle.ca)

    (challenge,) = one_time_challenges(server)
    assert scep.enroll(Device("otp-1"), challenge).status == PkiStatus.SUCCESS
    second = scep.enroll(Device("otp-2"), challenge)
    assert (second.status, second.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    assert "challenge" in second.fail_info_text


def test_retransmission_is_idempotent(server):
    scep = Requester(server.url(), client=server.http)
    device = Device("again")
    first = scep.enroll(device, "secret")
    again = scep.enroll(device, "secret")  # same transaction, same CSR: the same certificate
    assert first.certificates[0].serial_number == again.certificates[0].serial_number


def test_transaction_id_with_another_key_is_another_transaction(server):
    """micromdm and strongSwan derive the transactionID from the key: whoever sends it first
    with another key gets a transaction of its own, and the owner still enrolls, polls and
    replays under its ID."""
    scep = Requester(server.url(), client=server.http)
    owner = Device("owner")
    squatter = Device("squatter", transaction_id=owner.transaction_id)
    taken = scep.enroll(squatter, "secret")
    assert taken.status == PkiStatus.SUCCESS and taken.certificates[0].subject.rfc4514_string() == "CN=squatter"
    first = scep.enroll(owner, "secret")
    assert first.status == PkiStatus.SUCCESS, first.fail_info_text
    assert first.certificates[0].subject.rfc4514_string() == "CN=owner"
    polled = scep.poll(owner)
    assert polled.status == PkiStatus.SUCCESS, polled.fail_info_text
    assert polled.certificates[0].serial_number == first.certificates[0].serial_number
    again = scep.enroll(owner, "secret")
    assert again.certificates[0].serial_number == first.certificates[0].serial_number
    assert scep.poll(squatter).certificates[0].serial_number == taken.certificates[0].serial_number


def test_pending_approve_poll_and_reject(server):
    scep = Requester(server.url("/scep/approval"), client=server.http)
    device = Device("waits")
    assert scep.enroll(device, "secret").status == PkiStatus.PENDING
    assert scep.poll(device).status == PkiStatus.PENDING
    pqscep("admin", "pending", "approve", "--data", server.data_dir, "--profile", "approval", device.transaction_id)
    done = scep.poll(device)
    assert done.status == PkiStatus.SUCCESS and done.certificates[0].subject.rfc4514_string() == "CN=waits"
    assert scep.poll(device).certificates[0].serial_number == done.certificates[0].serial_number

    refused = Device("refused")
    assert scep.enroll(refused, "secret").status == PkiStatus.PENDING
    pqscep("admin", "pending", "reject", "--data", server.data_dir, "--profile", "approval", refused.transaction_id,
           "--reason", "unknown device")
    result = scep.poll(refused)
    assert result.status == PkiStatus.FAILURE and "unknown device" in result.fail_info_text


def test_renewal_window_and_rekey(server):
    scep = Requester(server.url("/scep/renewal"), client=server.http)
    device = Device("renew-me")
    cert = scep.enroll(device, "secret").certificates[0]
    # A fresh one-year certificate is outside the 30-day renewal window; 31 days before it
    # expires it still is, 29 days before it is inside.
    early = scep.renew(Device("renew-me"), cert, device.key)
    assert early.status == PkiStatus.FAILURE and "renewal" in early.fail_info_text
    server.clock.advance(seconds=(cert.not_valid_after_utc - datetime.timedelta(days=31)
                                  - server.clock.now).total_seconds())
    still_early = scep.renew(Device("renew-me"), cert, device.key)
    assert still_early.status == PkiStatus.FAILURE and "renewal" in still_early.fail_info_text
    server.clock.advance(days=2)
    in_window = scep.renew(Device("renew-me"), cert, device.key)
    assert in_window.status == PkiStatus.SUCCESS, in_window.fail_info_text
    assert in_window.certificates[0].subject == cert.subject
    scep_any = Requester(server.url("/scep"), client=server.http)
    device2 = Device("renew-any")
    cert2 = scep_any.enroll(device2, "secret").certificates[0]
    renewed = scep_any.renew(Device("renew-any"), cert2, device2.key)
    assert renewed.status == PkiStatus.SUCCESS
    assert renewed.certificates[0].subject == cert2.subject
    assert renewed.certificates[0].public_key() != cert2.public_key()


def test_get_cert_revoke_and_get_crl(server):
    scep = Requester(server.url(), client=server.http)
    device = Device("revoked-soon")
    cert = scep.enroll(device, "secret").certificates[0]
    fetched = scep.get_cert(Device("fetcher"), cert.serial_number)
    assert fetched.status == PkiStatus.SUCCESS and fetched.certificates[0] == cert

    pqscep("admin", "certs", "revoke", "--data", server.data_dir, format(cert.serial_number, "x"),
           "--reason", "keyCompromise")
    crl_reply = scep.get_crl(Device("crl-reader"), cert.serial_number)
    assert crl_reply.status == PkiStatus.SUCCESS
    (crl,) = crl_reply.crls
    assert crl.is_signature_valid(scep.bundle.ca.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    # A revoked certificate cannot renew.
    refused = scep.renew(Device("revoked-soon"), cert, device.key)
    assert (refused.status, refused.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_CERT_ID)


def test_serials_are_random_and_unique(server):
    scep = Requester(server.url(), client=server.http)
    serials = {scep.enroll(Device(f"serial-{i}"), "secret").certificates[0].serial_number for i in range(8)}
    assert len(serials) == 8
    assert all(s.bit_length() >= 64 for s in serials)


@pytest.mark.postgres
def test_two_server_processes_share_one_postgresql(postgres_url, tmp_path):
    """Two `pqscep serve` processes on one PostgreSQL database behave as one server."""
    from conftest import _fresh_postgres_database

    for database in _fresh_postgres_database(postgres_url):
        data = init_data(tmp_path / "data", challenge="secret", config_text=CONFIG.format(database=database))
        with ServerProcess(data) as a, ServerProcess(data) as b:
            scep_a, scep_b = Requester(a.url()), Requester(b.url())
            # A one-time challenge spent at A is refused at B.
            (challenge,) = one_time_challenges(a)
            assert scep_a.enroll(Device("multi-otp-1"), challenge).status == PkiStatus.SUCCESS
            assert scep_b.enroll(Device("multi-otp-2"), challenge).status == PkiStatus.FAILURE
            # A request made pending at A is approved, then polled at B.
            approval_a, approval_b = Requester(a.url("/scep/approval")), Requester(b.url("/scep/approval"))
            device = Device("multi-pending")
            assert approval_a.enroll(device, "secret").status == PkiStatus.PENDING
            pqscep("admin", "pending", "approve", "--data", data, "--profile", "approval", device.transaction_id)
            polled = approval_b.poll(device)
            assert polled.status == PkiStatus.SUCCESS
            assert approval_a.poll(device).certificates[0].serial_number == polled.certificates[0].serial_number
            # Many challenges raced from both servers at once: each is used exactly once.
            challenges = one_time_challenges(a, count=6)

            def spend(args, scep_a=scep_a, scep_b=scep_b):  # bound now: called only inside this iteration
                index, challenge = args
                requester = scep_a if index % 2 else scep_b
                return requester.enroll(Device(f"race-{index}"), challenge).status

            work = [(i, c) for i, c in enumerate(challenges + challenges)]
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                statuses = list(pool.map(spend, work))
            assert statuses.count(PkiStatus.SUCCESS) == len(challenges)
            # The same transaction sent to both servers at once is issued once.
            racer = Device("same-tx")
            racer.csr = scep_client.scep.build_csr(racer.key, x509.Name.from_rfc4514_string("CN=same-tx"),
                                                   challenge="secret")
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                results = list(pool.map(lambda r, racer=racer: r.enroll(racer, "secret"), [scep_a, scep_b]))
            serials = {r.certificates[0].serial_number for r in results if r.status == PkiStatus.SUCCESS}
            assert len(serials) == 1 and all(r.status == PkiStatus.SUCCESS for r in results)
        listing = pqscep("admin", "certs", "list", "--data", data, "--limit", "1000").stdout.decode()
        issued = re.findall(r"^([0-9a-f]+)\t", listing, re.M)
        assert len(issued) == len(set(issued))


@pytest.mark.postgres
def test_database_out_of_reach_is_503_then_service_resumes(postgres_url, tmp_path):
    """PostgreSQL gone (every connection dropped and the database renamed away, as a failover
    in progress looks): a PKIOperation gets 503 with a one-line reason and no traceback, not a
    500; once the database is back, the same server enrolls again without a restart."""
    import psycopg
    from conftest import _fresh_postgres_database
    from sqlalchemy.engine import make_url

    for database in _fresh_postgres_database(postgres_url):
        url = make_url(database)
        away = url.database + "_away"

        def admin(sql: str, url=url, away=away) -> None:  # bound now: called only inside this iteration
            with psycopg.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                                 dbname=make_url(postgres_url).database, autocommit=True) as conn:
                # A database with connections cannot be renamed: drop the server's first.
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN (%s, %s)",
                             (url.database, away))
                conn.execute(sql)

        data = init_data(tmp_path / "data", challenge="secret", config_text=CONFIG.format(database=database))
        with ServerProcess(data) as server:
            scep = Requester(server.url(), client=server.http)
            assert scep.enroll(Device("before-outage"), "secret").status == PkiStatus.SUCCESS
            admin(f'ALTER DATABASE "{url.database}" RENAME TO "{away}"')
            try:
                with pytest.raises(AssertionError, match=r"^HTTP 503: database unavailable, retry later \(incident "):
                    scep.enroll(Device("during-outage"), "secret")
            finally:
                admin(f'ALTER DATABASE "{away}" RENAME TO "{url.database}"')
            assert scep.enroll(Device("after-outage"), "secret").status == PkiStatus.SUCCESS
            log = server.log()
        assert "database unavailable (incident" in log and "Traceback" not in log
