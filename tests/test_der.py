"""asn1/der.py, the hand-written DER writers of the reply path, against cryptography's
declarative encoder (the oracle): the same value must give the same bytes."""

from __future__ import annotations

import datetime
import os

import pytest
from cryptography.hazmat import asn1
from cryptography.hazmat.asn1 import GeneralizedTime, PrintableString, SetOf, UTCTime
from hypothesis import given
from hypothesis import strategies as st

from pqscep.asn1 import cms, der, oids
from pqscep.cms import signed
from pqscep.crypto.keys import generate_key
from pqscep.crypto.registry import DIGESTS
from pqscep.protocol import client as scep
from pqscep.protocol.messages import octets_attribute, printable_attribute

UTC = datetime.UTC


@given(st.integers(min_value=-(1 << 200), max_value=1 << 200))
def test_integer_matches_the_declarative_encoder(value):
    assert der.integer(value) == asn1.encode_der(value)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 255, 256, -1, -128, -129, (1 << 159) | 1, (1 << 64) - 1])
def test_integer_edges(value):
    assert der.integer(value) == asn1.encode_der(value)


@given(st.binary(max_size=400))
def test_octet_string_and_lengths(value):
    assert der.octet_string(value) == asn1.encode_der(value)


@given(st.text(alphabet="ABCXYZabcxyz0189 '()+,-./:=?", max_size=300))
def test_printable_string(text):
    assert der.printable_string(text) == asn1.encode_der(PrintableString(text))


@pytest.mark.parametrize("text", ["a_b", "é", "x@y", "tab\t"])
def test_printable_string_refuses_other_characters(text):
    with pytest.raises(ValueError):
        der.printable_string(text)


@given(st.text(max_size=300))
def test_utf8_string(text):
    assert der.utf8_string(text) == asn1.encode_der(text)


@pytest.mark.parametrize("year", [1950, 1999, 2026, 2049, 2050, 2100])
def test_cms_time_is_utctime_until_2049_then_generalizedtime(year):
    when = datetime.datetime(year, 2, 3, 4, 5, 6, tzinfo=UTC)
    expected = UTCTime(when) if year < 2050 else GeneralizedTime(when)
    assert der.cms_time(when) == asn1.encode_der(expected)
    # Another zone is written in UTC.
    plus_two = when.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    assert der.cms_time(plus_two) == der.cms_time(when)


@given(st.lists(st.binary(min_size=0, max_size=40), max_size=8))
def test_set_of_sorts_like_the_declarative_encoder(values):
    elements = [der.octet_string(v) for v in values]
    assert der.set_of(elements) == asn1.encode_der(SetOf([cms.as_tlv(e) for e in elements]))


def test_attribute_der_is_the_encoded_attribute():
    assert signed.attribute_der(oids.SCEP_TRANSACTION_ID, der.printable_string("abc")) == cms.encode(
        printable_attribute(oids.SCEP_TRANSACTION_ID, "abc"))
    nonce = os.urandom(16)
    assert signed.attribute_der(oids.SCEP_SENDER_NONCE, der.octet_string(nonce)) == cms.encode(
        octets_attribute(oids.SCEP_SENDER_NONCE, nonce))


@pytest.mark.parametrize("key_type", ["rsa-2048", "ec-p256", "ml-dsa-44"])
@pytest.mark.parametrize("content", [None, b"", b"payload" * 100])
def test_signed_data_reencodes_identically_with_the_declarative_classes(key_type, content):
    """What build_signed_data writes decodes with cms.ContentInfo/SignedData, and the
    declarative encoder gives back the very same bytes (so it is DER, in cms.py's layout)."""
    from cryptography import x509

    key = generate_key(key_type)
    name = x509.Name.from_rfc4514_string("CN=der test")
    cert = scep.self_signed_certificate(key, name, now=datetime.datetime.now(UTC), serial=(1 << 70) + 5)
    other = scep.self_signed_certificate(generate_key("ec-p256"), name, now=datetime.datetime.now(UTC), serial=7)
    for certificates in (None, [], [cert, other]):
        body = signed.build_signed_data(
            content_type=oids.DATA, content=content, signer_key=key, signer_cert=cert,
            digest=DIGESTS.by_name("sha256"),
            attributes=[printable_attribute(oids.SCEP_MESSAGE_TYPE, "3"),
                        signed.attribute_der(oids.SCEP_SENDER_NONCE, der.octet_string(os.urandom(16)))],
            certificates=certificates)
        info = cms.decode_der(cms.ContentInfo, body)
        assert cms.encode(info) == body
        inner = cms.tlv_bytes(info.content)
        assert cms.encode(cms.decode_der(cms.SignedData, inner)) == inner
        message = signed.parse_signed_data(body)
        signer = message.signer_infos[0]
        signed.verify_signer(message, signer, key.public_key())


def test_certs_only_reencodes_identically():
    from cryptography import x509

    name = x509.Name.from_rfc4514_string("CN=der test")
    certs = [scep.self_signed_certificate(generate_key("ec-p256"), name, now=datetime.datetime.now(UTC), serial=s)
             for s in (3, 1, 2)]
    for chosen in ([], certs[:1], certs):
        body = signed.build_certs_only(chosen)
        info = cms.decode_der(cms.ContentInfo, body)
        inner = cms.tlv_bytes(info.content)
        assert cms.encode(info) == body
        assert cms.encode(cms.decode_der(cms.SignedData, inner)) == inner


@pytest.mark.parametrize("cipher_name", ["aes128-cbc", "aes256-cbc", "des3-cbc", "aes128-gcm", "aes256-gcm"])
def test_envelope_reencodes_identically_and_opens(cipher_name):
    from cryptography import x509

    from pqscep.cms import enveloped
    from pqscep.crypto.registry import CIPHERS

    key = generate_key("rsa-2048")
    cert = scep.self_signed_certificate(key, x509.Name.from_rfc4514_string("CN=der test"),
                                        now=datetime.datetime.now(UTC), serial=(1 << 63) + 9)
    cipher = CIPHERS.by_name(cipher_name)
    content = os.urandom(1000)
    body = enveloped.seal_envelope(content, enveloped.KeyTransOriginator(cert), cipher, os.urandom)
    info = cms.decode_der(cms.ContentInfo, body)
    assert cms.encode(info) == body
    inner = cms.tlv_bytes(info.content)
    cls = cms.AuthEnvelopedData if cipher.aead else cms.EnvelopedData
    parsed = cms.decode_der(cls, inner)
    assert cms.encode(parsed) == inner
    for ri in parsed.recipient_infos.as_list():
        ktri = cms.tlv_bytes(ri)
        assert cms.encode(cms.decode_der(cms.KeyTransRecipientInfo, ktri)) == ktri
    opened = enveloped.open_envelope(body, [enveloped.KeyTransRecipient(cert, key)])
    assert opened.content == content and opened.cipher is cipher
