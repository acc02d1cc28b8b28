"""`pqscep inspect` on the post-quantum structures, and the key loading it shares with the server.

What inspect shows: the responseKey attribute as "ML-KEM-768 public key, SKI <hex>" (the SKI a
CA's reply names it by), kemPopChallenge (RFC 9810 KemCiphertextInfo) and kemPopProof
(SEQUENCE { macAlgorithm, mac }) decoded from hand-built values, CMSAlgorithmProtection checked
against its SignerInfo, PasswordRecipientInfo (KDF, iterations, PRF, KEK algorithm) and its
decryption with --password (never printed), KEMRecipientInfo (kem, kdf, kekLength, ukm, wrap,
rid) with notes where its fields do not fit together.

Keys: `--key` loads through `pkcs8.load_any_private_key`, so every RFC 9935 / RFC 9881 form
(seed, both; expanded-only is refused with the reason) and encrypted keys with
`--key-passphrase-env VAR`; the server's `_load_pair` uses the same loader (last tests: a
server whose CA and ML-KEM recipient keys are in the 'both' form enrolls a device).

Inputs are the RFC 9935/9881 example keys and the IETF hackathon KEMRecipientInfo files in
../shared/vectors, and messages built here with pqscep's own sans-IO client.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.asn1 import BitString, Null, SetOf
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from scep_messages import Identity, algorithm_protection, kem_envelope, pki_message

from pqscep.asn1 import cms, oids
from pqscep.cli import inspect_cmd
from pqscep.cms import signed
from pqscep.cms.kem import KemOriginator, key_identifier
from pqscep.cms.password import PasswordOriginator
from pqscep.crypto import pbes2, pkcs8
from pqscep.crypto.keys import generate_key
from pqscep.crypto.registry import CIPHERS, DIGESTS
from pqscep.crypto.spki import spki_raw_public_key
from pqscep.inspect import ATTRIBUTES, attribute_nodes
from pqscep.protocol import client
from pqscep.protocol.messages import MessageType, printable_attribute, response_key_attribute
from pqscep.service.config import ConfigError

VECTORS = Path(__file__).parents[1].parent / "shared" / "vectors"
RFC9935 = VECTORS / "rfc9935-keys"
RFC9881 = VECTORS / "rfc9881-keys"
CRYPTONEXT = VECTORS / "hackathon-cms" / "cryptonext"

PASSWORD = "Zq81-challenge-Xy"  # distinctive, so that a leak into any output is found
PASSPHRASE = "Kp7-key-passphrase-Wv"
PBES2 = x509.ObjectIdentifier("1.2.840.113549.1.5.13")


# --------------------------------------------------------------------------- helpers


def _need(path: Path) -> Path:
    if not path.exists():
        from peers import unavailable

        unavailable(f"test vectors not found: {path} (../shared/vectors beside the repository)")
    return path


def inspect(*args, env: dict | None = None) -> Result:
    """`pqscep inspect ARGS` in-process; a wide terminal so that the tree does not wrap."""
    return CliRunner().invoke(inspect_cmd.inspect_cmd, [*map(str, args)], env={"COLUMNS": "400", **(env or {})},
                              catch_exceptions=False)


def output(result: Result) -> str:
    return result.stdout + result.stderr


def errors(result: Result) -> str:
    """stderr with Rich's line wrapping undone."""
    return " ".join(result.stderr.split())


def structure(result: Result) -> dict:
    return json.loads(result.stdout)["structure"]


