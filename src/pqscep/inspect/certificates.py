"""Certificates, CRLs and PKCS#10 requests as nodes. A CSR's signature is checked: with its own
key, or for an ML-KEM key (which cannot sign) with the certificate its RFC 9883
privateKeyPossessionStatement names; its challengePassword is hidden unless asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ObjectIdentifier
from cryptography.x509.oid import ExtensionOID

from ..asn1 import oids
from ..crypto import keys as keymod
from ..csr.errors import CsrError
from ..csr.pkcs10 import csr_possession_statement, verify_csr_with
from ..csr.possession import certificate_issuer_der
from .names import key_type, oid_name, utc_time

if TYPE_CHECKING:
    from .inspector import Inspector

__all__ = ["certificate_node", "crl_node", "csr_node"]

_EXTENSION_NAMES = {v: k.lower() for k, v in vars(ExtensionOID).items() if isinstance(v, ObjectIdentifier)}


def certificate_node(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "type": "Certificate",
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:#x}",
        "key": key_type(cert.public_key, cert.public_key_algorithm_oid),
        "not_before": utc_time(cert.not_valid_before_utc),
        "not_after": utc_time(cert.not_valid_after_utc),
        "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
    }


def crl_node(crl: x509.CertificateRevocationList) -> dict[str, Any]:
    return {
        "type": "CRL",
        "issuer": crl.issuer.rfc4514_string(),
        "last_update": utc_time(crl.last_update_utc),
        "next_update": utc_time(crl.next_update_utc) if crl.next_update_utc else None,
        "revoked": len(list(crl)),
    }


def _extension_value(ext: x509.Extension[Any]) -> object:
    value = ext.value
    if isinstance(value, x509.SubjectAlternativeName):
        return [f"{type(n).__name__.replace('Name', '').replace('RFC822', 'email')}:{n.value}" for n in value]
    if isinstance(value, x509.KeyUsage):
        flags = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                 "key_agreement", "key_cert_sign", "crl_sign"]
        return [f for f in flags if getattr(value, f)]
    if isinstance(value, x509.ExtendedKeyUsage):
        return [getattr(u, "_name", None) or u.dotted_string for u in value]
    if isinstance(value, x509.BasicConstraints):
        return {"ca": value.ca, "path_length": value.path_length}
    if isinstance(value, x509.UnrecognizedExtension):
        return value.value.hex()
    try:
        return value.public_bytes().hex()
    except Exception:
        return str(value)


def _kem_csr_signature(csr: x509.CertificateSigningRequest, inspector: Inspector) -> tuple[bool | None, str]:
    """An ML-KEM key cannot sign its CSR: it is signed by the certificate its RFC 9883
    statement names (draft Section 7.1), which is in the statement or signed the pkiMessage."""
    der = csr.public_bytes(serialization.Encoding.DER)
    try:
        issuer, serial, cert = csr_possession_statement(der)
    except CsrError as exc:
        return None, f"no usable privateKeyPossessionStatement ({exc.text})"
    if cert is None:
        cert = next((c for c in inspector.signer_certificates
                     if c.serial_number == serial and certificate_issuer_der(c) == issuer), None)
    if cert is None:
        return None, "the certificate the statement names is neither in the statement nor the message's signer"
    try:
        verify_csr_with(der, cert.public_key())
    except CsrError as exc:
        return False, f"does NOT verify with the statement's certificate ({exc.text})"
    return True, f"verifies with the statement's certificate ({cert.subject.rfc4514_string()})"


def csr_node(csr: x509.CertificateSigningRequest, inspector: Inspector) -> dict[str, Any]:
    kem_key = _key_family_of(csr) == keymod.KeyFamily.ML_KEM
    how = "the request's own key"
    if kem_key:
        valid, how = _kem_csr_signature(csr, inspector)
    else:
        try:
            valid = csr.is_signature_valid
        except Exception:  # unsupported key or signature algorithm
            valid = None
    if not valid:
        inspector.problem("the PKCS#10 signature does not verify" if valid is False
                          else f"the PKCS#10 signature cannot be checked: {how}" if kem_key
                          else "the PKCS#10 signature algorithm is not supported")
    node: dict[str, Any] = {
        "type": "PKCS#10 CertificationRequest",
        "subject": csr.subject.rfc4514_string(),
        "key": key_type(csr.public_key, None),
        "signature_algorithm": oid_name(csr.signature_algorithm_oid),
        "signature_valid": valid,
    }
    if kem_key:
        node["signature_check"] = how
    try:
        password = csr.attributes.get_attribute_for_oid(oids.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        node["challenge_password"] = "absent"
    else:
        if inspector.show_secrets:
            node["challenge_password"] = (password.decode("utf-8", "replace") if isinstance(password, bytes)
                                          else password)
        else:
            node["challenge_password"] = "present (value hidden; --show-secrets shows it)"
    try:
        node["extensions"] = [
            {"name": _EXTENSION_NAMES.get(ext.oid, ext.oid.dotted_string), "critical": ext.critical,
             "value": _extension_value(ext)}
            for ext in csr.extensions
        ]
    except Exception as exc:  # duplicate or malformed extensions
        node["extensions"] = {"error": str(exc)[:160]}
    try:
        _, serial, included = csr_possession_statement(csr.public_bytes(serialization.Encoding.DER))
        node["possession_statement"] = (f"privateKeyPossessionStatement (RFC 9883): signer serial {serial:#x}"
                                        + (", certificate included" if included is not None else ""))
    except CsrError:
        pass
    known = (oids.CHALLENGE_PASSWORD, oids.EXTENSION_REQUEST, oids.PRIVATE_KEY_POSSESSION_STATEMENT)
    others = [a.oid.dotted_string for a in csr.attributes if a.oid not in known]
    if others:
        node["other_attributes"] = others
    return node


def _key_family_of(csr: x509.CertificateSigningRequest) -> keymod.KeyFamily | None:
    try:
        return keymod.key_family(csr.public_key())
    except Exception:  # a key type this cryptography build cannot load
        return None
