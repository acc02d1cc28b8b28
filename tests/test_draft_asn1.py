"""The draft's ASN.1 module (Appendix A) against the bytes the code produces.

Every ASN.1 definition in the draft's module matches the structures the code encodes. The
module PQ-SCEP-2026 and the RFC 9810 types it imports are read from the draft's ``~~~ asn.1``
blocks at run time and compiled by asn1tools (an ASN.1 compiler independent of the project's
cryptography-based classes), with the CMS, PKCS #10 and RFC 5280 types of tests/draft_asn1.py
around them. Then:

- the draft's three attribute OIDs are the code's (src/pqscep/asn1/oids.py);
- the ``asn.1`` fragments in the draft's body say what the module says;
- a whole enrolment of an ML-KEM-768 key (challenge mode, draft Section 7.2) and one of an
  ML-DSA key, run in-process through the real client (client.workflows over
  client.transport) and the real service (service.scep), are walked message by message:
  PKCSReq with responseKey, CertRep PENDING with kemPopChallenge, CertPoll with kemPopProof,
  CertRep SUCCESS; each id-scep 2/3/4 value decodes with the draft's type, holds what the code
  put there, and re-encodes to the same DER; the envelopes' KEMRecipientInfo decode with RFC
  9629's types; KemOtherInfo and CMSORIforKEMOtherInfo as the code computes them decode and
  re-encode identically, and the MAC of the kemPopProof is recomputed from the draft's
  description alone;
- every file of docs/vectors/index.json (``pqscep vectors``) decodes with its type and
  round-trips, ContentInfo files walked as above. Without index.json that test fails under
  CI=true and is skipped elsewhere (tests/peers.py `unavailable`).

Some checks are also shown to fail on wrong bytes (a tag, a length, a field), so that a pass
means something.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path

import asn1tools
import draft_asn1 as d
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from peers import unavailable

from pqscep.asn1 import oids
from pqscep.client.session import Dumper, ScepSession
from pqscep.client.transport import ScepTransport
from pqscep.client.workflows import enroll
from pqscep.cms import enveloped, kem
from pqscep.crypto.keys import generate_key
from pqscep.protocol import kem_pop
from pqscep.protocol.messages import PkiStatus
from pqscep.service.config import load_config
from pqscep.service.scep import ScepService
from pqscep.service.setup import init_data_dir, load_profiles
from pqscep.storage.db import open_store

ML_KEM = {  # RFC 9935 / FIPS 203: OID -> (public key octets, ciphertext octets)
    oids.ML_KEM_768.dotted_string: (1184, 1088),
    oids.ML_KEM_1024.dotted_string: (1568, 1568),
}
HMAC_SHA256 = oids.HMAC_WITH_SHA256.dotted_string  # RFC 8018 B.1.2 (RFC 4231)
NULL = b"\x05\x00"
SCEP_TRANSACTION_ID = oids.SCEP_TRANSACTION_ID.dotted_string  # RFC 8894 section 3.2.1.1
SCEP_MESSAGE_TYPE = oids.SCEP_MESSAGE_TYPE.dotted_string  # RFC 8894 section 3.2.1.2
SCEP_PKI_STATUS = oids.SCEP_PKI_STATUS.dotted_string  # RFC 8894 section 3.2.1.3


# --------------------------------------------------------------------------------------------
# the module itself
# --------------------------------------------------------------------------------------------


def test_module_compiles_with_only_the_documented_rewrites():
    module = d.module_block()
    # The one rewrite of the module is the IANA placeholder of its own OID (draft_asn1.preprocess_module).
    assert module.count("(TBD-MOD)") == 1
    at = module.index("(TBD-MOD)")
    assert d.preprocess_module(module) == module[:at] + "(0)" + module[at + len("(TBD-MOD)"):]
    spec = d.compiled()
    assert set(spec.modules[d.DRAFT_MODULE]) == {"KemPopChallenge", "KemPopProof", "ResponseKey"}
    assert set(spec.modules[d.CMP_MODULE]) == {"KemCiphertextInfo", "KemOtherInfo", "PKIFreeText"}
    tree = d.parsed()[d.DRAFT_MODULE]
    assert tree["tags"] == "EXPLICIT"
    # The module imports exactly these, and asn1tools found each in the module it names.
    assert tree["imports"] == {d.PKIX_MODULE: ["AlgorithmIdentifier", "SubjectPublicKeyInfo"],
                               d.CMP_MODULE: ["KemCiphertextInfo", "KemOtherInfo"]}


def test_reference_block_is_rfc9810_with_explicit_tags():
    text = d.draft_text()
    ref = d.reference_block()
    # The draft says which tagging RFC 9810's module has; the helper wraps the block accordingly.
    before = text[:text.index(ref)]
    assert "EXPLICIT TAGS" in before[-300:]
    # kemContext [0] is therefore EXPLICIT: A0 (constructed) around the OCTET STRING.
    der = d.asn1_type(d.CMP_MODULE, "KemOtherInfo").encode(
        {"staticString": ["SCEP-KEM-POP"], "transactionID": b"T", "kemContext": b"\x01" * 32})
    assert der.endswith(b"\xa0\x22\x04\x20" + b"\x01" * 32)


def test_module_oids_are_the_codes():
    assert d.oid_value(d.DRAFT_MODULE, "id-scep") == "1.3.6.1.5.5.7.24"  # RFC 8894 section 3.2.1.5
    assert d.attribute_types() == {
        oids.SCEP_KEM_POP_CHALLENGE.dotted_string: "KemPopChallenge",
        oids.SCEP_KEM_POP_PROOF.dotted_string: "KemPopProof",
        oids.SCEP_RESPONSE_KEY.dotted_string: "ResponseKey",
    }


def test_body_fragments_say_what_the_module_says():
    """Each ``asn.1`` block of the body that quotes the module (e.g. responseKey in the section
    on the reply's recipient) parses to the same assignments as the module's."""
    fragments = d.fragment_blocks()
    assert fragments, "the draft's body quotes no part of the module"
    module = d.parsed()[d.DRAFT_MODULE]
    for i, fragment in enumerate(fragments):
        tree = asn1tools.parse_string(f"Fragment{i} DEFINITIONS EXPLICIT TAGS ::= BEGIN\n{fragment}\nEND\n")
        tree = tree[f"Fragment{i}"]
        assert tree["types"] or tree["values"]
        for kind in ("types", "values"):
            for name, definition in tree[kind].items():
                assert module[kind].get(name) == definition, f"{name} differs from the module's"


def test_attributes_table_names_the_module_types():
    # Section "New Attributes": the value type of each attribute is the module's type (or the
    # imported type it is defined as).
    text = d.draft_text()
    module = d.parsed()[d.DRAFT_MODULE]["types"]
    rows = {"kemPopChallenge": "KemPopChallenge", "kemPopProof": "KemPopProof", "responseKey": "ResponseKey"}
    for attr, type_name in rows.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {attr} |"))
        value_type = row.split("|")[3].strip()
        assert value_type in (type_name, module[type_name]["type"]), row


# --------------------------------------------------------------------------------------------
# the oracle fails on wrong bytes (so that a pass below means something)
# --------------------------------------------------------------------------------------------


def _proof_der(mac: bytes = b"\x11" * 32) -> bytes:
    return d.draft_type("KemPopProof").encode({"macAlgorithm": {"algorithm": HMAC_SHA256, "parameters": NULL},
                                               "mac": mac})


def test_oracle_refuses_an_implicit_kem_context():
    good = kem_pop.kem_other_info("ABC", b"csr")
    d.der_round_trip(d.asn1_type(d.CMP_MODULE, "KemOtherInfo"), good)
    # [0] IMPLICIT OCTET STRING (80 20 ...) instead of [0] EXPLICIT (A0 22 04 20 ...)
    implicit = good[:-36] + b"\x80\x20" + good[-32:]
    implicit = b"\x30" + bytes([len(implicit) - 2]) + implicit[2:]
    with pytest.raises((asn1tools.DecodeError, AssertionError)):
        d.der_round_trip(d.asn1_type(d.CMP_MODULE, "KemOtherInfo"), implicit)


def test_oracle_refuses_extra_fields_and_non_der_lengths():
    good = _proof_der()
    d.der_round_trip(d.draft_type("KemPopProof"), good)
    extra = b"\x30" + bytes([good[1] + 2]) + good[2:] + b"\x05\x00"  # a third field
    with pytest.raises((asn1tools.DecodeError, AssertionError)):
        d.der_round_trip(d.draft_type("KemPopProof"), extra)
    long_form = b"\x30\x81" + good[1:]  # length in the long form: BER, not DER
    with pytest.raises((asn1tools.DecodeError, AssertionError)):
        d.der_round_trip(d.draft_type("KemPopProof"), long_form)


def test_oracle_refuses_a_response_key_that_is_not_an_spki():
    spki = kem.ml_kem_spki(generate_key("ml-kem-768").public_key())
    d.der_round_trip(d.draft_type("ResponseKey"), spki)
    as_octets = spki.replace(b"\x03\x82\x04\xa1\x00", b"\x04\x82\x04\xa1\x00", 1)  # BIT -> OCTET STRING
    assert as_octets != spki
    with pytest.raises((asn1tools.DecodeError, AssertionError)):
        d.der_round_trip(d.draft_type("ResponseKey"), as_octets)


def test_signed_attribute_order_is_checked():
    attr = d.asn1_type(d.CMS_MODULE, "Attribute")
    a = {"attrType": "1.2.3", "attrValues": [b"\x05\x00"]}
    b = {"attrType": "1.2.4", "attrValues": [b"\x05\x00"]}
    d.check_set_of_order(attr, [a, b], "test")
    with pytest.raises(AssertionError, match="DER order"):
        d.check_set_of_order(attr, [b, a], "test")


# --------------------------------------------------------------------------------------------
# real messages: the client and the service, in process
# --------------------------------------------------------------------------------------------

CONFIG = """
[server]
database = "sqlite:///pqscep.db"
default_profile = "pq"

[profiles.pq]
ca_key_type = "ml-dsa-65"
ca_subject = "CN=asn1 check CA"
kem_recipient = "ml-kem-768"
aes_gcm = true
challenge_file = "secrets/challenge-default"
kem_pop = "challenge"
rate_limit_failures = 1000
"""


class InProcessCa:
    """The service of a fresh data directory, reached by the real ScepTransport through an
    httpx.MockTransport that calls ScepService directly (no socket, no thread)."""

    URL = "http://ca.invalid/scep"

    def __init__(self, data_dir: Path):
        init_data_dir(data_dir, challenge="secret", config_text=CONFIG)
        config = load_config(data_dir)
        self.service = ScepService(load_profiles(config), open_store(config.database_url))
        self.profile = self.service.profiles["pq"]

    def _handle(self, request: httpx.Request) -> httpx.Response:
        operation = request.url.params.get("operation")
        if operation == "GetCACaps":
            reply = self.service.get_ca_caps(self.profile)
        elif operation == "GetCACert":
            reply = self.service.get_ca_cert(self.profile)
        elif operation == "PKIOperation":
            body = request.content if request.method == "POST" else base64.b64decode(request.url.params["message"])
            reply = self.service.pki_operation(self.profile, body)
        else:
            return httpx.Response(404)
        return httpx.Response(reply.status, headers={"Content-Type": reply.content_type}, content=reply.body)

    def session(self, dump_dir: Path, cipher: str) -> ScepSession:
        client = httpx.Client(transport=httpx.MockTransport(self._handle))
        return ScepSession(self.URL, ScepTransport(client=client), cipher=cipher, dumper=Dumper(dump_dir))


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return InProcessCa(tmp_path_factory.mktemp("asn1-ca") / "data")


def _messages(dumper: Dumper) -> list[tuple[str, bytes]]:
    """(name, DER) of every pkiMessage the client sent or received, in order."""
    out = []
    for path in dumper.saved:
        name = path.stem.split("-", 1)[1]
        if name in ("PKCSReq", "CertPoll", "CertRep", "RenewalReq"):
            out.append((name, path.read_bytes()))
    return out


@pytest.fixture(scope="module", params=["aes256-cbc", "aes256-gcm"])
def kem_flow(request, ca, tmp_path_factory):
    """An ML-KEM-768 key enrolled in challenge mode: PKCSReq, CertRep PENDING + kemPopChallenge,
    CertPoll + kemPopProof, CertRep SUCCESS (EnvelopedData with CBC, AuthEnvelopedData with GCM)."""
    key = generate_key("ml-kem-768")
    session = ca.session(tmp_path_factory.mktemp("dump"), request.param)
    outcome = enroll(session, key=key, subject=x509.Name.from_rfc4514_string("CN=asn1 kem device"),
                     challenge="secret")
    assert outcome.status == PkiStatus.SUCCESS, outcome
    messages = _messages(session.dumper)
    assert [name for name, _ in messages] == ["PKCSReq", "CertRep", "CertPoll", "CertRep"]
    return {"key": key, "outcome": outcome, "cipher": request.param,
            "walks": [(name, d.walk_content_info(der)) for name, der in messages]}


@pytest.fixture(scope="module")
def mldsa_flow(ca, tmp_path_factory):
    """An ML-DSA-65 key enrolled: a PKCSReq with a responseKey, and the CertRep SUCCESS
    encrypted to that responseKey (draft Section 6.1, rule 2)."""
    key = generate_key("ml-dsa-65")
    session = ca.session(tmp_path_factory.mktemp("dump"), "aes256-cbc")
    outcome = enroll(session, key=key, subject=x509.Name.from_rfc4514_string("CN=asn1 ml-dsa device"),
                     challenge="secret")
    assert outcome.status == PkiStatus.SUCCESS, outcome
    messages = _messages(session.dumper)
    assert [name for name, _ in messages] == ["PKCSReq", "CertRep"]
    return [(name, d.walk_content_info(der)) for name, der in messages]


def _printable(walk: d.Walk, oid: str) -> str:
    values = [a["attrValues"] for a in walk.signed_attributes if a["attrType"] == oid]
    assert len(values) == 1 and len(values[0]) == 1, oid
    return d.asn1_type(d.HELPER_MODULE, "TransactionID").decode(bytes(values[0][0]))


def _check_response_key(walk: d.Walk) -> dict:
    """The request carries exactly one responseKey value: an ML-KEM SubjectPublicKeyInfo with
    parameters absent (RFC 9935) and a public key of the parameter set's size."""
    values = walk.attribute(oids.SCEP_RESPONSE_KEY.dotted_string)
    assert len(values) == 1
    spki = values[0]
    assert spki["algorithm"]["algorithm"] == oids.ML_KEM_768.dotted_string  # the CA's recipient's set
    assert "parameters" not in spki["algorithm"]
    key_bytes, bits = spki["subjectPublicKey"]
    assert bits == 8 * len(key_bytes) == 8 * ML_KEM[oids.ML_KEM_768.dotted_string][0]
    return spki


def _check_kemri(info: dict, der: bytes, *, rid_ski: bytes | None = None) -> None:
    """KEMRecipientInfo with the values of the draft's section on the request envelope."""
    assert info["version"] == 0
    assert info["kem"]["algorithm"] == oids.ML_KEM_768.dotted_string and "parameters" not in info["kem"]
    assert len(info["kemct"]) == ML_KEM[oids.ML_KEM_768.dotted_string][1]
    assert info["kdf"] == {"algorithm": oids.HKDF_SHA256.dotted_string}
    assert info["kekLength"] == 32
    assert "ukm" not in info
    assert info["wrap"] == {"algorithm": oids.AES256_WRAP.dotted_string}
    assert len(info["encryptedKey"]) == 40  # AES key wrap of a 32-octet CEK (RFC 3394)
    if rid_ski is not None:
        assert info["rid"] == ("subjectKeyIdentifier", rid_ski)
    # RFC 9629 section 5: the KDF's info as the code computes it, from the wrap AlgorithmIdentifier
    # exactly as carried, decodes with CMSORIforKEMOtherInfo and re-encodes identically; and is
    # what asn1tools makes of the decoded fields.
    view = kem.parse_kem_recipient_info(der)
    code_info, _ = kem.derive_kek(b"\x00" * 32, view.kdf.oid, view.wrap_der, view.kek_length, view.ukm)
    other_info = d.asn1_type(d.KEMRI_MODULE, "CMSORIforKEMOtherInfo")
    assert d.der_round_trip(other_info, code_info) == {"wrap": info["wrap"], "kekLength": info["kekLength"]}
    assert other_info.encode({"wrap": info["wrap"], "kekLength": info["kekLength"]}) == code_info


def _check_envelope(walk: d.Walk, cipher: str) -> None:
    (content_type, envelope), = walk.envelopes
    if cipher == "aes256-gcm":
        assert content_type == d.ID_AUTH_ENVELOPED_DATA
        assert len(envelope["mac"]) == 16
        eci = envelope["authEncryptedContentInfo"]
    else:
        assert content_type == d.ID_ENVELOPED_DATA
        assert envelope["version"] == 3  # RFC 5652 6.1: an ori makes it version 3
        eci = envelope["encryptedContentInfo"]
    assert eci["contentType"] == d.ID_DATA
    assert eci["contentEncryptionAlgorithm"]["algorithm"] == (
        oids.AES256_GCM if cipher == "aes256-gcm" else oids.AES256_CBC).dotted_string


def test_pkcsreq_carries_a_response_key(kem_flow):
    (name, walk) = kem_flow["walks"][0]
    assert name == "PKCSReq" and _printable(walk, SCEP_MESSAGE_TYPE) == "19"
    _check_response_key(walk)
    # No challenge or proof in the first request.
    assert [t for _, t, _, _ in walk.scep_attributes] == ["ResponseKey"]
    # The envelope goes to the CA's ML-KEM recipient certificate (issuerAndSerialNumber rid).
    _check_envelope(walk, kem_flow["cipher"])
    (info,) = walk.kem_recipient_infos
    _check_kemri(info, walk.kem_recipient_info_ders[0])
    assert info["rid"][0] == "issuerAndSerialNumber"


def test_certrep_pending_carries_the_kem_pop_challenge(kem_flow):
    name, walk = kem_flow["walks"][1]
    assert name == "CertRep" and _printable(walk, SCEP_PKI_STATUS) == "3"  # PENDING
    (challenge,) = walk.attribute(oids.SCEP_KEM_POP_CHALLENGE.dotted_string)
    assert [t for _, t, _, _ in walk.scep_attributes] == ["KemPopChallenge"]
    assert challenge["kem"] == {"algorithm": oids.ML_KEM_768.dotted_string}  # parameters absent
    assert len(challenge["ct"]) == 1088
    # What the code reads from the same bytes (kem_pop.read_challenge) is what asn1tools read.
    _, _, _, der = walk.scep_attributes[0]
    assert kem_pop.read_challenge(der) == (oids.ML_KEM_768, challenge["ct"])
    # KemPopChallenge ::= KemCiphertextInfo: the imported type gives the same value and bytes.
    assert d.der_round_trip(d.asn1_type(d.CMP_MODULE, "KemCiphertextInfo"), der) == challenge
    assert walk.envelopes == []  # PENDING has no pkcsPKIEnvelope


def _csr_and_transaction(ca: InProcessCa, walk: d.Walk) -> tuple[bytes, str]:
    """DER(CSR) of the PKCSReq: its pkcsPKIEnvelope, taken from asn1tools' decoding, opened
    with the CA's recipient key."""
    econtent = walk.signed_data[0]["encapContentInfo"]["eContent"]
    opened = enveloped.open_envelope(econtent, ca.profile.responder.keys.recipients)
    return opened.content, _printable(walk, SCEP_TRANSACTION_ID)


def test_certpoll_carries_the_kem_pop_proof(kem_flow, ca):
    (_, request), (_, pending), (name, poll), _ = kem_flow["walks"]
    assert name == "CertPoll" and _printable(poll, SCEP_MESSAGE_TYPE) == "20"
    (proof,) = poll.attribute(oids.SCEP_KEM_POP_PROOF.dotted_string)
    assert sorted(t for _, t, _, _ in poll.scep_attributes) == ["KemPopProof", "ResponseKey"]
    assert proof["macAlgorithm"] == {"algorithm": HMAC_SHA256, "parameters": NULL}
    assert len(proof["mac"]) == kem_pop.MAC_LENGTH == 32
    # The MAC, recomputed from the draft's description alone (module comments and section on
    # the challenge): ss from the ciphertext asn1tools decoded, info = DER(KemOtherInfo) built
    # by asn1tools from the draft's definition, K = HKDF-SHA256(ss, empty salt, info, 32),
    # mac = HMAC-SHA256(K, DER(CSR)).
    csr_der, transaction_id = _csr_and_transaction(ca, request)
    assert _printable(poll, SCEP_TRANSACTION_ID) == transaction_id
    (challenge,) = pending.attribute(oids.SCEP_KEM_POP_CHALLENGE.dotted_string)
    shared_secret = kem_flow["key"].decapsulate(challenge["ct"])
    info = bytes(d.asn1_type(d.CMP_MODULE, "KemOtherInfo").encode({
        "staticString": ["SCEP-KEM-POP"],
        "transactionID": transaction_id.encode("ascii"),
        "kemContext": hashlib.sha256(csr_der).digest(),
    }))
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared_secret)
    assert hmac.new(key, csr_der, hashlib.sha256).digest() == proof["mac"]
    # The code's own KemOtherInfo for this transaction is those very bytes, and round-trips.
    code_info = kem_pop.kem_other_info(transaction_id, csr_der)
    assert code_info == info
    assert d.der_round_trip(d.asn1_type(d.CMP_MODULE, "KemOtherInfo"), code_info) == {
        "staticString": ["SCEP-KEM-POP"],
        "transactionID": transaction_id.encode("ascii"),
        "kemContext": hashlib.sha256(csr_der).digest(),
    }


