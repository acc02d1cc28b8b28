"""Post-quantum CMS against OpenSSL 3.6, an independent implementation: OpenSSL reads what
pqscep writes and pqscep reads what OpenSSL writes.

1. The SCEP messages of a real `pqscep serve` + `pqscep enroll`: OpenSSL verifies the ML-DSA
   SignedData of a PKCSReq and of its CertRep, opens the request's pkcsPKIEnvelope (KEMRecipientInfo
   with the CA's ML-KEM-768 recipient key; AuthEnvelopedData/AES-GCM and EnvelopedData/AES-CBC)
   and the reply's (with the requester's ML-KEM responseKey, or RSA key transport).
2. pqscep opens what `openssl cms -encrypt` makes for an ML-KEM recipient (both rid forms, every
   HKDF and AES key wrap OpenSSL offers, a ukm), OpenSSL opens what pqscep makes likewise, and
   pqscep verifies `openssl cms -sign` SignedData made with ML-DSA-44/65/87 keys.
3. `openssl verify` accepts what the post-quantum CA issues (ML-DSA, RSA, EC devices and its own
   ML-KEM recipient certificate).
4. PasswordRecipientInfo both ways.

The OpenSSL binary comes from PQSCEP_OPENSSL (scripts/test.sh sets it with
../shared/tools/openssl-pq.sh); unset, the module fails under CI=true and is skipped elsewhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from peers import OpenSSL, openssl_pq_tool
from scep_client import Device
from server_proc import ServerProcess, init_data, pqscep

from pqscep.asn1 import cms, oids
from pqscep.cms import enveloped, signed
from pqscep.cms.kem import KemOriginator, KemRecipient, parse_kem_recipient_info
from pqscep.cms.password import PasswordOriginator, PasswordRecipient
from pqscep.crypto import pkcs8
from pqscep.crypto.keys import generate_key, key_family
from pqscep.crypto.registry import CIPHERS, DIGESTS
from pqscep.protocol import client as scep
from pqscep.protocol.messages import MessageType, PkiStatus, response_key_attribute

EnvelopeError = enveloped.EnvelopeError

ML_DSA_OIDS = {"ML-DSA-44": oids.ML_DSA_44, "ML-DSA-65": oids.ML_DSA_65, "ML-DSA-87": oids.ML_DSA_87}
OPENSSL_CIPHER = {"aes256-cbc": "-aes-256-cbc", "aes128-cbc": "-aes-128-cbc", "aes256-gcm": "-aes-256-gcm",
                  "aes128-gcm": "-aes-128-gcm"}


# --------------------------------------------------------------------------------------------
# OpenSSL
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openssl() -> OpenSSL:
    return openssl_pq_tool()


@pytest.fixture(scope="module")
def server(openssl, tmp_path_factory):
    data = init_data(tmp_path_factory.mktemp("ossl") / "data", challenge="secret")
    with ServerProcess(data) as proc:
        yield proc


@pytest.fixture(scope="module")
def pq(server, openssl, tmp_path_factory):
    """The PQ profile's files, and its ML-KEM recipient key twice: decrypted to an unencrypted
    PKCS#8 PEM *by OpenSSL* (so OpenSSL reads the project's encrypted PKCS#8), and loaded here."""
    folder = server.data_dir / "profiles" / "pq"
    passphrase_file = server.data_dir / "secrets" / "ca-passphrase"
    work = tmp_path_factory.mktemp("pq-keys")
    kem_pem = work / "kem-recipient-plain.pem"
    openssl.run("pkey", "-in", folder / "kem-recipient.key", "-passin", f"file:{passphrase_file}", "-out", kem_pem)
    assert b"-----BEGIN PRIVATE KEY-----" in kem_pem.read_bytes()

    class Pq:
        ca_pem = folder / "ca.pem"
        recipient_pem = folder / "kem-recipient.pem"
        recipient_key_pem = kem_pem
        recipient_cert = x509.load_pem_x509_certificate(recipient_pem.read_bytes())
        recipient_key = pkcs8.load_any_private_key((folder / "kem-recipient.key").read_bytes(),
                                                   passphrase_file.read_bytes().strip())
        classic_ca_pem = server.data_dir / "profiles" / "default" / "ca.pem"
        url = server.url("/scep/pq")

    assert key_family(Pq.recipient_key) == "ml-kem"
    return Pq


