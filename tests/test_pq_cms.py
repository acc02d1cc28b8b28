"""KEMRecipientInfo (pqscep.cms.kem), PasswordRecipientInfo (pqscep.cms.password) and the PQ key
loader (pqscep.crypto.pkcs8, fips203, fips204): round trips over every supported combination, the negative cases
with the EnvelopeError flags the protocol layer maps to failInfo, and pyasn1-alt-modules as an
independent ASN.1 oracle for what we write.
"""

from __future__ import annotations

import datetime
import itertools
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.asn1 import SetOf
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, mlkem, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1_alt_modules import rfc5652, rfc8018, rfc9629

from pqscep.asn1 import ber, cms, oids
from pqscep.cms import enveloped, kem, password
from pqscep.cms.signed import attribute
from pqscep.crypto import fips203, fips204, key_errors, pbes2, pkcs8
from pqscep.crypto.registry import CIPHERS, KDFS, KEY_WRAPS

EnvelopeError = enveloped.EnvelopeError

# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

KEMS = {"ml-kem-768": mlkem.MLKEM768PrivateKey, "ml-kem-1024": mlkem.MLKEM1024PrivateKey}


def _ml_kem_certificate(key) -> x509.Certificate:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pqscep test CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recipient")]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier(os.urandom(20)), critical=False)  # not method 1
        .add_extension(x509.KeyUsage(False, False, True, False, False, False, False, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def recipients():
    """{kem name: (private key, certificate)}"""
    result = {}
    for name, cls in KEMS.items():
        key = cls.generate()
        result[name] = (key, _ml_kem_certificate(key))
    return result


def _ski(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def _body(data: bytes):
    content_info = cms.decode(cms.ContentInfo, data)
    cls = cms.AuthEnvelopedData if content_info.content_type == oids.AUTH_ENVELOPED_DATA else cms.EnvelopedData
    return content_info.content_type, cms.decode_der(cls, cms.tlv_bytes(content_info.content))


def _recipient_info(data: bytes) -> bytes:
    _, body = _body(data)
    (info,) = body.recipient_infos.as_list()
    return cms.tlv_bytes(info)


# --------------------------------------------------------------------------------------------
# KEMRecipientInfo round trips
# --------------------------------------------------------------------------------------------

MATRIX = list(
    itertools.product(
        KEMS,
        ["hkdf-sha256", "hkdf-sha384", "hkdf-sha512"],
        ["aes128-wrap", "aes192-wrap", "aes256-wrap"],
        [None, b"user keying material"],
        ["issuer-serial", "ski"],
        ["aes256-cbc", "aes256-gcm"],
    )
)


@pytest.mark.parametrize("kem_name,kdf,wrap,ukm,rid,cipher", MATRIX)
def test_kemri_round_trip(recipients, kem_name, kdf, wrap, ukm, rid, cipher):
    key, cert = recipients[kem_name]
    if rid == "issuer-serial":
        originator = kem.KemOriginator(key.public_key(), certificate=cert, kdf=kdf, wrap=wrap, ukm=ukm)
    else:
        originator = kem.KemOriginator(key.public_key(), subject_key_identifier=_ski(cert), kdf=kdf, wrap=wrap, ukm=ukm)
    content = b"pkcsPKIEnvelope content " * 3
    data = enveloped.seal_envelope(content, originator, CIPHERS.by_name(cipher), os.urandom)

    content_type, body = _body(data)
    if cipher.endswith("gcm"):
        assert content_type == oids.AUTH_ENVELOPED_DATA and body.version == 0
    else:
        assert content_type == oids.ENVELOPED_DATA and body.version == 3

    view = kem.parse_kem_recipient_info(_recipient_info(data))
    assert view.version == 0
    assert view.kem.oid == KEMS_OID[kem_name] and view.kem.parameters is None
    assert view.kdf.oid == KDFS.by_name(kdf).oid and view.kdf.parameters is None
    assert view.wrap.oid == KEY_WRAPS.by_name(wrap).oid and view.wrap.parameters is None
    assert view.kek_length == KEY_WRAPS.by_name(wrap).kek_size
    assert view.ukm == ukm
    if rid == "issuer-serial":
        assert view.rid_serial == cert.serial_number and view.rid_issuer_der == cert.issuer.public_bytes()
    else:
        assert view.rid_ski == _ski(cert)

    for recipient in (kem.KemRecipient(key, cert), kem.KemRecipient(key)):
        opened = enveloped.open_envelope(data, [recipient])
        assert opened.content == content and opened.recipient_kind == "kemri"
        assert opened.authenticated == cipher.endswith("gcm")
    if rid == "ski":
        recipient = kem.KemRecipient(key, subject_key_identifier=_ski(cert))
        assert enveloped.open_envelope(data, [recipient]).content == content


KEMS_OID = {"ml-kem-768": oids.ML_KEM_768, "ml-kem-1024": oids.ML_KEM_1024}


def test_every_call_encapsulates_afresh(recipients):
    key, cert = recipients["ml-kem-768"]
    originator = kem.KemOriginator(None, certificate=cert)
    first = kem.parse_kem_recipient_info(originator.recipient_info(b"k" * 32, os.urandom))
    second = kem.parse_kem_recipient_info(originator.recipient_info(b"k" * 32, os.urandom))
    assert first.kemct != second.kemct
    assert first.encrypted_key != second.encrypted_key  # another shared secret, another KEK


def test_originator_defaults_follow_the_design(recipients):
    """Draft Section 5.1: HKDF-SHA256, aes256-wrap, kekLength 32; no certificate: rid = SKI."""
    key, _ = recipients["ml-kem-1024"]
    originator = kem.KemOriginator(key.public_key())
    assert originator.version_needed == 3
    view = kem.parse_kem_recipient_info(originator.recipient_info(b"k" * 32, os.urandom))
    assert (view.kdf.oid, view.wrap.oid, view.kek_length) == (oids.HKDF_SHA256, oids.AES256_WRAP, 32)
    assert view.rid_ski == kem.key_identifier(key.public_key())
    # and the recipient that knows only that identifier finds it
    data = enveloped.seal_envelope(b"x", originator, CIPHERS.by_name("aes256-cbc"), os.urandom)
    recipient = kem.KemRecipient(key, subject_key_identifier=kem.key_identifier(key.public_key()))
    assert enveloped.open_envelope(data, [recipient]).content == b"x"


def test_originator_refuses_non_kem_keys(recipients):
    with pytest.raises(ValueError):
        kem.KemOriginator(ec.generate_private_key(ec.SECP256R1()).public_key())
    key, cert = recipients["ml-kem-768"]
    with pytest.raises(ValueError, match="not the certificate's"):
        kem.KemOriginator(recipients["ml-kem-1024"][0].public_key(), certificate=cert)


def test_response_key_spki_round_trip(recipients):
    key, _ = recipients["ml-kem-768"]
    spki = kem.ml_kem_spki(key.public_key())
    assert kem.ml_kem_public_key_from_spki(spki) == key.public_key()
    ec_spki = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="not an ML-KEM key"):
        kem.ml_kem_public_key_from_spki(ec_spki)
    with pytest.raises(ValueError):
        kem.ml_kem_public_key_from_spki(b"\x30\x03\x02\x01\x00")


def test_kemri_next_to_a_ktri(recipients):
    """open_envelope dispatches each RecipientInfo by its tag: an RSA recipient ignores the ori."""
    key, cert = recipients["ml-kem-768"]
    data = enveloped.seal_envelope(b"both", kem.KemOriginator(None, certificate=cert), CIPHERS.by_name("aes128-cbc"),
                                   os.urandom)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    opened = enveloped.open_envelope(data, [enveloped.KeyTransRecipient(None, rsa_key), kem.KemRecipient(key, cert)])
    assert opened.content == b"both"
    with pytest.raises(EnvelopeError) as err:
        enveloped.open_envelope(data, [enveloped.KeyTransRecipient(None, rsa_key)])
    assert err.value.no_recipient


# --------------------------------------------------------------------------------------------
# KEMRecipientInfo negative cases
# --------------------------------------------------------------------------------------------


def _replace(obj, **changes):
    fields = {name: getattr(obj, name) for name in type(obj).__annotations__}
    fields.update(changes)
    return type(obj)(**fields)


class Tampering:
    """An originator whose KEMRecipientInfo is changed before it goes out."""

    version_needed = 3

    def __init__(self, inner, **changes):
        self.inner, self.changes = inner, changes

    def recipient_info(self, cek, random_bytes):
        der = self.inner.recipient_info(cek, random_bytes)
        ori = cms.decode_der(cms.OtherRecipientInfo, cms.implicit_to_sequence(der))
        kemri = cms.decode_der(cms.KEMRecipientInfo, cms.tlv_bytes(ori.ori_value))
        changes = {k: (v(kemri) if callable(v) else v) for k, v in self.changes.items()}
        kemri = _replace(kemri, **changes)
        ori = _replace(ori, ori_value=cms.as_tlv(cms.encode(kemri)))
        return cms.sequence_to_implicit(cms.encode(ori), cms.ORI_TAG)


def _open_error(recipients, cipher="aes256-cbc", kem_name="ml-kem-768", recipient=None, **changes) -> EnvelopeError:
    key, cert = recipients[kem_name]
    originator = Tampering(kem.KemOriginator(None, certificate=cert), **changes)
    data = enveloped.seal_envelope(b"secret", originator, CIPHERS.by_name(cipher), os.urandom)
    with pytest.raises(EnvelopeError) as err:
        enveloped.open_envelope(data, [recipient or kem.KemRecipient(key, cert)])
    return err.value


def _flags(error: EnvelopeError) -> tuple[bool, bool, bool]:
    return error.no_recipient, error.bad_algorithm, error.decryption


def test_kemct_of_the_wrong_length_is_malformed(recipients):
    error = _open_error(recipients, kemct=lambda k: k.kemct[:-1])
    assert "kemct has 1087 bytes" in str(error)
    assert _flags(error) == (False, False, False)
    error = _open_error(recipients, kemct=lambda k: k.kemct + b"\x00")
    assert _flags(error) == (False, False, False)


def test_kemct_altered_fails_decryption(recipients):
    """ML-KEM's implicit rejection: a changed kemct gives another secret, so the unwrap fails."""
    error = _open_error(recipients, kemct=lambda k: bytes([k.kemct[0] ^ 1]) + k.kemct[1:])
    assert _flags(error) == (False, False, True)


def test_kek_length_that_does_not_match_the_wrap(recipients):
    error = _open_error(recipients, kek_length=16)  # aes256-wrap needs 32
    assert _flags(error) == (False, True, False)
    assert "kekLength 16 does not match aes256-wrap" in str(error)


def test_unknown_kdf(recipients):
    error = _open_error(recipients, kdf=cms.algorithm_tlv(x509.ObjectIdentifier("1.2.840.113549.1.9.16.3.99")))
    assert _flags(error) == (False, True, False)
    assert "unsupported key derivation function 1.2.840.113549.1.9.16.3.99" in str(error)


def test_kdf_with_parameters(recipients):
    error = _open_error(recipients, kdf=cms.algorithm_tlv(oids.HKDF_SHA256, b"\x04\x00"))
    assert _flags(error) == (False, True, False)


def test_unknown_wrap(recipients):
    error = _open_error(recipients, wrap=cms.algorithm_tlv(oids.AES256_CBC, cms.encode(b"\x00" * 16)))
    assert _flags(error) == (False, True, False)
    assert "unsupported key wrap algorithm" in str(error)


def test_kem_that_is_not_the_keys(recipients):
    error = _open_error(recipients, kem=cms.algorithm_tlv(oids.ML_KEM_1024))
    assert _flags(error) == (False, True, False)
    assert "uses ml-kem-1024 but this recipient's key is ml-kem-768" in str(error)


def test_kemri_version_other_than_zero(recipients):
    error = _open_error(recipients, version=2)
    assert _flags(error) == (False, False, False)


def test_encrypted_key_altered(recipients):
    error = _open_error(recipients, encrypted_key=lambda k: k.encrypted_key[:-1] + bytes([k.encrypted_key[-1] ^ 1]))
    assert _flags(error) == (False, False, True)


def test_ukm_altered_changes_the_kek(recipients):
    """The ukm is in the KDF's info: a sender and receiver that disagree on it get other KEKs."""
    error = _open_error(recipients, ukm=b"not what was used")
    assert _flags(error) == (False, False, True)


def test_rid_naming_no_key(recipients):
    key, cert = recipients["ml-kem-768"]
    for rid in (b"\x00" * 20, cms.IssuerAndSerialNumber(issuer=cms.as_tlv(cert.issuer.public_bytes()),
                                                       serial_number=cert.serial_number + 1)):
        error = _open_error(recipients, rid=rid)
        assert _flags(error) == (True, False, False)
    # a recipient with no identifier still ignores KEMRIs of another KEM
    other_key, other_cert = recipients["ml-kem-1024"]
    data = enveloped.seal_envelope(b"x", kem.KemOriginator(None, certificate=other_cert), CIPHERS.by_name("aes256-cbc"),
                                   os.urandom)
    with pytest.raises(EnvelopeError) as err:
        enveloped.open_envelope(data, [kem.KemRecipient(key)])
    assert err.value.no_recipient
    # and an ORI of another oriType is not ours
    assert not kem.KemRecipient(key).matches(
        cms.sequence_to_implicit(cms.encode(cms.OtherRecipientInfo(ori_type=x509.ObjectIdentifier("1.2.3.4"),
                                                                   ori_value=cms.as_tlv(b"\x05\x00"))), cms.ORI_TAG))


def test_tampered_gcm_tag(recipients):
    key, cert = recipients["ml-kem-1024"]
    data = enveloped.seal_envelope(b"secret", kem.KemOriginator(None, certificate=cert), CIPHERS.by_name("aes256-gcm"),
                                   os.urandom)
    content_info = cms.decode(cms.ContentInfo, data)
    body = cms.decode_der(cms.AuthEnvelopedData, cms.tlv_bytes(content_info.content))
    body = _replace(body, mac=bytes([body.mac[0] ^ 0x80]) + body.mac[1:])
    bad = cms.encode(cms.ContentInfo(content_type=oids.AUTH_ENVELOPED_DATA, content=cms.as_tlv(cms.encode(body))))
    with pytest.raises(EnvelopeError) as err:
        enveloped.open_envelope(bad, [kem.KemRecipient(key, cert)])
    assert _flags(err.value) == (False, False, True)


def _auth_enveloped_with_attrs(cert, attrs: list[cms.Attribute], aad_attrs: list[cms.Attribute]) -> bytes:
    """An AuthEnvelopedData with authAttrs (seal_envelope writes none): AAD = DER of the SET OF."""
    cek, nonce = os.urandom(32), os.urandom(12)
    info = kem.KemOriginator(None, certificate=cert).recipient_info(cek, os.urandom)
    aad = ber.encode_tlv(0x31, b"".join(sorted(cms.encode(a) for a in aad_attrs)))
    sealed = AESGCM(cek).encrypt(nonce, b"authenticated", aad)
    eci = cms.EncryptedContentInfo(
        content_type=oids.DATA,
        content_encryption_algorithm=cms.algorithm_tlv(
            oids.AES256_GCM, cms.encode(cms.GcmParameters(nonce=nonce, icv_len=16))
        ),
        encrypted_content=cms.as_tlv(ber.encode_tlv(0x80, sealed[:-16])),
    )
    body = cms.AuthEnvelopedData(version=0, originator_info=None, recipient_infos=SetOf([cms.as_tlv(info)]),
                                 auth_encrypted_content_info=eci, auth_attrs=SetOf(attrs), mac=sealed[-16:],
                                 unauth_attrs=None)
    return cms.encode(cms.ContentInfo(content_type=oids.AUTH_ENVELOPED_DATA, content=cms.as_tlv(cms.encode(body))))


def test_auth_attrs_are_authenticated(recipients):
    key, cert = recipients["ml-kem-768"]
    attrs = [attribute(oids.CONTENT_TYPE, cms.encode(oids.DATA)),
             attribute(oids.SCEP_TRANSACTION_ID, cms.encode(b"1234"))]
    good = _auth_enveloped_with_attrs(cert, attrs, attrs)
    assert enveloped.open_envelope(good, [kem.KemRecipient(key, cert)]).content == b"authenticated"
    tampered = [attrs[0], attribute(oids.SCEP_TRANSACTION_ID, cms.encode(b"1235"))]
    bad = _auth_enveloped_with_attrs(cert, tampered, attrs)  # sent attrs differ from the AAD used
    with pytest.raises(EnvelopeError) as err:
        enveloped.open_envelope(bad, [kem.KemRecipient(key, cert)])
    assert _flags(err.value) == (False, False, True)


# --------------------------------------------------------------------------------------------
# independent oracle: pyasn1-alt-modules
# --------------------------------------------------------------------------------------------


def test_kemri_decodes_with_pyasn1_rfc9629(recipients):
    key, cert = recipients["ml-kem-1024"]
    ukm = b"ukm for the oracle"
    originator = kem.KemOriginator(key.public_key(), subject_key_identifier=_ski(cert), kdf="hkdf-sha512",
                                   wrap="aes192-wrap", ukm=ukm)
    data = enveloped.seal_envelope(b"oracle", originator, CIPHERS.by_name("aes256-cbc"), os.urandom)

    content_info, rest = der_decoder.decode(data, asn1Spec=rfc5652.ContentInfo())
    assert not rest and content_info["contentType"] == rfc5652.id_envelopedData
    env, rest = der_decoder.decode(content_info["content"], asn1Spec=rfc5652.EnvelopedData())
    assert not rest and int(env["version"]) == 3
    (ri,) = list(env["recipientInfos"])
    ori = ri["ori"]
    assert ori["oriType"] == rfc9629.id_ori_kem
    kemri, rest = der_decoder.decode(ori["oriValue"], asn1Spec=rfc9629.KEMRecipientInfo())
    assert not rest
    assert int(kemri["version"]) == 0
    assert bytes(kemri["rid"]["subjectKeyIdentifier"]) == _ski(cert)
    assert str(kemri["kem"]["algorithm"]) == oids.ML_KEM_1024.dotted_string and not kemri["kem"]["parameters"].isValue
    assert len(bytes(kemri["kemct"])) == 1568
    assert str(kemri["kdf"]["algorithm"]) == oids.HKDF_SHA512.dotted_string
    assert int(kemri["kekLength"]) == 24
    assert bytes(kemri["ukm"]) == ukm
    assert str(kemri["wrap"]["algorithm"]) == oids.AES192_WRAP.dotted_string
    assert len(bytes(kemri["encryptedKey"])) == 40
    # re-encoding with pyasn1 gives our bytes back (we wrote DER)
    our_ori = cms.decode_der(cms.OtherRecipientInfo, cms.implicit_to_sequence(_recipient_info(data)))
    assert der_encoder.encode(kemri) == cms.tlv_bytes(our_ori.ori_value)

    # the KDF's info as pyasn1 encodes CMSORIforKEMOtherInfo
    other = rfc9629.CMSORIforKEMOtherInfo()
    other["wrap"]["algorithm"] = rfc9629.univ.ObjectIdentifier(oids.AES192_WRAP.dotted_string)
    other["kekLength"] = 24
    other["ukm"] = ukm
    info, _ = kem.derive_kek(b"s" * 32, "hkdf-sha512", "aes192-wrap", 24, ukm)
    assert der_encoder.encode(other) == info
    # and the recipient opens what the oracle decoded
    recipient = kem.KemRecipient(key, subject_key_identifier=_ski(cert))
    assert enveloped.open_envelope(data, [recipient]).content == b"oracle"


def test_pwri_decodes_with_pyasn1():
    originator = password.PasswordOriginator(b"challenge", 1000)
    data = enveloped.seal_envelope(b"oracle", originator, CIPHERS.by_name("aes256-cbc"), os.urandom)
    content_info, _ = der_decoder.decode(data, asn1Spec=rfc5652.ContentInfo())
    env, _ = der_decoder.decode(content_info["content"], asn1Spec=rfc5652.EnvelopedData())
    assert int(env["version"]) == 3
    (ri,) = list(env["recipientInfos"])
    pwri = ri["pwri"]
    assert int(pwri["version"]) == 0
    assert pwri["keyDerivationAlgorithm"]["algorithm"] == rfc8018.id_PBKDF2
    params, _ = der_decoder.decode(pwri["keyDerivationAlgorithm"]["parameters"], asn1Spec=rfc8018.PBKDF2_params())
    assert len(bytes(params["salt"]["specified"])) == 16 and int(params["iterationCount"]) == 1000
    assert params["prf"]["algorithm"] == rfc8018.id_hmacWithSHA256
    assert str(pwri["keyEncryptionAlgorithm"]["algorithm"]) == oids.PWRI_KEK.dotted_string


# --------------------------------------------------------------------------------------------
# PasswordRecipientInfo
# --------------------------------------------------------------------------------------------

PWRI_CASES = [
    ("pwri-kek", "aes256-cbc", "hmac-sha256"),
    ("pwri-kek", "aes128-cbc", "hmac-sha384"),
    ("pwri-kek", "des3-cbc", "hmac-sha512"),
    ("aes128-wrap", None, "hmac-sha256"),
    ("aes192-wrap", None, "hmac-sha256"),
    ("aes256-wrap", None, "hmac-sha512"),
]


@pytest.mark.parametrize("cipher", ["aes256-cbc", "aes128-gcm"])
@pytest.mark.parametrize("wrap,kek_cipher,prf", PWRI_CASES)
def test_pwri_round_trip(wrap, kek_cipher, prf, cipher):
    kwargs = {"kek_cipher": kek_cipher} if kek_cipher else {}
    originator = password.PasswordOriginator(b"challenge password", 1000, wrap=wrap, prf=prf, **kwargs)
    assert originator.version_needed == 3
    data = enveloped.seal_envelope(b"CSR bytes", originator, CIPHERS.by_name(cipher), os.urandom)
    opened = enveloped.open_envelope(data, [password.PasswordRecipient(b"challenge password")])
    assert opened.content == b"CSR bytes" and opened.recipient_kind == "pwri"
    with pytest.raises(EnvelopeError) as err:
        enveloped.open_envelope(data, [password.PasswordRecipient(b"challenge passwore")])
    assert _flags(err.value) == (False, False, True)


def _pwri_envelope(
    iterations: int, *, prf=None, key_length=None, kea=None, cek=None, kek_override=None
) -> tuple[bytes, bytes]:
    """A hand-made PWRI EnvelopedData (RFC 3211 wrap with AES-128-CBC), for what the originator
    will not write: other iteration counts, an absent prf (SHA-1), keyLength."""
    cek = cek or os.urandom(16)
    salt, iv, content_iv = os.urandom(8), os.urandom(16), os.urandom(16)
    hash_cls = {None: hashes.SHA1, oids.HMAC_WITH_SHA256: hashes.SHA256}[prf]
    kek = kek_override or PBKDF2HMAC(hash_cls(), 16, salt, iterations).derive(b"pw")
    wrapped = password.pwri_kek_wrap(CIPHERS.by_name("aes128-cbc"), kek, iv, cek, os.urandom)
    params = cms.PBKDF2Params(salt=salt, iteration_count=iterations, key_length=key_length,
                              prf=cms.HashAlgorithm(algorithm=prf, parameters=None) if prf else None)
    info = cms.PasswordRecipientInfo(
        version=0,
        key_derivation_algorithm=cms.AlgorithmWithParameters(
            algorithm=oids.PBKDF2, parameters=cms.as_tlv(cms.encode(params))
        ),
        key_encryption_algorithm=kea
        or cms.algorithm_tlv(oids.PWRI_KEK, cms.encode_algorithm(oids.AES128_CBC, cms.encode(iv))),
        encrypted_key=wrapped,
    )
    enc = Cipher(algorithms.AES(cek), modes.CBC(content_iv)).encryptor()
    ciphertext = enc.update(b"sixteen byte msg" + b"\x10" * 16) + enc.finalize()
    body = cms.EnvelopedData(
        version=3, originator_info=None,
        recipient_infos=SetOf([cms.as_tlv(cms.sequence_to_implicit(cms.encode(info), cms.PWRI_TAG))]),
        encrypted_content_info=cms.EncryptedContentInfo(
            content_type=oids.DATA,
            content_encryption_algorithm=cms.algorithm_tlv(oids.AES128_CBC, cms.encode(content_iv)),
            encrypted_content=cms.as_tlv(ber.encode_tlv(0x80, ciphertext)),
        ),
        unprotected_attrs=None,
    )
    return cms.encode(cms.ContentInfo(content_type=oids.ENVELOPED_DATA, content=cms.as_tlv(cms.encode(body)))), cek


def test_pwri_absent_prf_means_hmac_sha1():
    data, _ = _pwri_envelope(1000)
    assert enveloped.open_envelope(data, [password.PasswordRecipient(b"pw")]).content == b"sixteen byte msg"
    data, _ = _pwri_envelope(1000, prf=oids.HMAC_WITH_SHA256, key_length=16)
    assert enveloped.open_envelope(data, [password.PasswordRecipient("pw")]).content == b"sixteen byte msg"


@pytest.mark.parametrize("count", [1, 999, 10_000_001])
def test_pwri_iteration_count_out_of_range(count):
    data, _ = _pwri_envelope(count) if count < 1000 else _pwri_envelope(count, kek_override=b"k" * 16)
    with pytest.raises(EnvelopeError, match="denial-of-service guard") as err:
        enveloped.open_envelope(data, [password.PasswordRecipient(b"pw")])
    assert _flags(err.value) == (False, True, False)
    assert str(count) in str(err.value) or f"{count:,}" in str(err.value)
    with pytest.raises(ValueError):
        password.PasswordOriginator(b"pw", count)


def test_pwri_key_length_mismatch_and_unknown_algorithms():
    data, _ = _pwri_envelope(1000, key_length=32)  # AES-128 KEK is 16 bytes
    with pytest.raises(EnvelopeError) as err:
        enveloped.open_envelope(data, [password.PasswordRecipient(b"pw")])
    assert _flags(err.value) == (False, True, False)
    data, _ = _pwri_envelope(1000, kea=cms.algorithm_tlv(x509.ObjectIdentifier("1.2.3.4")))
    with pytest.raises(EnvelopeError) as err:
        enveloped.open_envelope(data, [password.PasswordRecipient(b"pw")])
    assert _flags(err.value) == (False, True, False)


def test_pwri_kek_wrap_rfc3211_layout():
    """Unwrapping by hand the two CBC passes of RFC 3211 2.3.1 gives length, check value, CEK."""
    cipher = CIPHERS.by_name("aes128-cbc")
    kek, iv, cek = os.urandom(16), os.urandom(16), os.urandom(24)
    wrapped = password.pwri_kek_wrap(cipher, kek, iv, cek, os.urandom)
    assert len(wrapped) == 32  # 4 + 24 bytes padded to two blocks
    assert password.pwri_kek_unwrap(cipher, kek, iv, wrapped) == cek
    with pytest.raises(EnvelopeError) as err:
        password.pwri_kek_unwrap(cipher, os.urandom(16), iv, wrapped)
    assert err.value.decryption
    with pytest.raises(EnvelopeError):
        password.pwri_kek_unwrap(cipher, kek, iv, wrapped[:16])


def test_pwri_interoperates_with_openssl(tmp_path):
    """OpenSSL's `cms -pwri_password` reads our id-alg-PWRI-KEK and writes what we read."""
    from peers import find_tool

    find_tool("openssl")  # under CI=true a missing openssl fails the test instead of skipping
    data = enveloped.seal_envelope(b"to openssl", password.PasswordOriginator(b"secret", 1000),
                                   CIPHERS.by_name("aes256-cbc"), os.urandom)
    (tmp_path / "ours.der").write_bytes(data)
    out = subprocess.run(["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(tmp_path / "ours.der"),
                          "-pwri_password", "secret"], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"to openssl"
    (tmp_path / "msg").write_bytes(b"from openssl")
    out = subprocess.run(["openssl", "cms", "-encrypt", "-in", str(tmp_path / "msg"), "-pwri_password", "secret",
                          "-aes256", "-outform", "DER", "-out", str(tmp_path / "theirs.der")],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    opened = enveloped.open_envelope((tmp_path / "theirs.der").read_bytes(), [password.PasswordRecipient(b"secret")])
    assert opened.content == b"from openssl"


# --------------------------------------------------------------------------------------------
# fips203 / fips204: the pure-Python regeneration agrees with cryptography; pkcs8: loaders
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params,cls", [(fips203.ML_KEM_768, mlkem.MLKEM768PrivateKey),
                                        (fips203.ML_KEM_1024, mlkem.MLKEM1024PrivateKey)])
def test_ml_kem_keygen_matches_cryptography(params, cls):
    for _ in range(3):
        seed = os.urandom(64)
        dk = fips203.expanded_key(params, seed)
        ek = dk[384 * params.k : 768 * params.k + 32]
        key = cls.from_seed_bytes(seed)
        assert ek == key.public_key().public_bytes_raw()
        assert fips203.check_expanded_key(params, dk) == ek
        # decapsulation with cryptography's key of a ciphertext for the ek regenerated here
        shared, ct = cls.from_seed_bytes(seed).public_key().encapsulate()
        assert key.decapsulate(ct) == shared


@pytest.mark.parametrize("params,cls", [(fips204.ML_DSA_44, mldsa.MLDSA44PrivateKey),
                                        (fips204.ML_DSA_65, mldsa.MLDSA65PrivateKey),
                                        (fips204.ML_DSA_87, mldsa.MLDSA87PrivateKey)])
def test_ml_dsa_keygen_matches_cryptography(params, cls):
    for _ in range(2):
        seed = os.urandom(32)
        pk, sk = fips204.keygen_internal(params, seed)
        assert pk == cls.from_seed_bytes(seed).public_key().public_bytes_raw()
        assert fips204.check_expanded_key(params, sk) == pk


def _pkcs8(oid, private_key_choice: bytes) -> bytes:
    return cms.encode(cms.OneAsymmetricKey(version=0, private_key_algorithm=cms.algorithm_tlv(oid),
                                           private_key=private_key_choice, attributes=None, public_key=None))


def test_pq_key_forms_built_here():
    seed = os.urandom(64)
    dk = fips203.expanded_key(fips203.ML_KEM_768, seed)
    both = ber.encode_tlv(0x30, ber.encode_tlv(0x04, seed) + ber.encode_tlv(0x04, dk))
    key = pkcs8.load_pq_private_key(_pkcs8(oids.ML_KEM_768, both))
    assert key.private_bytes_raw() == seed
    assert pkcs8.load_pq_private_key(_pkcs8(oids.ML_KEM_768, ber.encode_tlv(0x80, seed))).private_bytes_raw() == seed
    # what cryptography writes (seed form) loads back through the same path
    native = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert pkcs8.load_any_private_key(native).private_bytes_raw() == seed
    # damaged forms
    cases = {
        "seed must be 64 bytes": ber.encode_tlv(0x80, seed[:32]),
        "expandedKey must be 2400 bytes": ber.encode_tlv(0x04, dk[:-1]),
        "none of the RFC 9935/9881 forms": ber.encode_tlv(0x81, seed),
        "'both' must be SEQUENCE": ber.encode_tlv(0x30, ber.encode_tlv(0x04, seed)),
        "trailing data": ber.encode_tlv(0x80, seed) + b"\x00",
    }
    for reason, choice in cases.items():
        with pytest.raises(key_errors.InvalidPrivateKey, match=reason):
            pkcs8.load_pq_private_key(_pkcs8(oids.ML_KEM_768, choice))
    with pytest.raises(key_errors.InvalidPrivateKey, match="parameters must be absent"):
        pkcs8.load_pq_private_key(cms.encode(cms.OneAsymmetricKey(
            version=0, private_key_algorithm=cms.algorithm_tlv(oids.ML_KEM_768, cms.NULL),
            private_key=ber.encode_tlv(0x80, seed), attributes=None, public_key=None)))


def test_pq_key_with_public_key_field():
    from cryptography.hazmat.asn1 import BitString

    seed = os.urandom(32)
    pk, _ = fips204.keygen_internal(fips204.ML_DSA_65, seed)

    def v2(public: bytes) -> bytes:
        return cms.encode(cms.OneAsymmetricKey(version=1, private_key_algorithm=cms.algorithm_tlv(oids.ML_DSA_65),
                                               private_key=ber.encode_tlv(0x80, seed), attributes=None,
                                               public_key=BitString(public, 0)))

    assert pkcs8.load_pq_private_key(v2(pk)).public_key().public_bytes_raw() == pk
    with pytest.raises(key_errors.InvalidPrivateKey, match="publicKey field is not the public key"):
        pkcs8.load_pq_private_key(v2(bytes([pk[0] ^ 1]) + pk[1:]))


def _encrypt_pkcs8(der: bytes, passphrase: bytes, padded: bytes | None = None) -> bytes:
    """PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) EncryptedPrivateKeyInfo, as OpenSSL 3.5 writes;
    `padded` replaces the PKCS#7-padded plaintext."""
    salt, iv = os.urandom(16), os.urandom(16)
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, 2048).derive(passphrase)
    pad = 16 - len(der) % 16
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    data = enc.update(der + bytes((pad,)) * pad if padded is None else padded) + enc.finalize()
    kdf = cms.encode_algorithm(oids.PBKDF2, cms.encode(cms.PBKDF2Params(
        salt=salt, iteration_count=2048, key_length=None,
        prf=cms.HashAlgorithm(algorithm=oids.HMAC_WITH_SHA256, parameters=None))))
    scheme = cms.encode(cms.PBES2Params(key_derivation_func=cms.as_tlv(kdf),
                                        encryption_scheme=cms.algorithm_tlv(oids.AES256_CBC, cms.encode(iv))))
    return cms.encode(cms.EncryptedPrivateKeyInfo(
        encryption_algorithm=cms.algorithm_tlv(x509.ObjectIdentifier("1.2.840.113549.1.5.13"), scheme),
        encrypted_data=data))


def test_load_any_private_key_encrypted_both_form():
    seed = os.urandom(64)
    dk = fips203.expanded_key(fips203.ML_KEM_1024, seed)
    der = _pkcs8(oids.ML_KEM_1024, ber.encode_tlv(0x30, ber.encode_tlv(0x04, seed) + ber.encode_tlv(0x04, dk)))
    encrypted = _encrypt_pkcs8(der, b"passphrase")
    assert pkcs8.load_any_private_key(encrypted, b"passphrase").private_bytes_raw() == seed
    pem = (
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        + __import__("base64").encodebytes(encrypted)
        + b"-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    assert pkcs8.load_any_private_key(pem, b"passphrase").private_bytes_raw() == seed
    with pytest.raises(ValueError):
        pkcs8.load_any_private_key(encrypted, b"wrong passphrase")
    with pytest.raises((TypeError, ValueError)):
        pkcs8.load_any_private_key(encrypted)


def test_pbes2_refuses_bad_padding_as_a_bad_decrypt():
    """What a wrong passphrase gives: plaintext whose PKCS#7 padding is not 1 to 16 equal bytes."""
    der = _pkcs8(oids.ML_KEM_768, ber.encode_tlv(0x80, os.urandom(64)))
    block = der[: 16 * (len(der) // 16)]
    for tail in (bytes(16), bytes(15) + b"\x11", bytes(14) + b"\x01\x02", bytes(13) + b"\x02\x03\x03"):
        with pytest.raises(ValueError, match=r"^Bad decrypt\. Incorrect password\?$"):
            pbes2.decrypt_pkcs8(_encrypt_pkcs8(der, b"pw", block + tail), b"pw")
    for pad in (1, 16):  # the shortest and the longest padding are accepted
        data = bytes(32 - pad) + bytes((pad,)) * pad
        assert pbes2.decrypt_pkcs8(_encrypt_pkcs8(der, b"pw", data), b"pw") == bytes(32 - pad)
    assert pbes2.decrypt_pkcs8(_encrypt_pkcs8(der, b"pw"), b"pw") == der


@pytest.mark.parametrize("make", [
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    lambda: ec.generate_private_key(ec.SECP384R1()),
    mldsa.MLDSA44PrivateKey.generate,
    mlkem.MLKEM768PrivateKey.generate,
])
def test_load_any_private_key_every_type(make):
    key = make()
    for encryption in (serialization.NoEncryption(), serialization.BestAvailableEncryption(b"pw")):
        passphrase = None if isinstance(encryption, serialization.NoEncryption) else b"pw"
        for encoding in (serialization.Encoding.PEM, serialization.Encoding.DER):
            data = key.private_bytes(encoding, serialization.PrivateFormat.PKCS8, encryption)
            loaded = pkcs8.load_any_private_key(data, passphrase)
            assert loaded.public_key() == key.public_key()
    with pytest.raises(TypeError):  # cryptography's answer to a missing passphrase, unchanged
        pkcs8.load_any_private_key(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.BestAvailableEncryption(b"pw")))