def assert_never_shown(result: Result, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in output(result), "a secret was printed"


def pem_der(path: Path) -> bytes:
    lines = _need(path).read_text().splitlines()
    return base64.b64decode("".join(line for line in lines if not line.startswith("-----")))


def pem(label: str, der: bytes) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


@asn1.sequence
class _Both:  # RFC 9935 / RFC 9881 private key CHOICE 'both'
    seed: bytes
    expanded: bytes


def both_form(seed_pkcs8: bytes) -> bytes:
    """The RFC 9935/9881 'both' form (SEQUENCE { seed, expandedKey }) of a seed-form PKCS#8 key."""
    info = pkcs8.inspect_private_key(seed_pkcs8)
    both = cms.encode(_Both(seed=info.seed, expanded=info.expanded))
    return cms.encode(cms.OneAsymmetricKey(version=0, private_key_algorithm=cms.algorithm_tlv(info.oid),
                                           private_key=both, attributes=None, public_key=None))


def encrypt_pkcs8(der: bytes, passphrase: str) -> bytes:
    """EncryptedPrivateKeyInfo, PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC (what OpenSSL 3.5
    writes), made by hand: cryptography cannot serialise a 'both' form key."""
    salt, iv, iterations = os.urandom(16), os.urandom(16), 2048
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(passphrase.encode())
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(der) + padder.finalize()) + encryptor.finalize()
    pbkdf2 = cms.PBKDF2Params(salt=salt, iteration_count=iterations, key_length=None,
                              prf=cms.HashAlgorithm(algorithm=oids.HMAC_WITH_SHA256, parameters=Null()))
    pbes2 = cms.PBES2Params(key_derivation_func=cms.algorithm_tlv(oids.PBKDF2, cms.encode(pbkdf2)),
                            encryption_scheme=cms.algorithm_tlv(oids.AES256_CBC, cms.encode(iv)))
    return cms.encode(cms.EncryptedPrivateKeyInfo(encryption_algorithm=cms.algorithm_tlv(PBES2, cms.encode(pbes2)),
                                                  encrypted_data=ciphertext))


def kem_recipient_certificate() -> x509.Certificate:
    return x509.load_pem_x509_certificate(_need(RFC9935 / "ML-KEM-768.crt").read_bytes())


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def signer(kind: str = "ml-dsa-65"):
    key = generate_key(kind)
    cert = client.self_signed_certificate(key, x509.Name.from_rfc4514_string("CN=inspect requester"), now=now(),
                                          serial=int.from_bytes(os.urandom(8), "big") | 1)
    return key, cert


def pq_request(originator, *, cipher: str = "aes256-gcm", kind: str = "ml-dsa-65", response_key=None,
               cn: str = "inspect-pq") -> bytes:
    """A PKCSReq as a post-quantum client sends it (draft Sections 4 and 5)."""
    key, cert = signer(kind)
    csr = client.build_csr(key, x509.Name.from_rfc4514_string(f"CN={cn}"), challenge=PASSWORD)
    extra = [response_key_attribute(response_key.public_key())] if response_key is not None else []
    return client.build_pki_message(
        message_type=MessageType.PKCS_REQ, transaction_id="inspect-1", sender_nonce=os.urandom(16),
        content=csr.public_bytes(serialization.Encoding.DER), originator=originator,
        cipher=CIPHERS.by_name(cipher), signer_key=key, signer_cert=cert, digest=DIGESTS.by_name("sha512"),
        random_bytes=os.urandom, extra_attributes=extra,
    )


def signed_attribute(node: dict, name: str):
    (signer_node,) = node["signers"]
    return next(a["value"] for a in signer_node["signed_attributes"] if a["name"] == name)


# --------------------------------------------------------------------------- responseKey, KEMRI


def test_pq_request_shows_response_key_algorithm_protection_and_kemri(tmp_path):
    recipient = kem_recipient_certificate()
    response_key = generate_key("ml-kem-768")
    path = tmp_path / "pkcsreq.der"
    path.write_bytes(pq_request(KemOriginator(None, certificate=recipient), response_key=response_key))
    result = inspect(path, "--json")
    assert result.exit_code == 0, output(result)
    top = structure(result)
    ski = key_identifier(response_key.public_key()).hex()
    assert signed_attribute(top, "responseKey") == f"ML-KEM-768 public key, SKI {ski}"
    assert signed_attribute(top, "cmsAlgorithmProtection") == "digest sha512, signature ML-DSA-65"
    (signer_node,) = top["signers"]
    assert signer_node["algorithm_protection"] == "matches the SignerInfo's digest and signature algorithms"
    assert signer_node["verified"] is True
    envelope = top["content"]
    assert envelope["type"] == "AuthEnvelopedData" and envelope["content_encryption"]["name"] == "aes256-gcm"
    (kemri,) = envelope["recipient_infos"]
    assert kemri == {
        "type": "KEMRecipientInfo", "ori_type": "id-ori-kem", "version": 0,
        "rid": {"issuer": recipient.issuer.rfc4514_string(), "serial": f"{recipient.serial_number:#x}"},
        "kem": "ML-KEM-768", "kem_ciphertext_length": 1088, "kdf": "hkdf-sha256", "kek_length": 32, "ukm": None,
        "wrap": "aes256-wrap", "encrypted_key_length": 40,
    }
    assert envelope["decryption"] == "not attempted (give --key)"
    # The tree shows the same, readably.
    tree = inspect(path)
    assert tree.exit_code == 0 and f"ML-KEM-768 public key, SKI {ski}" in tree.stdout
    assert "kekLength" not in tree.stdout and "kek_length: 32" in tree.stdout