def _kem_infos(envelope_der: bytes):
    """(outer content type, [KemRecipientInfoView...]) of an (Auth)EnvelopedData."""
    info = cms.decode(cms.ContentInfo, envelope_der)
    kind = cms.AuthEnvelopedData if info.content_type == oids.AUTH_ENVELOPED_DATA else cms.EnvelopedData
    body = cms.decode_der(kind, cms.tlv_bytes(info.content))
    views = [parse_kem_recipient_info(cms.tlv_bytes(ri)) for ri in body.recipient_infos.as_list()
             if cms.tlv_bytes(ri)[0] == cms.ORI_TAG]
    return info.content_type, views


def _req_subject(openssl: OpenSSL, csr_der: Path) -> str:
    """`openssl req -verify` on a DER PKCS#10; its subject (RFC 2253) when the signature is good."""
    proc = openssl.run("req", "-inform", "DER", "-in", csr_der, "-verify", "-noout", "-subject",
                       "-nameopt", "RFC2253")
    lines = proc.stdout.decode().splitlines()
    assert "Certificate request self-signature verify OK" in lines, lines
    (subject,) = [line.removeprefix("subject=") for line in lines if line.startswith("subject=")]
    return subject


# --------------------------------------------------------------------------------------------
# 1. SCEP messages on the wire (pqscep enroll --dump) checked by OpenSSL
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cipher", ["auto", "aes256-cbc"])
def test_openssl_reads_the_cli_pkcsreq_and_certrep(server, pq, openssl, tmp_path, cipher):
    """`pqscep enroll --key-type ml-dsa-65`: OpenSSL verifies both ML-DSA SignedDatas, opens the
    request envelope with the CA's ML-KEM-768 key and gets the CSR that was enrolled."""
    cn = f"ossl-cli-{cipher}"
    dump = tmp_path / "dump"
    args = ["--cipher", cipher] if cipher != "auto" else []
    pqscep("enroll", pq.url, "--challenge", "secret", "--cn", cn, "--key-type", "ml-dsa-65",
           "--out", tmp_path / "cert.pem", "--dump", dump, *args)
    assert sorted(p.name for p in dump.iterdir()) == ["01-GetCACaps.txt", "02-GetCACert.der", "03-PKCSReq.der",
                                                      "04-CertRep.der"]
    issued = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())

    # The request's SignedData: signature only, then chained to its own self-signed signer.
    request = dump / "03-PKCSReq.der"
    openssl.run("cms", "-verify", "-inform", "DER", "-in", request, "-noverify", "-out", tmp_path / "env.der")
    openssl.run("cms", "-verify", "-inform", "DER", "-in", request, "-CAfile", pq.ca_pem, "-noverify",
                "-signer", tmp_path / "signer.pem", "-out", os.devnull)
    signer = x509.load_pem_x509_certificate((tmp_path / "signer.pem").read_bytes())
    assert signer.subject == signer.issuer and signer.public_key() == issued.public_key()
    assert signer.signature_algorithm_oid == oids.ML_DSA_65
    openssl.run("cms", "-verify", "-inform", "DER", "-in", request, "-CAfile", tmp_path / "signer.pem",
                "-out", tmp_path / "env2.der")
    assert (tmp_path / "env2.der").read_bytes() == (tmp_path / "env.der").read_bytes()
    # ... and not to a CA that did not sign it.
    openssl.fails("cms", "-verify", "-inform", "DER", "-in", request, "-CAfile", pq.ca_pem, "-out", os.devnull)

    # The pkcsPKIEnvelope: AES-GCM (AuthEnvelopedData) as the CA lists AES-GCM, or the CBC asked for.
    envelope = (tmp_path / "env.der").read_bytes()
    content_type, (view,) = _kem_infos(envelope)
    assert content_type == (oids.ENVELOPED_DATA if cipher == "aes256-cbc" else oids.AUTH_ENVELOPED_DATA)
    assert view.kem.oid == oids.ML_KEM_768
    openssl.run("cms", "-decrypt", "-inform", "DER", "-in", tmp_path / "env.der", "-inkey", pq.recipient_key_pem,
                "-recip", pq.recipient_pem, "-binary", "-out", tmp_path / "csr.der")
    assert _req_subject(openssl, tmp_path / "csr.der") == f"CN={cn}"
    csr = x509.load_der_x509_csr((tmp_path / "csr.der").read_bytes())
    assert csr.public_key() == issued.public_key()

    # The CertRep: ML-DSA-65 SignedData by the PQ CA; OpenSSL chains it to ca.pem, not to the RSA CA.
    reply = dump / "04-CertRep.der"
    openssl.run("cms", "-verify", "-inform", "DER", "-in", reply, "-CAfile", pq.ca_pem,
                "-signer", tmp_path / "rep-signer.pem", "-out", tmp_path / "rep-env.der")
    rep_signer = x509.load_pem_x509_certificate((tmp_path / "rep-signer.pem").read_bytes())
    assert rep_signer == x509.load_pem_x509_certificate(pq.ca_pem.read_bytes())
    openssl.fails("cms", "-verify", "-inform", "DER", "-in", reply, "-CAfile", pq.classic_ca_pem, "-out", os.devnull)
    # Its envelope is addressed to the CLI's ephemeral responseKey (by SKI), which the CLI does
    # not keep: test_openssl_opens_the_certrep_envelope opens one with a key the test holds.
    _, (rep_view,) = _kem_infos((tmp_path / "rep-env.der").read_bytes())
    assert rep_view.rid_ski is not None and rep_view.kem.oid == oids.ML_KEM_768


