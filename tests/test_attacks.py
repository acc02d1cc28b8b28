"""The attacks of a hostile client, sent as the attacker would send them, over real HTTP to
`pqscep serve` (tests/server_proc.py), each of which must fail. docs/security.md is the threat
model these tests pin. Each section holds its own fixtures.

Sections: authorization (who may obtain which name), envelopes (padding and batch oracles,
PasswordRecipientInfo cost), the challenge webhook, bounded state and files, transaction IDs
and KEM challenges, CA rollover.
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import os
import sqlite3
import stat
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.asn1 import Null, SetOf
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from inprocess import InProcessServer
from scep_client import Device, Requester
from scep_messages import Identity, csr_der, envelope, kem_envelope, pki_message
from server_proc import ServerProcess, init_data, pqscep
from test_kem_pop import KemClient, KemDevice, challenge_of, proof_for

from pqscep.asn1 import ber, cms, oids
from pqscep.asn1.text import escape_text
from pqscep.ca.transactions import TxState
from pqscep.cms import signed
from pqscep.cms.password import PasswordOriginator
from pqscep.crypto.keys import generate_key
from pqscep.crypto.registry import CIPHERS
from pqscep.protocol import client as scep
from pqscep.protocol.messages import FailInfo, MessageType, PkiStatus
from pqscep.service.config import ConfigError, load_config
from pqscep.storage import open_store

# == authorization ============================================================================

AUTHZ_CONFIG = """
[server]
database = "sqlite:///pqscep.db"
default_profile = "default"

[profiles.default]
ca_subject = "CN=authz CA"
challenge_file = "secrets/challenge-default"
rate_limit_failures = 1000

[profiles.subset]
ca_subject = "CN=authz subset CA"
challenge_file = "secrets/challenge-default"
renewal_san_subset = true
rate_limit_failures = 1000

[profiles.approval]
ca_subject = "CN=authz approval CA"
challenge_file = "secrets/challenge-default"
manual_approval = true
rate_limit_failures = 1000

[profiles.preapproved]
ca_subject = "CN=authz pre-approved CA"
challenge_file = "secrets/challenge-default"
manual_approval = true
renewals_pre_approved = true
rate_limit_failures = 1000

[profiles.strict]
ca_subject = "CN=authz strict CA"
challenge_file = "secrets/challenge-default"
des3 = false
renewal = false
sha1 = false
rate_limit_failures = 1000

[profiles.strict.names]
subject_attributes = ["CN", "O"]
subject_patterns = { CN = "[a-z0-9-]+", O = "Example Org" }
san_types = ["dns"]
san_patterns = { dns = "[a-z0-9-]+[.]devices[.]example" }
max_sans = 2

