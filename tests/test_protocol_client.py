"""The client's reading of a GetCACert bundle: which certificate is the CA, the CertRep signer,
the RSA recipient and the ML-KEM recipient (draft Section 3), and what it refuses."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509

from pqscep.ca.authority import create_ca_certificate, issue_ra_certificate, name_from_common_name
from pqscep.cms.signed import build_certs_only
from pqscep.crypto.keys import generate_key
from pqscep.protocol.client import ClientError, parse_ca_certs

NOW = datetime.datetime(2026, 11, 27, tzinfo=datetime.UTC)


def _ca(name="CA", key_type="ml-dsa-65"):
    key = generate_key(key_type)
    return key, create_ca_certificate(key, name_from_common_name(name), now=NOW, days=30, serial=1)


def _kem_cert(ca_key, ca_cert, *, purpose="encrypt"):
    kem = generate_key("ml-kem-768")
    return issue_ra_certificate(ca_key, ca_cert, kem.public_key(), name_from_common_name("KEM"), purpose=purpose,
                                now=NOW, days=10, serial=2)


def _bundle(*certs: x509.Certificate):
    return parse_ca_certs("application/x-x509-ca-ra-cert", build_certs_only(list(certs)))


def test_post_quantum_bundle_roles():
    ca_key, ca = _ca()
    kem = _kem_cert(ca_key, ca)
    for order in ((ca, kem), (kem, ca)):
        bundle = _bundle(*order)
        assert bundle.ca == ca and bundle.signer == ca and bundle.kem_recipient_cert == kem


def test_ml_kem_certificate_from_another_issuer_is_refused():
    ca_key, ca = _ca()
    other_key, other = _ca("Other CA")
    with pytest.raises(ClientError, match="ML-KEM certificate"):
        _bundle(ca, _kem_cert(other_key, other))


def test_ml_kem_certificate_with_signing_usage_is_refused():
    ca_key, ca = _ca()
    with pytest.raises(ClientError, match="key encipherment only"):
        _bundle(ca, _kem_cert(ca_key, ca, purpose="sign"))


def test_classic_bundle_has_no_kem_recipient_cert():
    ca_key, ca = _ca(key_type="rsa-2048")
    enc_key = generate_key("rsa-2048")
    enc = issue_ra_certificate(ca_key, ca, enc_key.public_key(), name_from_common_name("RA enc"), purpose="encrypt",
                               now=NOW, days=10, serial=3)
    bundle = _bundle(enc, ca)
    assert bundle.kem_recipient_cert is None and bundle.encipherer == enc and bundle.ca == ca