def test_kem_csr_decodes_as_pkcs10_with_the_possession_statement(kem_flow, ca):
    csr_der, _ = _csr_and_transaction(ca, kem_flow["walks"][0][1])
    csr = d.der_round_trip(d.asn1_type(d.PKCS10_MODULE, "CertificationRequest"), csr_der)
    info = csr["certificationRequestInfo"]
    assert info["version"] == 0
    spki = info["subjectPKInfo"]
    assert spki["algorithm"] == {"algorithm": oids.ML_KEM_768.dotted_string}
    assert spki["subjectPublicKey"][0] == kem.ml_kem_spki(kem_flow["key"].public_key())[-1184:]
    statements = [a["attrValues"] for a in info["attributes"]
                  if a["attrType"] == oids.PRIVATE_KEY_POSSESSION_STATEMENT.dotted_string]
    assert len(statements) == 1 and len(statements[0]) == 1
    statement = d.der_round_trip(d.asn1_type(d.HELPER_MODULE, "PrivateKeyPossessionStatement"),
                                 bytes(statements[0][0]))
    assert statement["signer"]["serialNumber"] > 0 and "cert" in statement


def test_certrep_success_is_encrypted_to_the_new_kem_key(kem_flow):
    name, walk = kem_flow["walks"][3]
    assert name == "CertRep" and _printable(walk, SCEP_PKI_STATUS) == "0"  # SUCCESS
    assert walk.scep_attributes == []
    _check_envelope(walk, kem_flow["cipher"])
    (info,) = walk.kem_recipient_infos
    # Rule 1 of the draft's choice of recipient: rid is the new key's subjectKeyIdentifier.
    _check_kemri(info, walk.kem_recipient_info_ders[0], rid_ski=kem.key_identifier(kem_flow["key"].public_key()))


