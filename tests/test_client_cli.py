"""The client CLI (caps, cacert, enroll, renew, poll, getcert, getcrl, bench) and `inspect`.

Against a real micromdm ``scepserver`` 2.1.0 (Debian package ``scep``) on loopback, through
``tests/peers.py``; `inspect` against the captured messages in ../shared/vectors/scep-captures;
PENDING/poll and failInfoText (which micromdm never sends) against a small in-process SCEP
server built on pqscep's own sans-IO responder. Under CI=true a missing tool fails the test.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import peers
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO.parent / "shared" / "vectors" / "scep-captures"
CHALLENGE = "secret"


# --------------------------------------------------------------------------- helpers


def _pqscep_command() -> list[str]:
    script = Path(sys.executable).with_name("pqscep")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from pqscep.cli.main import main; main()"]


def cli(
    *args, env: dict | None = None, timeout: float = 180, stdin: bytes | None = None
) -> subprocess.CompletedProcess:
    """Run `pqscep ARGS`; never raises on a non-zero exit (tests check the code)."""
    full_env = dict(os.environ, COLUMNS="200", **(env or {}))
    full_env.pop("PQSCEP_CHALLENGE", None)
    if env and "PQSCEP_CHALLENGE" in env:
        full_env["PQSCEP_CHALLENGE"] = env["PQSCEP_CHALLENGE"]
    return subprocess.run([*_pqscep_command(), *map(str, args)], input=stdin, capture_output=True, env=full_env,
                          timeout=timeout)


def text(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout.decode(errors='replace')}\n" \
           f"--- stderr\n{proc.stderr.decode(errors='replace')}"


def load_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)


def spki(obj) -> bytes:
    public = obj.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def openssl_verify(ca_pem: Path, cert_pem: Path) -> None:
    proc = subprocess.run([peers.find_tool("openssl"), "verify", "-CAfile", str(ca_pem), str(cert_pem)],
                          capture_output=True, timeout=30)
    assert proc.returncode == 0 and b": OK" in proc.stdout, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- micromdm scepserver


@pytest.fixture(scope="module")
def micromdm(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("micromdm")
    proc = peers.start_micromdm_scepserver(workdir, peers.free_port(), CHALLENGE)
    try:
        yield proc
    finally:
        peers.stop_process(proc)


@pytest.mark.interop
def test_caps_lists_micromdm_keywords(micromdm):
    proc = cli("caps", micromdm.url)
    assert proc.returncode == 0, text(proc)
    keywords = proc.stdout.decode().split()
    # What micromdm 2.1.0 advertises (one keyword per line on stdout, nothing else there).
    assert {"POSTPKIOperation", "SHA-256", "AES", "Renewal"} <= set(keywords), keywords
    assert "aes256-cbc + sha256 by POST" in proc.stderr.decode()


@pytest.mark.interop
def test_cacert_pem_der_and_pin(micromdm, tmp_path):
    ca = load_cert(micromdm.ca_pem)
    fingerprint = ca.fingerprint(hashes.SHA256()).hex()

    proc = cli("cacert", micromdm.url, "--out", tmp_path / "ca.pem", "--ca-fingerprint", fingerprint)
    assert proc.returncode == 0, text(proc)
    assert load_cert(tmp_path / "ca.pem") == ca

    proc = cli("cacert", micromdm.url, "--der", "--out", tmp_path / "ca.der")
    assert proc.returncode == 0, text(proc)
    assert x509.load_der_x509_certificate((tmp_path / "ca.der").read_bytes()) == ca  # a single DER cert

    proc = cli("cacert", micromdm.url)  # PEM on stdout
    assert proc.returncode == 0 and x509.load_pem_x509_certificate(proc.stdout) == ca, text(proc)

    colon_pin = ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()
    assert cli("cacert", micromdm.url, "--ca-fingerprint", colon_pin).returncode == 0

    proc = cli("cacert", micromdm.url, "--ca-fingerprint", "00" * 32)
    assert proc.returncode == 5, text(proc)
    assert "pinned" in proc.stderr.decode()


@pytest.mark.interop
def test_enroll_issues_a_certificate_that_openssl_verifies(micromdm, tmp_path):
    ca = load_cert(micromdm.ca_pem)
    out, key_out, dump = tmp_path / "dev.pem", tmp_path / "dev.key", tmp_path / "dump"
    proc = cli("enroll", micromdm.url, "--cn", "enroll-dev", "--dns", "dev.example", "--dns", "dev2.example",
               "--out", out, "--key-out", key_out, "--dump", dump,
               "--ca-fingerprint", ca.fingerprint(hashes.SHA256()).hex(),
               env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode == 0, text(proc)
    assert CHALLENGE.encode() not in proc.stdout + proc.stderr  # the challenge is never printed
    openssl_verify(micromdm.ca_pem, out)

    cert = load_cert(out)
    key = serialization.load_pem_private_key(key_out.read_bytes(), None)
    assert spki(cert) == spki(key)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "enroll-dev"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["dev.example", "dev2.example"]
    assert stat.S_IMODE(key_out.stat().st_mode) == 0o600

    # --dump: every message on the wire, numbered in order.
    assert sorted(p.name for p in dump.iterdir()) == [
        "01-GetCACaps.txt", "02-GetCACert.der", "03-PKCSReq.der", "04-CertRep.der"]
    assert b"POSTPKIOperation" in (dump / "01-GetCACaps.txt").read_bytes()

    # The dumped PKCSReq opens with the CA key, the CertRep with the new key (inspect round trip).
    # micromdm's depot/ca.key is PEM-encrypted (DES-EDE3) with an EMPTY password, which
    # cryptography refuses to load: decrypt it with openssl first.
    ca_key = tmp_path / "ca-plain.key"
    subprocess.run([peers.find_tool("openssl"), "rsa", "-in", str(micromdm.ca_pem.with_name("ca.key")),
                    "-passin", "pass:", "-out", str(ca_key)], check=True, capture_output=True, timeout=30)
    csr_out = tmp_path / "csr.der"
    proc = cli("inspect", dump / "03-PKCSReq.der", "--key", ca_key, "--out", csr_out, "--json")
    assert proc.returncode == 0, text(proc)
    csr = x509.load_der_x509_csr(csr_out.read_bytes())
    assert spki(csr) == spki(key)
    tree = json.loads(proc.stdout)
    attrs = {a["name"]: a["value"] for a in tree["structure"]["signers"][0]["signed_attributes"]}
    assert attrs["messageType"] == "19 (PKCSReq)"
    assert tree["structure"]["content"]["decryption"]["cipher"] == "aes256-cbc"

    proc = cli("inspect", dump / "04-CertRep.der", "--key", key_out, "--json")
    assert proc.returncode == 0, text(proc)
    tree = json.loads(proc.stdout)
    attrs = {a["name"]: a["value"] for a in tree["structure"]["signers"][0]["signed_attributes"]}
    assert attrs["pkiStatus"] == "0 (SUCCESS)"
    inner = tree["structure"]["content"]["decryption"]["content"]
    assert cert.fingerprint(hashes.SHA256()).hex() in [c["sha256_fingerprint"] for c in inner["certificates"]]


@pytest.mark.interop
def test_enroll_3des_sha1_by_get_in_der(micromdm, tmp_path):
    """The non-AES, non-SHA-256 path, and DER output."""
    out = tmp_path / "dev.der"
    proc = cli("enroll", micromdm.url, "--cn", "legacy-dev", "--cipher", "des3-cbc", "--digest", "sha1",
               "--format", "der", "--out", out, "--key-type", "rsa-3072", env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode == 0, text(proc)
    cert = x509.load_der_x509_certificate(out.read_bytes())
    assert spki(cert) == spki(serialization.load_pem_private_key((tmp_path / "dev.key").read_bytes(), None))
    assert cert.public_key().key_size == 3072


@pytest.mark.interop
def test_enroll_with_existing_key_to_stdout(micromdm, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "existing.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    proc = cli("enroll", micromdm.url, "--subject", "CN=stdout-dev,O=pqscep tests", "--key", key_file,
               env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode == 0, text(proc)
    cert = x509.load_pem_x509_certificate(proc.stdout)
    assert spki(cert) == spki(key)
    assert cert.subject.rfc4514_string() == "CN=stdout-dev,O=pqscep tests"


@pytest.mark.interop
def test_enroll_wrong_challenge_is_a_ca_failure(micromdm, tmp_path):
    proc = cli("enroll", micromdm.url, "--cn", "bad-pw", "--out", tmp_path / "c.pem",
               env={"PQSCEP_CHALLENGE": "not-the-secret"})
    assert proc.returncode == 1, text(proc)
    err = proc.stderr.decode()
    assert "FAILURE" in err and "badRequest (2)" in err, err
    assert "not-the-secret" not in err
    assert not (tmp_path / "c.key").exists()  # a refused request's new key is removed
    assert not (tmp_path / "c.pem").exists()


@pytest.mark.interop
def test_enroll_refuses_keys_that_cannot_decrypt(micromdm, tmp_path):
    proc = cli("enroll", micromdm.url, "--cn", "ec", "--key-type", "ec-p256", "--key-out", tmp_path / "k")
    assert proc.returncode == 2, text(proc)
    assert "cannot decrypt" in proc.stderr.decode()
    assert not (tmp_path / "k").exists()


@pytest.mark.interop
def test_renew_with_new_key_and_reused_key(micromdm, tmp_path):
    env = {"PQSCEP_CHALLENGE": CHALLENGE}
    assert cli("enroll", micromdm.url, "--cn", "renew-dev", "--dns", "renew.example", "--out", tmp_path / "old.pem",
               env=env).returncode == 0
    old = load_cert(tmp_path / "old.pem")

    dump = tmp_path / "dump"
    proc = cli("renew", micromdm.url, "--cert", tmp_path / "old.pem", "--key", tmp_path / "old.key",
               "--out", tmp_path / "new.pem", "--dump", dump, env=env)
    assert proc.returncode == 0, text(proc)
    new = load_cert(tmp_path / "new.pem")
    openssl_verify(micromdm.ca_pem, tmp_path / "new.pem")
    assert new.subject == old.subject and new.serial_number != old.serial_number
    assert spki(new) != spki(old)  # a new key by default
    assert spki(new) == spki(serialization.load_pem_private_key((tmp_path / "new.key").read_bytes(), None))
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["renew.example"]  # SANs carried over from the old certificate
    assert (dump / "03-RenewalReq.der").exists()

    proc = cli("renew", micromdm.url, "--cert", tmp_path / "new.pem", "--key", tmp_path / "new.key", "--reuse-key",
               "--out", tmp_path / "same.pem", env=env)
    assert proc.returncode == 0, text(proc)
    assert spki(load_cert(tmp_path / "same.pem")) == spki(new)


@pytest.mark.interop
def test_micromdm_wants_the_challenge_on_renewal_too(micromdm, tmp_path):
    env = {"PQSCEP_CHALLENGE": CHALLENGE}
    assert cli("enroll", micromdm.url, "--cn", "renew-nopw", "--out", tmp_path / "old.pem", env=env).returncode == 0
    proc = cli("renew", micromdm.url, "--cert", tmp_path / "old.pem", "--key", tmp_path / "old.key", "--reuse-key",
               "--out", tmp_path / "new.pem")
    assert proc.returncode == 1, text(proc)
    assert "badRequest" in proc.stderr.decode()


@pytest.mark.interop
def test_getcert_and_getcrl_are_not_implemented_by_micromdm(micromdm, tmp_path):
    """micromdm 2.1.0 answers GetCert and GetCRL with HTTP 500 "not implemented" (no CertRep):
    pqscep reports that as a transport error (exit 4) quoting the server's text."""
    env = {"PQSCEP_CHALLENGE": CHALLENGE}
    assert cli("enroll", micromdm.url, "--cn", "getcert-dev", "--out", tmp_path / "c.pem", env=env).returncode == 0
    serial = load_cert(tmp_path / "c.pem").serial_number

    dump = tmp_path / "dump"
    proc = cli("getcert", micromdm.url, "--serial", serial, "--cert", tmp_path / "c.pem", "--key", tmp_path / "c.key",
               "--dump", dump)
    assert proc.returncode == 4, text(proc)
    assert "HTTP 500" in proc.stderr.decode() and "not implemented" in proc.stderr.decode()
    assert sorted(p.name for p in dump.iterdir()) == [
        "01-GetCACaps.txt", "02-GetCACert.der", "03-GetCert.der", "04-CertRep-error.txt"]

    proc = cli("getcert", micromdm.url, "--serial", hex(serial))  # signed by a transient certificate
    assert proc.returncode == 4 and "not implemented" in proc.stderr.decode(), text(proc)

    proc = cli("getcrl", micromdm.url, "--cert", tmp_path / "c.pem", "--key", tmp_path / "c.key")
    assert proc.returncode == 4 and "not implemented" in proc.stderr.decode(), text(proc)


