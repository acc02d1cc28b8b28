"""The outside test vectors in ../shared/vectors (see its README.md), each folder as the README says.

- hackathon-cms/cryptonext: every KEMRecipientInfo EnvelopedData / AuthEnvelopedData opens with
  its private key to expected_plaintext.txt; the ML-DSA SignedData verify.
- hackathon-cms/ossl35: OpenSSL 3.5's ML-DSA SignedData verify (ML-DSA-44 with SHA-256).
- rfc9936-example: ML-KEM-512, which cryptography cannot decapsulate, so every step after the
  KEM is checked byte for byte from the published shared secret: ori_info, KEK, CEK, content.
- rfc9882-examples: ML-DSA SignedData verify with the certificates of rfc9881-keys.
- rfc9881-keys, rfc9935-keys: every good key loads (or, expanded-only / ML-KEM-512, is refused
  as unsupported with its public key still recovered), matches its .pub and .crt, and the three
  forms agree; every bad-* key is refused with the reason that fits its defect.
- scep-captures: the classic envelopes open with the keys beside them.

The folder is read at run time; without it the tests fail under CI=true and skip elsewhere.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pqscep.asn1 import ber, cms, oids
from pqscep.cms import enveloped, kem, signed
from pqscep.crypto import pkcs8
from pqscep.crypto.key_errors import InvalidPrivateKey, UnsupportedKeyForm
from pqscep.crypto.spki import spki_raw_public_key

VECTORS = Path(__file__).parents[1].parent / "shared" / "vectors"
CRYPTONEXT = VECTORS / "hackathon-cms" / "cryptonext"
OSSL35 = VECTORS / "hackathon-cms" / "ossl35"
RFC9936 = VECTORS / "rfc9936-example"
RFC9882 = VECTORS / "rfc9882-examples"
RFC9881 = VECTORS / "rfc9881-keys"
RFC9935 = VECTORS / "rfc9935-keys"
CAPTURES = VECTORS / "scep-captures"


from peers import unavailable as _unavailable  # noqa: E402


def _need(path: Path) -> Path:
    if not path.exists():
        _unavailable(f"test vectors not found: {path} (../shared/vectors beside the repository)")
    return path


def _glob(folder: Path, pattern: str) -> list[str]:
    """File names for parametrize, or one placeholder that makes the test fail/skip."""
    names = sorted(p.name for p in folder.glob(pattern)) if folder.is_dir() else []
    return names or [f"<no {pattern} in {folder.name}>"]


def _der(path: Path) -> bytes:
    data = _need(path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        lines = [line for line in data.splitlines() if line and not line.startswith(b"-----")]
        return base64.b64decode(b"".join(lines))
    return data


def _hex(path: Path) -> bytes:
    return bytes.fromhex("".join(_need(path).read_text().split()))


def _cert(path: Path) -> x509.Certificate:
    return x509.load_der_x509_certificate(_der(path))


# --------------------------------------------------------------------------------------------
# hackathon-cms/cryptonext
# --------------------------------------------------------------------------------------------

CRYPTONEXT_KEMRI = _glob(CRYPTONEXT, "ML-KEM-*_kemri_*.der")


def test_cryptonext_has_every_kemri_file():
    _need(CRYPTONEXT)
    assert len(CRYPTONEXT_KEMRI) == 8  # 2 KEMs x (hkdf-sha256, hkdf-sha512, ukm, auth)


@pytest.mark.parametrize("name", CRYPTONEXT_KEMRI)
def test_cryptonext_kemri_decrypts(name):
    path = _need(CRYPTONEXT / name)
    prefix = name.split("_kemri_")[0]
    key = pkcs8.load_any_private_key(_need(CRYPTONEXT / f"{prefix}_expandedkey_priv.der").read_bytes())
    cert = _cert(CRYPTONEXT / f"{prefix}_ee.der")
    assert key.public_key() == cert.public_key()
    expected = _need(CRYPTONEXT / "expected_plaintext.txt").read_bytes()
    data = path.read_bytes()

    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    # by certificate, by its SKI (the messages' rid form), and with no identifier at all
    for recipient in (kem.KemRecipient(key, cert), kem.KemRecipient(key, subject_key_identifier=ski),
                      kem.KemRecipient(key)):
        opened = enveloped.open_envelope(data, [recipient])
        assert opened.content == expected
        assert opened.recipient_kind == "kemri"
        assert opened.authenticated == ("_kemri_auth" in name)
    # an SKI that is not this key's: no recipient
    with pytest.raises(enveloped.EnvelopeError) as err:
        enveloped.open_envelope(data, [kem.KemRecipient(key, subject_key_identifier=b"\x01" * 20)])
    assert err.value.no_recipient

    # the fields the file name promises
    content_info = cms.decode(cms.ContentInfo, data)
    body_cls = cms.AuthEnvelopedData if content_info.content_type == oids.AUTH_ENVELOPED_DATA else cms.EnvelopedData
    body = cms.decode_der(body_cls, cms.tlv_bytes(content_info.content))
    infos = body.recipient_infos.as_list()
    assert len(infos) == 1
    view = kem.parse_kem_recipient_info(cms.tlv_bytes(infos[0]))
    assert view.kem.oid == (oids.ML_KEM_768 if "ML-KEM-768" in name else oids.ML_KEM_1024)
    assert view.rid_ski == ski and view.rid_serial is None
    if "hkdf-with-sha512" in name:
        assert view.kdf.oid == oids.HKDF_SHA512
    elif "hkdf-with-sha256" in name:
        assert view.kdf.oid == oids.HKDF_SHA256
    if name.endswith("_ukm.der"):
        assert view.ukm == _need(CRYPTONEXT / "ukm.txt").read_bytes()
    if body_cls is cms.EnvelopedData:
        assert body.version == 3  # RFC 5652 6.1 with an ori


@pytest.mark.parametrize("name", _glob(CRYPTONEXT, "ML-*_expandedkey_priv.der"))
def test_cryptonext_private_keys_are_seed_form(name):
    """The README's warning: these `_expandedkey_priv.der` files hold the seed form."""
    info = pkcs8.inspect_private_key(_need(CRYPTONEXT / name).read_bytes())
    assert info.form == "seed"