def _pki_operation(pq, device: Device, *, cipher: str, response_key) -> tuple[bytes, bytes, bytes]:
    """A PKCSReq built here (so the test holds every key), POSTed: (request, reply, senderNonce)."""
    bundle = scep.parse_ca_certs(*_get_ca_cert(pq.url))
    csr = scep.build_csr(device.key, x509.Name.from_rfc4514_string(f"CN={device.cn}"), challenge="secret")
    nonce = os.urandom(16)
    body = scep.build_pki_message(
        message_type=MessageType.PKCS_REQ,
        transaction_id=device.transaction_id,
        sender_nonce=nonce,
        content=csr.public_bytes(serialization.Encoding.DER),
        originator=KemOriginator(None, certificate=bundle.kem_recipient_cert),
        cipher=CIPHERS.by_name(cipher),
        signer_key=device.key,
        signer_cert=device.cert,
        digest=DIGESTS.by_name("sha512"),
        random_bytes=os.urandom,
        extra_attributes=[response_key_attribute(response_key.public_key())] if response_key is not None else [],
    )
    reply = httpx.post(pq.url, params={"operation": "PKIOperation"}, content=body,
                       headers={"Content-Type": "application/x-pki-message"}, timeout=30)
    assert reply.status_code == 200, reply.text[:300]
    return body, reply.content, nonce


def _get_ca_cert(url: str) -> tuple[str, bytes]:
    reply = httpx.get(url, params={"operation": "GetCACert"}, timeout=30)
    reply.raise_for_status()
    return reply.headers["content-type"], reply.content


