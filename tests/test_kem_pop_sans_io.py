"""KEM proof of possession (draft Section 7, docs/draft): protocol.kem_pop and its ASN.1 in asn1.cms; the
CSR it covers (csr.pkcs10, csr.possession) and how the responder turns a refused CSR into failInfo.

Cross-checks against independent parsers: pyasn1-alt-modules' RFC 9810 (KemCiphertextInfo,
KemOtherInfo, PKIFreeText), RFC 9883 (PrivateKeyPossessionStatement) and RFC 2986
(CertificationRequest) modules; KemPopProof, which no RFC defines, against a pyasn1 spec written
here from the draft's ASN.1 module (Appendix A).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, mlkem, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import char, namedtype, univ
from pyasn1_alt_modules import rfc2986, rfc5280, rfc9810, rfc9883

from pqscep.asn1 import ber, cms, oids
from pqscep.csr import pkcs10, possession
from pqscep.csr.errors import CsrError
from pqscep.protocol import kem_pop
from pqscep.protocol.kem_pop import PopError
from pqscep.protocol.messages import FailInfo

KEMS = {"ml-kem-768": (mlkem.MLKEM768PrivateKey, oids.ML_KEM_768, 1088),
        "ml-kem-1024": (mlkem.MLKEM1024PrivateKey, oids.ML_KEM_1024, 1568)}
TX = "7A1C0F3E9B2D4C5A8E6F1029384756AB"  # a SCEP transactionID (PrintableString)
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(key, issuer_key, *, serial: int = 0x1234, issuer: str = "pqscep test CA") -> x509.Certificate:
    algorithm = None if isinstance(issuer_key, mldsa.MLDSA65PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(_name("device-1"))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(issuer_key, algorithm)
    )


@pytest.fixture(scope="module")
def signers():
    """{family: (signer private key, its certificate)}; the certificates come from one EC CA."""
    ca = ec.generate_private_key(ec.SECP256R1())
    result = {}
    for family, key in (("rsa", rsa.generate_private_key(65537, 2048)),
                        ("ec", ec.generate_private_key(ec.SECP256R1())),
                        ("ml-dsa", mldsa.MLDSA65PrivateKey.generate())):
        result[family] = (key, _certificate(key, ca))
    return result


@pytest.fixture(scope="module")
def kem_keys():
    return {name: cls.generate() for name, (cls, _, _) in KEMS.items()}


@pytest.fixture(scope="module")
def csrs(signers, kem_keys):
    """{kem name: CSR DER} for the ML-KEM keys, signed by the EC signer."""
    key, cert = signers["ec"]
    return {name: pkcs10.build_kem_csr(k.public_key(), _name("device-1"), key, cert, challenge_password="pw")
            for name, k in kem_keys.items()}


@pytest.fixture(scope="module")
def flows(kem_keys, csrs):
    """{kem name: (KemChallenge, challenge attribute, proof attribute)} for transactionID TX."""
    result = {}
    for name, key in kem_keys.items():
        challenge, attr = kem_pop.issue_challenge(key.public_key())
        result[name] = (challenge, attr, kem_pop.make_proof(key, attr, TX, csrs[name]))
    return result


def _pop_error(fn, *args) -> PopError:
    with pytest.raises(PopError) as info:
        fn(*args)
    return info.value


def _csr_error(fn, *args) -> CsrError:
    with pytest.raises(CsrError) as info:
        fn(*args)
    return info.value


def _proof(mac: bytes, oid=oids.HMAC_WITH_SHA256, params: bytes | None = cms.NULL) -> bytes:
    return cms.encode(cms.KemPopProof(mac_algorithm=cms.algorithm_tlv(oid, params), mac=mac))


# --------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kem_name", sorted(KEMS))
def test_challenge_response_round_trip(kem_name, kem_keys, csrs):
    key, csr = kem_keys[kem_name], csrs[kem_name]
    _, oid, ct_size = KEMS[kem_name]
    challenge, attr = kem_pop.issue_challenge(key.public_key())
    assert challenge.kem_oid == oid and len(challenge.ciphertext) == ct_size
    assert len(challenge.shared_secret) == 32
    assert kem_pop.read_challenge(attr) == (oid, challenge.ciphertext)
    proof = kem_pop.make_proof(key, attr, TX, csr)
    assert kem_pop.verify_proof(challenge.shared_secret, proof, TX, csr) is None
    # the client's K (from decapsulation) and the CA's K (from encapsulation) are the same
    assert (kem_pop.derive_pop_key(key.decapsulate(challenge.ciphertext), TX, csr)
            == kem_pop.derive_pop_key(challenge.shared_secret, TX, csr))
    assert challenge.shared_secret.hex() not in repr(challenge) and str(challenge.shared_secret) not in repr(challenge)


@pytest.mark.parametrize("kem_name", sorted(KEMS))
def test_challenge_from_the_csr_spki(kem_name, kem_keys, csrs):
    """The CA can encapsulate straight to the SubjectPublicKeyInfo it read out of the CSR."""
    view = pkcs10.parse_csr(csrs[kem_name])
    challenge, attr = kem_pop.issue_challenge(view.spki_der)
    proof = kem_pop.make_proof(kem_keys[kem_name], attr, TX, csrs[kem_name])
    kem_pop.verify_proof(challenge.shared_secret, proof, TX, csrs[kem_name])


def test_every_challenge_encapsulates_afresh(kem_keys):
    public = kem_keys["ml-kem-768"].public_key()
    (a, _), (b, _) = kem_pop.issue_challenge(public), kem_pop.issue_challenge(public)
    assert a.ciphertext != b.ciphertext and a.shared_secret != b.shared_secret


def test_key_derivation_follows_the_design(flows, csrs):
    """K = HKDF-SHA256(ss, salt empty, L 32, info = DER(KemOtherInfo)), MAC = HMAC-SHA256(K, CSR),
    recomputed here with cryptography and pyasn1 only."""
    challenge, _, proof = flows["ml-kem-768"]
    csr = csrs["ml-kem-768"]
    info = rfc9810.KemOtherInfo()
    info["staticString"].append(char.UTF8String("SCEP-KEM-POP"))
    info["transactionID"] = TX.encode("ascii")
    info["kemContext"] = hashlib.sha256(csr).digest()
    info_der = der_encoder.encode(info)
    assert info_der[-34:-32] == b"\x04\x20" and info_der[-36] == 0xA0  # [0] EXPLICIT OCTET STRING
    other_info, key = kem_pop.derive_pop_key(challenge.shared_secret, TX, csr)
    assert other_info == info_der
    assert key == HKDF(hashes.SHA256(), 32, b"", info_der).derive(challenge.shared_secret)
    decoded, rest = der_decoder.decode(proof, asn1Spec=_PyKemPopProof())
    assert rest == b""
    assert bytes(decoded["mac"]) == hmac.new(key, csr, hashlib.sha256).digest()
    assert decoded["macAlgorithm"]["algorithm"] == univ.ObjectIdentifier("1.2.840.113549.2.9")
    assert bytes(decoded["macAlgorithm"]["parameters"]) == b"\x05\x00"
    assert der_encoder.encode(decoded) == proof


# --------------------------------------------------------------------------------------------
# the DER against independent specs
# --------------------------------------------------------------------------------------------


class _PyKemPopProof(univ.Sequence):
    """KemPopProof ::= SEQUENCE { macAlgorithm AlgorithmIdentifier, mac OCTET STRING } (draft Appendix A)."""

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("macAlgorithm", rfc5280.AlgorithmIdentifier()),
        namedtype.NamedType("mac", univ.OctetString()),
    )


@pytest.mark.parametrize("kem_name", sorted(KEMS))
def test_kem_ciphertext_info_matches_rfc9810_module(kem_name, flows):
    challenge, attr, _ = flows[kem_name]
    decoded, rest = der_decoder.decode(attr, asn1Spec=rfc9810.KemCiphertextInfo())
    assert rest == b""
    assert decoded["kem"]["algorithm"] == univ.ObjectIdentifier(KEMS[kem_name][1].dotted_string)
    assert not decoded["kem"]["parameters"].isValue  # RFC 9936: absent
    assert bytes(decoded["ct"]) == challenge.ciphertext
    built = rfc9810.KemCiphertextInfo()
    built["kem"]["algorithm"] = univ.ObjectIdentifier(KEMS[kem_name][1].dotted_string)
    built["ct"] = challenge.ciphertext
    assert der_encoder.encode(built) == attr


def test_kem_other_info_decodes_with_rfc9810_module(csrs):
    info_der, _ = kem_pop.derive_pop_key(b"\x00" * 32, TX, csrs["ml-kem-1024"])
    decoded, rest = der_decoder.decode(info_der, asn1Spec=rfc9810.KemOtherInfo())
    assert rest == b""
    assert [str(s) for s in decoded["staticString"]] == ["SCEP-KEM-POP"]
    assert bytes(decoded["transactionID"]) == TX.encode("ascii")
    assert bytes(decoded["kemContext"]) == hashlib.sha256(csrs["ml-kem-1024"]).digest()
    assert der_encoder.encode(decoded) == info_der


# --------------------------------------------------------------------------------------------
# every negative of verify_proof
# --------------------------------------------------------------------------------------------


def test_wrong_mac_is_bad_message_check(flows, csrs):
    challenge, _, proof = flows["ml-kem-768"]
    mac = cms.decode_der(cms.KemPopProof, proof).mac
    errors = []
    for i in (0, 13, 31):
        flipped = bytearray(mac)
        flipped[i] ^= 0x80
        errors.append(_pop_error(kem_pop.verify_proof, challenge.shared_secret, _proof(bytes(flipped)), TX,
                                 csrs["ml-kem-768"]))
    assert {e.fail_info for e in errors} == {FailInfo.BAD_MESSAGE_CHECK}
    assert len({str(e) for e in errors}) == 1  # the text does not say where the MAC differs


@pytest.mark.parametrize("mac", [b"", b"\x00" * 32, b"\x00" * 31, b"\x00" * 33])
def test_mac_of_any_other_value_or_length_is_bad_message_check(mac, flows, csrs):
    challenge, _, _ = flows["ml-kem-768"]
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, _proof(mac), TX, csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_MESSAGE_CHECK


def test_right_mac_truncated_or_extended_is_bad_message_check(flows, csrs):
    challenge, _, proof = flows["ml-kem-768"]
    mac = cms.decode_der(cms.KemPopProof, proof).mac
    for candidate in (mac[:-1], mac + b"\x00", mac[:16]):
        err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, _proof(candidate), TX, csrs["ml-kem-768"])
        assert err.fail_info == FailInfo.BAD_MESSAGE_CHECK


def test_mac_for_another_transaction_id_is_bad_message_check(kem_keys, flows, csrs):
    challenge, attr, _ = flows["ml-kem-768"]
    other = kem_pop.make_proof(kem_keys["ml-kem-768"], attr, TX + "X", csrs["ml-kem-768"])
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, other, TX, csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_MESSAGE_CHECK


def test_mac_over_another_csr_is_bad_message_check(kem_keys, flows, csrs, signers):
    challenge, attr, _ = flows["ml-kem-768"]
    key, cert = signers["ml-dsa"]
    other_csr = pkcs10.build_kem_csr(kem_keys["ml-kem-768"].public_key(), _name("device-1"), key, cert)
    other = kem_pop.make_proof(kem_keys["ml-kem-768"], attr, TX, other_csr)
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, other, TX, csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_MESSAGE_CHECK
    # and the proof for the CSR the CA holds is not accepted for another CSR either
    _, _, right = flows["ml-kem-768"]
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, right, TX, other_csr)
    assert err.fail_info == FailInfo.BAD_MESSAGE_CHECK


def test_proof_for_another_challenge_is_bad_message_check(kem_keys, flows, csrs):
    """A proof answers one encapsulation: the next challenge's shared secret rejects it."""
    _, _, proof = flows["ml-kem-768"]
    fresh, _ = kem_pop.issue_challenge(kem_keys["ml-kem-768"].public_key())
    err = _pop_error(kem_pop.verify_proof, fresh.shared_secret, proof, TX, csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_MESSAGE_CHECK


@pytest.mark.parametrize(
    "oid", [oids.HMAC_WITH_SHA1, oids.HMAC_WITH_SHA512, oids.SHA256, x509.ObjectIdentifier("1.2.3.4")]
)
def test_unknown_mac_algorithm_is_bad_alg(oid, flows, csrs):
    challenge, _, proof = flows["ml-kem-768"]
    mac = cms.decode_der(cms.KemPopProof, proof).mac
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, _proof(mac, oid), TX, csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_ALG


def test_hmac_parameters(flows, csrs):
    challenge, _, proof = flows["ml-kem-768"]
    mac = cms.decode_der(cms.KemPopProof, proof).mac
    # absent is accepted like NULL (RFC 4231 / RFC 8018 writers differ)
    kem_pop.verify_proof(challenge.shared_secret, _proof(mac, params=None), TX, csrs["ml-kem-768"])
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, _proof(mac, params=b"\x02\x01\x20"), TX,
                     csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_ALG


def _malformed_proofs(proof: bytes) -> list[bytes]:
    mac = cms.decode_der(cms.KemPopProof, proof).mac
    return [
        b"",
        b"\x30\x00",
        proof[:-1],  # truncated
        proof + b"\x00",  # trailing data
        b"\x04\x20" + mac,  # the bare MAC, not a KemPopProof
        ber.encode_tlv(0x30, cms.encode_algorithm(oids.HMAC_WITH_SHA256, cms.NULL)),  # no mac
        ber.encode_tlv(0x30, cms.encode(mac) + cms.encode_algorithm(oids.HMAC_WITH_SHA256)),  # swapped
        ber.encode_tlv(0x30, b"\x30\x00" + cms.encode(mac)),  # AlgorithmIdentifier without an OID
        b"\x31" + proof[1:],  # a SET
        b"\x30\x80" + proof[2:] + b"\x00\x00",  # BER indefinite length
    ]


def test_malformed_proof_is_bad_request(flows, csrs):
    challenge, _, proof = flows["ml-kem-768"]
    for bad in _malformed_proofs(proof):
        err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, bad, TX, csrs["ml-kem-768"])
        assert err.fail_info == FailInfo.BAD_REQUEST, bad.hex()