def _response_key_text(spki_der: bytes) -> str:
    return ATTRIBUTES[oids.SCEP_RESPONSE_KEY][1](spki_der)


def test_response_key_of_other_key_types_is_named_and_flagged():
    ml_kem_1024 = generate_key("ml-kem-1024").public_key()
    spki = ml_kem_1024.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert _response_key_text(spki) == f"ML-KEM-1024 public key, SKI {key_identifier(ml_kem_1024).hex()}"

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    spki = rsa_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ski = x509.SubjectKeyIdentifier.from_public_key(rsa_key).digest.hex()
    assert _response_key_text(spki) == f"rsa-2048 public key, SKI {ski} (not an ML-KEM key: a pqscep CA refuses it)"

    spki = pem_der(RFC9935 / "ML-KEM-512.pub")  # a key cryptography cannot load
    _, raw = spki_raw_public_key(spki)
    assert _response_key_text(spki) == (f"ML-KEM-512 public key, SKI {hashlib.sha1(raw).hexdigest()} "
                                        "(ML-KEM-512 is not supported by this build: a pqscep CA refuses it)")

    short = cms.encode(cms.SubjectPublicKeyInfo(algorithm=cms.algorithm_tlv(oids.ML_KEM_768),
                                                subject_public_key=BitString(os.urandom(1183), 0)))
    assert _response_key_text(short).endswith("(malformed: 1183 bytes, ML-KEM-768 keys have 1184)")

    # Not an SPKI at all: shown raw with the reason, not a crash.
    node = attribute_nodes({oids.SCEP_RESPONSE_KEY: [cms.encode(b"raw key bytes")]})
    assert node[0]["name"] == "responseKey" and node[0]["value"].startswith("(undecodable: ")


@pytest.mark.parametrize("form", ["seed", "both", "encrypted-seed", "encrypted-both"])
def test_ml_kem_key_in_every_rfc_form_opens_the_kemri(tmp_path, form):
    """--key through load_any_private_key: the RFC 9935 example ML-KEM-768 key as seed, both, and
    encrypted (the seed form by cryptography, the both form by hand: PBES2 as OpenSSL writes)."""
    recipient = kem_recipient_certificate()
    path = tmp_path / "pkcsreq.der"
    path.write_bytes(pq_request(KemOriginator(None, certificate=recipient), response_key=generate_key("ml-kem-768")))
    seed = pem_der(RFC9935 / "ML-KEM-768-seed.priv")
    key_file, env, args = tmp_path / f"kem-{form}.key", None, []
    if form == "seed":
        key_file.write_bytes(_need(RFC9935 / "ML-KEM-768-seed.priv").read_bytes())
    elif form == "both":
        key_file.write_bytes(_need(RFC9935 / "ML-KEM-768-both.priv").read_bytes())
        assert pkcs8.inspect_private_key(pem_der(key_file)).form == "both"
    elif form == "encrypted-seed":
        key = pkcs8.load_any_private_key(seed)
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.BestAvailableEncryption(PASSPHRASE.encode())))
    else:
        key_file.write_text(pem("ENCRYPTED PRIVATE KEY", encrypt_pkcs8(both_form(seed), PASSPHRASE)))
    if form.startswith("encrypted"):
        env, args = {"INSPECT_KEY_PASSPHRASE": PASSPHRASE}, ["--key-passphrase-env", "INSPECT_KEY_PASSPHRASE"]
    out = tmp_path / "csr.der"
    result = inspect(path, "--key", key_file, *args, "--json", "--out", out, env=env)
    assert result.exit_code == 0, output(result)
    decryption = structure(result)["content"]["decryption"]
    assert decryption["decrypted"] is True and decryption["recipient_info"] == "kemri"
    assert decryption["cipher"] == "aes256-gcm"
    assert decryption["content"]["subject"] == "CN=inspect-pq"
    assert decryption["content"]["challenge_password"].startswith("present (value hidden")
    assert x509.load_der_x509_csr(out.read_bytes()).subject.rfc4514_string() == "CN=inspect-pq"
    assert_never_shown(result, PASSPHRASE, PASSWORD)
    # With its certificate, the key is matched to the RecipientInfo that names it.
    cert_file = tmp_path / "kem.crt"
    cert_file.write_bytes(recipient.public_bytes(serialization.Encoding.PEM))
    result = inspect(path, "--key", key_file, *args, "--cert", cert_file, "--json", env=env)
    assert result.exit_code == 0, output(result)
    assert "+ certificate CN=" in structure(result)["content"]["decryption"]["with"]


