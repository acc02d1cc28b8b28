"""Operations: keys at rest, the challenge webhook, JSON logs without secrets, several worker
processes, CA rollover with GetNextCACert, content types and paths of RFC 8894 section 4."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from scep_client import Device, Requester
from server_proc import ServerProcess, init_data, pqscep

from pqscep.cms import signed
from pqscep.protocol.messages import PkiStatus


def test_init_keeps_keys_encrypted_and_private(tmp_path):
    data = init_data(tmp_path / "data", challenge="init-secret")
    key_file = data / "profiles" / "default" / "ca.key"
    pem = key_file.read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem
    with pytest.raises(TypeError):  # no passphrase, no key
        serialization.load_pem_private_key(pem, password=None)
    passphrase = (data / "secrets" / "ca-passphrase").read_bytes().strip()
    serialization.load_pem_private_key(pem, password=passphrase)
    for path in (key_file, data / "secrets" / "ca-passphrase", data / "secrets" / "challenge-default",
                 data / "pqscep.db"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert b"init-secret" not in (data / "pqscep.toml").read_bytes()
    # init refuses to overwrite an existing data directory.
    assert pqscep("init", "--data", data, check=False).returncode != 0


def test_wrong_passphrase_is_a_clear_error(tmp_path):
    data = init_data(tmp_path / "data")
    proc = pqscep("admin", "crl", "--data", data, env={"PQSCEP_CA_PASSPHRASE": "wrong"}, check=False)
    assert proc.returncode == 1
    assert b"wrong passphrase" in proc.stderr and b"Traceback" not in proc.stderr


class Webhook(BaseHTTPRequestHandler):
    """An MDM's challenge webhook on loopback: allows challenge 'mdm-ok' for CN=mdm-*."""

    seen: list = []
    secret = b"hook-secret"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        payload = json.loads(body)
        Webhook.seen.append((payload, hmac.compare_digest(self.headers.get("X-Pqscep-Signature", ""), expected)))
        allow = payload["challenge"] == "mdm-ok" and payload["subject"].startswith("CN=mdm-")
        reply = json.dumps({"allow": allow}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_challenge_webhook_decides(tmp_path):
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        data = init_data(tmp_path / "data")
        (data / "secrets" / "hook").write_text("hook-secret")
        (data / "secrets" / "hook").chmod(0o600)  # a secret file others can read is refused
        (data / "pqscep.toml").write_text(f"""
[server]
default_profile = "mdm"
log_format = "json"
[profiles.mdm]
webhook_url = "http://127.0.0.1:{hook.server_address[1]}/scep-challenge"
webhook_secret_file = "secrets/hook"
""")
        with ServerProcess(data) as server:
            scep = Requester(server.url())
            assert scep.enroll(Device("mdm-laptop"), "mdm-ok").status == PkiStatus.SUCCESS
            denied = scep.enroll(Device("mdm-laptop-2"), "mdm-wrong")
            # The webhook's "no" is the answer to any wrong challenge (no second text to tell them apart).
            assert denied.status == PkiStatus.FAILURE
            assert denied.fail_info_text == "wrong, expired or already used challenge password"
            assert scep.enroll(Device("other"), "mdm-ok").status == PkiStatus.FAILURE
            log = server.log()
        payload, signature_ok = Webhook.seen[0]
        assert signature_ok and payload["profile"] == "mdm" and "BEGIN CERTIFICATE REQUEST" in payload["csr"]
        # JSON logs, one object a line, and the challenge never in them.
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert any("issued serial" in entry["message"] for entry in lines)
        assert "mdm-ok" not in log and "mdm-wrong" not in log
    finally:
        hook.shutdown()


def test_unreachable_webhook_refuses(tmp_path):
    data = init_data(tmp_path / "data")
    (data / "pqscep.toml").write_text("""
[server]
default_profile = "mdm"
[profiles.mdm]
webhook_url = "http://127.0.0.1:9/nothing-listens-here"
webhook_timeout = 2
""")
    with ServerProcess(data) as server:
        result = Requester(server.url()).enroll(Device("mdm-x"), "anything")
        assert result.status == PkiStatus.FAILURE and "retry later" in result.fail_info_text


def test_workers_and_content_types(tmp_path):
    data = init_data(tmp_path / "data")
    with ServerProcess(data, workers=2) as server:
        caps = httpx.get(server.url("/scep"), params={"operation": "GetCACaps"})
        assert caps.headers["content-type"].startswith("text/plain")
        assert {"POSTPKIOperation", "SHA-256", "AES", "SCEPStandard", "Renewal"} <= set(caps.text.split())
        assert "GetNextCACert" not in caps.text.split()  # only when a rollover is prepared
        cacert = httpx.get(server.url("/cgi-bin/pkiclient.exe"), params={"operation": "GetCACert"})
        assert cacert.headers["content-type"] == "application/x-x509-ca-cert"
        x509.load_der_x509_certificate(cacert.content)
        assert httpx.get(server.url("/scep"), params={"operation": "GetNextCACert"}).status_code == 404
        scep = Requester(server.url("/scep/default"))
        results = [scep.enroll(Device(f"worker-{i}"), "secret").status for i in range(6)]
        assert results == [PkiStatus.SUCCESS] * 6
        health = httpx.get(server.base + "/health").json()
        assert health["status"] == "ok"


def test_rollover_serves_next_ca_then_activates(tmp_path):
    data = init_data(tmp_path / "data")
    old_ca = x509.load_pem_x509_certificate((data / "profiles" / "default" / "ca.pem").read_bytes())
    pqscep("admin", "rollover", "--data", data)
    with ServerProcess(data) as server:
        caps = httpx.get(server.url(), params={"operation": "GetCACaps"}).text.split()
        assert "GetNextCACert" in caps
        reply = httpx.get(server.url(), params={"operation": "GetNextCACert"})
        assert reply.headers["content-type"] == "application/x-x509-next-ca-cert"
        message = signed.parse_signed_data(reply.content)
        message.verify(message.signer_infos[0], old_ca)  # signed by the current CA
        (next_ca,) = signed.parse_signed_data(message.content).certificates
    pqscep("admin", "rollover", "--data", data, "--activate")
    with ServerProcess(data) as server:
        current = x509.load_der_x509_certificate(httpx.get(server.url(), params={"operation": "GetCACert"}).content)
        assert current == next_ca
        result = Requester(server.url()).enroll(Device("after-rollover"), "secret")
        result.certificates[0].verify_directly_issued_by(next_ca)


def test_environment_overrides(tmp_path):
    data = init_data(tmp_path / "data")
    other_db = tmp_path / "elsewhere.db"
    with ServerProcess(data, env={"PQSCEP_DATABASE_URL": f"sqlite:///{other_db}",
                                  "PQSCEP_CHALLENGE_DEFAULT": "from-env"}) as server:
        scep = Requester(server.url())
        assert scep.enroll(Device("env-1"), "from-env").status == PkiStatus.SUCCESS
        assert scep.enroll(Device("env-2"), "secret").status == PkiStatus.FAILURE
    assert other_db.exists() and os.path.getsize(other_db) > 0
