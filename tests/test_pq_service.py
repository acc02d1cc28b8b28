"""Post-quantum SCEP over real HTTP: `pqscep init` makes a classic and a
post-quantum profile side by side; ML-DSA, RSA and ECDSA requesters enroll at the ML-DSA-65 CA
with ML-KEM-768 envelopes both ways, with and without AES-GCM; the reply rules of draft
Section 6.1; classic clients keep working at the classic profile of the same server."""

from __future__ import annotations

import pytest
from cryptography import x509
from scep_client import Device, Requester
from server_proc import ServerProcess, init_data, pqscep

from pqscep.cms import signed
from pqscep.crypto.keys import KeyFamily, key_family
from pqscep.protocol.messages import FailInfo, PkiStatus


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = init_data(tmp_path_factory.mktemp("pq") / "data", challenge="secret")  # the default config
    with ServerProcess(data) as proc:
        yield proc


def test_init_makes_classic_and_pq_profiles(server):
    import httpx

    classic = httpx.get(server.url("/scep"), params={"operation": "GetCACaps"}).text.split()
    pq = httpx.get(server.url("/scep/pq"), params={"operation": "GetCACaps"}).text.split()
    assert not {"ML-DSA", "ML-KEM", "AES-GCM"} & set(classic)
    assert {"ML-DSA", "ML-KEM", "AES-GCM"} <= set(pq)
    # A classic client at the classic profile gets one RSA certificate, nothing it cannot parse.
    reply = httpx.get(server.url("/scep"), params={"operation": "GetCACert"})
    assert reply.headers["content-type"] == "application/x-x509-ca-cert"
    assert key_family(x509.load_der_x509_certificate(reply.content).public_key()) == "rsa"
    # The post-quantum bundle: the ML-DSA CA and the ML-KEM recipient certificate it issued.
    reply = httpx.get(server.url("/scep/pq"), params={"operation": "GetCACert"})
    assert reply.headers["content-type"] == "application/x-x509-ca-ra-cert"
    certs = {key_family(c.public_key()): c for c in signed.parse_signed_data(reply.content).certificates}
    assert set(certs) == {"ml-dsa", "ml-kem"}
    recipient = certs["ml-kem"]
    recipient.verify_directly_issued_by(certs["ml-dsa"])
    usage = recipient.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_encipherment and not usage.digital_signature and not usage.key_cert_sign


@pytest.mark.parametrize("key_type", ["ml-dsa-44", "ml-dsa-65", "ml-dsa-87", "rsa-2048", "ec-p256"])
@pytest.mark.parametrize("cipher", ["aes256-gcm", "aes256-cbc"])
def test_pq_enrollment(server, key_type, cipher):
    scep = Requester(server.url("/scep/pq"), cipher=cipher, digest="sha512")
    device = Device(f"pq-{key_type}-{cipher}", key_type=key_type)
    result = scep.enroll(device, "secret")
    assert result.status == PkiStatus.SUCCESS, result.fail_info_text
    (cert,) = result.certificates
    cert.verify_directly_issued_by(scep.bundle.ca)
    assert cert.signature_algorithm_oid.dotted_string == "2.16.840.1.101.3.4.3.18"  # ML-DSA-65
    assert key_family(cert.public_key()) == key_family(device.key)


