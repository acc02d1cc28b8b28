"""Real SCEP clients from Debian packages enroll against `pqscep serve`.

micromdm scepclient 2.1.0, strongSwan `pki --scep` 5.9.8 and certmonger 0.79.17 (session
mode under dbus-run-session) each get a certificate that `openssl verify` accepts; strongSwan
renews; a PENDING -> approve -> CertPoll round trip runs with strongSwan; an RA profile (NDES
arrangement) serves strongSwan and certmonger. Under CI=true a missing peer fails the test.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import peers
import pytest
from server_proc import ServerProcess, init_data, pqscep

pytestmark = pytest.mark.interop

CONFIG = """
[server]
host = "127.0.0.1"
database = "sqlite:///pqscep.db"
default_profile = "default"
ca_passphrase_file = "secrets/ca-passphrase"

[profiles.default]
ca_key_type = "rsa-2048"
ca_subject = "CN=interop default CA,O=pqscep"
challenge_file = "secrets/challenge-default"

[profiles.legacy]
ca_key_type = "rsa-2048"
ca_subject = "CN=interop legacy CA,O=pqscep"
challenge_file = "secrets/challenge-default"
allow_legacy_algorithms = true

[profiles.approval]
ca_key_type = "rsa-2048"
ca_subject = "CN=interop approval CA,O=pqscep"
challenge_file = "secrets/challenge-default"
manual_approval = true

[profiles.ra]
ca_key_type = "rsa-2048"
ca_subject = "CN=interop RA-fronted CA,O=pqscep"
challenge_file = "secrets/challenge-default"
use_ra = true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = init_data(tmp_path_factory.mktemp("interop") / "data", challenge="secret", config_text=CONFIG)
    with ServerProcess(data) as proc:
        yield proc


def ca_pem(server: ServerProcess, profile: str) -> Path:
    return server.data_dir / "profiles" / profile / "ca.pem"


def subject_of(cert: Path) -> str:
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "RFC2253"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().removeprefix("subject=")


def serial_of(cert: Path) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-serial"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_micromdm_scepclient_enrolls(server, tmp_path):
    # scepclient 2.1.0 sends SHA-1 and single DES whatever GetCACaps says: legacy profile.
    cert = peers.run_scepclient(server.url("/scep/legacy"), tmp_path, "secret", "mm-device")
    peers.verify_cert(ca_pem(server, "legacy"), cert)
    assert "CN=mm-device" in subject_of(cert)


def test_micromdm_scepclient_refused_without_legacy(server, tmp_path):
    with pytest.raises(peers.PeerError, match="badAlg"):
        peers.run_scepclient(server.url("/scep"), tmp_path, "secret", "mm-no-legacy")


def test_micromdm_scepclient_wrong_challenge_refused(server, tmp_path):
    with pytest.raises(peers.PeerError, match="badRequest"):
        peers.run_scepclient(server.url("/scep/legacy"), tmp_path, "not-the-secret", "mm-wrong")


def test_strongswan_enrolls_and_renews(server, tmp_path):
    url = server.url("/scep")
    cert = peers.run_strongswan_enroll(url, tmp_path, "secret", "sw-device")
    peers.verify_cert(ca_pem(server, "default"), cert)
    renewed = peers.run_strongswan_renew(url, tmp_path / "renew", cert, tmp_path / "key.der")
    peers.verify_cert(ca_pem(server, "default"), renewed)
    assert subject_of(renewed) == subject_of(cert)
    assert serial_of(renewed) != serial_of(cert)


def test_strongswan_3des(server, tmp_path):
    cert = peers.run_strongswan_enroll(server.url("/scep"), tmp_path, "secret", "sw-3des", cipher="des3")
    peers.verify_cert(ca_pem(server, "default"), cert)


def test_certmonger_session_mode_enrolls(server, tmp_path):
    cert = peers.run_certmonger_session(server.url("/scep"), tmp_path, "secret", "cm-device",
                                        ca_cert=ca_pem(server, "default"))
    peers.verify_cert(ca_pem(server, "default"), cert)