def test_unreachable_server_is_a_transport_error(tmp_path):
    url = f"http://127.0.0.1:{peers.free_port()}/scep"
    for args in (["caps", url], ["cacert", url], ["enroll", url, "--cn", "x", "--key-out", tmp_path / "k"]):
        proc = cli(*args, env={"PQSCEP_CHALLENGE": CHALLENGE})
        assert proc.returncode == 4, text(proc)
        assert "transport" in proc.stderr.decode()
    assert (tmp_path / "k").exists()  # kept, and the message says how to retry with it


@pytest.mark.interop
def test_bench_against_micromdm(micromdm):
    """20 enrollments on 4 threads. micromdm 2.1.0's file depot allocates serials without a
    lock: under concurrency it sometimes issues the same serial twice, or refuses an enrollment
    (FAILURE badRequest) when it reads the serial file while another request rewrites it. Every
    error the bench counts must be one of those server-side refusals, which scepserver logs;
    pqscep itself must not fail any. A sequential run must have no error at all."""
    log_start = micromdm.log.stat().st_size
    proc = cli("bench", micromdm.url, "--count", 20, "--concurrency", 4, "--json",
               env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode in (0, 1), text(proc)
    result = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert set(result) == {"enrollments_per_s", "p50_ms", "p99_ms", "errors", "count", "concurrency"}
    assert result["count"] == 20 and result["concurrency"] == 4
    with open(micromdm.log, "rb") as log:
        log.seek(log_start)
        refusals = [line.split(b"err=", 1)[-1] for line in log.read().splitlines()
                    if b'msg="failed to sign CSR"' in line]
    # Each refusal is the depot's unlocked serial file: `open depot/serial: file exists` or
    # `could not convert  to serial number` (read while another request rewrote it).
    assert all(b"serial" in reason for reason in refusals), refusals
    assert result["errors"] == len(refusals), text(proc)
    # How many micromdm refuses depends on how fast the machine interleaves the four workers
    # (10 of 20 seen on a fast one): the refusals are its own, checked above; the bench only
    # has to get some enrollments through.
    assert result["errors"] < result["count"], text(proc)
    assert result["enrollments_per_s"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]

    proc = cli("bench", micromdm.url, "--count", 8, "--concurrency", 1, "--json", env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode == 0, text(proc)
    assert json.loads(proc.stdout)["errors"] == 0


# --------------------------------------------------------------------------- inspect on captures


CAPTURE_KEYS = {
    "micromdm-scepclient-PKCSReq.der": "ca.key",
    "strongswan-pki-PKCSReq.der": "ca.key",
    "micromdm-scepserver-CertRep-to-micromdm.der": "micromdm-client.key",
    "micromdm-scepserver-CertRep-to-strongswan.der": "strongswan-client.key",
}


def _capture(name: str) -> Path:
    path = CAPTURES / name
    if not path.exists():
        pytest.fail(f"missing test vector {path}")
    return path


@pytest.mark.parametrize("name", sorted(CAPTURE_KEYS))
def test_inspect_capture_decodes_and_verifies(name):
    proc = cli("inspect", _capture(name), "--json")
    assert proc.returncode == 0, text(proc)
    tree = json.loads(proc.stdout)
    assert tree["ok"] is True and tree["problems"] == []
    top = tree["structure"]
    assert top["type"] == "SignedData"
    signer = top["signers"][0]
    assert signer["verified"] is True and "certificate #" in signer["verification"]
    attrs = {a["name"]: a["value"] for a in signer["signed_attributes"]}
    assert {"messageType", "transactionID", "senderNonce", "contentType", "messageDigest"} <= set(attrs)
    if "PKCSReq" in name:
        assert attrs["messageType"] == "19 (PKCSReq)"
    else:
        assert attrs["messageType"] == "3 (CertRep)" and attrs["pkiStatus"] == "0 (SUCCESS)"
        assert len(attrs["recipientNonce"]) == 32  # 16 bytes, hex
    envelope = top["content"]
    assert envelope["type"] == "EnvelopedData"
    assert envelope["recipient_infos"][0]["type"] == "KeyTransRecipientInfo"
    assert envelope["decryption"] == "not attempted (give --key)"

    # The human tree names the same things.
    proc = cli("inspect", _capture(name))
    assert proc.returncode == 0, text(proc)
    assert b"messageType" in proc.stdout and b"verified: True" in proc.stdout


@pytest.mark.parametrize("name", sorted(CAPTURE_KEYS))
def test_inspect_capture_decrypts_with_the_right_key(name, tmp_path):
    out = tmp_path / "inner.der"
    proc = cli("inspect", _capture(name), "--key", _capture(CAPTURE_KEYS[name]), "--json", "--out", out)
    assert proc.returncode == 0, text(proc)
    tree = json.loads(proc.stdout)
    decryption = tree["structure"]["content"]["decryption"]
    assert decryption["decrypted"] is True
    inner = decryption["content"]
    if "PKCSReq" in name:
        assert inner["type"] == "PKCS#10 CertificationRequest"
        assert inner["signature_valid"] is True
        assert inner["challenge_password"].startswith("present")  # value hidden by default
        csr = x509.load_der_x509_csr(out.read_bytes())  # --out wrote the CSR DER
        assert csr.is_signature_valid
        assert csr.subject.rfc4514_string() == inner["subject"]
    else:
        assert inner["type"] == "SignedData" and inner["signers"].startswith("none")
        issued = inner["certificates"][0]
        key = serialization.load_pem_private_key(_capture(CAPTURE_KEYS[name]).read_bytes(), None)
        assert issued["issuer"] == "OU=SCEP CA,O=scep-ca,C=US"
        # --out wrote the certs-only SignedData; the issued certificate is for the client's key.
        from pqscep.cms.signed import parse_signed_data

        certs = parse_signed_data(out.read_bytes()).certificates
        assert [spki(c) for c in certs] == [spki(key)]


def test_inspect_shows_the_challenge_only_when_asked():
    name = "micromdm-scepclient-PKCSReq.der"
    proc = cli("inspect", _capture(name), "--key", _capture("ca.key"), "--json", "--show-secrets")
    assert proc.returncode == 0, text(proc)
    inner = json.loads(proc.stdout)["structure"]["content"]["decryption"]["content"]
    assert inner["challenge_password"] == CHALLENGE
    proc = cli("inspect", _capture(name), "--key", _capture("ca.key"), "--json")
    assert json.loads(proc.stdout)["structure"]["content"]["decryption"]["content"]["challenge_password"] == \
        "present (value hidden; --show-secrets shows it)"
    proc = cli("inspect", _capture(name), "--key", _capture("ca.key"))
    assert b"challenge_password: present" in proc.stdout and b": secret" not in proc.stdout + proc.stderr


def test_inspect_accepts_pem_base64_and_url_encoded_input(tmp_path):
    der = _capture("strongswan-pki-PKCSReq.der").read_bytes()
    b64 = base64.b64encode(der).decode()
    variants = {
        "pkcs7.pem": f"-----BEGIN PKCS7-----\n{chr(10).join(b64[i:i + 64] for i in range(0, len(b64), 64))}\n"
                     "-----END PKCS7-----\n",
        "cms.pem": f"-----BEGIN CMS-----\n{b64}\n-----END CMS-----\n",
        "b64.txt": b64 + "\n",
        "get.txt": "operation=PKIOperation&message=" + b64.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"),
    }
    for filename, content in variants.items():
        path = tmp_path / filename
        path.write_text(content)
        proc = cli("inspect", path, "--json")
        assert proc.returncode == 0, f"{filename}: {text(proc)}"
        assert json.loads(proc.stdout)["structure"]["type"] == "SignedData"
    proc = cli("inspect", "-", "--json", stdin=der)
    assert proc.returncode == 0, text(proc)

    (tmp_path / "junk.txt").write_text("this is not a SCEP message\n")
    assert cli("inspect", tmp_path / "junk.txt").returncode == 1


def test_inspect_wrong_key_or_tampered_signature_exit_5(tmp_path):
    name = "micromdm-scepserver-CertRep-to-micromdm.der"
    proc = cli("inspect", _capture(name), "--key", _capture("strongswan-client.key"), "--json")
    assert proc.returncode == 5, text(proc)
    tree = json.loads(proc.stdout)
    assert tree["ok"] is False and tree["structure"]["content"]["decryption"]["decrypted"] is False

    data = bytearray(_capture(name).read_bytes())
    data[-5] ^= 0x01  # inside the SignerInfo's signature, the last field
    (tmp_path / "tampered.der").write_bytes(bytes(data))
    proc = cli("inspect", tmp_path / "tampered.der", "--json")
    assert proc.returncode == 5, text(proc)
    signer = json.loads(proc.stdout)["structure"]["signers"][0]
    assert signer["verified"] is False and "NOT verify" in signer["verification"]


def test_inspect_matches_key_to_recipient_with_cert(tmp_path):
    """--cert picks the KTRI addressed to the certificate; a CSR and a certificate inspect too."""
    name = "micromdm-scepclient-PKCSReq.der"
    proc = cli("inspect", _capture(name), "--key", _capture("ca.key"), "--cert", _capture("ca.pem"), "--json",
               "--out", tmp_path / "csr.der")
    assert proc.returncode == 0, text(proc)
    assert "certificate OU=SCEP CA" in json.loads(proc.stdout)["structure"]["content"]["decryption"]["with"]
    proc = cli("inspect", tmp_path / "csr.der", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["structure"]["type"] == "PKCS#10 CertificationRequest"
    proc = cli("inspect", _capture("ca.pem"), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["structure"]["type"] == "Certificate"


# --------------------------------------------------------------------------- PENDING, poll, failInfoText


class _MiniCA:
    """An RFC 8894 responder on pqscep's sans-IO `protocol.server`: answers the first N
    requests of each transaction PENDING, then issues; or FAILURE with failInfoText."""

    def __init__(self, pending_rounds: int = 1, fail_text: str | None = None,
                 caps: str = "POSTPKIOperation\nAES\nSHA-256\n", reply: bytes | None = None):
        from pqscep.cms import enveloped
        from pqscep.protocol.server import Responder, ResponderKeys

        self.enveloped = enveloped
        now = datetime.datetime.now(datetime.UTC)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pqscep mini CA")])
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.responder = Responder(
            ResponderKeys(self.cert, self.key, [enveloped.KeyTransRecipient(self.cert, self.key)])
        )
        self.pending_rounds = pending_rounds
        self.fail_text = fail_text
        self.caps = caps.encode()
        self.reply = reply  # a fixed (e.g. malformed) PKIOperation reply
        self.seen: dict[str, int] = {}
        self.methods: list[str] = []
        self.subjects: dict[str, x509.Name] = {}
        self.issued: list[x509.Certificate] = []
        self.lock = threading.Lock()

    def handle(self, body: bytes) -> bytes:
        from pqscep.protocol.messages import FailInfo, MessageType

        if self.reply is not None:
            return self.reply
        now = datetime.datetime.now(datetime.UTC)
        request = self.responder.receive(body)
        if self.fail_text:
            return self.responder.failure(request, FailInfo.BAD_REQUEST, self.fail_text, now=now,
                                          random_bytes=os.urandom)
        with self.lock:
            if request.message_type == MessageType.PKCS_REQ:
                self.subjects[request.transaction_id] = request.csr.parsed
            rounds = self.seen.get(request.transaction_id, 0)
            self.seen[request.transaction_id] = rounds + 1
        if rounds < self.pending_rounds:
            return self.responder.pending(request, now=now, random_bytes=os.urandom)
        csr = self.subjects[request.transaction_id]
        if request.message_type == MessageType.CERT_POLL:
            assert request.issuer_der == self.cert.subject.public_bytes()
            assert request.subject_der == csr.subject.public_bytes()
        cert = (
            x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        self.issued.append(cert)
        return self.responder.success(request, certificates=[cert],
                                      originator=self.enveloped.KeyTransOriginator(request.signer_certificate),
                                      now=now, random_bytes=os.urandom)


@pytest.fixture
def mini_ca():
    servers = []

    def start(**kwargs):
        ca = _MiniCA(**kwargs)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, ctype, body):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _operation(self, query, body):
                op = query.get("operation", [""])[0]
                if op == "GetCACaps":
                    return self._reply(200, "text/plain", ca.caps)
                if op == "GetCACert":
                    return self._reply(200, "application/x-x509-ca-cert",
                                       ca.cert.public_bytes(serialization.Encoding.DER))
                if op == "PKIOperation":
                    ca.methods.append(self.command)
                    return self._reply(200, "application/x-pki-message", ca.handle(body))
                if op == "Huge":
                    return self._reply(200, "application/octet-stream", b"x" * (5 * 1024 * 1024))
                return self._reply(400, "text/plain", b"unknown operation\nsecond line")

            def do_GET(self):
                query = parse_qs(urlparse(self.path).query)
                body = base64.b64decode(query["message"][0]) if "message" in query else b""
                self._operation(query, body)

            def do_POST(self):
                query = parse_qs(urlparse(self.path).query)
                self._operation(query, self.rfile.read(int(self.headers["Content-Length"])))

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        ca.url = f"http://127.0.0.1:{server.server_address[1]}/cgi-bin/pkiclient.exe"
        return ca

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_pending_then_poll_resumes_from_the_state_file(mini_ca, tmp_path, monkeypatch):
    ca = mini_ca(pending_rounds=2)
    monkeypatch.chdir(tmp_path)
    proc = cli("enroll", ca.url, "--cn", "pending-dev", "--out", tmp_path / "dev.pem", "--state", tmp_path / "s.json",
               env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode == 3, text(proc)
    assert "pqscep poll --state" in proc.stderr.decode()
    state = json.loads((tmp_path / "s.json").read_text())
    assert state["operation"] == "PKCSReq" and state["subject"] == "CN=pending-dev"
    assert CHALLENGE not in (tmp_path / "s.json").read_text()
    assert stat.S_IMODE((tmp_path / "s.json").stat().st_mode) == 0o600

    proc = cli("poll", "--state", tmp_path / "s.json")  # second round: still PENDING
    assert proc.returncode == 3, text(proc)
    assert (tmp_path / "s.json").exists()

    dump = tmp_path / "dump"
    proc = cli("poll", "--state", tmp_path / "s.json", "--dump", dump)
    assert proc.returncode == 0, text(proc)
    cert = load_cert(tmp_path / "dev.pem")  # written where the enrollment's --out said
    assert spki(cert) == spki(serialization.load_pem_private_key((tmp_path / "dev.key").read_bytes(), None))
    assert not (tmp_path / "s.json").exists()
    assert sorted(p.name for p in dump.iterdir()) == ["01-CertPoll.der", "02-CertRep.der"]
    assert ca.methods == ["POST"] * 3


def test_enroll_wait_polls_until_issued(mini_ca, tmp_path, monkeypatch):
    ca = mini_ca(pending_rounds=2, caps="AES\nSHA-256\n")  # no POSTPKIOperation: GET with message=
    monkeypatch.chdir(tmp_path)
    proc = cli("enroll", ca.url, "--cn", "waiting-dev", "--out", tmp_path / "dev.pem", "--wait", 20,
               "--interval", 0.2, env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode == 0, text(proc)
    assert load_cert(tmp_path / "dev.pem").subject.rfc4514_string() == "CN=waiting-dev"
    assert ca.methods == ["GET"] * 3
    assert not list(tmp_path.glob("*.state.json"))  # removed once the transaction ended


def test_failure_prints_fail_info_and_text(mini_ca, tmp_path):
    ca = mini_ca(fail_text="challenge password expired")
    proc = cli("enroll", ca.url, "--cn", "refused", "--out", tmp_path / "c.pem", env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode == 1, text(proc)
    assert "badRequest (2): challenge password expired" in proc.stderr.decode()


def test_transport_limits_and_http_errors(mini_ca):
    from pqscep.client.transport import ScepTransport, TransportError

    ca = mini_ca()
    with ScepTransport(timeout=5, max_reply=1024 * 1024) as transport:
        with pytest.raises(TransportError, match="over the 1048576-byte limit"):
            transport._request("Huge", ca.url, "GET", {"operation": "Huge"})
        with pytest.raises(TransportError) as info:
            transport._request("Nope", ca.url, "GET", {"operation": "Nope"})
        assert info.value.status == 400
        assert str(info.value) == f"Nope to {ca.url}: HTTP 400 Bad Request: unknown operation"
        caps = transport.get_ca_caps(ca.url)
        assert caps.post and caps.aes and caps.sha256 and not caps.renewal
        content_type, body = transport.get_ca_cert(ca.url + "?extra=1")  # an existing query is kept
        assert content_type == "application/x-x509-ca-cert" and x509.load_der_x509_certificate(body) == ca.cert


@pytest.fixture
def keepalive_server():
    """An HTTP/1.1 server that keeps connections open (unlike the mini CA's HTTP/1.0), with
    paths for each answer `KeepAliveSender` must handle. Records each request and whether it
    came on a connection already used."""
    seen: list[tuple[str, str, bytes, bool]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, status, body, ctype="application/x-pki-message"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _answer(self, body):
            url = urlparse(self.path)
            seen.append((self.command, url.path, body, getattr(self, "used", False)))
            self.used = True  # one handler per connection: set from its second request on
            if url.path == "/huge":
                return self._reply(200, b"x" * (2 * 1024 * 1024))
            if url.path == "/error":
                return self._reply(403, b"\nchallenge refused\nsecond line", "text/plain")
            if url.path == "/empty":
                return self._reply(200, b"")
            self._reply(200, body[::-1])
            if url.path == "/drop":  # as an idle timeout does: close without saying so
                self.close_connection = True

        def do_GET(self):
            query = parse_qs(urlparse(self.path).query)
            assert query["operation"] == ["PKIOperation"]
            self._answer(base64.b64decode(query["message"][0], validate=True))

        def do_POST(self):
            assert parse_qs(urlparse(self.path).query)["operation"] == ["PKIOperation"]
            assert self.headers["Content-Type"] == "application/x-pki-message"
            self._answer(self.rfile.read(int(self.headers["Content-Length"])))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_keepalive_sender_reuses_its_connection_and_keeps_the_transport_rules(keepalive_server):
    from pqscep.client.keepalive import KeepAliveSender
    from pqscep.client.transport import TransportError

    base, seen = keepalive_server
    body = bytes(range(256)) * 3  # base64 of it has '+', '/' and '='
    with KeepAliveSender(base + "/scep", timeout=5) as sender:
        assert sender.pki_operation(base + "/scep", body, True) == body[::-1]
        assert sender.pki_operation(base + "/scep", body, False) == body[::-1]  # GET, message= decoded
        assert [(m, used) for m, _, _, used in seen] == [("POST", False), ("GET", True)]
        with pytest.raises(ValueError, match="asked to send to"):
            sender.pki_operation(base + "/other", body, True)
    with KeepAliveSender(base + "/drop", timeout=5) as sender:
        # The server closes after each reply without a Connection: close header: the next send
        # fails on the dead connection and is sent once more on a new one.
        for _ in range(3):
            assert sender.pki_operation(base + "/drop", b"abc", True) == b"cba"
    with (
        KeepAliveSender(base + "/huge", timeout=5, max_reply=1024 * 1024) as sender,
        pytest.raises(TransportError, match="over the 1048576-byte limit"),
    ):
        sender.pki_operation(base + "/huge", b"x", True)
    with KeepAliveSender(base + "/error", timeout=5) as sender:
        with pytest.raises(TransportError) as info:
            sender.pki_operation(base + "/error", b"x", True)
        assert info.value.status == 403
        assert str(info.value) == f"PKIOperation to {base}/error: HTTP 403 Forbidden: challenge refused"
    with KeepAliveSender(base + "/empty", timeout=5) as sender, pytest.raises(TransportError, match="empty reply"):
        sender.pki_operation(base + "/empty", b"x", True)
    with pytest.raises(TransportError, match="is not http"):
        KeepAliveSender("ftp://127.0.0.1/scep")
    with (
        KeepAliveSender("http://127.0.0.1:9/scep", timeout=2) as sender,  # nothing listens on port 9
        pytest.raises(TransportError, match="PKIOperation to http://127.0.0.1:9/scep: "),
    ):
        sender.pki_operation("http://127.0.0.1:9/scep", b"x", True)


@pytest.mark.parametrize("timed", ["round-trip", "enrollment"])
def test_bench_against_the_mini_ca(mini_ca, timed):
    ca = mini_ca(pending_rounds=0)
    proc = cli("bench", ca.url, "--count", 6, "--concurrency", 3, "--timed", timed, "--json",
               env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode == 0, text(proc)
    result = json.loads(proc.stdout)
    assert result["errors"] == 0 and result["count"] == 6 and len(ca.issued) == 6
    assert len({c.public_key().public_numbers().n for c in ca.issued}) == 6  # a fresh key per device


def test_bench_round_trips_by_get_when_the_ca_has_no_post(mini_ca):
    ca = mini_ca(pending_rounds=0, caps="AES\nSHA-256\n")
    proc = cli("bench", ca.url, "--count", 4, "--concurrency", 2, "--json", env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode == 0, text(proc)
    assert json.loads(proc.stdout)["errors"] == 0 and len(ca.issued) == 4
    assert ca.methods == ["GET"] * 4


@pytest.mark.parametrize("timed", ["round-trip", "enrollment"])
def test_bench_counts_a_reply_that_does_not_verify_as_an_error(mini_ca, timed):
    # With --timed round-trip the CertRep is checked after the clock: a bad one must still count.
    ca = mini_ca(reply=b"\x30\x05\x06\x01")
    proc = cli("bench", ca.url, "--count", 4, "--concurrency", 2, "--timed", timed, "--json",
               env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode == 1, text(proc)
    result = json.loads(proc.stdout)
    assert result["errors"] == 4 and result["enrollments_per_s"] == 0 and result["p50_ms"] is None
    assert b"not a pkiMessage" in proc.stderr


def test_malformed_reply_is_a_verification_error_not_a_crash(mini_ca, tmp_path):
    # A short-form length that runs past the end (it once escaped as IndexError from asn1.ber).
    ca = mini_ca(reply=b"\x30\x05\x06\x01")
    proc = cli("enroll", ca.url, "--cn", "x", "--out", tmp_path / "c.pem", env={"PQSCEP_CHALLENGE": CHALLENGE})
    assert proc.returncode == 5, text(proc)
    assert b"Traceback" not in proc.stderr and b"not a pkiMessage" in proc.stderr


def test_inspect_auth_enveloped_data_with_ktri(tmp_path):
    """AuthEnvelopedData (AES-GCM) to an RSA recipient, made by pqscep's own cms layer."""
    from pqscep.cms import enveloped
    from pqscep.crypto.registry import CIPHERS

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gcm recipient")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    envelope = enveloped.seal_envelope(b"hello gcm", enveloped.KeyTransOriginator(cert),
                                       CIPHERS.by_name("aes256-gcm"), os.urandom)
    (tmp_path / "env.der").write_bytes(envelope)
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    proc = cli("inspect", tmp_path / "env.der", "--key", tmp_path / "k.pem", "--json", "--out", tmp_path / "plain")
    assert proc.returncode == 0, text(proc)
    top = json.loads(proc.stdout)["structure"]
    assert top["type"] == "AuthEnvelopedData" and top["mac_length"] == 16
    assert top["decryption"]["cipher"] == "aes256-gcm"
    assert top["decryption"]["content"]["text"] == "hello gcm"
    assert (tmp_path / "plain").read_bytes() == b"hello gcm"