@pytest.mark.parametrize("tx", ["", "caf\u00e9", "a\nb"])
def test_bad_transaction_id_is_bad_request(tx, flows, csrs):
    challenge, _, proof = flows["ml-kem-768"]
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, proof, tx, csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_REQUEST


def test_derive_refuses_a_shared_secret_of_the_wrong_size(csrs):
    with pytest.raises(ValueError):
        kem_pop.derive_pop_key(b"\x00" * 31, TX, csrs["ml-kem-768"])


# --------------------------------------------------------------------------------------------
# the challenge attribute
# --------------------------------------------------------------------------------------------


def _challenge(oid, ct: bytes, params: bytes | None = None) -> bytes:
    return cms.encode(cms.KemCiphertextInfo(kem=cms.algorithm_tlv(oid, params), ct=ct))


@pytest.mark.parametrize("kem_name", sorted(KEMS))
def test_truncated_ciphertext_is_bad_request(kem_name, kem_keys, flows, csrs):
    challenge, _, _ = flows[kem_name]
    oid = KEMS[kem_name][1]
    for ct in (challenge.ciphertext[:-1], challenge.ciphertext + b"\x00", b""):
        err = _pop_error(kem_pop.read_challenge, _challenge(oid, ct))
        assert err.fail_info == FailInfo.BAD_REQUEST
        err = _pop_error(kem_pop.make_proof, kem_keys[kem_name], _challenge(oid, ct), TX, csrs[kem_name])
        assert err.fail_info == FailInfo.BAD_REQUEST