[profiles.hook]
ca_subject = "CN=authz webhook CA"
webhook_url = "http://127.0.0.1:9/validate"
rate_limit_failures = 1000
"""


@pytest.fixture(scope="module")
def authz_data(tmp_path_factory):
    return init_data(tmp_path_factory.mktemp("authz") / "data", challenge="secret", config_text=AUTHZ_CONFIG)


@pytest.fixture(scope="module")
def authz_server(authz_data):
    with ServerProcess(authz_data) as server:
        yield server


def _name(text: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(text)


def _enrolled(requester: Requester, cn: str, *, dns: tuple[str, ...] = ()) -> tuple[Device, x509.Certificate]:
    """A device enrolled with the static challenge, holding a certificate of the CA."""
    device = Device(cn)
    device.csr = scep.build_csr(device.key, _name(f"CN={cn}"), challenge="secret", dns_names=list(dns))
    result = requester.enroll(device, "secret")
    assert result.status == PkiStatus.SUCCESS, result.fail_info_text
    return device, result.certificates[0]


def _signed_by(requester: Requester, device: Device, cert: x509.Certificate, message_type: MessageType,
               subject: str, *, dns: tuple[str, ...] = (), challenge: str | None = None, new_key=None):
    """A request for `subject` (a new key unless given) signed by `cert`, the attacker's own
    certificate of this CA."""
    key = new_key or generate_key("rsa-2048")
    csr = scep.build_csr(key, _name(subject), challenge=challenge, dns_names=list(dns))
    asker = Device(device.cn, key=device.key, cert=device.cert)
    return requester.send(asker, message_type, csr.public_bytes(serialization.Encoding.DER),
                          signer_key=device.key, signer_cert=cert)


@pytest.mark.parametrize("message_type", [MessageType.PKCS_REQ, MessageType.RENEWAL_REQ])
def test_an_issued_certificate_cannot_mint_other_names(authz_server, message_type):
    """Attack 1: an enrolled device signs a request for CN=admin,O=Other Org (or its own CN
    with new SANs) with its certificate and no challenge: refused, nothing issued."""
    requester = Requester(authz_server.url(), client=authz_server.http)
    device, cert = _enrolled(requester, "mint-device", dns=("mint.example",))
    for subject, dns in [("CN=admin,O=Other Org", ("admin.example",)),
                         ("CN=mint-device", ("mint.example", "evil.example")),
                         ("CN=mint-device", ("evil.example",))]:
        result = _signed_by(requester, device, cert, message_type, subject, dns=dns)
        assert (result.status, result.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST), subject
        assert "challenge password" in result.fail_info_text
    # With the challenge, the same request is judged as a new enrollment, and issues.
    result = _signed_by(requester, device, cert, message_type, "CN=other-name", challenge="secret")
    assert result.status == PkiStatus.SUCCESS, result.fail_info_text
    assert result.certificates[0].subject == _name("CN=other-name")


@pytest.mark.parametrize("message_type", [MessageType.PKCS_REQ, MessageType.RENEWAL_REQ])
def test_same_names_renew_without_a_challenge(authz_server, message_type):
    """Must-show 2: a renewal (PKCSReq as Cisco IOS sends it, or RenewalReq) for the signer's
    own subject and SANs issues with no challenge, for a new key or the same one."""
    requester = Requester(authz_server.url(), client=authz_server.http)
    device, cert = _enrolled(requester, f"renew-{message_type.name}", dns=("a.example", "b.example"))
    renewed = _signed_by(requester, device, cert, message_type, cert.subject.rfc4514_string(),
                         dns=("b.example", "a.example"))
    assert renewed.status == PkiStatus.SUCCESS, renewed.fail_info_text
    new = renewed.certificates[0]
    assert new.subject == cert.subject and new.public_key() != cert.public_key()
    same_key = _signed_by(requester, device, cert, message_type, cert.subject.rfc4514_string(),
                          dns=("a.example", "b.example"), new_key=device.key)
    assert same_key.status == PkiStatus.SUCCESS, same_key.fail_info_text
    # Fewer SANs are other names, unless the profile allows a subset.
    fewer = _signed_by(requester, device, cert, message_type, cert.subject.rfc4514_string(), dns=("a.example",))
    assert (fewer.status, fewer.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)


def test_a_subset_of_the_sans_renews_where_the_profile_allows_it(authz_server):
    requester = Requester(authz_server.url("/scep/subset"), client=authz_server.http)
    device, cert = _enrolled(requester, "subset-device", dns=("a.example", "b.example"))
    fewer = _signed_by(requester, device, cert, MessageType.RENEWAL_REQ, "CN=subset-device", dns=("a.example",))
    assert fewer.status == PkiStatus.SUCCESS, fewer.fail_info_text
    more = _signed_by(requester, device, cert, MessageType.RENEWAL_REQ, "CN=subset-device",
                      dns=("a.example", "c.example"))
    assert (more.status, more.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)


def test_manual_approval_holds_renewals_unless_pre_approved(authz_server):
    for profile, expected in [("approval", PkiStatus.PENDING), ("preapproved", PkiStatus.SUCCESS)]:
        requester = Requester(authz_server.url(f"/scep/{profile}"), client=authz_server.http)
        device = Device(f"held-{profile}")
        assert requester.enroll(device, "secret").status == PkiStatus.PENDING
        pqscep("admin", "pending", "approve", "--data", authz_server.data_dir, "--profile", profile,
               device.transaction_id)
        cert = requester.poll(device).certificates[0]
        for message_type in (MessageType.PKCS_REQ, MessageType.RENEWAL_REQ):
            result = _signed_by(requester, device, cert, message_type, cert.subject.rfc4514_string())
            assert result.status == expected, (profile, message_type, result.fail_info_text)


def test_a_revoked_signer_renews_nothing(authz_server):
    requester = Requester(authz_server.url(), client=authz_server.http)
    device, cert = _enrolled(requester, "revoked-renewer")
    pqscep("admin", "certs", "revoke", "--data", authz_server.data_dir, format(cert.serial_number, "x"))
    for message_type in (MessageType.PKCS_REQ, MessageType.RENEWAL_REQ):
        result = _signed_by(requester, device, cert, message_type, "CN=revoked-renewer")
        assert (result.status, result.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_CERT_ID)


def test_an_expired_signer_renews_nothing(authz_data):
    """On the in-process server's clock, a day after the certificate expired."""
    with InProcessServer(authz_data) as ca:
        requester = Requester(ca.url(), client=ca.http)
        device, cert = _enrolled(requester, "expired-renewer")
        ca.clock.advance(seconds=(cert.not_valid_after_utc - ca.clock.now).total_seconds() + 86400)
        for message_type in (MessageType.PKCS_REQ, MessageType.RENEWAL_REQ):
            result = _signed_by(requester, device, cert, message_type, "CN=expired-renewer")
            assert (result.status, result.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_TIME)