@pytest.mark.parametrize(
    "key_type, cipher, reply_key",
    [
        ("ml-dsa-65", "aes256-gcm", "ml-kem-768"),  # draft Section 6.1, rule 2: KEMRecipientInfo to responseKey
        ("ec-p256", "aes256-cbc", "ml-kem-1024"),
        ("rsa-2048", "aes256-cbc", None),  # rule 3: KeyTransRecipientInfo to the RSA signer
    ],
)
def test_openssl_opens_the_certrep_envelope(pq, openssl, tmp_path, key_type, cipher, reply_key):
    device = Device(f"ossl-rep-{key_type}", key_type=key_type)
    response_key = generate_key(reply_key) if reply_key else None
    _, reply, nonce = _pki_operation(pq, device, cipher=cipher, response_key=response_key)
    (tmp_path / "rep.der").write_bytes(reply)
    openssl.run("cms", "-verify", "-inform", "DER", "-in", tmp_path / "rep.der", "-CAfile", pq.ca_pem,
                "-out", tmp_path / "env.der")
    if response_key is not None:
        key_pem = response_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
        recip = []  # the rid is the responseKey's SKI: no certificate; OpenSSL tries the key
    else:
        key_pem = device.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
        (tmp_path / "device.pem").write_bytes(device.cert.public_bytes(serialization.Encoding.PEM))
        recip = ["-recip", tmp_path / "device.pem"]
    (tmp_path / "reply-key.pem").write_bytes(key_pem)
    openssl.run("cms", "-decrypt", "-inform", "DER", "-in", tmp_path / "env.der", "-inkey", tmp_path / "reply-key.pem",
                *recip, "-binary", "-out", tmp_path / "certs.der")
    # The inner certs-only SignedData holds the issued certificate, which OpenSSL chains to the CA.
    openssl.run("pkcs7", "-inform", "DER", "-in", tmp_path / "certs.der", "-print_certs", "-out",
                tmp_path / "issued.pem")
    openssl.run("verify", "-x509_strict", "-CAfile", pq.ca_pem, tmp_path / "issued.pem")
    issued = x509.load_pem_x509_certificate((tmp_path / "issued.pem").read_bytes())
    assert issued.subject.rfc4514_string() == f"CN={device.cn}"
    assert issued.public_key() == device.key.public_key()
    # The project reads the same reply the same way.
    recipients = [enveloped.KeyTransRecipient(device.cert, device.key)]
    if response_key is not None:
        recipients.append(KemRecipient(response_key, subject_key_identifier=x509.SubjectKeyIdentifier
                                       .from_public_key(response_key.public_key()).digest))
    result = scep.parse_cert_rep(reply, bundle=scep.parse_ca_certs(*_get_ca_cert(pq.url)),
                                 transaction_id=device.transaction_id, sender_nonce=nonce, recipients=recipients)
    assert result.status == PkiStatus.SUCCESS and result.certificates == [issued]
    # A key that is not the addressee does not open it.
    other = generate_key(reply_key or "rsa-2048")
    (tmp_path / "other.pem").write_bytes(other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    if response_key is not None:  # (RSA PKCS#1 v1.5 implicit rejection makes the wrong RSA key fail later)
        openssl.fails("cms", "-decrypt", "-inform", "DER", "-in", tmp_path / "env.der", "-inkey",
                      tmp_path / "other.pem", "-out", os.devnull)


# --------------------------------------------------------------------------------------------
# 2. KEMRecipientInfo both ways, ML-DSA SignedData from OpenSSL
# --------------------------------------------------------------------------------------------

# (name, extra `openssl cms -encrypt` options, content cipher, rid form, KDF OID, wrap OID, ukm)
OPENSSL_KEM_CASES = [
    ("cbc", [], "aes256-cbc", "issuer", oids.HKDF_SHA256, oids.AES256_WRAP, None),
    ("gcm", [], "aes256-gcm", "issuer", oids.HKDF_SHA256, oids.AES256_WRAP, None),
    # Without -wrap OpenSSL picks the AES key wrap of the content cipher's key size.
    ("aes128-gcm", [], "aes128-gcm", "issuer", oids.HKDF_SHA256, oids.AES128_WRAP, None),
    ("keyid-cbc", ["-keyid"], "aes256-cbc", "ski", oids.HKDF_SHA256, oids.AES256_WRAP, None),
    ("keyid-gcm", ["-keyid"], "aes256-gcm", "ski", oids.HKDF_SHA256, oids.AES256_WRAP, None),
    ("hkdf-sha384", ["-recip_kdf", "id-alg-hkdf-with-sha384"], "aes256-cbc", "issuer", oids.HKDF_SHA384,
     oids.AES256_WRAP, None),
    ("hkdf-sha512", ["-recip_kdf", "id-alg-hkdf-with-sha512"], "aes256-gcm", "issuer", oids.HKDF_SHA512,
     oids.AES256_WRAP, None),
    ("ukm", ["-recip_ukm", "00112233445566778899aabbccddeeff"], "aes256-gcm", "issuer", oids.HKDF_SHA256,
     oids.AES256_WRAP, bytes.fromhex("00112233445566778899aabbccddeeff")),
    ("aes128-wrap", ["-aes128-wrap"], "aes256-cbc", "issuer", oids.HKDF_SHA256, oids.AES128_WRAP, None),
    ("aes192-wrap", ["-wrap", "aes192-wrap"], "aes128-cbc", "issuer", oids.HKDF_SHA256, oids.AES192_WRAP, None),
    # -stream: indefinite-length BER with a chunked encryptedContent.
    ("stream-cbc", ["-stream"], "aes256-cbc", "issuer", oids.HKDF_SHA256, oids.AES256_WRAP, None),
    ("stream-gcm", ["-stream", "-keyid"], "aes256-gcm", "ski", oids.HKDF_SHA256, oids.AES256_WRAP, None),
    ("everything", ["-keyid", "-recip_kdf", "id-alg-hkdf-with-sha512", "-recip_ukm", "c0ffee", "-aes128-wrap"],
     "aes256-gcm", "ski", oids.HKDF_SHA512, oids.AES128_WRAP, bytes.fromhex("c0ffee")),
]


def _encrypt_options(recip: Path, extra: list[str]) -> list:
    """`-keyid` and the wrap are global options; -recip_kdf/-recip_ukm must follow their -recip."""
    global_opts, recip_opts, i = [], [], 0
    while i < len(extra):
        if extra[i] in ("-recip_kdf", "-recip_ukm"):
            recip_opts += extra[i:i + 2]
            i += 2
        elif extra[i] == "-wrap":
            global_opts += extra[i:i + 2]
            i += 2
        else:
            global_opts.append(extra[i])
            i += 1
    return [*global_opts, "-recip", recip, *recip_opts]


@pytest.mark.parametrize("name, extra, cipher, rid, kdf, wrap, ukm", OPENSSL_KEM_CASES,
                         ids=[c[0] for c in OPENSSL_KEM_CASES])
def test_project_opens_openssl_kem_envelopes(pq, openssl, tmp_path, name, extra, cipher, rid, kdf, wrap, ukm):
    content = os.urandom(777)
    (tmp_path / "msg").write_bytes(content)
    openssl.run("cms", "-encrypt", "-binary", "-in", tmp_path / "msg", "-outform", "DER", "-out", tmp_path / "env.der",
                OPENSSL_CIPHER[cipher], *_encrypt_options(pq.recipient_pem, extra))
    der = (tmp_path / "env.der").read_bytes()
    # OpenSSL did what was asked (an unknown option value could silently fall back to defaults).
    content_type, (view,) = _kem_infos(der)
    assert content_type == (oids.AUTH_ENVELOPED_DATA if "gcm" in cipher else oids.ENVELOPED_DATA)
    assert (view.kem.oid, view.kdf.oid, view.wrap.oid, view.ukm) == (oids.ML_KEM_768, kdf, wrap, ukm)
    if rid == "ski":
        assert view.rid_ski == signed.subject_key_identifier(pq.recipient_cert)
    else:
        assert view.rid_serial == pq.recipient_cert.serial_number

    opened = enveloped.open_envelope(der, [KemRecipient(pq.recipient_key, certificate=pq.recipient_cert)])
    assert (opened.content, opened.cipher.name, opened.recipient_kind) == (content, cipher, "kemri")
    assert opened.authenticated == ("gcm" in cipher)
    # A different ML-KEM-768 key that tries every KEMRecipientInfo fails to decrypt, not "opens".
    with pytest.raises(EnvelopeError) as info:
        enveloped.open_envelope(der, [KemRecipient(generate_key("ml-kem-768"))])
    assert info.value.decryption


# (name, KemOriginator options, content cipher, rid form)
PROJECT_KEM_CASES = [
    ("default-gcm", {}, "aes256-gcm", "issuer"),
    ("default-cbc", {}, "aes256-cbc", "issuer"),
    ("ski", {}, "aes256-gcm", "ski"),
    ("hkdf-sha384", {"kdf": "hkdf-sha384"}, "aes256-cbc", "issuer"),
    ("hkdf-sha512-aes128-wrap-ukm", {"kdf": "hkdf-sha512", "wrap": "aes128-wrap", "ukm": b"pqscep ukm"},
     "aes256-gcm", "ski"),
    ("aes192-wrap", {"wrap": "aes192-wrap"}, "aes128-cbc", "issuer"),
]


@pytest.mark.parametrize("name, options, cipher, rid", PROJECT_KEM_CASES, ids=[c[0] for c in PROJECT_KEM_CASES])
def test_openssl_opens_project_kem_envelopes(pq, openssl, tmp_path, name, options, cipher, rid):
    content = os.urandom(1000)
    if rid == "ski":
        originator = KemOriginator(pq.recipient_cert.public_key(),
                                   subject_key_identifier=signed.subject_key_identifier(pq.recipient_cert), **options)
    else:
        originator = KemOriginator(None, certificate=pq.recipient_cert, **options)
    (tmp_path / "env.der").write_bytes(
        enveloped.seal_envelope(content, originator, CIPHERS.by_name(cipher), os.urandom)
    )
    proc = openssl.run("cms", "-decrypt", "-binary", "-inform", "DER", "-in", tmp_path / "env.der",
                       "-inkey", pq.recipient_key_pem, "-recip", pq.recipient_pem)
    assert proc.stdout == content


def test_ml_kem_1024_recipient_made_by_openssl(openssl, tmp_path):
    """An ML-KEM-1024 key, its certificate and the ML-DSA-65 issuer all made by OpenSSL (its PKCS#8
    is the seed+expanded form, encrypted): pqscep loads the key and opens OpenSSL's envelope,
    and OpenSSL opens pqscep's."""
    o = openssl.run
    o("genpkey", "-algorithm", "ML-DSA-65", "-out", tmp_path / "issuer.key")
    o("req", "-x509", "-new", "-key", tmp_path / "issuer.key", "-subj", "/CN=openssl ML-DSA issuer", "-days", "1",
      "-out", tmp_path / "issuer.pem")
    o("genpkey", "-algorithm", "ML-KEM-1024", "-aes-256-cbc", "-pass", "pass:kem pass", "-out", tmp_path / "kem.key")
    o("pkey", "-in", tmp_path / "kem.key", "-passin", "pass:kem pass", "-pubout", "-out", tmp_path / "kem.pub")
    o("x509", "-new", "-force_pubkey", tmp_path / "kem.pub", "-subj", "/CN=openssl ML-KEM-1024 recipient",
      "-CA", tmp_path / "issuer.pem", "-CAkey", tmp_path / "issuer.key", "-days", "1", "-out", tmp_path / "kem.pem")
    key = pkcs8.load_any_private_key((tmp_path / "kem.key").read_bytes(), b"kem pass")
    cert = x509.load_pem_x509_certificate((tmp_path / "kem.pem").read_bytes())
    assert key_family(key) == "ml-kem" and cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((tmp_path / "issuer.pem").read_bytes()))

    content = os.urandom(500)
    (tmp_path / "msg").write_bytes(content)
    for options in ([], ["-keyid"]):
        o("cms", "-encrypt", "-binary", "-in", tmp_path / "msg", "-outform", "DER", "-out", tmp_path / "env.der",
          "-aes-256-gcm", *options, "-recip", tmp_path / "kem.pem")
        der = (tmp_path / "env.der").read_bytes()
        assert _kem_infos(der)[1][0].kem.oid == oids.ML_KEM_1024
        opened = enveloped.open_envelope(der, [KemRecipient(key, certificate=cert)])
        assert opened.content == content and opened.authenticated

    for originator in (KemOriginator(None, certificate=cert),
                       KemOriginator(cert.public_key(), subject_key_identifier=signed.subject_key_identifier(cert))):
        (tmp_path / "ours.der").write_bytes(
            enveloped.seal_envelope(content, originator, CIPHERS.by_name("aes256-gcm"), os.urandom))
        proc = o("cms", "-decrypt", "-binary", "-inform", "DER", "-in", tmp_path / "ours.der", "-inkey",
                 tmp_path / "kem.key", "-passin", "pass:kem pass", "-recip", tmp_path / "kem.pem")
        assert proc.stdout == content