def test_expanded_only_and_damaged_keys_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "pkcsreq.der"
    path.write_bytes(pq_request(KemOriginator(None, certificate=kem_recipient_certificate()),
                                response_key=generate_key("ml-kem-768")))
    result = inspect(path, "--key", _need(RFC9935 / "ML-KEM-768-expanded.priv"))
    assert result.exit_code == 1 and "this build cannot use the key: expanded-only ML-KEM keys" in errors(result)
    result = inspect(path, "--key", _need(RFC9935 / "bad-ML-KEM-512-1.priv"))
    assert result.exit_code == 1 and "Traceback" not in output(result)
    assert "is not a valid private key" in errors(result) or "cannot use the key" in errors(result)


def test_the_key_passphrase_comes_from_an_environment_variable_only(tmp_path):
    path = tmp_path / "pkcsreq.der"
    path.write_bytes(pq_request(KemOriginator(None, certificate=kem_recipient_certificate()),
                                response_key=generate_key("ml-kem-768")))
    key_file = tmp_path / "kem.key"
    key_file.write_text(pem("ENCRYPTED PRIVATE KEY",
                            encrypt_pkcs8(both_form(pem_der(RFC9935 / "ML-KEM-768-seed.priv")), PASSPHRASE)))
    result = inspect(path, "--key", key_file)
    assert result.exit_code == 1 and "is an encrypted key" in errors(result)
    assert "--key-passphrase-env" in errors(result)
    # A passphrase given where the variable's name belongs is refused without being repeated.
    result = inspect(path, "--key", key_file, "--key-passphrase-env", "Kp7 key passphrase!")
    assert result.exit_code == 1 and "takes the NAME of an environment variable" in errors(result)
    assert "Kp7 key passphrase!" not in output(result)
    result = inspect(path, "--key", key_file, "--key-passphrase-env", "PQSCEP_NO_SUCH_VARIABLE_SET")
    assert result.exit_code == 1 and "is not set" in errors(result)
    result = inspect(path, "--key", key_file, "--key-passphrase-env", "WRONG", env={"WRONG": "not-" + PASSPHRASE})
    assert result.exit_code == 1 and "(or the passphrase is wrong)" in errors(result)
    assert_never_shown(result, PASSPHRASE)
    # An unencrypted key next to the passphrase of another one still loads.
    result = inspect(path, "--key", _need(RFC9935 / "ML-KEM-768-seed.priv"), "--key-passphrase-env", "P",
                     "--json", env={"P": PASSPHRASE})
    assert result.exit_code == 0, output(result)