def test_the_webhook_sees_renewals(authz_data):
    """The MDM's webhook decides renewals too (with no challenge), and a "no" refuses them."""
    seen: list[dict] = []
    verdicts = iter([b'{"allow": true}', b'{"allow": true}', b'{"allow": false}'])

    def webhook(url, body, headers, timeout):
        import json

        seen.append(json.loads(body))
        return 200, next(verdicts)

    with InProcessServer(authz_data, webhook=webhook) as ca:
        requester = Requester(ca.url("/scep/hook"), client=ca.http)
        device = Device("hooked")
        assert requester.enroll(device, "mdm-token").status == PkiStatus.SUCCESS
        cert = requester.poll(device).certificates[0]
        allowed = _signed_by(requester, device, cert, MessageType.RENEWAL_REQ, "CN=hooked")
        assert allowed.status == PkiStatus.SUCCESS, allowed.fail_info_text
        refused = _signed_by(requester, device, cert, MessageType.RENEWAL_REQ, "CN=hooked")
        assert (refused.status, refused.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    assert [entry["challenge"] for entry in seen] == ["mdm-token", None, None]
    assert [entry["message_type"] for entry in seen] == [MessageType.PKCS_REQ, MessageType.RENEWAL_REQ,
                                                         MessageType.RENEWAL_REQ]


def test_the_static_challenge_does_not_issue_every_name(authz_server):
    """Attack 14: with a name policy, the static challenge no longer issues CN=admin with a
    foreign O, wildcards, foreign SAN types or too many SANs; a name the policy allows issues."""
    requester = Requester(authz_server.url("/scep/strict"), client=authz_server.http)

    def enroll(subject: str, dns: tuple[str, ...] = (), extra=None):
        device = Device("strict")
        builder = x509.CertificateSigningRequestBuilder().subject_name(_name(subject))
        builder = builder.add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD, b"secret")
        names = [x509.DNSName(d) for d in dns] + list(extra or [])
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        device.csr = builder.sign(device.key, hashes.SHA256())
        return requester.enroll(device, "secret")

    refused = [
        ("CN=admin,O=Other Org", ()),
        ("CN=a,OU=ops", ()),
        ("CN=*", ()),
        ("CN=ok", ("*.devices.example",)),
        ("CN=ok", ("host.other.example",)),
        ("CN=ok", ("a.devices.example", "b.devices.example", "c.devices.example")),
    ]
    for subject, dns in refused:
        result = enroll(subject, dns)
        assert (result.status, result.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST), (subject, dns)
    result = enroll("CN=ok", extra=[x509.RFC822Name("root@other.example")])
    assert (result.status, result.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    result = enroll("CN=ok,O=Example Org", ("a.devices.example",))
    assert result.status == PkiStatus.SUCCESS, result.fail_info_text


def test_capabilities_switched_off_are_neither_listed_nor_accepted(authz_server):
    http = authz_server.http
    caps = http.get(authz_server.url("/scep/strict"), params={"operation": "GetCACaps"}).text.split()
    assert not {"DES3", "Renewal", "SHA-1"} & set(caps)
    assert {"DES3", "Renewal", "SHA-1"} <= set(
        http.get(authz_server.url("/scep"), params={"operation": "GetCACaps"}).text.split())
    for cipher, digest, fail_info in [("des3-cbc", "sha256", FailInfo.BAD_ALG),
                                      ("aes256-cbc", "sha1", FailInfo.BAD_ALG)]:
        requester = Requester(authz_server.url("/scep/strict"), client=http, cipher=cipher, digest=digest)
        result = requester.enroll(Device(f"strict-{cipher}-{digest}"), "secret")
        assert (result.status, result.fail_info) == (PkiStatus.FAILURE, fail_info), (cipher, digest)
    requester = Requester(authz_server.url("/scep/strict"), client=http)
    device, cert = _enrolled(requester, "strict-renewer")
    result = _signed_by(requester, device, cert, MessageType.RENEWAL_REQ, "CN=strict-renewer")
    assert (result.status, result.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    assert "RenewalReq" in result.fail_info_text


def test_the_path_alone_chooses_the_profile(authz_server):
    """Attack 13: a GetCACert with message=<another profile> at /scep must not hand out that
    profile's CA while PKIOperation at the same URL uses the default one. Every operation at a
    URL now uses the profile of its path; `message` does not change it."""
    http = authz_server.http
    plain = http.get(authz_server.url("/scep"), params={"operation": "GetCACert"})
    for ident in ("approval", "hook", "no-such-profile"):
        for path in ("/scep", "/cgi-bin/pkiclient.exe"):
            named = http.get(authz_server.url(path), params={"operation": "GetCACert", "message": ident})
            assert (named.status_code, named.content) == (200, plain.content), (path, ident)
    approval = http.get(authz_server.url("/scep/approval"), params={"operation": "GetCACert", "message": "default"})
    assert approval.content != plain.content
    # A client that uses the CA it was given enrolls at that URL.
    requester = Requester(authz_server.url("/scep"), client=http)
    assert requester.enroll(Device("path-rule"), "secret").status == PkiStatus.SUCCESS


def test_a_transient_rsa_signer_for_an_ml_dsa_key(tmp_path):
    """Must-show 3: on /scep/pq, a PKCSReq for an ML-DSA-65 device key signed by a transient RSA
    certificate, in a KEMRecipientInfo envelope to the ML-KEM recipient, with no responseKey,
    is issued; the reply is encrypted to the RSA signer (only its key opens it)."""
    data = init_data(tmp_path / "data", challenge="secret")  # the default config: /scep/pq
    with ServerProcess(data) as server:
        requester = Requester(server.url("/scep/pq"), client=server.http, response_key=False, digest="sha512")
        device = Device("rsa-signed-ml-dsa", key_type="ml-dsa-65")
        rsa_key = generate_key("rsa-2048")
        rsa_cert = scep.self_signed_certificate(rsa_key, _name("CN=transient signer"),
                                                now=datetime.datetime.now(datetime.UTC),
                                                serial=int.from_bytes(os.urandom(8), "big") | 1)
        csr = scep.build_csr(device.key, _name("CN=rsa-signed-ml-dsa"), challenge="secret")
        result = requester.send(device, MessageType.PKCS_REQ, csr.public_bytes(serialization.Encoding.DER),
                                signer_key=rsa_key, signer_cert=rsa_cert)
        assert result.status == PkiStatus.SUCCESS, result.fail_info_text
        (cert,) = result.certificates
        assert cert.public_key() == device.key.public_key()
        cert.verify_directly_issued_by(requester.bundle.ca)
        # Requester.send opened the reply with the RSA signer's key alone (no responseKey
        # was sent): the envelope has one KeyTransRecipientInfo, for the signer.
        with pytest.raises(scep.ClientError):
            requester.send(device, MessageType.PKCS_REQ, csr.public_bytes(serialization.Encoding.DER),
                           signer_key=rsa_key, signer_cert=rsa_cert, reply_recipients=[])

# == envelopes ================================================================================
# Issue #22 items 2 to 4: every failure after the RecipientInfo step is one answer and one
# counted failed attempt (no padding oracle); a PasswordRecipientInfo is tried only where the
# profile enables it, at most one per message and only up to the profile's iteration cap.

ENVELOPE_ONE_ANSWER = (PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope")
ENVELOPE_CPU_BOUND = 1.0  # seconds of server CPU per request: generous (one PBKDF2 at the cap is ~15 ms)


def _envelope_data(tmp_path_factory, label: str, *, open_profiles: bool) -> Path:
    """`pqscep init`'s config; `open_profiles`: a rate limit high enough that the oracle test
    measures the answers rather than the limit, and PasswordRecipientInfo on the default profile."""
    data = init_data(tmp_path_factory.mktemp(label) / "data", challenge="secret")
    if open_profiles:
        config = data / "pqscep.toml"
        text = config.read_text().replace("password_recipient = false", "password_recipient = true", 1)
        for table in ("[profiles.default]\n", "[profiles.pq]\n"):
            text = text.replace(table, table + "rate_limit_failures = 100000\n", 1)
        config.write_text(text)
    return data


@pytest.fixture(scope="module")
def envelope_open_server(tmp_path_factory):
    with ServerProcess(_envelope_data(tmp_path_factory, "envelope-open", open_profiles=True)) as proc:
        yield proc


@pytest.fixture(scope="module")
def envelope_default_server(tmp_path_factory):
    """`pqscep init`'s configuration unchanged: rate limit 10, PasswordRecipientInfo off."""
    with ServerProcess(_envelope_data(tmp_path_factory, "envelope-default", open_profiles=False)) as proc:
        yield proc


def _envelope_bundle(server, path: str) -> scep.CaBundle:
    reply = server.http.get(server.url(path), params={"operation": "GetCACert"})
    reply.raise_for_status()
    return scep.parse_ca_certs(reply.headers["content-type"], reply.content)


def _envelope_post(server, path: str, bundle: scep.CaBundle, signer: Identity, pki_envelope: bytes,
                   message_type: MessageType = MessageType.PKCS_REQ) -> scep.CertRepResult:
    """The attacker's own pkiMessage, self-signed, carrying `pki_envelope`."""
    transaction_id, nonce = os.urandom(8).hex(), os.urandom(16)
    body = pki_message(signer=signer, content=b"", recipient=None, message_type=message_type,
                       transaction_id=transaction_id, sender_nonce=nonce, pki_envelope=pki_envelope)
    reply = server.http.post(server.url(path), params={"operation": "PKIOperation"}, content=body,
                             headers={"Content-Type": "application/x-pki-message"})
    assert reply.status_code == 200, reply.text[:200]
    return scep.parse_cert_rep(reply.content, bundle=bundle, transaction_id=transaction_id, sender_nonce=nonce,
                               recipients=signer.recipients)


def _envelope_answer(result: scep.CertRepResult) -> tuple:
    return result.status, result.fail_info, result.fail_info_text


def _envelope_recorded(path: str, bundle: scep.CaBundle) -> tuple[bytes, bytes]:
    """A victim's PKCSReq, challenge password in its CSR, as seen on the wire; returns the
    recorded pkcsPKIEnvelope and the padded plaintext (which only the test knows)."""
    victim = Identity.new("victim")
    csr = csr_der(victim.key, "victim", challenge="secret")
    if path == "/scep/pq":
        sealed = kem_envelope(csr, bundle.kem_recipient_cert, cipher="aes256-cbc")
    else:
        sealed = envelope(csr, bundle.encipherer, "aes256-cbc")
    wire = pki_message(signer=victim, content=csr, recipient=None, transaction_id=os.urandom(8).hex(),
                       sender_nonce=os.urandom(16), pki_envelope=sealed)
    pad = 16 - len(csr) % 16
    return signed.parse_signed_data(wire).content, csr + bytes([pad]) * pad


def _envelope_reassembled(recorded: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """The recorded envelope's RecipientInfos (so the same content key) over chosen blocks."""
    info = cms.decode(cms.ContentInfo, recorded)
    env = cms.decode_der(cms.EnvelopedData, cms.tlv_bytes(info.content))
    eci = env.encrypted_content_info
    algorithm = cms.parse_algorithm(eci.content_encryption_algorithm)
    forged = cms.EncryptedContentInfo(
        content_type=oids.DATA,
        content_encryption_algorithm=cms.algorithm_tlv(algorithm.oid, cms.encode(iv)),
        encrypted_content=cms.as_tlv(ber.encode_tlv(0x80, ciphertext)),
    )
    body = cms.EnvelopedData(version=env.version, originator_info=None, recipient_infos=env.recipient_infos,
                             encrypted_content_info=forged, unprotected_attrs=None)
    return cms.encode(cms.ContentInfo(content_type=oids.ENVELOPED_DATA, content=cms.as_tlv(cms.encode(body))))


def _envelope_ciphertext(recorded: bytes) -> bytes:
    info = cms.decode(cms.ContentInfo, recorded)
    eci = cms.decode_der(cms.EnvelopedData, cms.tlv_bytes(info.content)).encrypted_content_info
    return ber.join_constructed_string(cms.tlv_bytes(eci.encrypted_content))


@pytest.mark.parametrize("path", ["/scep", "/scep/pq"], ids=["ktri-aes-cbc", "kemri-aes-cbc"])
def test_envelope_padding_oracle_recovers_nothing(envelope_open_server, path):
    """The standard last-byte search on one block of a recorded envelope (Vaudenay): the
    attacker sends `R || C1` with the victim's RecipientInfo and tries all 256 values of R's
    last byte; the one whose padding is valid (0x01) would give plaintext byte P1[15] =
    R[15] ^ 1 ^ C0[15]. Every answer must be the same, so no value stands out."""
    server = envelope_open_server
    bundle = _envelope_bundle(server, path)
    recorded, padded = _envelope_recorded(path, bundle)
    ciphertext = _envelope_ciphertext(recorded)
    target, previous = ciphertext[16:32], ciphertext[0:16]
    attacker = Identity.new("attacker")
    answers = {}
    for guess in range(256):
        forged = _envelope_reassembled(recorded, os.urandom(16), bytes(15) + bytes([guess]) + target)
        answers[guess] = _envelope_answer(_envelope_post(server, path, bundle, attacker, forged))
    # The byte the search would single out with a padding oracle: valid padding there.
    valid = padded[31] ^ previous[15] ^ 0x01
    assert answers[valid] == answers[valid ^ 0x80] == ENVELOPE_ONE_ANSWER
    assert set(answers.values()) == {ENVELOPE_ONE_ANSWER}
    standing_out = [g for g, a in answers.items() if a != ENVELOPE_ONE_ANSWER]
    assert standing_out == []  # the attack recovers no byte


def test_envelope_failures_are_counted(envelope_default_server):
    """Envelopes that do not decrypt count against the address's limit (10 in the default
    config): after 10 of them, even a request with the right challenge is refused."""
    server = envelope_default_server
    bundle = _envelope_bundle(server, "/scep")
    recorded, _padded = _envelope_recorded("/scep", bundle)
    attacker = Identity.new("attacker")
    for _ in range(10):
        forged = _envelope_reassembled(recorded, os.urandom(16), os.urandom(32))
        assert _envelope_answer(_envelope_post(server, "/scep", bundle, attacker, forged)) == ENVELOPE_ONE_ANSWER
    refused = Requester(server.url("/scep")).enroll(Device("after-ten-bad-envelopes"), "secret")
    assert (refused.status, refused.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    assert "too many failed attempts" in (refused.fail_info_text or "")


def _envelope_pwri_raw(iterations: int, wrapped: bytes | None = None) -> bytes:
    """A PasswordRecipientInfo with any iteration count (PBKDF2-SHA256, PWRI-KEK AES-256-CBC)
    and an encryptedKey that is not derived from anything: what costs the attacker nothing."""
    aes = CIPHERS.by_name("aes256-cbc")
    params = cms.PBKDF2Params(salt=os.urandom(16), iteration_count=iterations, key_length=None,
                              prf=cms.HashAlgorithm(algorithm=oids.HMAC_WITH_SHA256, parameters=Null()))
    info = cms.PasswordRecipientInfo(
        version=0,
        key_derivation_algorithm=cms.AlgorithmWithParameters(algorithm=oids.PBKDF2,
                                                             parameters=cms.as_tlv(cms.encode(params))),
        key_encryption_algorithm=cms.algorithm_tlv(oids.PWRI_KEK, cms.encode_algorithm(aes.oid,
                                                                                       cms.encode(os.urandom(16)))),
        encrypted_key=wrapped or os.urandom(48),
    )
    return cms.sequence_to_implicit(cms.encode(info), cms.PWRI_TAG)


def _envelope_pwri_envelope(infos: list[bytes], cek: bytes, content: bytes) -> bytes:
    aes = CIPHERS.by_name("aes256-cbc")
    iv = os.urandom(16)
    eci = cms.EncryptedContentInfo(
        content_type=oids.DATA,
        content_encryption_algorithm=cms.algorithm_tlv(aes.oid, cms.encode(iv)),
        encrypted_content=cms.as_tlv(ber.encode_tlv(0x80, aes.encrypt_cbc(cek, iv, content))),
    )
    body = cms.EnvelopedData(version=3, originator_info=None, recipient_infos=SetOf([cms.as_tlv(i) for i in infos]),
                             encrypted_content_info=eci, unprotected_attrs=None)
    return cms.encode(cms.ContentInfo(content_type=oids.ENVELOPED_DATA, content=cms.as_tlv(cms.encode(body))))


@pytest.mark.parametrize("count, iterations", [(1, 10_000_000), (400, 10_000_000), (400, 100_000)],
                         ids=["one-at-10M", "400-at-10M", "400-at-the-cap"])
def test_envelope_pwri_cpu_is_bounded(tmp_path_factory, count, iterations):
    """A PWRI-enabled profile, in process so that the server's CPU is this process's: PWRIs at
    the largest count the wire allows (10,000,000, ~4.4 s of PBKDF2 each) and many at the
    profile's cap; one request costs the server well under a second of CPU."""
    data = _envelope_data(tmp_path_factory, "envelope-cpu", open_profiles=True)
    with InProcessServer(data) as server:
        bundle = _envelope_bundle(server, "/scep")
        attacker = Identity.new("attacker")
        cek = os.urandom(32)
        sealed = _envelope_pwri_envelope([_envelope_pwri_raw(iterations) for _ in range(count)], cek,
                                         csr_der(attacker.key, "cpu", challenge="secret"))
        _envelope_post(server, "/scep", bundle, attacker, sealed)  # warm-up (imports, first connection)
        before = time.process_time()
        result = _envelope_post(server, "/scep", bundle, attacker, sealed)
        spent = time.process_time() - before
    assert _envelope_answer(result) == ENVELOPE_ONE_ANSWER
    assert spent < ENVELOPE_CPU_BOUND, f"{spent:.2f} s of CPU for one request"


def _envelope_failures(server, profile: str) -> int:
    with sqlite3.connect(server.data_dir / "pqscep.db") as db:
        return db.execute("SELECT count(*) FROM failures WHERE key = ?",
                          (f"challenge:{profile}:127.0.0.1",)).fetchone()[0]


def test_envelope_pwri_batch_oracle(envelope_open_server):
    """100 PWRIs in one message, each wrapping the content key under another guessed password,
    the right one last: the CA tries one, answers the one answer and counts one attempt (at
    least as many as passwords tried). With the right one first it is the one tried."""
    server = envelope_open_server
    bundle = _envelope_bundle(server, "/scep")
    attacker = Identity.new("attacker")
    cek = os.urandom(32)
    wrong = [PasswordOriginator(f"guess-{i}".encode(), 1000).recipient_info(cek, os.urandom) for i in range(99)]
    csr = csr_der(attacker.key, "batch-oracle", challenge="secret")
    before = _envelope_failures(server, "default")
    # DER sorts a SET OF by encoding, and the salt comes first in it: a salt of 0xFF bytes puts
    # the right password last, one of zero bytes first.
    last = _envelope_pwri_envelope([*wrong, _envelope_pwri_salted(b"secret", cek, 0xFF)], cek, csr)
    refused = _envelope_post(server, "/scep", bundle, attacker, last)
    assert _envelope_answer(refused) == ENVELOPE_ONE_ANSWER
    tried = 1  # enveloped.MAX_PASSWORD_INFOS
    assert _envelope_failures(server, "default") - before >= tried
    first = _envelope_pwri_envelope([*wrong, _envelope_pwri_salted(b"secret", cek, 0x00)], cek, csr)
    assert _envelope_post(server, "/scep", bundle, attacker, first).status == PkiStatus.SUCCESS


def _envelope_pwri_salted(password: bytes, cek: bytes, salt_byte: int) -> bytes:
    """A PWRI of `password` whose salt (the first random value drawn) is `salt_byte` repeated."""
    draws = iter([bytes([salt_byte]) * 16])
    return PasswordOriginator(password, 1000).recipient_info(cek, lambda n: next(draws, None) or os.urandom(n))


def test_envelope_pwri_refused_where_off(envelope_default_server):
    """The default config has no PasswordRecipientInfo: an envelope with the right password
    fails like any envelope that does not decrypt."""
    server = envelope_default_server
    bundle = _envelope_bundle(server, "/scep")
    attacker = Identity.new("attacker")
    cek = os.urandom(32)
    info = PasswordOriginator(b"secret", 1000).recipient_info(cek, os.urandom)
    sealed = _envelope_pwri_envelope([info], cek, csr_der(attacker.key, "pwri-off", challenge="secret"))
    assert _envelope_answer(_envelope_post(server, "/scep", bundle, attacker, sealed)) == ENVELOPE_ONE_ANSWER

# == webhook, bounded state, files and logs ===================================================

# Items 5, 6, 10, 11 and 12 of issue #22: a webhook that fails closed, no state an
# unauthenticated client can grow, housekeeping, private files and one-line logs.


class _HygieneHook(BaseHTTPRequestHandler):
    """A challenge webhook on loopback that answers by path: each path one hostile (or, for
    /allow, the one good) reply. It allows nothing else whatever the challenge says."""

    protocol_version = "HTTP/1.1"
    huge = b'{"allow": true, "padding": "' + b"x" * (80 * 1024) + b'"}'

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        path = self.path.strip("/")
        replies = {
            "allow": (200, b'{"allow": true}'), "deny": (200, b'{"allow": false}'), "empty": (200, b""),
            "object": (200, b"{}"), "status": (200, b'{"status": "denied"}'), "yes": (200, b'{"allow": "yes"}'),
            "one": (200, b'{"allow": 1}'), "list": (200, b'[{"allow": true}]'), "nonjson": (200, b"allow"),
            "nocontent": (204, b""), "forbidden": (403, b'{"allow": true}'),
        }
        if path == "redirect":
            self._send(302, b"", [("Location", "/allow")])
        elif path == "huge":
            self._send(200, self.huge)
        elif path == "slow":
            time.sleep(3)
            self._send(200, b'{"allow": true}')
        elif path == "trickle":  # headers at once, then a byte every 0.4 s: no single read times out
            reply = b'{"allow": true}' + b" " * 20
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            for byte in reply:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.4)
        else:
            self._send(*replies[path])

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


_HOOK_PATHS = ["allow", "deny", "empty", "object", "status", "yes", "one", "list", "nonjson", "nocontent",
               "forbidden", "redirect", "huge", "slow", "trickle"]
_WRONG = "wrong, expired or already used challenge password"


@pytest.fixture(scope="module")
def hygiene_webhook_server(tmp_path_factory):
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _HygieneHook)
    hook.daemon_threads = True
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    data = init_data(tmp_path_factory.mktemp("hygiene-hook") / "data")
    profiles = "".join(f"""
[profiles.{name}]
webhook_url = "http://127.0.0.1:{hook.server_address[1]}/{name}"
webhook_timeout = 1.5
""" for name in _HOOK_PATHS)
    (data / "pqscep.toml").write_text(f"""
[server]
default_profile = "allow"
{profiles}
[profiles.onetime]
one_time_challenges = true
""")
    try:
        with ServerProcess(data) as server:
            yield server
    finally:
        hook.shutdown()


def test_webhook_allows_only_2xx_json_object_with_allow_true(hygiene_webhook_server):
    """Issue #22 item 5: every reply but `"allow": true` in a 2xx JSON object refuses, with the
    answer of a wrong challenge (a webhook "no" is the challenge check: no second text), and the
    reply is read only up to 64 KiB (the huge reply says allow: true at its start)."""
    server = hygiene_webhook_server
    assert Requester(server.url("/scep/allow")).enroll(Device("hook-ok"), "pw").status == PkiStatus.SUCCESS
    wrong = Requester(server.url("/scep/onetime")).enroll(Device("hook-wrong"), "not-a-challenge")
    assert wrong.status == PkiStatus.FAILURE and wrong.fail_info_text == _WRONG
    for name in ["deny", "empty", "object", "status", "yes", "one", "list", "nonjson", "nocontent", "forbidden",
                 "redirect", "huge"]:
        result = Requester(server.url(f"/scep/{name}")).enroll(Device(f"hook-{name}"), "pw")
        assert result.status == PkiStatus.FAILURE, name
        assert (result.fail_info, result.fail_info_text) == (wrong.fail_info, wrong.fail_info_text), name


@pytest.mark.parametrize("name", ["slow", "trickle"])
def test_webhook_timeout_covers_the_whole_exchange(hygiene_webhook_server, name):
    """A webhook that answers late, or trickles its reply a byte at a time so that no single read
    waits long, is refused within about its 1.5 s timeout, as "retry later"."""
    started = time.monotonic()
    result = Requester(hygiene_webhook_server.url(f"/scep/{name}")).enroll(Device(f"hook-{name}"), "pw")
    elapsed = time.monotonic() - started
    assert result.status == PkiStatus.FAILURE and "retry later" in result.fail_info_text
    assert elapsed < 4.5, elapsed  # the trickle takes 14 s, the slow reply 3 s


def test_webhook_timeouts_count_as_failed_attempts(tmp_path):
    """An unreachable webhook costs the address a failed attempt: the rate limit bounds the
    webhook calls one client can cause."""
    data = init_data(tmp_path / "data")
    (data / "pqscep.toml").write_text("""
[server]
default_profile = "mdm"
[profiles.mdm]
webhook_url = "http://127.0.0.1:9/nothing-listens-here"
webhook_timeout = 1
rate_limit_failures = 2
""")
    with ServerProcess(data) as server:
        scep = Requester(server.url())
        texts = [scep.enroll(Device(f"hook-down-{i}"), "pw").fail_info_text for i in range(3)]
    assert "retry later" in texts[0] and "retry later" in texts[1]
    assert "too many failed attempts" in texts[2]


@pytest.mark.parametrize("url, ok", [
    ("https://mdm.example/hook", True), ("http://127.0.0.1:8000/hook", True), ("http://127.9.9.9/hook", True),
    ("http://[::1]:8000/hook", True), ("http://localhost/hook", True), ("http://mdm.example/hook", False),
    ("http://10.0.0.1/hook", False), ("http://127.0.0.1.example/hook", False), ("ftp://127.0.0.1/hook", False),
    ("https:///no-host", False),
])
def test_webhook_url_must_be_https_unless_loopback(tmp_path, url, ok):
    data = tmp_path / "data"
    data.mkdir()
    (data / "pqscep.toml").write_text(f'[server]\nca_passphrase_file = ""\n[profiles.default]\nwebhook_url = "{url}"\n')
    if ok:
        assert load_config(data).profiles["default"].challenge.webhook_url == url
    else:
        with pytest.raises(ConfigError, match="must be https://"):
            load_config(data)


def test_signer_fingerprints_keep_no_reference_to_the_certificate():
    """Issue #22 item 6: nothing keyed by the (attacker-chosen) signer certificate is kept: a
    certificate passed in is referenced by nobody after the call, so memory cannot grow with the
    number of distinct signers (the lru_cache of 4,096 entries held each one)."""
    from pqscep.service import scep as service

    for i in range(3):
        cert = Device(f"fingerprint-{i}", key_type="ec-p256").cert
        before = sys.getrefcount(cert)
        service._signer_key_fingerprint(cert)
        gc.collect()
        assert sys.getrefcount(cert) == before


def test_escape_text_keeps_every_line_one_line():
    assert escape_text("CN=a,OU=x\nforged log line") == "CN=a,OU=x\\nforged log line"
    assert escape_text("a\tb\r\x1b[31m\u2028\u202e\x00é") == "a\\tb\\r\\x1b[31m\\u2028\\u202e\\x00é"
    assert escape_text("CN=ordinary,O=Example\\, Inc") == "CN=ordinary,O=Example\\, Inc"


def test_forged_log_line_and_tab_in_subject_stay_escaped(tmp_path):
    """Issue #22 item 10: a newline and a tab in an OU neither forge a log line nor break a row of
    `admin pending list` or `admin certs list`."""
    data = init_data(tmp_path / "data")
    (data / "pqscep.toml").write_text("""
[server]
default_profile = "default"
[profiles.default]
challenge_file = "secrets/challenge-default"
[profiles.held]
challenge_file = "secrets/challenge-default"
manual_approval = true
""")
    ou = "x\nforged log line\tcolumn"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "victim"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou)])
    with ServerProcess(data) as server:
        for path, status in (("/scep/default", PkiStatus.SUCCESS), ("/scep/held", PkiStatus.PENDING)):
            device = Device("victim")
            device.csr = scep.build_csr(device.key, subject, challenge="secret")
            assert Requester(server.url(path)).enroll(device, "secret").status == status
        log = server.log()
    assert "issued serial" in log
    assert not any(line.startswith("forged log line") for line in log.splitlines()), log
    assert "x\\nforged log line\\tcolumn" in log
    for args in (("pending", "list", "--profile", "held"), ("certs", "list")):
        rows = pqscep("admin", *args, "--data", data).stdout.decode().splitlines()
        assert len(rows) == 1 and len(rows[0].split("\t")) == (3 if args[0] == "pending" else 4), rows
        assert "x\\nforged log line\\tcolumn" in rows[0]