def test_every_request_of_the_kem_flow_has_one_response_key(kem_flow):
    for name, walk in kem_flow["walks"]:
        if name != "CertRep":
            _check_response_key(walk)
        else:
            assert walk.attribute(oids.SCEP_RESPONSE_KEY.dotted_string) == []


def test_ml_dsa_requester_gets_the_reply_encrypted_to_its_response_key(mldsa_flow):
    (_, request), (_, reply) = mldsa_flow
    spki = _check_response_key(request)
    assert [t for _, t, _, _ in request.scep_attributes] == ["ResponseKey"]
    _, _, _, spki_der = request.scep_attributes[0]
    public_key = kem.ml_kem_public_key_from_spki(spki_der)  # the code reads the same bytes
    assert kem.ml_kem_spki(public_key) == spki_der == d.draft_type("ResponseKey").encode(spki)
    assert _printable(reply, SCEP_PKI_STATUS) == "0"
    (info,) = reply.kem_recipient_infos
    _check_kemri(info, reply.kem_recipient_info_ders[0], rid_ski=kem.key_identifier(public_key))


# --------------------------------------------------------------------------------------------
# the committed vectors (pqscep vectors --out docs/vectors)
# --------------------------------------------------------------------------------------------

# PQSCEP_VECTORS_DIR points the test at another vectors directory (e.g. one being generated in
# another checkout) without copying it here; by default, the committed docs/vectors.
VECTORS = Path(os.environ.get("PQSCEP_VECTORS_DIR") or d.ROOT / "docs" / "vectors").resolve()
INDEX = VECTORS / "index.json"