def test_ciphertext_of_the_other_kem_size_is_bad_request(flows):
    ct_1024 = flows["ml-kem-1024"][0].ciphertext
    err = _pop_error(kem_pop.read_challenge, _challenge(oids.ML_KEM_768, ct_1024))
    assert err.fail_info == FailInfo.BAD_REQUEST


@pytest.mark.parametrize(
    "oid", [oids.ML_KEM_512, oids.ML_DSA_65, oids.RSA_ENCRYPTION, x509.ObjectIdentifier("1.2.3.4")]
)
def test_wrong_kem_oid_is_bad_alg(oid, flows):
    err = _pop_error(kem_pop.read_challenge, _challenge(oid, flows["ml-kem-768"][0].ciphertext))
    assert err.fail_info == FailInfo.BAD_ALG


def test_kem_parameters_are_bad_alg(flows):
    err = _pop_error(kem_pop.read_challenge, _challenge(oids.ML_KEM_768, flows["ml-kem-768"][0].ciphertext, cms.NULL))
    assert err.fail_info == FailInfo.BAD_ALG


def test_challenge_for_another_kem_than_the_key_is_bad_alg(kem_keys, flows, csrs):
    _, attr_1024, _ = flows["ml-kem-1024"]
    err = _pop_error(kem_pop.make_proof, kem_keys["ml-kem-768"], attr_1024, TX, csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_ALG
    err = _pop_error(kem_pop.make_proof, ec.generate_private_key(ec.SECP256R1()), attr_1024, TX, csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_ALG


def test_malformed_challenge_is_bad_request(flows):
    _, attr, _ = flows["ml-kem-768"]
    for bad in (b"", b"\x30\x00", attr[:-1], attr + b"\x00", b"\x04\x03abc",
                ber.encode_tlv(0x30, cms.encode(b"ct") + cms.encode_algorithm(oids.ML_KEM_768))):
        err = _pop_error(kem_pop.read_challenge, bad)
        assert err.fail_info == FailInfo.BAD_REQUEST, bad[:8].hex()


def test_challenge_to_a_key_that_is_not_ml_kem_is_bad_alg(signers):
    key, _ = signers["ec"]
    assert _pop_error(kem_pop.issue_challenge, key.public_key()).fail_info == FailInfo.BAD_ALG
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert _pop_error(kem_pop.issue_challenge, spki).fail_info == FailInfo.BAD_ALG


# --------------------------------------------------------------------------------------------
# property: nothing but the exact MAC is ever accepted
# --------------------------------------------------------------------------------------------


def _right_mac(flows, kem_name="ml-kem-768") -> bytes:
    return cms.decode_der(cms.KemPopProof, flows[kem_name][2]).mac


@PROFILE
@given(mac=st.binary(max_size=80))
def test_property_random_macs_are_refused(mac, flows, csrs):
    assume(mac != _right_mac(flows))
    challenge = flows["ml-kem-768"][0]
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, _proof(mac), TX, csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_MESSAGE_CHECK


@PROFILE
@given(bit=st.integers(min_value=0, max_value=8 * kem_pop.MAC_LENGTH - 1), kem_name=st.sampled_from(sorted(KEMS)))
def test_property_single_bit_flips_are_refused(bit, kem_name, flows, csrs):
    mac = bytearray(_right_mac(flows, kem_name))
    mac[bit // 8] ^= 1 << (bit % 8)
    challenge = flows[kem_name][0]
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, _proof(bytes(mac)), TX, csrs[kem_name])
    assert err.fail_info == FailInfo.BAD_MESSAGE_CHECK


@PROFILE
@given(tx=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64))
def test_property_proofs_for_other_transaction_ids_are_refused(tx, kem_keys, flows, csrs):
    assume(tx != TX)
    challenge, attr, _ = flows["ml-kem-768"]
    proof = kem_pop.make_proof(kem_keys["ml-kem-768"], attr, tx, csrs["ml-kem-768"])
    kem_pop.verify_proof(challenge.shared_secret, proof, tx, csrs["ml-kem-768"])  # right for its own tx
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, proof, TX, csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_MESSAGE_CHECK


@PROFILE
@given(other_csr=st.binary(max_size=300))
def test_property_proofs_over_other_csrs_are_refused(other_csr, kem_keys, flows, csrs):
    assume(other_csr != csrs["ml-kem-768"])
    challenge, attr, right = flows["ml-kem-768"]
    proof = kem_pop.make_proof(kem_keys["ml-kem-768"], attr, TX, other_csr)
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, proof, TX, csrs["ml-kem-768"])
    assert err.fail_info == FailInfo.BAD_MESSAGE_CHECK
    err = _pop_error(kem_pop.verify_proof, challenge.shared_secret, right, TX, other_csr)
    assert err.fail_info == FailInfo.BAD_MESSAGE_CHECK