def test_housekeeping_prunes_on_a_timer_in_the_server(tmp_path):
    """Issue #22 item 11: the server prunes failed attempts older than the longest rate-limit
    window and expired one-time challenges by itself."""
    data = init_data(tmp_path / "data")
    text = (data / "pqscep.toml").read_text().replace("[server]\n", "[server]\nprune_interval_minutes = 0.01\n", 1)
    (data / "pqscep.toml").write_text(text)
    url = load_config(data).database_url
    now = datetime.datetime.now(datetime.UTC)
    with open_store(url) as store:
        store.record_failure("old", now - datetime.timedelta(hours=2))
        store.record_failure("recent", now - datetime.timedelta(minutes=1))
        store.add_challenge("default", b"o" * 32, now - datetime.timedelta(minutes=1),
                            now - datetime.timedelta(hours=1))
        store.add_challenge("default", b"l" * 32, now + datetime.timedelta(hours=1), now)
    with ServerProcess(data):
        deadline = time.monotonic() + 30
        with open_store(url) as store:
            while store.count_failures("old", now - datetime.timedelta(days=1)) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert store.count_failures("old", now - datetime.timedelta(days=1)) == 0
            assert store.count_failures("recent", now - datetime.timedelta(days=1)) == 1
            assert [c.digest for c in store.list_challenges("default", include_used=True)] == [b"l" * 32]