def test_kemri_fields_that_do_not_fit_are_noted(tmp_path):
    recipient = kem_recipient_certificate()
    path = tmp_path / "env.der"
    path.write_bytes(kem_envelope(b"x", recipient, kek_length=16, kemct=lambda ct: ct[:-1], rid="ski",
                                  ukm=b"\x01\x02"))
    result = inspect(path, "--json")
    assert result.exit_code == 0, output(result)
    (kemri,) = structure(result)["recipient_infos"]
    assert kemri["rid"] == {"subject_key_identifier": signed.subject_key_identifier(recipient).hex()}
    assert kemri["ukm"] == "0102" and kemri["kek_length"] == 16 and kemri["kem_ciphertext_length"] == 1087
    assert kemri["notes"] == ["kemct has 1087 bytes; ML-KEM-768 ciphertexts have 1088",
                              "kekLength 16 does not match aes256-wrap (32-byte KEK)"]
    path.write_bytes(kem_envelope(b"x", recipient, cipher="aes256-cbc", kem_oid=oids.ML_KEM_512,
                                  kdf_oid=x509.ObjectIdentifier("1.2.3.4"), wrap_oid=x509.ObjectIdentifier("1.2.3.5")))
    (kemri,) = structure(inspect(path, "--json"))["recipient_infos"]
    assert kemri["kem"] == "ML-KEM-512" and kemri["kdf"] == "1.2.3.4" and kemri["wrap"] == "1.2.3.5"
    assert kemri["notes"] == ["kemct has 1088 bytes; ML-KEM-512 ciphertexts have 768", "unknown KDF 1.2.3.4",
                              "unknown key wrap 1.2.3.5"]


def _cryptonext(pattern: str) -> list[str]:
    return sorted(p.name for p in CRYPTONEXT.glob(pattern)) if CRYPTONEXT.exists() else [f"missing-{pattern}"]


@pytest.mark.parametrize("name", _cryptonext("ML-KEM-*_kemri_*.der"))
def test_hackathon_kemri_files_open_with_their_der_keys(name, tmp_path):
    """Interop: KEMRecipientInfo envelopes made by another implementation (cryptonext, IETF
    hackathon), opened with its DER PKCS#8 keys: HKDF-SHA256/512, ukm, AuthEnvelopedData."""
    path = _need(CRYPTONEXT / name)
    key = CRYPTONEXT / (name.split("_kemri_")[0] + "_expandedkey_priv.der")  # the seed form (README)
    result = inspect(path, "--key", _need(key), "--json", "--out", tmp_path / "plain")
    assert result.exit_code == 0, output(result)
    decryption = structure(result)["decryption"]
    assert decryption["decrypted"] is True and decryption["recipient_info"] == "kemri"
    assert (tmp_path / "plain").read_bytes() == (CRYPTONEXT / "expected_plaintext.txt").read_bytes()


# --------------------------------------------------------------------------- CMSAlgorithmProtection


def test_algorithm_protection_that_disagrees_with_the_signer_info_is_shown(tmp_path):
    identity = Identity.new("protection", kind="ml-dsa-65")
    recipient = kem_recipient_certificate()
    body = pki_message(signer=identity, content=b"csr", recipient=None, transaction_id="t", sender_nonce=os.urandom(16),
                       pki_envelope=kem_envelope(b"csr", recipient),
                       protection=algorithm_protection(oids.SHA256, oids.ML_DSA_87))
    path = tmp_path / "bad-protection.der"
    path.write_bytes(body)
    result = inspect(path, "--json")
    assert result.exit_code == 5, output(result)
    (signer_node,) = structure(result)["signers"]
    assert signer_node["algorithm_protection"] == ("does NOT match the SignerInfo: digest sha256, SignerInfo sha512; "
                                                   "signature ML-DSA-87, SignerInfo ML-DSA-65")
    assert signer_node["verified"] is False and "CMSAlgorithmProtection" in signer_node["verification"]
    path.write_bytes(pki_message(signer=identity, content=b"csr", recipient=None, transaction_id="t",
                                 sender_nonce=os.urandom(16), pki_envelope=kem_envelope(b"csr", recipient),
                                 protection=cms.encode(b"junk")))
    (signer_node,) = structure(inspect(path, "--json"))["signers"]
    assert signer_node["algorithm_protection"].startswith("malformed: not a valid CMSAlgorithmProtection")


# --------------------------------------------------------------------------- kemPopChallenge, kemPopProof


