"""Certifying ML-KEM keys with proof of possession (draft Section 7) over real HTTP,
on SQLite and PostgreSQL: challenge-response (kemPopChallenge / kemPopProof), the certificate
encrypted to the new key, and the RFC 9883 statement; ML-KEM-768 and -1024; the refusals with
their failInfo; and, when PQSCEP_OPENSSL is set, OpenSSL 3.6 verifying the certificates and
opening the final CertRep with the new KEM key.

Pinned decisions:
- A CertPoll (or repeated PKCSReq) without a proof while the challenge is live gets the same
  challenge again, byte for byte (RFC 8894 3.3.1: a repeated request gets the same answer), and
  the proof for it still issues: a replayed request cannot cancel it. After it expired, or a
  wrong proof spent it, the next request without a proof gets a fresh one.
- A wrong proof spends the challenge: the right proof sent after it is refused (badRequest).
- A replay of the whole exchange after SUCCESS gets the same certificate again (RFC 8894 3.3.1:
  a repeated request gets the same answer), still encrypted to the new KEM key, so only its
  holder can read it.
- A revoked signer certificate is badCertId (the signer check every request goes through),
  a signer certificate this CA did not issue is badRequest (statement mode).
"""

from __future__ import annotations

import datetime
import os
import subprocess
from dataclasses import dataclass, field

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from inprocess import InProcessServer
from server_proc import ServerProcess, init_data, pqscep

from pqscep.asn1 import cms, oids
from pqscep.cms import signed
from pqscep.cms.kem import KemOriginator, KemRecipient
from pqscep.crypto.keys import generate_key, key_family
from pqscep.crypto.registry import CIPHERS, DIGESTS
from pqscep.csr.pkcs10 import build_kem_csr
from pqscep.protocol import client as scep
from pqscep.protocol import kem_pop
from pqscep.protocol.messages import FailInfo, MessageType, PkiStatus

CONFIG = """
[server]
database = "{database}"
default_profile = "challenge"

[profiles.challenge]
ca_key_type = "ml-dsa-65"
ca_subject = "CN=kem_pop challenge CA"
kem_recipient = "ml-kem-768"
aes_gcm = true
challenge_file = "secrets/challenge-default"
kem_pop = "challenge"
rate_limit_failures = 1000

[profiles.shortttl]
ca_key_type = "ml-dsa-65"
ca_subject = "CN=kem_pop short CA"
kem_recipient = "ml-kem-768"
challenge_file = "secrets/challenge-default"
kem_pop = "challenge"
kem_pop_ttl_minutes = 0.02
rate_limit_failures = 1000

[profiles.encrypted]
ca_key_type = "ml-dsa-65"
ca_subject = "CN=kem_pop encrypted-cert CA"
kem_recipient = "ml-kem-1024"
challenge_file = "secrets/challenge-default"
kem_pop = "encrypted-cert"
rate_limit_failures = 1000

[profiles.statement]
ca_key_type = "ml-dsa-65"
ca_subject = "CN=kem_pop statement CA"
kem_recipient = "ml-kem-768"
aes_gcm = true
challenge_file = "secrets/challenge-default"
kem_pop = "statement"
rate_limit_failures = 1000

[profiles.approval]
ca_key_type = "ml-dsa-65"
ca_subject = "CN=kem_pop approval CA"
kem_recipient = "ml-kem-768"
challenge_file = "secrets/challenge-default"
kem_pop = "encrypted-cert"
manual_approval = true

[profiles.approvalchal]
ca_key_type = "ml-dsa-65"
ca_subject = "CN=kem_pop approval and challenge CA"
kem_recipient = "ml-kem-768"
challenge_file = "secrets/challenge-default"
kem_pop = "challenge"
manual_approval = true

[profiles.classic]
ca_subject = "CN=kem_pop classic CA"
challenge_file = "secrets/challenge-default"
"""

ML_DSA_65 = "2.16.840.1.101.3.4.3.18"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def data(request, tmp_path_factory):
    """A data directory with every mode as a profile, per database (module scope: ML-DSA CAs are
    slow to set up; each test uses its own transactions)."""
    tmp = tmp_path_factory.mktemp(f"kem_pop-{request.param}")
    if request.param == "sqlite":
        databases = iter([f"sqlite:///{tmp / 'pqscep.sqlite3'}"])
    else:
        from conftest import _fresh_postgres_database

        databases = _fresh_postgres_database(request.getfixturevalue("postgres_url"))
    for database in databases:
        yield init_data(tmp / "data", challenge="secret", config_text=CONFIG.format(database=database))


@pytest.fixture(scope="module")
def ca(data):
    """The server in this process, on a fake clock: for the rules (modes, refusals, expiry)."""
    with InProcessServer(data) as server:
        yield server


@pytest.fixture(scope="module")
def server(data, ca):
    """`pqscep serve` on the same data directory and database: for the pqscep command line, the
    benchmark and a second process answering the in-process server's challenge."""
    with ServerProcess(data) as proc:
        yield proc


# --------------------------------------------------------------------------------------------
# a requester that holds every key (so the tests can break each step)
# --------------------------------------------------------------------------------------------