CRYPTONEXT_SIGNED = _glob(CRYPTONEXT, "ML-DSA-*_signed_attrs.der")


@pytest.mark.parametrize("name", CRYPTONEXT_SIGNED)
def test_cryptonext_ml_dsa_signed_data_verifies(name):
    message = signed.parse_signed_data(_need(CRYPTONEXT / name).read_bytes())
    (signer,) = message.signer_infos
    cert = message.signer_certificate(signer)
    assert cert is not None
    digest = signed.verify_signer(message, signer, cert.public_key())
    assert digest.name == "sha512"
    # the signed content is a MIME entity (a Content-Type header, then the text with CRLFs)
    expected = _need(CRYPTONEXT / "expected_plaintext.txt").read_bytes()
    assert message.content is not None and message.content.endswith(b"\r\n\r\n" + expected)
    # the signer's own key file gives the certificate's key
    key_file = CRYPTONEXT / name.replace("_signed_attrs.der", "_expandedkey_priv.der")
    key = pkcs8.load_any_private_key(_need(key_file).read_bytes())
    assert key.public_key() == cert.public_key()
    # the certificate chains to the trust anchor
    cert.verify_directly_issued_by(_cert(CRYPTONEXT / "ta.der"))


def test_cryptonext_tampered_signed_data_fails():
    data = bytearray(_need(CRYPTONEXT / CRYPTONEXT_SIGNED[0]).read_bytes())
    message = signed.parse_signed_data(bytes(data))
    signer = message.signer_infos[0]
    position = bytes(data).find(signer.signature)
    data[position + 10] ^= 1
    message = signed.parse_signed_data(bytes(data))
    with pytest.raises(signed.SignedDataError):
        signer = message.signer_infos[0]
        signed.verify_signer(message, signer, message.signer_certificate(signer).public_key())


# --------------------------------------------------------------------------------------------
# hackathon-cms/ossl35
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _glob(OSSL35, "ml-dsa-*_signed_attrs.der"))
def test_ossl35_ml_dsa_signed_data_verifies(name):
    message = signed.parse_signed_data(_need(OSSL35 / name).read_bytes())
    (signer,) = message.signer_infos
    cert = message.signer_certificate(signer)
    assert cert is not None
    digest = signed.verify_signer(message, signer, cert.public_key())
    assert digest.name == ("sha256" if name.startswith("ml-dsa-44") else "sha512")
    assert message.content is not None and message.content in _need(OSSL35 / "expected_plaintext.txt").read_bytes()


# --------------------------------------------------------------------------------------------
# rfc9936-example (ML-KEM-512: every step after decapsulation, byte for byte)
# --------------------------------------------------------------------------------------------