@pytest.mark.parametrize("algorithm, options", [
    ("ML-DSA-44", []),
    ("ML-DSA-65", []),
    ("ML-DSA-87", []),
    ("ML-DSA-65", ["-keyid"]),  # SignerIdentifier subjectKeyIdentifier
    ("ML-DSA-87", ["-nosmimecap", "-nocerts"]),  # no certificate in the message: the caller has it
    ("ML-DSA-44", ["-stream"]),  # indefinite-length BER
])
def test_project_verifies_openssl_ml_dsa_signed_data(openssl, tmp_path, algorithm, options):
    o = openssl.run
    o("genpkey", "-algorithm", algorithm, "-out", tmp_path / "signer.key")
    o("req", "-x509", "-new", "-key", tmp_path / "signer.key", "-subj", f"/CN=openssl {algorithm} signer",
      "-days", "1", "-out", tmp_path / "signer.pem")
    content = os.urandom(600)
    (tmp_path / "msg").write_bytes(content)
    o("cms", "-sign", "-binary", "-nodetach", "-in", tmp_path / "msg", "-signer", tmp_path / "signer.pem",
      "-inkey", tmp_path / "signer.key", "-md", "sha512", "-outform", "DER", "-out", tmp_path / "sig.der", *options)
    der = (tmp_path / "sig.der").read_bytes()
    signer_cert = x509.load_pem_x509_certificate((tmp_path / "signer.pem").read_bytes())

    message = signed.parse_signed_data(der)
    assert message.content == content and message.content_type == oids.DATA
    (signer_info,) = message.signer_infos
    assert signer_info.signature_algorithm.oid == ML_DSA_OIDS[algorithm]
    assert signer_info.digest_algorithm.oid == oids.SHA512
    if "-keyid" in options:
        assert signer_info.subject_key_id == signed.subject_key_identifier(signer_cert)
    if "-nocerts" in options:
        assert message.certificates == [] and message.signer_certificate(signer_info) is None
    else:
        assert message.signer_certificate(signer_info) == signer_cert
    assert signed.verify_signer(message, signer_info, signer_cert.public_key()).name == "sha512"

    # Tampered content and a different key of the same parameter set are refused.
    tampered = der.replace(content[:32], bytes(b ^ 1 for b in content[:32]))
    assert tampered != der
    message = signed.parse_signed_data(tampered)
    with pytest.raises(signed.SignedDataError):
        signed.verify_signer(message, message.signer_infos[0], signer_cert.public_key())
    message = signed.parse_signed_data(der)
    other = generate_key(algorithm.lower())
    with pytest.raises(signed.SignedDataError):
        signed.verify_signer(message, message.signer_infos[0], other.public_key())