def _self_signed(key, cn: str) -> x509.Certificate:
    return scep.self_signed_certificate(key, x509.Name.from_rfc4514_string(f"CN={cn}"), now=_now(),
                                        serial=int.from_bytes(os.urandom(8), "big") | 1)


@dataclass
class KemDevice:
    cn: str
    kem_type: str = "ml-kem-768"
    signer_key: object = None
    signer_cert: x509.Certificate | None = None
    extensions: list | None = None
    transaction_id: str = field(default_factory=lambda: os.urandom(16).hex().upper())

    def __post_init__(self):
        self.kem_key = generate_key(self.kem_type)
        if self.signer_key is None:
            self.signer_key = generate_key("ml-dsa-65")
            self.signer_cert = _self_signed(self.signer_key, f"{self.cn} transient signer")
        self.subject = x509.Name.from_rfc4514_string(f"CN={self.cn}")
        self.csr_der = build_kem_csr(self.kem_key.public_key(), self.subject, self.signer_key,
                                     self.signer_cert, challenge_password="secret",
                                     extensions=self.extensions)

    @property
    def ski(self) -> bytes:
        return x509.SubjectKeyIdentifier.from_public_key(self.kem_key.public_key()).digest


@dataclass
class Exchange:
    result: scep.CertRepResult
    reply: bytes


class KemClient:
    def __init__(self, url: str, cipher: str = "aes256-cbc", *, http: httpx.Client | None = None):
        self.url = url
        self.cipher = CIPHERS.by_name(cipher)
        self.http = http or httpx.Client(timeout=60)
        reply = self.http.get(url, params={"operation": "GetCACert"})
        reply.raise_for_status()
        self.bundle = scep.parse_ca_certs(reply.headers["content-type"], reply.content)

    def send(self, device: KemDevice, message_type: MessageType, content: bytes, *, extra=(), signer=None,
             transaction_id: str | None = None) -> Exchange:
        signer_key, signer_cert = signer or (device.signer_key, device.signer_cert)
        transaction_id = transaction_id or device.transaction_id
        nonce = os.urandom(16)
        body = scep.build_pki_message(
            message_type=message_type,
            transaction_id=transaction_id,
            sender_nonce=nonce,
            content=content,
            originator=KemOriginator(self.bundle.kem_recipient_cert.public_key(),
                                     certificate=self.bundle.kem_recipient_cert),
            cipher=self.cipher,
            signer_key=signer_key,
            signer_cert=signer_cert,
            digest=DIGESTS.by_name("sha512"),
            random_bytes=os.urandom,
            extra_attributes=list(extra),
        )
        reply = self.http.post(self.url, params={"operation": "PKIOperation"}, content=body,
                               headers={"Content-Type": "application/x-pki-message"})
        assert reply.status_code == 200, f"HTTP {reply.status_code}: {reply.text[:300]}"
        result = scep.parse_cert_rep(reply.content, bundle=self.bundle, transaction_id=transaction_id,
                                     sender_nonce=nonce,
                                     recipients=[KemRecipient(device.kem_key, subject_key_identifier=device.ski)])
        return Exchange(result, reply.content)

    def pkcs_req(self, device: KemDevice, **kw) -> Exchange:
        return self.send(device, MessageType.PKCS_REQ, device.csr_der, **kw)

    def poll(self, device: KemDevice, proof: bytes | None = None, **kw) -> Exchange:
        extra = [kem_pop.proof_attribute(proof)] if proof is not None else []
        return self.send(device, MessageType.CERT_POLL, scep.poll_content(self.bundle.ca.subject, device.subject),
                         extra=extra, **kw)


def kem_client(at, profile: str, cipher: str = "aes256-cbc") -> KemClient:
    """A KemClient for `profile` of `at` (the in-process server or a ServerProcess)."""
    return KemClient(at.url(f"/scep/{profile}"), cipher=cipher, http=at.http)


def challenge_of(result: scep.CertRepResult) -> bytes:
    assert result.status == PkiStatus.PENDING, (result.status, result.fail_info, result.fail_info_text)
    (value,) = result.attributes[oids.SCEP_KEM_POP_CHALLENGE]
    return value


def proof_for(device: KemDevice, challenge: bytes, *, transaction_id: str | None = None) -> bytes:
    return kem_pop.make_proof(device.kem_key, challenge, transaction_id or device.transaction_id, device.csr_der)


def check_kem_certificate(cert: x509.Certificate, device: KemDevice, ca: x509.Certificate) -> None:
    assert cert.public_key() == device.kem_key.public_key()
    assert key_family(cert.public_key()) == "ml-kem"
    cert.verify_directly_issued_by(ca)
    assert cert.signature_algorithm_oid.dotted_string == ML_DSA_65
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_encipherment
    assert not (usage.digital_signature or usage.content_commitment or usage.data_encipherment
                or usage.key_agreement or usage.key_cert_sign or usage.crl_sign)
    assert cert.subject == device.subject


def failure(exchange: Exchange) -> tuple:
    return exchange.result.status, exchange.result.fail_info


def enroll_with_challenge(client: KemClient, device: KemDevice) -> Exchange:
    challenge = challenge_of(client.pkcs_req(device).result)
    done = client.poll(device, proof_for(device, challenge))
    assert done.result.status == PkiStatus.SUCCESS, (done.result.fail_info, done.result.fail_info_text)
    return done