def test_pq_enrollment_with_the_cli(server, tmp_path):
    """The `pqscep enroll` client: ML-DSA-65 key, ML-KEM-768 both ways, AES-GCM (CA says so)."""
    dump = tmp_path / "dump"
    pqscep("enroll", server.url("/scep/pq"), "--challenge", "secret", "--cn", "cli-pq", "--key-type", "ml-dsa-65",
           "--out", tmp_path / "cert.pem", "--dump", dump)
    cert = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    assert key_family(cert.public_key()) == "ml-dsa"
    assert key_family(cert.public_key()) is KeyFamily.ML_DSA
    request = signed.parse_signed_data((dump / "03-PKCSReq.der").read_bytes())
    reply = signed.parse_signed_data((dump / "04-CertRep.der").read_bytes())
    assert request.signer_infos[0].signature_algorithm.oid.dotted_string == "2.16.840.1.101.3.4.3.18"
    assert reply.signer_infos[0].signature_algorithm.oid.dotted_string == "2.16.840.1.101.3.4.3.18"
    for message in (request, reply):  # AuthEnvelopedData holding one KEMRecipientInfo
        from pqscep.asn1 import cms, oids

        envelope = cms.decode(cms.ContentInfo, message.content)
        assert envelope.content_type == oids.AUTH_ENVELOPED_DATA
        body = cms.decode_der(cms.AuthEnvelopedData, cms.tlv_bytes(envelope.content))
        (info,) = body.recipient_infos.as_list()
        assert cms.tlv_bytes(info)[0] == cms.ORI_TAG
    # The dumped request opens with the CA's ML-KEM key via `pqscep inspect --key`.
    from cryptography.hazmat.primitives import serialization

    passphrase = (server.data_dir / "secrets" / "ca-passphrase").read_bytes().strip()
    kem_key = serialization.load_pem_private_key(
        (server.data_dir / "profiles" / "pq" / "kem-recipient.key").read_bytes(), password=passphrase)
    (tmp_path / "kem.key").write_bytes(kem_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pqscep("inspect", dump / "03-PKCSReq.der", "--key", tmp_path / "kem.key", "--out", tmp_path / "csr.der")
    assert x509.load_der_x509_csr((tmp_path / "csr.der").read_bytes()).subject.rfc4514_string() == "CN=cli-pq"


def test_no_way_to_encrypt_the_reply(server):
    """An ECDSA signer without a responseKey leaves the CA no key to encrypt to."""
    scep = Requester(server.url("/scep/pq"), response_key=False)
    result = scep.enroll(Device("no-reply-key", key_type="ec-p256"), "secret")
    assert (result.status, result.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    assert "responseKey" in result.fail_info_text


def test_rsa_requester_without_response_key_gets_ktri(server):
    scep = Requester(server.url("/scep/pq"), response_key=False)
    assert scep.enroll(Device("rsa-ktri"), "secret").status == PkiStatus.SUCCESS


def test_classic_profile_refuses_aes_gcm(server):
    scep = Requester(server.url("/scep"), cipher="aes256-gcm")
    result = scep.enroll(Device("gcm-at-classic"), "secret")
    assert (result.status, result.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_ALG)


def test_classic_client_still_enrolls_at_the_same_server(server):
    scep = Requester(server.url("/scep"))
    result = scep.enroll(Device("classic-next-to-pq"), "secret")
    assert result.status == PkiStatus.SUCCESS
    assert key_family(scep.bundle.ca.public_key()) == "rsa"
    result.certificates[0].verify_directly_issued_by(scep.bundle.ca)


@pytest.fixture(scope="module")
def pwri_server(tmp_path_factory):
    """The default config with `password_recipient = true` on the classic profile."""
    data = init_data(tmp_path_factory.mktemp("pwri") / "data", challenge="secret")
    config = data / "pqscep.toml"
    config.write_text(config.read_text().replace("password_recipient = false", "password_recipient = true", 1))
    with ServerProcess(data) as proc:
        yield proc


def test_password_recipient_off_by_default(server):
    """The default config does not open PasswordRecipientInfos: such a request fails like any
    envelope that does not decrypt."""
    scep = Requester(server.url("/scep"), response_key=False, password="secret")
    refused = scep.enroll(Device("pwri-off", key_type="ec-p256"), "secret")
    assert (refused.status, refused.fail_info, refused.fail_info_text) == (
        PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope")


def test_password_recipient_both_ways(pwri_server):
    """RFC 8894 section 3.1: a requester whose key cannot decrypt, at a CA it cannot reach with
    ML-KEM, encrypts to the challenge password; the CA answers with the same password."""
    server = pwri_server
    scep = Requester(server.url("/scep"), response_key=False, password="secret")
    result = scep.enroll(Device("pwri-device", key_type="ec-p256"), "secret")
    assert result.status == PkiStatus.SUCCESS, result.fail_info_text
    result.certificates[0].verify_directly_issued_by(scep.bundle.ca)
    wrong = Requester(server.url("/scep"), response_key=False, password="not-the-challenge")
    refused = wrong.enroll(Device("pwri-wrong", key_type="ec-p256"), "secret")
    assert (refused.status, refused.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK)