def test_openssl_cms_sign_ml_dsa_needs_an_explicit_digest(openssl, tmp_path):
    """OpenSSL 3.6 limitation, pinned so a change is noticed: `cms -sign` with an ML-DSA key and no
    -md fails ("no default digest"); pqscep's clients always send SHA-512 (RFC 9882)."""
    openssl.run("genpkey", "-algorithm", "ML-DSA-44", "-out", tmp_path / "k")
    openssl.run("req", "-x509", "-new", "-key", tmp_path / "k", "-subj", "/CN=x", "-out", tmp_path / "c")
    (tmp_path / "msg").write_bytes(b"x")
    said = openssl.fails("cms", "-sign", "-in", tmp_path / "msg", "-signer", tmp_path / "c", "-inkey", tmp_path / "k",
                         "-outform", "DER", "-out", tmp_path / "s")
    assert "no default digest" in said


# --------------------------------------------------------------------------------------------
# 3. openssl verify accepts what the post-quantum CA issues
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ml-dsa-44", "ml-dsa-65", "ml-dsa-87", "rsa-2048", "ec-p256"])
def test_openssl_verifies_certificates_of_the_pq_ca(pq, openssl, tmp_path, key_type):
    cert_pem = tmp_path / "cert.pem"
    pqscep("enroll", pq.url, "--challenge", "secret", "--cn", f"ossl-verify-{key_type}", "--key-type", key_type,
           "--out", cert_pem)
    proc = openssl.run("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", pq.ca_pem, cert_pem)
    assert proc.stdout.decode().strip() == f"{cert_pem}: OK"
    text = openssl.run("x509", "-in", cert_pem, "-noout", "-text").stdout.decode()
    assert "Signature Algorithm: ML-DSA-65" in text
    openssl.fails("verify", "-CAfile", pq.classic_ca_pem, cert_pem)