def identity_certificate(server, profile: str, cn: str):
    """An ML-DSA-65 device certificate issued by the profile's CA (ordinary enrollment)."""
    from scep_client import Device, Requester

    device = Device(cn, key_type="ml-dsa-65")
    result = Requester(server.url(f"/scep/{profile}"), digest="sha512", client=server.http).enroll(device, "secret")
    assert result.status == PkiStatus.SUCCESS, result.fail_info_text
    return device.key, result.certificates[0]


# --------------------------------------------------------------------------------------------
# capabilities
# --------------------------------------------------------------------------------------------


def test_kem_pop_capability(ca):
    for profile in ("challenge", "encrypted", "statement"):
        caps = ca.http.get(ca.url(f"/scep/{profile}"), params={"operation": "GetCACaps"}).text.split()
        assert "KEMPoP" in caps
    caps = ca.http.get(ca.url("/scep/classic"), params={"operation": "GetCACaps"}).text.split()
    assert "KEMPoP" not in caps


# --------------------------------------------------------------------------------------------
# end to end, each mode, ML-KEM-768 and -1024
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kem_type", ["ml-kem-768", "ml-kem-1024"])
@pytest.mark.parametrize("cipher", ["aes256-gcm", "aes256-cbc"])
def test_challenge_mode(ca, kem_type, cipher):
    client = kem_client(ca, "challenge", cipher=cipher)
    device = KemDevice(f"chal-{kem_type}-{cipher}", kem_type)
    first = client.pkcs_req(device).result
    challenge = challenge_of(first)
    kem_oid, ciphertext = kem_pop.read_challenge(challenge)
    assert kem_oid == (oids.ML_KEM_768 if kem_type == "ml-kem-768" else oids.ML_KEM_1024)
    done = client.poll(device, proof_for(device, challenge))
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text
    (cert,) = done.result.certificates
    check_kem_certificate(cert, device, client.bundle.ca)


def test_challenge_answered_with_a_repeated_pkcsreq(ca):
    client = kem_client(ca, "challenge")
    device = KemDevice("chal-repeated-pkcsreq")
    challenge = challenge_of(client.pkcs_req(device).result)
    done = client.pkcs_req(device, extra=[kem_pop.proof_attribute(proof_for(device, challenge))])
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text
    check_kem_certificate(done.result.certificates[0], device, client.bundle.ca)


def test_repeated_request_without_proof_gets_the_same_challenge(ca):
    client = kem_client(ca, "challenge")
    device = KemDevice("chal-same")
    first = challenge_of(client.pkcs_req(device).result)
    assert challenge_of(client.poll(device).result) == first
    assert challenge_of(client.pkcs_req(device).result) == first  # a replayed PKCSReq
    done = client.poll(device, proof_for(device, first))
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text


def test_fresh_challenge_after_expiry_or_a_wrong_proof(ca):
    client = kem_client(ca, "shortttl")  # 1.2 s on the fake clock
    device = KemDevice("chal-fresh")
    first = challenge_of(client.pkcs_req(device).result)
    ca.clock.advance(seconds=1.3)
    second = challenge_of(client.poll(device).result)
    assert second != first
    # A wrong proof (for the expired one) spends the live one; the next request without a
    # proof gets a new one, and only a proof for that one issues.
    assert failure(client.poll(device, proof_for(device, first))) == (PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK)
    third = challenge_of(client.poll(device).result)
    assert third not in (first, second)
    assert failure(client.poll(device, proof_for(device, second))) == (PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK)
    fourth = challenge_of(client.pkcs_req(device).result)
    done = client.poll(device, proof_for(device, fourth))
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text


@pytest.mark.parametrize("kem_type", ["ml-kem-768", "ml-kem-1024"])
def test_encrypted_cert_mode(ca, kem_type):
    client = kem_client(ca, "encrypted")
    device = KemDevice(f"enc-{kem_type}", kem_type)
    done = client.pkcs_req(device)
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text
    check_kem_certificate(done.result.certificates[0], device, client.bundle.ca)
    _check_envelope_to(done.reply, device.ski)


def test_get_cert_of_an_ml_kem_certificate_goes_to_its_key_only(ca):
    """GetCert must not undo the encrypted-certificate proof: anybody may ask for an ML-KEM
    certificate by serial, but only the holder of its key can read the answer."""
    client = kem_client(ca, "encrypted")
    device = KemDevice("enc-getcert")
    (cert,) = client.pkcs_req(device).result.certificates
    asker = KemDevice("getcert-asker")  # another device: its own key, its own signer
    content = scep.issuer_and_serial_content(client.bundle.ca.subject, cert.serial_number)
    with pytest.raises(scep.ClientError, match="envelope"):
        client.send(asker, MessageType.GET_CERT, content, transaction_id=os.urandom(16).hex())
    # The holder of the ML-KEM key reads it (the reply names the certificate by issuer and serial).
    holder = KemDevice("getcert-holder")
    holder.kem_key = device.kem_key
    nonce, transaction_id = os.urandom(16), os.urandom(16).hex()
    body = scep.build_pki_message(
        message_type=MessageType.GET_CERT, transaction_id=transaction_id, sender_nonce=nonce, content=content,
        originator=KemOriginator(client.bundle.kem_recipient_cert.public_key(),
                                 certificate=client.bundle.kem_recipient_cert),
        cipher=client.cipher, signer_key=holder.signer_key, signer_cert=holder.signer_cert,
        digest=DIGESTS.by_name("sha512"), random_bytes=os.urandom)
    reply = client.http.post(client.url, params={"operation": "PKIOperation"}, content=body,
                             headers={"Content-Type": "application/x-pki-message"})
    result = scep.parse_cert_rep(reply.content, bundle=client.bundle, transaction_id=transaction_id,
                                 sender_nonce=nonce, recipients=[KemRecipient(device.kem_key, certificate=cert)])
    assert result.certificates == [cert]