@PROFILE
@given(attribute=st.binary(max_size=120))
def test_property_arbitrary_attributes_are_refused(attribute, flows, csrs):
    assume(attribute != flows["ml-kem-768"][2])
    challenge = flows["ml-kem-768"][0]
    with pytest.raises(PopError):
        kem_pop.verify_proof(challenge.shared_secret, attribute, TX, csrs["ml-kem-768"])


# --------------------------------------------------------------------------------------------
# RFC 9883 privateKeyPossessionStatement
# --------------------------------------------------------------------------------------------


def _issuer_der(cert: x509.Certificate) -> bytes:
    tbs, _ = der_decoder.decode(cert.tbs_certificate_bytes, asn1Spec=rfc5280.TBSCertificate())
    return der_encoder.encode(tbs["issuer"])


@pytest.mark.parametrize("include", [True, False])
def test_possession_statement_round_trip(include, signers):
    _, cert = signers["ml-dsa"]
    der = possession.build_possession_statement(cert, include_certificate=include)
    issuer, serial, carried = possession.read_possession_statement(der)
    assert issuer == _issuer_der(cert) == possession.certificate_issuer_der(cert)
    assert serial == cert.serial_number
    assert (carried == cert) if include else carried is None
    decoded, rest = der_decoder.decode(der, asn1Spec=rfc9883.PrivateKeyPossessionStatement())
    assert rest == b""
    assert int(decoded["signer"]["serialNumber"]) == cert.serial_number
    assert der_encoder.encode(decoded["signer"]["issuer"]) == issuer
    assert decoded["cert"].isValue == include
    if include:
        assert der_encoder.encode(decoded["cert"]) == cert.public_bytes(serialization.Encoding.DER)
    assert der_encoder.encode(decoded) == der