def test_openssl_verifies_the_ml_kem_recipient_certificate(pq, openssl):
    proc = openssl.run("verify", "-x509_strict", "-CAfile", pq.ca_pem, pq.recipient_pem)
    assert proc.stdout.decode().strip() == f"{pq.recipient_pem}: OK"
    text = openssl.run("x509", "-in", pq.recipient_pem, "-noout", "-text", "-ext", "keyUsage").stdout.decode()
    assert "ML-KEM-768" in text
    assert re.search(r"Key Usage: critical\s+Key Encipherment\s*$", text, re.M), text


# OpenSSL 3.5+ writes ML-DSA and ML-KEM private keys in the PKCS#8 "both" form (seed and expanded
# key, RFC 9881/9935), which pqscep.crypto.pkcs8.load_any_private_key reads and checks; the CLI's
# --key options load keys with crypto.keys.load_private_key (cryptography only: seed form) instead.
def test_enroll_with_an_openssl_ml_dsa_key(pq, openssl, tmp_path):
    """`pqscep enroll --key` with `openssl genpkey -algorithm ML-DSA-65`'s key (an EC key from
    openssl works: test_enroll_with_an_openssl_ec_key)."""
    openssl.run("genpkey", "-algorithm", "ML-DSA-65", "-out", tmp_path / "device.key")
    _enroll_with_openssl_key(pq, openssl, tmp_path, "ossl-mldsa-key")