def _rfc9936_message() -> tuple[bytes, cms.AuthEnvelopedData, bytes]:
    der = _der(RFC9936 / "ML-KEM-512.cms")
    content_info = cms.decode(cms.ContentInfo, der)
    assert content_info.content_type == oids.AUTH_ENVELOPED_DATA
    body = cms.decode_der(cms.AuthEnvelopedData, cms.tlv_bytes(content_info.content))
    (info,) = body.recipient_infos.as_list()
    return der, body, cms.tlv_bytes(info)


def test_rfc9936_kemri_fields():
    _, body, info = _rfc9936_message()
    assert body.version == 0
    view = kem.parse_kem_recipient_info(info)
    assert view.version == 0
    assert view.kem.oid == oids.ML_KEM_512 and view.kem.parameters is None
    assert view.rid_ski == bytes.fromhex(_need(RFC9936 / "ML-KEM-512.keyid").read_text().strip())
    assert view.kemct == _hex(RFC9936 / "ciphertext.txt")
    assert view.kdf.oid == oids.HKDF_SHA256
    assert view.wrap.oid == oids.AES128_WRAP
    assert view.kek_length == 16 and view.ukm is None
    assert view.encrypted_key == _hex(RFC9936 / "encrypted_cek.txt")


def test_rfc9936_ori_info_and_kek_byte_for_byte():
    _, _, info = _rfc9936_message()
    view = kem.parse_kem_recipient_info(info)
    ori_info, kek = kem.derive_kek(_hex(RFC9936 / "shared_secret.txt"), view.kdf.oid, view.wrap_der,
                                   view.kek_length, view.ukm)
    assert ori_info == _hex(RFC9936 / "ori_info.txt")
    assert kek == _hex(RFC9936 / "kek.txt")
    # the same from registry names, as an originator builds it
    assert kem.derive_kek(_hex(RFC9936 / "shared_secret.txt"), "hkdf-sha256", "aes128-wrap", 16) == (ori_info, kek)


def test_rfc9936_cek_and_content():
    der, _, info = _rfc9936_message()
    shared_secret = _hex(RFC9936 / "shared_secret.txt")
    cek = kem.unwrap_with_shared_secret(info, shared_secret)
    assert cek == _hex(RFC9936 / "cek.txt")

    class KnownSharedSecret:  # stands in for the ML-KEM-512 decapsulation cryptography lacks
        tag = cms.ORI_TAG
        kind = "kemri"

        def matches(self, info_der: bytes) -> bool:
            return True

        def unwrap(self, info_der: bytes, *, allow_legacy: bool = False) -> bytes:
            return kem.unwrap_with_shared_secret(info_der, shared_secret)

    opened = enveloped.open_envelope(der, [KnownSharedSecret()])
    assert opened.content == _need(RFC9936 / "plaintext.txt").read_bytes()
    assert opened.content == _need(RFC9936 / "decrypted.txt").read_bytes()
    assert opened.authenticated and opened.cipher.name == "aes128-gcm"

    with pytest.raises(enveloped.EnvelopeError) as err:  # one bit off in the shared secret
        kem.unwrap_with_shared_secret(info, bytes([shared_secret[0] ^ 1]) + shared_secret[1:])
    assert err.value.decryption


def test_rfc9936_ml_kem_512_keys_refused_but_consistent():
    public = _der(RFC9936 / "ML-KEM-512.pub")
    _, raw = spki_raw_public_key(public)
    infos = [pkcs8.inspect_private_key(_der(RFC9936 / f"ML-KEM-512-{form}.priv"))
             for form in ("seed", "expanded", "both")]
    assert {i.public_bytes for i in infos} == {raw}
    assert {i.expanded for i in infos} == {infos[2].expanded}
    for form in ("seed", "expanded", "both"):
        with pytest.raises(UnsupportedKeyForm, match="ML-KEM-512 is not supported"):
            pkcs8.load_any_private_key(_need(RFC9936 / f"ML-KEM-512-{form}.priv").read_bytes())
    with pytest.raises(UnsupportedKeyForm, match="ML-KEM-512 is not supported"):
        kem.ml_kem_public_key_from_spki(public)
    # the certificate's key identifier is the rid of the message
    cert = x509.load_pem_x509_certificate(_need(RFC9936 / "ML-KEM-512.pem").read_bytes())
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ski.hex().upper() == _need(RFC9936 / "ML-KEM-512.keyid").read_text().strip()
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(_need(RFC9936 / "mldsa65RootCA.pem").read_bytes()))


