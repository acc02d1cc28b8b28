"""CA rollover end to end (GetNextCACert, RFC 8894 section 4.7) on the post-quantum
profile and the classic one, over real HTTP with `pqscep serve` and the `pqscep enroll` and
`pqscep renew` command line: before the rollover, with the next CA prepared, and after
`admin rollover --activate`, a device enrolls and renews each time, and a certificate of the old
CA renews after the switch. The ML-KEM recipient certificate (draft Section 3) moves with the CA.
"""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
from cryptography import x509
from server_proc import ServerProcess, init_data, pqscep

from pqscep.cms import signed
from pqscep.crypto.keys import KeyFamily, key_family
from pqscep.protocol.client import parse_ca_certs

PROFILES = {"pq": "ml-dsa-65", "default": "rsa-2048"}  # profile: the devices' key type


def _url(server: ServerProcess, profile: str) -> str:
    return server.url(f"/scep/{profile}")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:
        return False


def _enroll(server: ServerProcess, profile: str, cn: str, out: Path) -> x509.Certificate:
    pqscep("enroll", _url(server, profile), "--challenge", "secret", "--cn", cn,
           "--key-type", PROFILES[profile], "--out", out)
    return _cert(out)


def _renew(server: ServerProcess, profile: str, current: Path, out: Path) -> x509.Certificate:
    pqscep("renew", _url(server, profile), "--cert", current, "--key", current.with_suffix(".key"),
           "--key-type", PROFILES[profile], "--out", out)
    renewed = _cert(out)
    assert renewed.subject == _cert(current).subject
    return renewed


def _ca_bundle(server: ServerProcess, profile: str):
    reply = httpx.get(_url(server, profile), params={"operation": "GetCACert"}, timeout=30)
    return parse_ca_certs(reply.headers["content-type"], reply.content)


def _next_ca_bundle(server: ServerProcess, profile: str, current_ca: x509.Certificate) -> list[x509.Certificate]:
    reply = httpx.get(_url(server, profile), params={"operation": "GetNextCACert"}, timeout=30)
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/x-x509-next-ca-cert"
    message = signed.parse_signed_data(reply.content)
    message.verify(message.signer_infos[0], current_ca)  # RFC 8894 section 4.7.1: signed by the current CA
    return signed.parse_signed_data(message.content).certificates


def _kem_recipients(certs) -> list[x509.Certificate]:
    return [c for c in certs if key_family(c.public_key()) == KeyFamily.ML_KEM]


def test_rollover_keeps_enrollment_and_renewal_working(tmp_path):
    data = init_data(tmp_path / "data")
    devices = tmp_path / "devices"
    devices.mkdir()
    old_ca = {p: _cert(data / "profiles" / p / "ca.pem") for p in PROFILES}

    # Before: enroll and renew against the only CA.
    with ServerProcess(data) as server:
        for profile in PROFILES:
            assert "GetNextCACert" not in httpx.get(_url(server, profile), params={"operation": "GetCACaps"}).text
            _enroll(server, profile, f"{profile}-before", devices / f"{profile}-before.pem")
            assert _issued_by(_renew(server, profile, devices / f"{profile}-before.pem",
                                     devices / f"{profile}-before-renewed.pem"), old_ca[profile])

    for profile in PROFILES:
        pqscep("admin", "rollover", "--data", data, "--profile", profile)
    folder = data / "profiles" / "pq"
    for name in ("next-ca.key", "next-kem-recipient.key"):  # encrypted at rest, 0600, like the others
        assert b"ENCRYPTED PRIVATE KEY" in (folder / name).read_bytes()
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600

    # Next CA prepared: GetNextCACert serves it with the recipient certificate it issued;
    # GetCACert and issuance stay on the current CA.
    next_ca = {}
    with ServerProcess(data) as server:
        for profile in PROFILES:
            assert "GetNextCACert" in httpx.get(_url(server, profile), params={"operation": "GetCACaps"}).text.split()
            bundle = _next_ca_bundle(server, profile, old_ca[profile])
            (next_ca[profile],) = [c for c in bundle if c.subject == old_ca[profile].subject]
            assert next_ca[profile] != old_ca[profile]
            current = _ca_bundle(server, profile)
            assert current.ca == old_ca[profile]
            if profile == "pq":
                (next_recipient,) = _kem_recipients(bundle)
                assert _issued_by(next_recipient, next_ca["pq"])
                assert current.kem_recipient_cert is not None
                assert _issued_by(current.kem_recipient_cert, old_ca["pq"])
            else:
                assert bundle == [next_ca[profile]]
            during = _enroll(server, profile, f"{profile}-during", devices / f"{profile}-during.pem")
            assert _issued_by(during, old_ca[profile])
            assert _issued_by(_renew(server, profile, devices / f"{profile}-during.pem",
                                     devices / f"{profile}-during-renewed.pem"), old_ca[profile])

    for profile in PROFILES:
        pqscep("admin", "crl", "--data", data, "--profile", profile)  # a CRL of the old CA, stored
        pqscep("admin", "rollover", "--data", data, "--profile", profile, "--activate")
    assert _cert(folder / "ca-previous.pem") == old_ca["pq"]
    assert not list(folder.glob("next-*"))
    assert stat.S_IMODE((folder / "ca-previous.key").stat().st_mode) == 0o600

    # Activated: GetCACert serves the new CA and its recipient certificate; new devices enroll,
    # and certificates of the old CA (issued before and during the rollover) renew.
    with ServerProcess(data) as server:
        for profile in PROFILES:
            assert "GetNextCACert" not in httpx.get(_url(server, profile), params={"operation": "GetCACaps"}).text
            current = _ca_bundle(server, profile)
            assert current.ca == next_ca[profile]
            if profile == "pq":
                assert current.kem_recipient_cert is not None
                assert _issued_by(current.kem_recipient_cert, next_ca["pq"])
                assert [c for c in current.all if not _issued_by(c, next_ca["pq"])] == []
            after = _enroll(server, profile, f"{profile}-after", devices / f"{profile}-after.pem")
            assert _issued_by(after, next_ca[profile])
            assert _issued_by(_renew(server, profile, devices / f"{profile}-after.pem",
                                     devices / f"{profile}-after-renewed.pem"), next_ca[profile])
            pqscep("getcrl", _url(server, profile), "--cert", devices / f"{profile}-after.pem",
                   "--key", devices / f"{profile}-after.key", "--out", devices / f"{profile}.crl")
            crl = x509.load_pem_x509_crl((devices / f"{profile}.crl").read_bytes())
            assert crl.is_signature_valid(next_ca[profile].public_key())  # the new CA's, not a stale one
            for phase in ("before-renewed", "during"):
                old = devices / f"{profile}-{phase}.pem"
                assert _issued_by(_cert(old), old_ca[profile])
                assert _issued_by(_renew(server, profile, old, devices / f"{profile}-{phase}-2.pem"), next_ca[profile])