def test_admin_prune_on_sqlite_and_postgresql(tmp_path, db_url):
    """`pqscep admin prune` (for cron) on both backends: old failures, expired one-time challenges
    and KEM challenges a day past their expiry go; the rest stays."""
    data = init_data(tmp_path / "data")
    now = datetime.datetime.now(datetime.UTC)
    hour = datetime.timedelta(hours=1)
    with open_store(db_url) as store:
        store.record_failure("old", now - 2 * hour)
        store.record_failure("recent", now)
        store.add_challenge("default", b"o" * 32, now - hour, now - 2 * hour)
        store.add_challenge("default", b"l" * 32, now + hour, now)
        for txid, expires in (("kem-old", now - 25 * hour), ("kem-recent", now - hour)):
            store.settle_transaction("default", txid, expect_state=None, new_state=TxState.AWAITING_KEM_PROOF,
                                     signer_key_fingerprint=b"f" * 32, message_type=19, csr_der=b"csr",
                                     signer_cert_der=b"cert", subject="CN=x", certificate=None, now=now - 26 * hour)
            store.put_kem_challenge("default", txid, b"s", b"d", b"f" * 32, expires, now - 26 * hour)
    out = pqscep("admin", "prune", "--data", data, env={"PQSCEP_DATABASE_URL": db_url}).stdout.decode()
    assert out.strip() == "pruned 1 failed attempts, 1 one-time challenges, 1 KEM challenges"
    with open_store(db_url) as store:
        assert store.count_failures("old", now - 3 * hour) == 0 and store.count_failures("recent", now - hour) == 1
        assert [c.digest for c in store.list_challenges("default", include_used=True)] == [b"l" * 32]
        assert store.take_kem_challenge("default", "kem-old", now) is None
        assert store.take_kem_challenge("default", "kem-recent", now) is not None
    again = pqscep("admin", "prune", "--data", data, env={"PQSCEP_DATABASE_URL": db_url}).stdout.decode()
    assert again.strip() == "pruned 0 failed attempts, 0 one-time challenges, 0 KEM challenges"