# asn1_type of index.json -> (module, type) compiled above
VECTOR_TYPES = {
    "ContentInfo": (d.CMS_MODULE, "ContentInfo"),
    "Certificate": (d.PKIX_MODULE, "Certificate"),
    "CertificationRequest": (d.PKCS10_MODULE, "CertificationRequest"),
    "SubjectPublicKeyInfo": (d.PKIX_MODULE, "SubjectPublicKeyInfo"),
    "KemCiphertextInfo": (d.CMP_MODULE, "KemCiphertextInfo"),
    "KemOtherInfo": (d.CMP_MODULE, "KemOtherInfo"),
    "KemPopProof": (d.DRAFT_MODULE, "KemPopProof"),
    "CMSORIforKEMOtherInfo": (d.KEMRI_MODULE, "CMSORIforKEMOtherInfo"),
    "OneAsymmetricKey": (d.HELPER_MODULE, "OneAsymmetricKey"),
    "PrivateKeyInfo": (d.HELPER_MODULE, "PrivateKeyInfo"),
}


def _read_index() -> list[dict] | None:
    """The "files" list of index.json, None when it is not in the agreed form
    {"files": [{"path", "asn1_type", "description"}, ...]}."""
    index = json.loads(INDEX.read_text(encoding="utf-8"))
    if not isinstance(index, dict) or not isinstance(index.get("files"), list):
        return None
    return index["files"]