def test_enroll_with_an_openssl_ec_key(pq, openssl, tmp_path):
    openssl.run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", tmp_path / "device.key")
    _enroll_with_openssl_key(pq, openssl, tmp_path, "ossl-ec-key")


def _enroll_with_openssl_key(pq, openssl, tmp_path, cn):
    pqscep("enroll", pq.url, "--challenge", "secret", "--cn", cn, "--key", tmp_path / "device.key",
           "--out", tmp_path / "cert.pem")
    openssl.run("verify", "-x509_strict", "-CAfile", pq.ca_pem, tmp_path / "cert.pem")
    public = openssl.run("pkey", "-in", tmp_path / "device.key", "-pubout").stdout
    assert openssl.run("x509", "-in", tmp_path / "cert.pem", "-noout", "-pubkey").stdout == public


def test_inspect_opens_a_request_with_the_key_openssl_decrypted(pq, openssl, tmp_path):
    """`pqscep inspect --key` with the ML-KEM recipient key as `openssl pkey` writes it unencrypted
    (test_pq_service does the same with the key re-serialised by cryptography, seed form)."""
    dump = tmp_path / "dump"
    pqscep("enroll", pq.url, "--challenge", "secret", "--cn", "ossl-inspect", "--key-type", "ml-dsa-44",
           "--out", tmp_path / "cert.pem", "--dump", dump)
    pqscep("inspect", dump / "03-PKCSReq.der", "--key", pq.recipient_key_pem, "--out", tmp_path / "csr.der")
    assert _req_subject(openssl, tmp_path / "csr.der") == "CN=ossl-inspect"


# --------------------------------------------------------------------------------------------
# 4. PasswordRecipientInfo both ways
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cipher, options", [
    ("aes256-cbc", {}),
    ("aes256-gcm", {}),
    ("aes128-cbc", {"kek_cipher": "aes128-cbc", "prf": "hmac-sha1"}),
    ("aes256-cbc", {"prf": "hmac-sha512"}),
])
def test_openssl_opens_project_pwri(openssl, tmp_path, cipher, options):
    content = os.urandom(300)
    (tmp_path / "env.der").write_bytes(enveloped.seal_envelope(
        content, PasswordOriginator(b"secret", 2048, **options), CIPHERS.by_name(cipher), os.urandom))
    proc = openssl.run("cms", "-decrypt", "-binary", "-inform", "DER", "-in", tmp_path / "env.der",
                       "-pwri_password", "secret")
    assert proc.stdout == content
    openssl.fails("cms", "-decrypt", "-binary", "-inform", "DER", "-in", tmp_path / "env.der",
                  "-pwri_password", "not the secret", "-out", os.devnull)


@pytest.mark.parametrize("options, cipher", [
    (["-aes-256-cbc"], "aes256-cbc"),
    (["-aes-128-cbc"], "aes128-cbc"),
    (["-aes-256-cbc", "-kekcipher", "aes-128-cbc"], "aes256-cbc"),
    (["-aes-256-cbc", "-stream"], "aes256-cbc"),
    # AES-GCM content needs a CBC KEK cipher: OpenSSL otherwise takes the content cipher
    # for id-alg-PWRI-KEK and refuses GCM ("unsupported kek algorithm").
    (["-aes-256-gcm", "-kekcipher", "aes-256-cbc"], "aes256-gcm"),
])
def test_project_opens_openssl_pwri(openssl, tmp_path, options, cipher):
    content = os.urandom(300)
    (tmp_path / "msg").write_bytes(content)
    openssl.run("cms", "-encrypt", "-binary", "-in", tmp_path / "msg", "-outform", "DER", "-out", tmp_path / "env.der",
                "-pwri_password", "secret", *options)
    der = (tmp_path / "env.der").read_bytes()
    opened = enveloped.open_envelope(der, [PasswordRecipient(b"secret")])
    assert (opened.content, opened.cipher.name, opened.recipient_kind) == (content, cipher, "pwri")
    with pytest.raises(EnvelopeError) as info:
        enveloped.open_envelope(der, [PasswordRecipient(b"not the secret")])
    assert info.value.decryption