def test_revoked_certificate_of_the_previous_ca_does_not_renew(tmp_path):
    """The overlap accepts the old CA's certificates only as the store knows them: valid and
    not revoked (the store is per profile, one serial space for both CAs)."""
    data = init_data(tmp_path / "data")
    with ServerProcess(data) as server:
        old = _enroll(server, "pq", "revoked-dev", tmp_path / "old.pem")
    pqscep("admin", "rollover", "--data", data, "--profile", "pq")
    pqscep("admin", "rollover", "--data", data, "--profile", "pq", "--activate")
    pqscep("admin", "certs", "revoke", "--data", data, "--profile", "pq", f"{old.serial_number:x}")
    with ServerProcess(data) as server:
        proc = pqscep("renew", _url(server, "pq"), "--cert", tmp_path / "old.pem", "--key", tmp_path / "old.key",
                      "--key-type", "ml-dsa-65", "--out", tmp_path / "new.pem", check=False)
    assert proc.returncode == 1, proc.stderr  # a CA FAILURE
    assert b"revoked" in proc.stdout + proc.stderr
    assert not (tmp_path / "new.pem").exists()


def test_activation_without_a_prepared_ca_and_a_second_prepare_are_refused(tmp_path):
    data = init_data(tmp_path / "data")
    proc = pqscep("admin", "rollover", "--data", data, "--profile", "pq", "--activate", check=False)
    assert proc.returncode == 1 and b"no prepared next CA" in proc.stderr and b"Traceback" not in proc.stderr
    pqscep("admin", "rollover", "--data", data, "--profile", "pq")
    proc = pqscep("admin", "rollover", "--data", data, "--profile", "pq", check=False)
    assert proc.returncode == 1 and b"already has a prepared next CA" in proc.stderr


def _pq_state(data: Path) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    folder = data / "profiles" / "pq"
    return _cert(folder / "ca.pem"), _cert(folder / "kem-recipient.pem"), _cert(folder / "ca-previous.pem")


def test_interrupted_activation_is_finished_by_running_it_again(tmp_path):
    data = init_data(tmp_path / "data")
    folder = data / "profiles" / "pq"
    old_ca = _cert(folder / "ca.pem")
    pqscep("admin", "rollover", "--data", data, "--profile", "pq")
    next_ca = _cert(folder / "next-ca.pem")
    next_recipient = _cert(folder / "next-kem-recipient.pem")
    # As if the first run stopped after moving the recipient's key, and then the CA's key.
    (folder / "next-kem-recipient.key").replace(folder / "kem-recipient.key")
    pqscep("admin", "rollover", "--data", data, "--profile", "pq", "--activate")
    assert _pq_state(data) == (next_ca, next_recipient, old_ca)
    assert not list(folder.glob("next-*"))
    with ServerProcess(data) as server:
        bundle = _ca_bundle(server, "pq")
        assert bundle.ca == next_ca and bundle.kem_recipient_cert == next_recipient
        _enroll(server, "pq", "after-rerun", tmp_path / "dev.pem")


def test_rollover_prepared_without_a_next_recipient_gets_one_at_activation(tmp_path):
    """A next CA prepared before it issued its own recipient certificate (as `admin rollover`
    did before): activation issues one from the next CA, never keeps the old CA's."""
    data = init_data(tmp_path / "data")
    folder = data / "profiles" / "pq"
    old_recipient = _cert(folder / "kem-recipient.pem")
    pqscep("admin", "rollover", "--data", data, "--profile", "pq")
    next_ca = _cert(folder / "next-ca.pem")
    for name in ("next-kem-recipient.pem", "next-kem-recipient.key"):
        (folder / name).unlink()
    pqscep("admin", "rollover", "--data", data, "--profile", "pq", "--activate")
    recipient = _cert(folder / "kem-recipient.pem")
    assert recipient != old_recipient and _issued_by(recipient, next_ca)
    assert b"ENCRYPTED PRIVATE KEY" in (folder / "kem-recipient.key").read_bytes()
    assert stat.S_IMODE((folder / "kem-recipient.key").stat().st_mode) == 0o600