def _index_entries() -> list:
    if not INDEX.is_file():
        return [pytest.param(None, id="no-docs-vectors-index")]
    entries = _read_index()
    if entries is None:
        return [pytest.param(None, id="index-json-not-in-the-agreed-form")]
    return [pytest.param(e, id=e.get("path", "?")) for e in entries if e.get("asn1_type") != "text"] or \
        [pytest.param(None, id="no-asn1-files-in-index")]


def _need_index() -> dict:
    if not INDEX.is_file():
        unavailable(f"{INDEX} does not exist: run `pqscep vectors --out docs/vectors`")
    files = _read_index()
    assert files is not None, f'{INDEX} is not {{"files": [{{"path", "asn1_type", "description"}}, ...]}}'
    return {"files": files}


def _der(path: Path) -> bytes:
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return base64.b64decode(b"".join(line for line in data.splitlines() if not line.startswith(b"-----")))
    return data


def test_vector_index_is_well_formed():
    index = _need_index()
    files = index["files"]
    assert files, "index.json lists no file"
    paths = [entry["path"] for entry in files]
    assert len(paths) == len(set(paths)), "a file is listed twice"
    for entry in files:
        assert entry["asn1_type"] in {*VECTOR_TYPES, "text"}, entry
        assert entry.get("description"), entry
        path = (VECTORS / entry["path"]).resolve()
        assert path.is_relative_to(VECTORS) and path.is_file(), entry
    assert {"ContentInfo", "KemPopProof", "KemOtherInfo"} <= {e["asn1_type"] for e in files}