def test_database_created_by_serve_is_private_under_umask_022(tmp_path):
    """Issue #22 item 12: the SQLite file `pqscep serve` creates (not `init`) is 0600, and so
    are its WAL and shared-memory files."""
    data = init_data(tmp_path / "data")
    for leftover in data.glob("pqscep.db*"):
        leftover.unlink()
    old = os.umask(0o022)
    try:
        with ServerProcess(data) as server:
            assert Requester(server.url()).enroll(Device("umask"), "secret").status == PkiStatus.SUCCESS
            files = sorted(data.glob("pqscep.db*"))
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    finally:
        os.umask(old)
    assert "pqscep.db" in modes and set(modes.values()) == {0o600}, modes


@pytest.mark.parametrize("secret", ["secrets/challenge-default", "secrets/ca-passphrase",
                                    "profiles/default/ca.key"])
def test_readable_secret_files_are_refused_at_start(tmp_path, secret):
    data = init_data(tmp_path / "data")
    (data / secret).chmod(0o644)
    proc = pqscep("serve", "--data", data, "--port", "1", check=False, timeout=60)
    message = proc.stderr.decode()
    assert proc.returncode != 0 and "Traceback" not in message
    assert f"run `chmod 600 {data / secret}`" in message, message


def test_sql_errors_never_carry_bound_values(tmp_path, db_url):
    """hide_parameters: a failing statement's error (which the server logs) names no value."""
    from sqlalchemy import text

    from pqscep.storage.db import create_db_engine

    engine = create_db_engine(db_url)
    try:
        with pytest.raises(Exception) as failure, engine.connect() as conn:
            conn.execute(text("SELECT no_such_column FROM no_such_table WHERE x = :v"), {"v": "KEM-SECRET-VALUE"})
        assert "KEM-SECRET-VALUE" not in str(failure.value)
    finally:
        engine.dispose()