def test_signed_attributes_use_the_provisional_oids(flows):
    _, attr, proof = flows["ml-kem-768"]
    challenge = kem_pop.challenge_attribute(attr)
    assert challenge.attr_type.dotted_string == "1.3.6.1.5.5.7.24.2"
    assert [cms.tlv_bytes(v) for v in challenge.attr_values.as_list()] == [attr]
    response = kem_pop.proof_attribute(proof)
    assert response.attr_type.dotted_string == "1.3.6.1.5.5.7.24.3"
    assert [cms.tlv_bytes(v) for v in response.attr_values.as_list()] == [proof]


def test_possession_statement_oid_is_rfc9883s():
    assert oids.PRIVATE_KEY_POSSESSION_STATEMENT.dotted_string == str(rfc9883.id_statementOfPossession)


def test_possession_statement_certificate_must_be_the_signers(signers):
    _, cert = signers["rsa"]
    _, other = signers["ec"]  # same issuer and serial: both come from _certificate(serial=0x1234)
    mismatched = cms.encode(cms.PrivateKeyPossessionStatement(
        signer=cms.IssuerAndSerialNumber(issuer=cms.as_tlv(possession.certificate_issuer_der(cert)),
                                         serial_number=cert.serial_number + 1),
        cert=cms.decode_der(cms.CertificateParts, other.public_bytes(serialization.Encoding.DER)),
    ))
    assert _csr_error(possession.read_possession_statement, mismatched).reason == "malformed"