def _kem_ciphertext_info(kem_oid, ct: bytes) -> bytes:
    return cms.encode(cms.KemCiphertextInfo(kem=cms.algorithm_tlv(kem_oid), ct=ct))


def test_kem_pop_attributes_are_decoded(tmp_path):
    """Hand-built kemPopChallenge (RFC 9810 KemCiphertextInfo) in a CertRep PENDING and
    kemPopProof (SEQUENCE { macAlgorithm, mac }) in a CertPoll (draft Section 7.2)."""
    _, ct = generate_key("ml-kem-768").public_key().encapsulate()
    challenge = _kem_ciphertext_info(oids.ML_KEM_768, ct)
    mac = hashlib.sha256(b"stand-in for HMAC-SHA256(K, DER(CSR))").digest()
    proof = cms.encode(cms.KemPopProof(mac_algorithm=cms.algorithm_tlv(oids.HMAC_WITH_SHA256), mac=mac))
    key, cert = signer()
    for name, attributes in [
        ("pending", [printable_attribute(oids.SCEP_MESSAGE_TYPE, "3"), printable_attribute(oids.SCEP_PKI_STATUS, "3"),
                     signed.attribute(oids.SCEP_KEM_POP_CHALLENGE, challenge)]),
        ("poll", [printable_attribute(oids.SCEP_MESSAGE_TYPE, "20"), signed.attribute(oids.SCEP_KEM_POP_PROOF, proof)]),
    ]:
        body = signed.build_signed_data(content_type=oids.DATA, content=None, signer_key=key, signer_cert=cert,
                                        digest=DIGESTS.by_name("sha512"), attributes=attributes)
        (tmp_path / f"{name}.der").write_bytes(body)
    result = inspect(tmp_path / "pending.der", "--json")
    assert result.exit_code == 0, output(result)
    assert signed_attribute(structure(result), "kemPopChallenge") == (
        f"KemCiphertextInfo: kem ML-KEM-768, ct 1088 bytes (sha256 {hashlib.sha256(ct).hexdigest()[:16]}...)")
    result = inspect(tmp_path / "poll.der", "--json")
    assert result.exit_code == 0, output(result)
    assert signed_attribute(structure(result), "kemPopProof") == f"macAlgorithm hmac-sha256, mac 32 bytes {mac.hex()}"
    tree = inspect(tmp_path / "poll.der")
    assert f"kemPopProof (1.3.6.1.5.5.7.24.3): macAlgorithm hmac-sha256, mac 32 bytes {mac.hex()}" in tree.stdout

    decode = ATTRIBUTES[oids.SCEP_KEM_POP_CHALLENGE][1]
    assert decode(_kem_ciphertext_info(oids.ML_KEM_1024, ct)).endswith(
        "(wrong size: ML-KEM-1024 ciphertexts have 1568 bytes)")
    nodes = attribute_nodes({oids.SCEP_KEM_POP_PROOF: [cms.encode(b"not a sequence")],
                                         oids.SCEP_KEM_POP_CHALLENGE: [cms.encode(oids.ML_KEM_768)]})
    assert all(n["value"].startswith("(undecodable: ") for n in nodes)


# --------------------------------------------------------------------------- PasswordRecipientInfo


def _pwri_request(tmp_path, originator) -> Path:
    key, cert = signer("rsa-2048")
    csr = client.build_csr(key, x509.Name.from_rfc4514_string("CN=inspect-pwri"), challenge=PASSWORD)
    body = client.build_pki_message(
        message_type=MessageType.PKCS_REQ, transaction_id="pwri-1", sender_nonce=os.urandom(16),
        content=csr.public_bytes(serialization.Encoding.DER), originator=originator,
        cipher=CIPHERS.by_name("aes256-cbc"), signer_key=key, signer_cert=cert, digest=DIGESTS.by_name("sha256"),
        random_bytes=os.urandom)
    path = tmp_path / "pwri.der"
    path.write_bytes(body)
    return path