@pytest.mark.parametrize("kem_type", ["ml-kem-768", "ml-kem-1024"])
def test_statement_mode(ca, kem_type):
    signer_key, signer_cert = identity_certificate(ca, "statement", f"stmt-id-{kem_type}")
    client = kem_client(ca, "statement")
    device = KemDevice(f"stmt-{kem_type}", kem_type, signer_key=signer_key, signer_cert=signer_cert)
    done = client.pkcs_req(device)
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text
    check_kem_certificate(done.result.certificates[0], device, client.bundle.ca)
    _check_envelope_to(done.reply, device.ski)


def test_renewal_of_an_ml_kem_certificate(ca):
    """RenewalReq signed by the device's signature certificate from the same CA, the CSR built
    as for enrollment; the statement profile takes the statement as the proof."""
    signer_key, signer_cert = identity_certificate(ca, "statement", "renew-kem")
    client = kem_client(ca, "statement")
    device = KemDevice("renew-kem", signer_key=signer_key, signer_cert=signer_cert)
    done = client.send(device, MessageType.RENEWAL_REQ, device.csr_der)
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text
    check_kem_certificate(done.result.certificates[0], device, client.bundle.ca)


def test_renewal_answers_a_challenge(ca):
    """The same renewal at a challenge profile: PENDING with kemPopChallenge, then the proof."""
    signer_key, signer_cert = identity_certificate(ca, "challenge", "renew-kem-chal")
    client = kem_client(ca, "challenge")
    device = KemDevice("renew-kem-chal", "ml-kem-1024", signer_key=signer_key, signer_cert=signer_cert)
    challenge = challenge_of(client.send(device, MessageType.RENEWAL_REQ, device.csr_der).result)
    done = client.poll(device, proof_for(device, challenge))
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text
    check_kem_certificate(done.result.certificates[0], device, client.bundle.ca)


@pytest.mark.parametrize("signer_type", ["rsa-2048", "ec-p256", "ml-dsa-44", "ml-dsa-87"])
def test_other_signer_key_types(ca, signer_type):
    """Any signer key the CA verifies can sign the KEM CSR; the reply still goes to the KEM key."""
    key = generate_key(signer_type)
    client = kem_client(ca, "challenge")
    device = KemDevice(f"signer-{signer_type}", signer_key=key, signer_cert=_self_signed(key, f"signer-{signer_type}"))
    done = enroll_with_challenge(client, device)
    check_kem_certificate(done.result.certificates[0], device, client.bundle.ca)
    _check_envelope_to(done.reply, device.ski)


def _check_envelope_to(reply: bytes, ski: bytes) -> None:
    """The CertRep envelope has one KEMRecipientInfo, for the new key (by its SKI)."""
    from pqscep.cms import kem as kemmod

    envelope = cms.decode(cms.ContentInfo, signed.parse_signed_data(reply).content)
    body_type = cms.EnvelopedData if envelope.content_type == oids.ENVELOPED_DATA else cms.AuthEnvelopedData
    body = cms.decode_der(body_type, cms.tlv_bytes(envelope.content))
    (info,) = body.recipient_infos.as_list()
    view = kemmod.parse_kem_recipient_info(cms.tlv_bytes(info))
    assert view.rid_ski == ski


# --------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------


def test_wrong_mac_then_the_right_one(ca):
    client = kem_client(ca, "challenge")
    device = KemDevice("neg-wrong-mac")
    challenge = challenge_of(client.pkcs_req(device).result)
    good = proof_for(device, challenge)
    bad = bytearray(good)
    bad[-1] ^= 1
    assert failure(client.poll(device, bytes(bad))) == (PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK)
    # The challenge died with the first proof: the right MAC now is a replay.
    refused = client.poll(device, good)
    assert failure(refused) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    assert "already answered" in refused.result.fail_info_text


def test_mac_for_another_transaction(ca):
    client = kem_client(ca, "challenge")
    device = KemDevice("neg-other-tx")
    challenge = challenge_of(client.pkcs_req(device).result)
    proof = proof_for(device, challenge, transaction_id="0123456789ABCDEF0123456789ABCDEF")
    assert failure(client.poll(device, proof)) == (PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK)


def test_proof_for_another_transactions_challenge(ca):
    """Two open transactions: the MAC answering one challenge is refused on the other."""
    client = kem_client(ca, "challenge")
    one, two = KemDevice("neg-cross-1"), KemDevice("neg-cross-2")
    challenge_one = challenge_of(client.pkcs_req(one).result)
    challenge_of(client.pkcs_req(two).result)
    assert failure(client.poll(two, kem_pop.make_proof(two.kem_key, challenge_one, two.transaction_id, two.csr_der))) \
        == (PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK)


