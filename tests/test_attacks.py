"""The attacks of a hostile client, sent as the attacker would send them, over real HTTP to
`pqscep serve` (tests/server_proc.py), each of which must fail. docs/security.md is the threat
model these tests pin. Each section holds its own fixtures.

Sections: authorization (who may obtain which name), envelopes (padding and batch oracles,
PasswordRecipientInfo cost), the challenge webhook, bounded state and files, transaction IDs
and KEM challenges, CA rollover.
"""

from __future__ import annotations

import datetime
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from inprocess import InProcessServer
from scep_client import Device, Requester
from server_proc import ServerProcess, init_data, pqscep

from pqscep.crypto.keys import generate_key
from pqscep.protocol import client as scep
from pqscep.protocol.messages import FailInfo, MessageType, PkiStatus

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

# == webhook, bounded state, files and logs ===================================================

# == transaction IDs and KEM challenges =======================================================

# == rollover =================================================================================