# == transaction IDs and KEM challenges =======================================================
# micromdm, strongSwan and others derive the transactionID from the device's public key, so it
# is known to anyone who knows the key. A transaction is named by (profile, transactionID, the
# CSR's key): another key under the same ID is another transaction. A live kemPopChallenge is
# sent again unchanged to a repeated request (RFC 8894 3.3.1), so a replay cannot cancel it.


@pytest.fixture(scope="module")
def txids_server(tmp_path_factory):
    """`pqscep serve` on `pqscep init`'s defaults: /scep (static challenge) and /scep/pq
    (ML-KEM, challenge-response proof of possession)."""
    data = init_data(tmp_path_factory.mktemp("txids") / "data")
    with ServerProcess(data) as proc:
        yield proc


def _txids_key_derived_id(key) -> str:
    """The transactionID strongSwan and micromdm send: a digest of the public key."""
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha1(spki).hexdigest().upper()


def test_txids_squatting_a_key_derived_id_does_not_lock_the_device_out(txids_server):
    scep = Requester(txids_server.url(), client=txids_server.http)
    victim = Device("victim-device")
    victim.transaction_id = _txids_key_derived_id(victim.key)
    # The attacker, who can enroll (it has the challenge), takes the victim's ID first.
    attacker = Device("attacker", transaction_id=victim.transaction_id)
    taken = scep.enroll(attacker, "secret")
    assert taken.status == PkiStatus.SUCCESS
    assert taken.certificates[0].public_key() == attacker.key.public_key()

    done = scep.enroll(victim, "secret")
    assert done.status == PkiStatus.SUCCESS, done.fail_info_text
    (cert,) = done.certificates
    assert cert.public_key() == victim.key.public_key() and cert.subject.rfc4514_string() == "CN=victim-device"
    # Its polls and retransmissions find its own transaction, not the attacker's.
    assert scep.poll(victim).certificates[0].serial_number == cert.serial_number
    assert scep.enroll(victim, "secret").certificates[0].serial_number == cert.serial_number
    # And the attacker's transaction is its own: a CSR of the victim's key re-signed by the
    # attacker's signer takes nothing over.
    resigned = scep.send(attacker, MessageType.PKCS_REQ, victim.csr.public_bytes(serialization.Encoding.DER))
    assert resigned.status == PkiStatus.FAILURE and not resigned.certificates


def test_txids_replayed_pkcsreq_does_not_cancel_the_kem_challenge(txids_server):
    recorded: list[bytes] = []
    http = httpx.Client(timeout=60, event_hooks={"request": [lambda r: recorded.append(r.read())]})
    client = KemClient(txids_server.url("/scep/pq"), http=http)
    victim = KemDevice("kem-victim")
    challenge = challenge_of(client.pkcs_req(victim).result)
    pkcs_req = recorded[-1]
    # The attacker saw the PKCSReq on the wire and replays it, byte for byte, again and again
    # before the device's proof arrives.
    for _ in range(3):
        replay = httpx.post(txids_server.url("/scep/pq"), params={"operation": "PKIOperation"}, content=pkcs_req,
                            headers={"Content-Type": "application/x-pki-message"}, timeout=60)
        assert replay.status_code == 200
    # The device's proof for the challenge it was sent still issues.
    done = client.poll(victim, proof_for(victim, challenge))
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text
    assert done.result.certificates[0].public_key() == victim.kem_key.public_key()
    http.close()

# == rollover =================================================================================