def test_proof_after_expiry(ca):
    """kem_pop_ttl_minutes = 0.02 (1.2 s) on the fake clock: a proof 1.1 s after its challenge
    issues, one 1.3 s after is badTime."""
    client = kem_client(ca, "shortttl")
    in_time, late = KemDevice("in-time"), KemDevice("neg-expired")
    challenge_in_time = challenge_of(client.pkcs_req(in_time).result)
    challenge_late = challenge_of(client.pkcs_req(late).result)
    ca.clock.advance(seconds=1.1)
    done = client.poll(in_time, proof_for(in_time, challenge_in_time))
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text
    ca.clock.advance(seconds=0.2)
    assert failure(client.poll(late, proof_for(late, challenge_late))) == (PkiStatus.FAILURE, FailInfo.BAD_TIME)


def test_proof_without_a_challenge(ca):
    client = kem_client(ca, "encrypted")
    device = KemDevice("neg-no-challenge")
    assert client.pkcs_req(device).result.status == PkiStatus.SUCCESS
    # Issued at once: a later "proof" changes nothing, the certificate is the same.
    again = client.pkcs_req(device, extra=[kem_pop.proof_attribute(b"\x30\x00")])
    assert again.result.status == PkiStatus.SUCCESS


def test_proof_signed_by_another_certificate(ca):
    client = kem_client(ca, "challenge")
    device = KemDevice("neg-other-signer")
    challenge = challenge_of(client.pkcs_req(device).result)
    other_key = generate_key("ml-dsa-65")
    other = (other_key, _self_signed(other_key, "someone else"))
    # A poll's signer picks its transaction (a poll carries no CSR): this one finds none.
    assert failure(client.poll(device, proof_for(device, challenge), signer=other)) == (
        PkiStatus.FAILURE, FailInfo.BAD_CERT_ID)
    assert failure(client.pkcs_req(device, extra=[kem_pop.proof_attribute(proof_for(device, challenge))],
                                   signer=other)) == (PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK)
    # Neither touched the challenge: the right signer still gets the certificate.
    done = client.poll(device, proof_for(device, challenge))
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text


def test_csr_signature_not_by_the_signer(ca):
    client = kem_client(ca, "challenge")
    device = KemDevice("neg-csr-signer")
    other_key = generate_key("ml-dsa-65")
    other = (other_key, _self_signed(other_key, "not the CSR signer"))
    assert failure(client.pkcs_req(device, signer=other)) == (PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK)


def test_statement_names_another_certificate(ca):
    """The CSR verifies with the signer's key, but its statement names another certificate (same
    key, other serial): badRequest."""
    client = kem_client(ca, "challenge")
    device = KemDevice("neg-statement-name")
    twin = _self_signed(device.signer_key, "neg-statement-name transient signer")
    assert twin.serial_number != device.signer_cert.serial_number
    refused = client.pkcs_req(device, signer=(device.signer_key, twin))
    assert failure(refused) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    assert "privateKeyPossessionStatement" in refused.result.fail_info_text


def test_statement_mode_needs_a_certificate_of_this_ca(ca):
    client = kem_client(ca, "statement")
    refused = client.pkcs_req(KemDevice("neg-stmt-self-signed"))
    assert failure(refused) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    # Issued by another CA of the same ca (the challenge profile): not ours either.
    signer_key, signer_cert = identity_certificate(ca, "challenge", "neg-stmt-other-ca")
    refused = client.pkcs_req(KemDevice("neg-stmt-other-ca", signer_key=signer_key, signer_cert=signer_cert))
    assert failure(refused) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)


def test_statement_from_a_revoked_certificate(ca):
    signer_key, signer_cert = identity_certificate(ca, "statement", "neg-stmt-revoked")
    pqscep("admin", "certs", "revoke", "--data", ca.data_dir, "--profile", "statement",
           f"{signer_cert.serial_number:x}")
    client = kem_client(ca, "statement")
    refused = client.pkcs_req(KemDevice("neg-stmt-revoked", signer_key=signer_key, signer_cert=signer_cert))
    assert failure(refused) == (PkiStatus.FAILURE, FailInfo.BAD_CERT_ID)
    assert "revoked" in refused.result.fail_info_text


@pytest.mark.parametrize("profile", ["challenge", "encrypted"])
def test_ml_kem_key_with_other_key_usages(ca, profile):
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    client = kem_client(ca, profile)
    device = KemDevice(f"neg-usage-{profile}", extensions=[x509.Extension(x509.KeyUsage.oid, True, usage)])
    refused = client.pkcs_req(device)
    assert failure(refused) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    assert "keyEncipherment" in refused.result.fail_info_text


def test_ml_kem_key_with_key_encipherment_only_is_fine(ca):
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=True,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    client = kem_client(ca, "encrypted")
    device = KemDevice("usage-ok", extensions=[x509.Extension(x509.KeyUsage.oid, True, usage)])
    assert client.pkcs_req(device).result.status == PkiStatus.SUCCESS