def test_malformed_possession_statement_is_bad_request(signers):
    _, cert = signers["ec"]
    der = possession.build_possession_statement(cert)
    for bad in (b"", b"\x30\x00", der[:-1], der + b"\x00", b"\x05\x00",
                ber.encode_tlv(0x30, ber.encode_tlv(0x30, b"\x02\x01\x01"))):
        assert _csr_error(possession.read_possession_statement, bad).reason == "malformed"


# --------------------------------------------------------------------------------------------
# the hand-built PKCS #10 (ML-KEM subject key, signed by another key)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["rsa", "ec", "ml-dsa"])
@pytest.mark.parametrize("kem_name", sorted(KEMS))
def test_kem_csr_loads_and_verifies_with_the_signer_key(family, kem_name, signers, kem_keys):
    key, cert = signers[family]
    kem_key = kem_keys[kem_name]
    san = x509.Extension(x509.SubjectAlternativeName.oid, False,
                         x509.SubjectAlternativeName([x509.DNSName("device-1.example")]))
    der = pkcs10.build_kem_csr(kem_key.public_key(), _name("device-1"), key, cert,
                               challenge_password="s3cret", extensions=[san])

    # cryptography reads it
    csr = x509.load_der_x509_csr(der)
    assert csr.subject == _name("device-1")
    assert csr.public_key() == kem_key.public_key()
    assert csr.attributes.get_attribute_for_oid(oids.CHALLENGE_PASSWORD).value == b"s3cret"
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == san.value
    assert csr.is_signature_valid is False  # it checks with the CSR's own (ML-KEM) key
    assert csr.public_bytes(serialization.Encoding.DER) == der

    # an independent parser reads it (RFC 2986 module) and re-encodes it byte for byte
    decoded, rest = der_decoder.decode(der, asn1Spec=rfc2986.CertificationRequest())
    assert rest == b""
    assert der_encoder.encode(decoded) == der
    info = decoded["certificationRequestInfo"]
    assert int(info["version"]) == 0
    assert der_encoder.encode(info["subjectPKInfo"]) == kem_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    by_type = {str(a["type"]): a["values"] for a in info["attributes"]}
    statement, _ = der_decoder.decode(bytes(by_type[oids.PRIVATE_KEY_POSSESSION_STATEMENT.dotted_string][0]),
                                      asn1Spec=rfc9883.PrivateKeyPossessionStatement())
    assert int(statement["signer"]["serialNumber"]) == cert.serial_number
    password, _ = der_decoder.decode(bytes(by_type[oids.CHALLENGE_PASSWORD.dotted_string][0]))
    assert isinstance(password, char.PrintableString) and str(password) == "s3cret"

    # the signature is the signer's
    pkcs10.verify_csr_with(der, cert.public_key())
    assert pkcs10.csr_possession_statement(der) == (possession.certificate_issuer_der(cert), cert.serial_number, cert)
    assert pkcs10.parse_csr(der).spki_der == der_encoder.encode(info["subjectPKInfo"])