def test_certmonger_via_cgi_bin_path(server, tmp_path):
    cert = peers.run_certmonger_session(server.url("/cgi-bin/pkiclient.exe"), tmp_path, "secret", "cm-cgi",
                                        ca_cert=ca_pem(server, "default"))
    peers.verify_cert(ca_pem(server, "default"), cert)


def test_ra_profile_serves_strongswan_and_certmonger(server, tmp_path):
    url = server.url("/scep/ra")
    ca, enc, sig = peers.strongswan_get_ca(url, tmp_path / "ca")
    assert enc != sig != ca, "GetCACert must return separate RA signing and encryption certificates"
    cert = peers.run_strongswan_enroll(url, tmp_path / "sw", "secret", "sw-ra")
    peers.verify_cert(ca_pem(server, "ra"), cert)
    cert = peers.run_certmonger_session(url, tmp_path / "cm", "secret", "cm-ra", ca_cert=ca_pem(server, "ra"))
    peers.verify_cert(ca_pem(server, "ra"), cert)


def _pending(server: ServerProcess, profile: str) -> list[dict]:
    out = pqscep("admin", "pending", "list", "--data", server.data_dir, "--profile", profile, "--json").stdout
    return json.loads(out)


def test_strongswan_pending_approve_poll(server, tmp_path):
    """PKCSReq -> PENDING; operator approves; strongSwan's next CertPoll gets the certificate."""
    url = server.url("/scep/approval")
    ca, enc, sig = peers.strongswan_get_ca(url, tmp_path)
    key = tmp_path / "key.der"
    key.write_bytes(subprocess.run(["pki", "--gen", "--type", "rsa", "--size", "2048", "--outform", "der"],
                                   capture_output=True, check=True).stdout)
    out = tmp_path / "cert.pem"
    with open(out, "wb") as stdout, open(tmp_path / "pki.log", "wb") as stderr:
        client = subprocess.Popen(
            [peers.find_tool("pki"), "--scep", "--url", url, "--in", str(key), "--dn", "CN=sw-pending",
             "--cacert-enc", str(enc), "--cacert-sig", str(sig), "--password", "secret", "--cipher", "aes",
             "--digest", "sha256", "--interval", "1", "--maxpolltime", "90", "--outform", "pem"],
            cwd=tmp_path, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (waiting := [p for p in _pending(server, "approval") if p["subject"] == "CN=sw-pending"]):
            assert client.poll() is None, (tmp_path / "pki.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "the request never became pending"
            time.sleep(0.3)
        time.sleep(1.5)  # let strongSwan poll at least once while still pending
        assert client.poll() is None, "strongSwan must keep polling while the request is pending"
        pqscep("admin", "pending", "approve", "--data", server.data_dir, "--profile", "approval",
               waiting[0]["transaction_id"])
        assert client.wait(timeout=60) == 0, (tmp_path / "pki.log").read_text(errors="replace")
    finally:
        peers.stop_process(client)
    peers.verify_cert(ca_pem(server, "approval"), out)
    log = (tmp_path / "pki.log").read_text(errors="replace")
    assert "PENDING" in log.upper() or "poll" in log.lower(), log


def test_rejected_request_gets_failure(server, tmp_path):
    url = server.url("/scep/approval")
    ca, enc, sig = peers.strongswan_get_ca(url, tmp_path)
    key = tmp_path / "key.der"
    key.write_bytes(subprocess.run(["pki", "--gen", "--type", "rsa", "--size", "2048", "--outform", "der"],
                                   capture_output=True, check=True).stdout)
    with open(tmp_path / "pki.log", "wb") as stderr:
        client = subprocess.Popen(
            [peers.find_tool("pki"), "--scep", "--url", url, "--in", str(key), "--dn", "CN=sw-reject",
             "--cacert-enc", str(enc), "--cacert-sig", str(sig), "--password", "secret",
             "--interval", "1", "--maxpolltime", "60", "--outform", "pem"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (waiting := [p for p in _pending(server, "approval") if p["subject"] == "CN=sw-reject"]):
            assert time.monotonic() < deadline, "the request never became pending"
            time.sleep(0.3)
        pqscep("admin", "pending", "reject", "--data", server.data_dir, "--profile", "approval",
               waiting[0]["transaction_id"])
        assert client.wait(timeout=60) != 0
    finally:
        peers.stop_process(client)