def test_replay_of_the_whole_exchange(ca):
    client = kem_client(ca, "challenge")
    device = KemDevice("replay")
    challenge = challenge_of(client.pkcs_req(device).result)
    proof = proof_for(device, challenge)
    first = client.poll(device, proof)
    assert first.result.status == PkiStatus.SUCCESS
    serial = first.result.certificates[0].serial_number
    again_req = client.pkcs_req(device)
    again_poll = client.poll(device, proof)
    for again in (again_req, again_poll):
        assert again.result.status == PkiStatus.SUCCESS, again.result.fail_info_text
        assert again.result.certificates[0].serial_number == serial
        _check_envelope_to(again.reply, device.ski)


def test_pkcsreq_with_a_proof_before_any_challenge(ca):
    client = kem_client(ca, "challenge")
    device = KemDevice("proof-first")
    # A proof on the first PKCSReq answers nothing yet: the CA challenges as usual.
    first = client.pkcs_req(device, extra=[kem_pop.proof_attribute(b"\x30\x00")])
    challenge_of(first.result)


# --------------------------------------------------------------------------------------------
# the pqscep client
# --------------------------------------------------------------------------------------------


def _cert_file(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _check_cli_certificate(cert: x509.Certificate, key_path, server, profile: str) -> None:
    from pqscep.crypto.keys import load_private_key

    key = load_private_key(key_path.read_bytes())
    assert cert.public_key() == key.public_key()
    ca = KemClient(server.url(f"/scep/{profile}")).bundle.ca
    cert.verify_directly_issued_by(ca)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_encipherment and not usage.digital_signature


@pytest.mark.parametrize("kem_type", ["ml-kem-768", "ml-kem-1024"])
def test_cli_enroll_challenge(server, tmp_path, kem_type):
    out = tmp_path / "kem.pem"
    proc = pqscep("enroll", server.url("/scep/challenge"), "--challenge", "secret", "--cn", f"cli-{kem_type}",
                  "--key-type", kem_type, "--out", out, "--dns", "kem.example", "--dump", tmp_path / "dump")
    assert "challenge" in proc.stderr.decode()
    cert = _cert_file(out)
    _check_cli_certificate(cert, tmp_path / "kem.key", server, "challenge")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["kem.example"]
    names = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert [n.split("-", 1)[1] for n in names] == ["GetCACaps.txt", "GetCACert.der", "PKCSReq.der", "CertRep.der",
                                                  "CertPoll.der", "CertRep.der"]
    # `pqscep inspect` shows the exchange: the challenge in the PENDING CertRep, the proof in the
    # CertPoll, and, with the CA's ML-KEM key, the CSR with its statement, checked with the
    # signer certificate's key (an ML-KEM key cannot sign its own CSR).
    dump = tmp_path / "dump"
    assert "kemPopChallenge" in pqscep("inspect", dump / "04-CertRep.der").stdout.decode()
    assert "kemPopProof" in pqscep("inspect", dump / "05-CertPoll.der").stdout.decode()
    passphrase = (server.data_dir / "secrets" / "ca-passphrase").read_text().strip()
    shown = pqscep("inspect", dump / "03-PKCSReq.der", "--key", server.data_dir / "profiles" / "challenge" /
                   "kem-recipient.key", "--key-passphrase-env", "KEM_PASSPHRASE", "--json",
                   env={"KEM_PASSPHRASE": passphrase}).stdout.decode()
    assert "privateKeyPossessionStatement (RFC 9883)" in shown
    assert "verifies with the statement's certificate" in shown


def test_cli_enroll_with_a_device_certificate_and_renew(server, tmp_path):
    """Statement mode: --signer-cert/--signer-key of an ML-DSA certificate from the same CA;
    then `pqscep renew` of that certificate for a new ML-KEM key (RenewalReq)."""
    url = server.url("/scep/statement")
    pqscep("enroll", url, "--challenge", "secret", "--cn", "cli-device", "--key-type", "ml-dsa-65",
           "--out", tmp_path / "device.pem")
    pqscep("enroll", url, "--cn", "cli-device", "--key-type", "ml-kem-768", "--out", tmp_path / "kem.pem",
           "--signer-cert", tmp_path / "device.pem", "--signer-key", tmp_path / "device.key")
    _check_cli_certificate(_cert_file(tmp_path / "kem.pem"), tmp_path / "kem.key", server, "statement")
    pqscep("renew", url, "--cert", tmp_path / "device.pem", "--key", tmp_path / "device.key", "--key-type",
           "ml-kem-1024", "--out", tmp_path / "kem2.pem")
    renewed = _cert_file(tmp_path / "kem2.pem")
    _check_cli_certificate(renewed, tmp_path / "kem2.key", server, "statement")
    assert renewed.subject.rfc4514_string() == "CN=cli-device"


def test_cli_renew_answers_a_challenge(server, tmp_path):
    url = server.url("/scep/challenge")
    pqscep("enroll", url, "--challenge", "secret", "--cn", "cli-renew-chal", "--key-type", "ec-p256",
           "--out", tmp_path / "device.pem")
    proc = pqscep("renew", url, "--cert", tmp_path / "device.pem", "--key", tmp_path / "device.key", "--key-type",
                  "ml-kem-768", "--out", tmp_path / "kem.pem")
    assert "challenge" in proc.stderr.decode()
    _check_cli_certificate(_cert_file(tmp_path / "kem.pem"), tmp_path / "kem.key", server, "challenge")


def test_cli_refusals(server, tmp_path):
    # A self-signed signer at the statement profile: FAILURE, and the new key is removed.
    proc = pqscep("enroll", server.url("/scep/statement"), "--challenge", "secret", "--cn", "cli-refused",
                  "--key-type", "ml-kem-768", "--out", tmp_path / "kem.pem", check=False)
    assert proc.returncode == 1 and "badRequest" in proc.stderr.decode()
    assert not (tmp_path / "kem.key").exists()
    # A CA that does not list KEMPoP.
    proc = pqscep("enroll", server.url("/scep/classic"), "--challenge", "secret", "--cn", "cli-classic",
                  "--key-type", "ml-kem-768", "--out", tmp_path / "kem.pem", check=False)
    assert proc.returncode != 0 and "KEMPoP" in proc.stderr.decode(), proc.stderr.decode()
    # --signer-cert is for ML-KEM keys only.
    (tmp_path / "x.pem").write_bytes(b"")
    proc = pqscep("enroll", server.url("/scep/challenge"), "--cn", "x", "--key-type", "ml-dsa-65", "--out",
                  tmp_path / "x.pem", "--signer-cert", tmp_path / "x.pem", "--signer-key", tmp_path / "x.pem",
                  check=False)
    assert proc.returncode != 0


@pytest.mark.parametrize("profile, extra", [("challenge", ()), ("encrypted", ()), ("statement", ("--identity",))])
def test_bench_ml_kem(server, profile, extra):
    import json

    proc = pqscep("bench", server.url(f"/scep/{profile}"), "--count", "4", "--concurrency", "2", "--key-type",
                  "ml-kem-768", *extra, "--json", env={"PQSCEP_CHALLENGE": "secret"}, check=False)
    summary = json.loads(proc.stdout)
    assert summary["errors"] == 0 and summary["count"] == 4, proc.stderr.decode()[-2000:]


def test_bench_statement_mode_needs_identity(server):
    """Without --identity the transient signer is not a certificate of this CA: every
    enrollment of the statement mode is refused, and bench says so (exit 1)."""
    import json

    proc = pqscep("bench", server.url("/scep/statement"), "--count", "2", "--concurrency", "1", "--key-type",
                  "ml-kem-768", "--json", env={"PQSCEP_CHALLENGE": "secret"}, check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["errors"] == 2


def test_approval_then_challenge(ca):
    """Manual approval and the challenge: the operator approves first, the proof comes after;
    a proof sent while approval is pending issues nothing."""
    client = kem_client(ca, "approvalchal")
    device = KemDevice("approval-then-challenge")
    first = client.pkcs_req(device).result
    assert first.status == PkiStatus.PENDING and oids.SCEP_KEM_POP_CHALLENGE not in first.attributes
    early = client.poll(device, b"\x30\x00").result
    assert early.status == PkiStatus.PENDING and oids.SCEP_KEM_POP_CHALLENGE not in early.attributes
    pqscep("admin", "pending", "approve", "--data", ca.data_dir, "--profile", "approvalchal",
           device.transaction_id)
    challenge = challenge_of(client.poll(device).result)
    bad = bytearray(proof_for(device, challenge))
    bad[-1] ^= 1
    assert failure(client.poll(device, bytes(bad))) == (PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK)
    challenge = challenge_of(client.poll(device).result)  # approved still: a fresh challenge
    done = client.poll(device, proof_for(device, challenge))
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text
    check_kem_certificate(done.result.certificates[0], device, client.bundle.ca)


def test_operator_rejects_while_the_proof_is_awaited(ca):
    """awaiting_approval -> approved -> awaiting_kem_proof, then the operator rejects: the
    proof that follows gets the operator's reason, and a second approval is refused."""
    client = kem_client(ca, "approvalchal")
    device = KemDevice("approved-then-rejected")
    assert client.pkcs_req(device).result.status == PkiStatus.PENDING
    admin = ("--data", ca.data_dir, "--profile", "approvalchal", device.transaction_id)
    pqscep("admin", "pending", "approve", *admin)
    again = pqscep("admin", "pending", "approve", *admin, check=False)
    assert again.returncode != 0 and "no pending request" in again.stderr.decode()
    challenge = challenge_of(client.poll(device).result)
    pqscep("admin", "pending", "reject", *admin, "--reason", "device reported lost")
    refused = client.poll(device, proof_for(device, challenge)).result
    assert refused.status == PkiStatus.FAILURE and "device reported lost" in refused.fail_info_text
    assert "device reported lost" in client.pkcs_req(device).result.fail_info_text  # and stays so


@pytest.mark.parametrize("profile", ["approval", "approvalchal"])
def test_cli_pending_then_poll(server, tmp_path, profile):
    """A PENDING ML-KEM request (manual approval) is resumable from its state file: the transient
    ML-DSA signer's key is kept next to the new key, the reply opens with the KEM key."""
    state = tmp_path / "state.json"
    proc = pqscep("enroll", server.url(f"/scep/{profile}"), "--challenge", "secret", "--cn", f"cli-pending-{profile}",
                  "--key-type", "ml-kem-768", "--out", tmp_path / "kem.pem", "--state", state, check=False)
    assert proc.returncode == 3, proc.stderr.decode()
    assert (tmp_path / "kem.signer.key").exists()
    import json

    transaction_id = json.loads(state.read_text())["transaction_id"]
    pqscep("admin", "pending", "approve", "--data", server.data_dir, "--profile", profile, transaction_id)
    pqscep("poll", "--state", state)
    _check_cli_certificate(_cert_file(tmp_path / "kem.pem"), tmp_path / "kem.key", server, profile)


# --------------------------------------------------------------------------------------------
# two server processes, one PostgreSQL
# --------------------------------------------------------------------------------------------


def test_challenge_answered_at_another_server_process(ca, server):
    """The challenge lives in the database: two servers on one PostgreSQL (or on one SQLite file
    on one host) check each other's challenges. One is in this process, the other `pqscep serve`."""
    device = KemDevice("two-processes")
    challenge = challenge_of(kem_client(ca, "challenge").pkcs_req(device).result)
    done = kem_client(server, "challenge").poll(device, proof_for(device, challenge))
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text


# --------------------------------------------------------------------------------------------
# OpenSSL 3.6
# --------------------------------------------------------------------------------------------


def _openssl() -> str:
    from peers import openssl_pq

    return openssl_pq()


@pytest.mark.parametrize("mode", ["challenge", "encrypted", "statement"])
@pytest.mark.parametrize("kem_type", ["ml-kem-768", "ml-kem-1024"])
def test_openssl_verifies_and_decrypts(ca, tmp_path, mode, kem_type):
    openssl = _openssl()
    client = kem_client(ca, mode, cipher="aes256-gcm" if mode == "challenge" else "aes256-cbc")
    if mode == "statement":  # signed by a device certificate of this CA
        signer_key, signer_cert = identity_certificate(ca, "statement", f"openssl-id-{kem_type}")
        device = KemDevice(f"openssl-{mode}-{kem_type}", kem_type, signer_key=signer_key, signer_cert=signer_cert)
    else:
        device = KemDevice(f"openssl-{mode}-{kem_type}", kem_type)
    done = enroll_with_challenge(client, device) if mode == "challenge" else client.pkcs_req(device)
    assert done.result.status == PkiStatus.SUCCESS
    (cert,) = done.result.certificates
    (tmp_path / "ca.pem").write_bytes(client.bundle.ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def run(*args):
        out = subprocess.run([openssl, *map(str, args)], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode(errors="replace")
        return out

    run("verify", "-x509_strict", "-CAfile", tmp_path / "ca.pem", tmp_path / "cert.pem")
    (tmp_path / "env.der").write_bytes(signed.parse_signed_data(done.reply).content)
    (tmp_path / "kem.pem").write_bytes(device.kem_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    run("cms", "-decrypt", "-inform", "DER", "-in", tmp_path / "env.der", "-inkey", tmp_path / "kem.pem",
        "-binary", "-out", tmp_path / "certs.der")
    run("pkcs7", "-inform", "DER", "-in", tmp_path / "certs.der", "-print_certs", "-out", tmp_path / "issued.pem")
    assert x509.load_pem_x509_certificate((tmp_path / "issued.pem").read_bytes()) == cert


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


def _load(tmp_path, profile_lines: str):
    from pqscep.service.config import load_config

    (tmp_path / "pqscep.toml").write_text(
        f'[server]\ndefault_profile = "p"\nca_passphrase_file = ""\n'
        f'[profiles.p]\nca_key_type = "ml-dsa-65"\n{profile_lines}\n')
    return load_config(tmp_path).profiles["p"]


def test_config_kem_pop(tmp_path):
    import datetime as dt

    from pqscep.ca.profile import KemPopMode
    from pqscep.service.config import ConfigError
    from pqscep.service.setup import DEFAULT_CONFIG

    assert 'kem_pop = "challenge"' in DEFAULT_CONFIG.split("[profiles.pq]")[1]
    plain = _load(tmp_path, "")
    assert plain.kem_pop is None and "ml-kem" not in plain.issuance.allowed_key_families
    chosen = _load(tmp_path, 'kem_pop = "statement"\nkem_pop_ttl_minutes = 2')
    assert chosen.kem_pop == "statement" and "ml-kem" in chosen.issuance.allowed_key_families
    assert chosen.kem_pop is KemPopMode.STATEMENT
    assert chosen.kem_pop_ttl == dt.timedelta(minutes=2)
    by_family = _load(tmp_path, 'key_types = ["ml-dsa", "ml-kem"]')
    assert by_family.kem_pop == "challenge" and by_family.kem_pop_ttl == dt.timedelta(minutes=10)
    assert by_family.kem_pop is KemPopMode.CHALLENGE
    with pytest.raises(ConfigError, match=r"^profile p: kem_pop 'trust-me' must be one of challenge, "
                                          r"encrypted-cert, statement$"):
        _load(tmp_path, 'kem_pop = "trust-me"')
    for bad in ('kem_pop = "trust-me"', 'kem_pop = "challenge"\nkem_pop_ttl_minutes = 0'):
        with pytest.raises(ConfigError):
            _load(tmp_path, bad)
    assert _load(tmp_path, 'kem_pop = "challenge"\nmanual_approval = true').manual_approval