@pytest.mark.parametrize("family", ["rsa", "ec", "ml-dsa"])
def test_kem_csr_fails_with_another_key(family, signers, csrs, kem_keys):
    key, cert = signers[family]
    der = pkcs10.build_kem_csr(kem_keys["ml-kem-768"].public_key(), _name("device-1"), key, cert)
    same_family = {"rsa": lambda: rsa.generate_private_key(65537, 2048),
                   "ec": lambda: ec.generate_private_key(ec.SECP256R1()),
                   "ml-dsa": mldsa.MLDSA65PrivateKey.generate}[family]().public_key()
    assert _csr_error(pkcs10.verify_csr_with, der, same_family).reason == "signature"
    other_family = signers["ec" if family != "ec" else "rsa"][0].public_key()
    assert _csr_error(pkcs10.verify_csr_with, der, other_family).reason == "algorithm"
    # nor with the CSR's own ML-KEM key, which cannot sign at all
    assert _csr_error(pkcs10.verify_csr_with, der, kem_keys["ml-kem-768"].public_key()).reason == "algorithm"


def test_kem_csr_with_another_ml_dsa_size_is_bad_alg(signers, kem_keys):
    key, cert = signers["ml-dsa"]
    der = pkcs10.build_kem_csr(kem_keys["ml-kem-768"].public_key(), _name("d"), key, cert)
    other = mldsa.MLDSA44PrivateKey.generate().public_key()
    assert _csr_error(pkcs10.verify_csr_with, der, other).reason == "algorithm"


def test_tampered_kem_csr_fails(csrs, signers):
    der = bytearray(csrs["ml-kem-768"])
    at = der.index(b"device-1")
    der[at] ^= 0x01  # "eevice-1": still DER, no longer what was signed
    _, cert = signers["ec"]
    assert _csr_error(pkcs10.verify_csr_with, bytes(der), cert.public_key()).reason == "signature"