# --------------------------------------------------------------------------------------------
# rfc9882-examples (verified with the certificates of rfc9881-keys)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _glob(RFC9882, "mldsa*-signed-attrs.pem"))
def test_rfc9882_signed_data_verifies(name):
    level = name[len("mldsa") : len("mldsa") + 2]
    message = signed.parse_signed_data(_der(RFC9882 / name))
    (signer,) = message.signer_infos
    cert = x509.load_pem_x509_certificate(_need(RFC9881 / f"ML-DSA-{level}.crt").read_bytes())
    assert signer.serial == cert.serial_number and signer.issuer_der == cert.issuer.public_bytes()
    assert signer.signature_algorithm.oid == {"44": oids.ML_DSA_44, "65": oids.ML_DSA_65, "87": oids.ML_DSA_87}[level]
    assert signed.verify_signer(message, signer, cert.public_key()).name == "sha512"


# --------------------------------------------------------------------------------------------
# rfc9881-keys and rfc9935-keys
# --------------------------------------------------------------------------------------------

GOOD_KEYS = [(RFC9881, f"ML-DSA-{n}") for n in ("44", "65", "87")] + [(RFC9935, f"ML-KEM-{n}") for n in ("768", "1024")]


@pytest.mark.parametrize("folder,alg", GOOD_KEYS, ids=[a for _, a in GOOD_KEYS])
def test_good_keys_load_and_match(folder, alg):
    public = serialization.load_pem_public_key(_need(folder / f"{alg}.pub").read_bytes())
    cert = x509.load_pem_x509_certificate(_need(folder / f"{alg}.crt").read_bytes())
    assert cert.public_key() == public

    seed_key = pkcs8.load_any_private_key(_need(folder / f"{alg}-seed.priv").read_bytes())
    both_key = pkcs8.load_any_private_key(_need(folder / f"{alg}-both.priv").read_bytes())
    assert seed_key.public_key() == public and both_key.public_key() == public
    assert seed_key.private_bytes_raw() == both_key.private_bytes_raw()
    # a PEM file holding the certificate before the key
    bundle = _need(folder / f"{alg}.crt").read_bytes() + _need(folder / f"{alg}-both.priv").read_bytes()
    assert pkcs8.load_any_private_key(bundle).private_bytes_raw() == seed_key.private_bytes_raw()

    # expanded-only: refused as unsupported (not as damaged), its public key still recovered
    with pytest.raises(UnsupportedKeyForm, match=f"expanded-only {alg[:6]} keys cannot be loaded"):
        pkcs8.load_any_private_key(_need(folder / f"{alg}-expanded.priv").read_bytes())
    infos = {form: pkcs8.inspect_private_key(_der(folder / f"{alg}-{form}.priv"))
             for form in ("seed", "expanded", "both")}
    raw = public.public_bytes_raw()
    for form, info in infos.items():
        assert info.form == form and info.algorithm == alg
        assert info.public_bytes == raw
    # the three forms are one key: the seed regenerates exactly the stored expanded key
    assert infos["seed"].expanded == infos["expanded"].expanded == infos["both"].expanded
    assert infos["seed"].seed == infos["both"].seed


def test_ml_kem_512_keys_consistent_and_refused():
    _, raw = spki_raw_public_key(_der(RFC9935 / "ML-KEM-512.pub"))
    infos = [pkcs8.inspect_private_key(_der(RFC9935 / f"ML-KEM-512-{form}.priv"))
             for form in ("seed", "expanded", "both")]
    assert [i.public_bytes for i in infos] == [raw] * 3
    assert infos[0].expanded == infos[1].expanded == infos[2].expanded
    cert = x509.load_pem_x509_certificate(_need(RFC9935 / "ML-KEM-512.crt").read_bytes())
    assert spki_raw_public_key(_spki_of(cert))[1] == raw
    with pytest.raises(UnsupportedKeyForm, match="ML-KEM-512 is not supported"):
        pkcs8.load_any_private_key(_need(RFC9935 / "ML-KEM-512-seed.priv").read_bytes())