def _check_vector_walk(walk: d.Walk) -> None:
    """Semantic checks of what a ContentInfo vector holds, as the draft specifies the values."""
    for _oid, type_name, value, _ in walk.scep_attributes:
        if type_name == "KemPopChallenge":
            assert value["kem"]["algorithm"] in ML_KEM and "parameters" not in value["kem"]
            assert len(value["ct"]) == ML_KEM[value["kem"]["algorithm"]][1]
        elif type_name == "KemPopProof":
            assert value["macAlgorithm"]["algorithm"] == HMAC_SHA256
            assert value["macAlgorithm"].get("parameters", NULL) == NULL
            assert len(value["mac"]) == 32
        else:
            assert value["algorithm"]["algorithm"] in ML_KEM and "parameters" not in value["algorithm"]
            assert len(value["subjectPublicKey"][0]) == ML_KEM[value["algorithm"]["algorithm"]][0]
    for info in walk.kem_recipient_infos:
        assert info["version"] == 0
        assert info["kem"]["algorithm"] in ML_KEM
        assert len(info["kemct"]) == ML_KEM[info["kem"]["algorithm"]][1]


@pytest.mark.parametrize("entry", _index_entries())
def test_vector_decodes_with_the_compiled_module(entry):
    _need_index()
    assert entry is not None, "index.json lists no ASN.1 file"
    module, type_name = VECTOR_TYPES[entry["asn1_type"]]
    der = _der(VECTORS / entry["path"])
    value = d.der_round_trip(d.asn1_type(module, type_name), der)
    if entry["asn1_type"] == "ContentInfo":
        _check_vector_walk(d.walk_content_info(der))
    elif entry["asn1_type"] == "KemPopProof":
        _check_vector_walk(_walk_of(oids.SCEP_KEM_POP_PROOF, "KemPopProof", value, der))
    elif entry["asn1_type"] == "KemCiphertextInfo":
        # The same bytes as the draft's KemPopChallenge.
        assert d.der_round_trip(d.draft_type("KemPopChallenge"), der) == value
        _check_vector_walk(_walk_of(oids.SCEP_KEM_POP_CHALLENGE, "KemPopChallenge", value, der))
    elif entry["asn1_type"] == "KemOtherInfo":
        assert value["staticString"] == ["SCEP-KEM-POP"]
        assert len(value["kemContext"]) == 32  # SHA-256(DER(CSR))
    elif entry["asn1_type"] == "SubjectPublicKeyInfo" and value["algorithm"]["algorithm"] in ML_KEM:
        assert d.der_round_trip(d.draft_type("ResponseKey"), der) == value


def _walk_of(oid, type_name: str, value: dict, der: bytes) -> d.Walk:
    walk = d.Walk()
    walk.scep_attributes.append((oid.dotted_string, type_name, value, der))
    return walk