def test_pwri_is_shown_and_opens_with_the_password_never_printed(tmp_path):
    path = _pwri_request(tmp_path, PasswordOriginator(PASSWORD.encode(), 2048))
    result = inspect(path, "--json")
    assert result.exit_code == 0, output(result)
    envelope = structure(result)["content"]
    (pwri,) = envelope["recipient_infos"]
    assert pwri == {"type": "PasswordRecipientInfo", "version": 0, "key_derivation_algorithm": "PBKDF2",
                    "iterations": 2048, "prf": "hmac-sha256", "salt_length": 16,
                    "key_encryption_algorithm": "id-alg-PWRI-KEK with aes256-cbc", "encrypted_key_length": 48}
    assert envelope["decryption"] == "not attempted (give --key or --password)"

    out = tmp_path / "csr.der"
    for args in (["--json"], []):
        result = inspect(path, "--password", PASSWORD, "--out", out, *args)
        assert result.exit_code == 0, output(result)
        assert_never_shown(result, PASSWORD)
    assert x509.load_der_x509_csr(out.read_bytes()).subject.rfc4514_string() == "CN=inspect-pwri"
    decryption = structure(inspect(path, "--password", PASSWORD, "--json"))["content"]["decryption"]
    assert decryption["decrypted"] is True and decryption["with"] == "--password"
    assert decryption["recipient_info"] == "pwri" and decryption["content"]["subject"] == "CN=inspect-pwri"

    result = inspect(path, "--password", "not-" + PASSWORD, "--json")
    assert result.exit_code == 5
    assert "decryption failed: --password: " in output(result)
    assert_never_shown(result, PASSWORD)


def test_pwri_with_aes_key_wrap_and_hmac_sha512(tmp_path):
    path = _pwri_request(tmp_path, PasswordOriginator(PASSWORD, 1000, wrap="aes256-wrap", prf="hmac-sha512"))
    result = inspect(path, "--password", PASSWORD, "--json")
    assert result.exit_code == 0, output(result)
    envelope = structure(result)["content"]
    (pwri,) = envelope["recipient_infos"]
    assert (pwri["prf"], pwri["key_encryption_algorithm"], pwri["iterations"]) == ("hmac-sha512", "aes256-wrap", 1000)
    assert envelope["decryption"]["content"]["subject"] == "CN=inspect-pwri"
    # A key of the wrong kind next to the password: the password still opens it.
    rsa_file = tmp_path / "rsa.key"
    rsa_file.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    result = inspect(path, "--key", rsa_file, "--password", PASSWORD, "--json")
    assert result.exit_code == 0 and structure(result)["content"]["decryption"]["with"] == "--password"


def test_pwri_with_default_prf_and_a_refused_iteration_count(tmp_path):
    """A hand-built PWRI: prf absent (PBKDF2's DEFAULT, HMAC-SHA1) and 500 iterations, below what
    a pqscep CA (and inspect) accepts as a denial-of-service guard."""
    params = cms.PBKDF2Params(salt=os.urandom(8), iteration_count=500, key_length=None, prf=None)
    info = cms.PasswordRecipientInfo(
        version=0,
        key_derivation_algorithm=cms.AlgorithmWithParameters(algorithm=oids.PBKDF2,
                                                             parameters=cms.as_tlv(cms.encode(params))),
        key_encryption_algorithm=cms.algorithm_tlv(oids.AES256_WRAP), encrypted_key=os.urandom(40))
    eci = cms.EncryptedContentInfo(content_type=oids.DATA,
                                   content_encryption_algorithm=cms.algorithm_tlv(oids.AES256_CBC,
                                                                                  cms.encode(os.urandom(16))),
                                   encrypted_content=cms.as_tlv(b"\x80\x10" + os.urandom(16)))
    recipient_info = cms.as_tlv(cms.sequence_to_implicit(cms.encode(info), cms.PWRI_TAG))
    body = cms.EnvelopedData(version=3, originator_info=None, recipient_infos=SetOf([recipient_info]),
                             encrypted_content_info=eci, unprotected_attrs=None)
    path = tmp_path / "pwri-500.der"
    content_info = cms.ContentInfo(content_type=oids.ENVELOPED_DATA, content=cms.as_tlv(cms.encode(body)))
    path.write_bytes(cms.encode(content_info))
    result = inspect(path, "--password", PASSWORD, "--json")
    assert result.exit_code == 5
    top = structure(result)
    (pwri,) = top["recipient_infos"]
    assert pwri["prf"] == "hmac-sha1 (PBKDF2's DEFAULT: prf absent)" and pwri["salt_length"] == 8
    assert pwri["notes"] == ["iteration count outside 1000..10,000,000: a pqscep CA refuses it"]
    assert "outside 1000..10,000,000" in top["decryption"]["error"]
    assert_never_shown(result, PASSWORD)