def _spki_of(cert: x509.Certificate) -> bytes:
    """The SubjectPublicKeyInfo DER of a certificate whose key type cryptography may not know."""
    tbs = cert.tbs_certificate_bytes
    _, pos, stop = ber.read_tlv(tbs)
    fields = []
    while pos < stop:
        _, _, end = ber.read_tlv(tbs, pos)
        fields.append(tbs[pos:end])
        pos = end
    offset = 1 if fields[0][0] == 0xA0 else 0  # [0] version
    return fields[offset + 5]  # serial, signature, issuer, validity, subject, spki


@pytest.mark.parametrize(
    "alg,signer", [("ML-KEM-512", "ML-DSA-44"), ("ML-KEM-768", "ML-DSA-65"), ("ML-KEM-1024", "ML-DSA-87")]
)
def test_ml_kem_certificates_signed_by_the_rfc9881_keys(alg, signer):
    cert = x509.load_pem_x509_certificate(_need(RFC9935 / f"{alg}.crt").read_bytes())
    issuer = x509.load_pem_x509_certificate(_need(RFC9881 / f"{signer}.crt").read_bytes())
    cert.verify_directly_issued_by(issuer)
    # RFC 9935: keyEncipherment only
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_encipherment and not usage.digital_signature


BAD_KEYS = {
    # both: the seed's d does not generate the stored key (K-PKE.KeyGen regenerated and compared)
    "bad-ML-KEM-512-1.priv": (InvalidPrivateKey, r"'both' key is inconsistent: the expandedKey is not the one its seed "
                                                 r"generates \(s \(dk_PKE\) differs\)"),
    # expanded: s_0 mutated, H(ek) still right: t - A*s is no longer small
    "bad-ML-KEM-512-2.priv": (InvalidPrivateKey, r"expandedKey is inconsistent: its secret vector s does not belong to "
                                                 r"its encapsulation key"),
    # expanded: H(ek) mutated: FIPS 203 7.3 hash check
    "bad-ML-KEM-512-3.priv": (InvalidPrivateKey, r"the stored H\(ek\) is not the hash of its encapsulation key"),
    # both: only z differs from the seed's
    "bad-ML-KEM-512-4.priv": (InvalidPrivateKey, r"\(z \(implicit rejection secret\) differs\)"),
    # both: the expanded key is another key's (rho already differs)
    "bad-ML-DSA-44-1.priv": (InvalidPrivateKey, r"'both' key is inconsistent: the expandedKey is not the one its seed "
                                                r"generates \(rho differs\)"),
    # expanded: tr mutated
    "bad-ML-DSA-44-2.priv": (InvalidPrivateKey, r"its tr is not H\(pk\) of the public key that its s1 and s2 give"),
    # expanded: t0 mutated
    "bad-ML-DSA-44-3.priv": (InvalidPrivateKey, r"its t0 is not the low part of t = A\*s1 \+ s2"),
}


def test_every_bad_key_is_listed():
    found = {p.name for folder in (RFC9881, RFC9935) if _need(folder) for p in folder.glob("bad-*")}
    assert found == set(BAD_KEYS)


@pytest.mark.parametrize("name", sorted(BAD_KEYS))
def test_bad_keys_refused_with_their_reason(name):
    folder = RFC9935 if "KEM" in name else RFC9881
    data = _need(folder / name).read_bytes()
    error, reason = BAD_KEYS[name]
    with pytest.raises(error, match=reason):
        pkcs8.load_any_private_key(data)
    with pytest.raises(error, match=reason):
        pkcs8.inspect_private_key(_der(folder / name))


# --------------------------------------------------------------------------------------------
# scep-captures (classic envelopes)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message,key_file,legacy",
    [
        ("micromdm-scepclient-PKCSReq.der", "ca.key", True),
        ("strongswan-pki-PKCSReq.der", "ca.key", False),
        ("micromdm-scepserver-CertRep-to-micromdm.der", "micromdm-client.key", True),
        ("micromdm-scepserver-CertRep-to-strongswan.der", "strongswan-client.key", True),
    ],
)
def test_scep_capture_envelopes_open(message, key_file, legacy):
    outer = signed.parse_signed_data(_need(CAPTURES / message).read_bytes())
    key = pkcs8.load_any_private_key(_need(CAPTURES / key_file).read_bytes())
    opened = enveloped.open_envelope(outer.content, [enveloped.KeyTransRecipient(None, key)], allow_legacy=legacy)
    assert opened.content
    if message.startswith("strongswan"):
        assert opened.cipher.name == "des3-cbc"  # the README: strongSwan needed --cipher des3