def test_csr_signature_algorithm_must_name_a_signature(csrs, signers):
    """rsaEncryption / ecPublicKey are fine in a CMS SignerInfo, not as a CSR signatureAlgorithm."""
    view = pkcs10.parse_csr(csrs["ml-kem-768"])
    _, cert = signers["ec"]
    for oid, params in ((oids.EC_PUBLIC_KEY, None), (oids.MD5_WITH_RSA, cms.NULL),
                        (x509.ObjectIdentifier("1.2.3"), None), (oids.ECDSA_WITH_SHA256, cms.NULL)):
        der = cms.encode(cms.CertificationRequest(
            certification_request_info=cms.as_tlv(view.info_der),
            signature_algorithm=cms.algorithm_tlv(oid, params),
            signature=cms.asn1.BitString(view.signature, 0),
        ))
        assert _csr_error(pkcs10.verify_csr_with, der, cert.public_key()).reason == "algorithm", oid


def test_malformed_csr_is_bad_request(csrs, signers):
    _, cert = signers["ec"]
    der = csrs["ml-kem-768"]
    for bad in (b"", der[:-1], der + b"\x00", b"\x30\x00"):
        assert _csr_error(pkcs10.verify_csr_with, bad, cert.public_key()).reason == "malformed"


def test_csr_without_a_statement(kem_keys, signers):
    key, cert = signers["ec"]
    der = pkcs10.build_kem_csr(kem_keys["ml-kem-768"].public_key(), _name("d"), key, cert, include_certificate=False)
    assert pkcs10.csr_possession_statement(der)[2] is None
    view = pkcs10.parse_csr(der)
    stripped = cms.CertificationRequestInfo(
        version=0, subject=cms.as_tlv(view.subject_der), subject_pk_info=cms.as_tlv(view.spki_der),
        attributes=cms.SetOf([]))
    no_statement = pkcs10.CsrView(cms.encode(stripped), view.subject_der, view.spki_der, {},
                                  view.signature_algorithm, view.signature)
    assert _csr_error(pkcs10.csr_possession_statement, no_statement).reason == "malformed"


def test_csr_builder_refuses_a_signer_key_that_is_not_the_certificates(kem_keys, signers):
    _, cert = signers["ec"]
    with pytest.raises(ValueError):
        pkcs10.build_kem_csr(kem_keys["ml-kem-768"].public_key(), _name("d"),
                             ec.generate_private_key(ec.SECP256R1()), cert)


def test_non_printable_challenge_password_is_utf8(kem_keys, signers):
    key, cert = signers["ec"]
    der = pkcs10.build_kem_csr(kem_keys["ml-kem-768"].public_key(), _name("d"), key, cert,
                               challenge_password="p\u00e4ss_*")
    value = pkcs10.parse_csr(der).attributes[oids.CHALLENGE_PASSWORD][0]
    assert value[0] == 0x0C and x509.load_der_x509_csr(der).attributes.get_attribute_for_oid(
        oids.CHALLENGE_PASSWORD).value == "p\u00e4ss_*".encode()


def test_responder_maps_a_refused_kem_csr_to_fail_info(signers, kem_keys):
    """The responder's check of an ML-KEM CSR answers a CsrError with the failInfo of its reason:
    "malformed" badRequest, "algorithm" badAlg, "signature" badMessageCheck."""
    from pqscep.crypto.registry import DIGESTS
    from pqscep.protocol.requests import PartialRequest
    from pqscep.protocol.server import RequestRejected, _check_kem_csr

    key, cert = signers["ec"]
    der = pkcs10.build_kem_csr(kem_keys["ml-kem-768"].public_key(), _name("device-1"), key, cert)

    def rejected(raw_csr: bytes, signer_cert: x509.Certificate) -> FailInfo:
        verified = PartialRequest(transaction_id=TX, sender_nonce=bytes(16), digest=DIGESTS.by_name("sha256"))
        with pytest.raises(RequestRejected) as info:
            _check_kem_csr(raw_csr, x509.load_der_x509_csr(der), signer_cert, verified)
        return info.value.fail_info

    other_ec = _certificate(ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1()))
    assert rejected(der, other_ec) == FailInfo.BAD_MESSAGE_CHECK
    assert rejected(der, signers["rsa"][1]) == FailInfo.BAD_ALG
    assert rejected(der[:-1], cert) == FailInfo.BAD_REQUEST