# --------------------------------------------------------------------------- the server's key loading


def _data_dir(tmp_path, monkeypatch) -> Path:
    from server_proc import init_data

    monkeypatch.delenv("PQSCEP_CA_PASSPHRASE", raising=False)
    return init_data(tmp_path / "data", challenge="secret")


def _rewrite_both_encrypted(path: Path, passphrase: bytes) -> None:
    """Rewrite an encrypted seed-form key file as an encrypted 'both' form one (same key)."""
    key = pkcs8.load_any_private_key(path.read_bytes(), passphrase)
    seed = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    path.write_text(pem("ENCRYPTED PRIVATE KEY", encrypt_pkcs8(both_form(seed), passphrase.decode())))


def test_server_serves_with_ca_and_kem_keys_in_the_rfc_both_form(tmp_path, monkeypatch):
    """`_load_pair` loads through load_any_private_key: the pq profile's ML-DSA-65 CA key and its
    ML-KEM-768 recipient key rewritten in the RFC 9881/9935 'both' form (PBES2-encrypted, as
    OpenSSL 3.5 writes them, which cryptography alone cannot load) still serve an enrollment."""
    from scep_client import Device, Requester
    from server_proc import ServerProcess

    from pqscep.protocol.messages import PkiStatus

    data = _data_dir(tmp_path, monkeypatch)
    passphrase = (data / "secrets" / "ca-passphrase").read_bytes().strip()
    for stem in ("ca", "kem-recipient"):
        path = data / "profiles" / "pq" / f"{stem}.key"
        _rewrite_both_encrypted(path, passphrase)
        assert pkcs8.inspect_private_key(pbes2.decrypt_pkcs8(pem_der(path), passphrase)).form == "both"
        with pytest.raises(ValueError):  # cryptography alone cannot load the 'both' form
            serialization.load_pem_private_key(path.read_bytes(), passphrase)
    with ServerProcess(data) as server:
        scep = Requester(server.url("/scep/pq"), cipher="aes256-gcm", digest="sha512")
        result = scep.enroll(Device("both-form-ca", key_type="ml-dsa-65"), "secret")
    assert result.status == PkiStatus.SUCCESS, result.fail_info_text
    result.certificates[0].verify_directly_issued_by(scep.bundle.ca)


def test_server_key_loading_errors_keep_their_config_error_messages(tmp_path):
    from pqscep.service.setup import _load_pair

    folder = tmp_path / "profile"
    folder.mkdir()
    (folder / "ca.pem").write_bytes(_need(RFC9881 / "ML-DSA-65.crt").read_bytes())
    (folder / "ca.key").write_text(pem("ENCRYPTED PRIVATE KEY", encrypt_pkcs8(pem_der(RFC9881 / "ML-DSA-65-both.priv"),
                                                                            PASSPHRASE)))
    (folder / "ca.key").chmod(0o600)  # a key file others can read is refused (its own test: test_attacks)
    key, cert = _load_pair(folder, "ca", PASSPHRASE.encode())
    assert key.public_key() == cert.public_key()
    with pytest.raises(ConfigError, match=r"cannot load .*ca\.key: wrong passphrase or damaged file"):
        _load_pair(folder, "ca", b"not the passphrase")
    (folder / "ca.key").write_bytes(_need(RFC9881 / "ML-DSA-65-expanded.priv").read_bytes())
    with pytest.raises(ConfigError, match=r"wrong passphrase or damaged file \(expanded-only ML-DSA keys"):
        _load_pair(folder, "ca", None)
    with pytest.raises(ConfigError, match=r"missing .*kem-recipient\.pem: run `pqscep init`"):
        _load_pair(folder, "kem-recipient", None)
