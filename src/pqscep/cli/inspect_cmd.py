"""`pqscep inspect`: decode a SCEP/CMS message (or a CSR, certificate, CRL) into a tree, verify
its signatures, and with private keys decrypt its envelopes and recurse into what they hold.

Everything is table-driven so that new structures are one more entry:
- `CONTENT_TYPES`: ContentInfo contentType -> decoder (SignedData, EnvelopedData,
  AuthEnvelopedData, data);
- `RECIPIENT_INFOS`: RecipientInfo CHOICE tag -> decoder (ktri 0x30, kari 0xA1, kekri 0xA2,
  pwri 0xA3, ori 0xA4), and `OTHER_RECIPIENT_INFOS`: oriType -> decoder (id-ori-kem: RFC 9629
  KEMRecipientInfo);
- `RECIPIENT_FACTORIES`: key family -> the `cms.enveloped` recipient that decrypts with such a
  key (RSA: KeyTransRecipient; an ML-KEM entry comes with the KEM recipient);
- `ATTRIBUTES`: attribute OID -> (name, value decoder); the post-quantum SCEP attributes
  (responseKey, kemPopChallenge, kemPopProof; PROVISIONAL OIDs) are decoded, not dumped;
- `PAYLOADS`: sniffers for what an envelope or eContent may hold (ContentInfo, PKCS#10,
  certificate, CRL, IssuerAndSubject, IssuerAndSerialNumber).

Keys: `--key` files load through `pkcs8.load_any_private_key` (PEM or DER; PKCS#8 in every
RFC 9881/9935 ML-DSA/ML-KEM form, PKCS#1, SEC1); an encrypted one needs
`--key-passphrase-env VAR`, the name of an environment variable holding the passphrase (a
passphrase is never taken on the command line). `--password PW` opens PasswordRecipientInfos
(RFC 3211, the SCEP challenge password); it is never printed.

Exit 0 when everything decoded and every signature verified (and every envelope tried with a
key opened); EXIT_VERIFY (5) when a signature did not verify or a decryption failed; 1 when the
input cannot be read at all.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ObjectIdentifier
from cryptography.x509.oid import ExtensionOID
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from ..asn1 import ber, cms, oids
from ..cms import enveloped, signed
from ..cms.kem import KemRecipient
from ..cms.password import MAX_ITERATIONS, MIN_ITERATIONS, PasswordRecipient
from ..crypto import key_errors, pkcs8, signing
from ..crypto import keys as keymod
from ..crypto.registry import CIPHERS, DIGESTS, KDFS, KEMS, KEY_WRAPS, PBKDF2_PRFS
from ..crypto.spki import spki_raw_public_key
from ..csr.errors import CsrError
from ..csr.pkcs10 import csr_possession_statement, verify_csr_with
from ..csr.possession import certificate_issuer_der
from ..protocol.messages import FAIL_INFO_NAMES, MESSAGE_TYPE_NAMES, FailInfo, IssuerAndSubject, MessageType, PkiStatus
from .exits import EXIT_FAILURE, EXIT_OK, EXIT_VERIFY

__all__ = [
    "ATTRIBUTES",
    "COMMANDS",
    "CONTENT_TYPES",
    "Inspector",
    "OTHER_RECIPIENT_INFOS",
    "PAYLOADS",
    "RECIPIENT_FACTORIES",
    "RECIPIENT_INFOS",
    "read_input",
]

MAX_DEPTH = 12  # nested ContentInfos; SCEP needs 4 (SignedData > EnvelopedData > SignedData > certs)

# --- names ---

# Every OID constant of asn1.oids under a readable name, as a fallback for the registries.
_OID_NAMES: dict[ObjectIdentifier, str] = {
    value: name.lower().replace("_", "-") for name, value in vars(oids).items() if isinstance(value, ObjectIdentifier)
}
_OID_NAMES.update({
    oids.DATA: "data", oids.SIGNED_DATA: "signedData", oids.ENVELOPED_DATA: "envelopedData",
    oids.AUTH_ENVELOPED_DATA: "authEnvelopedData", oids.ORI_KEM: "id-ori-kem",
    oids.RSA_ENCRYPTION: "rsaEncryption", oids.RSAES_OAEP: "RSAES-OAEP",
    oids.PBKDF2: "PBKDF2", oids.PWRI_KEK: "id-alg-PWRI-KEK",
})
_EXTENSION_NAMES = {v: k.lower() for k, v in vars(ExtensionOID).items() if isinstance(v, ObjectIdentifier)}


def oid_name(oid: ObjectIdentifier) -> str:
    """The registry name of an algorithm or content type, else its dotted form."""
    for registry in (DIGESTS, CIPHERS, KEY_WRAPS, KDFS, KEMS, PBKDF2_PRFS, signing.VERIFIERS):
        entry = registry.get(oid)
        if entry is not None:
            return entry.name
    return _OID_NAMES.get(oid, oid.dotted_string)


def algorithm_node(tlv_or_der) -> dict:
    try:
        algorithm = cms.parse_algorithm(tlv_or_der)
    except cms.Asn1Error as exc:
        return {"error": str(exc)}
    node: dict = {"name": oid_name(algorithm.oid), "oid": algorithm.oid.dotted_string}
    if algorithm.parameters is not None and algorithm.parameters != cms.NULL:
        node["parameters"] = algorithm.parameters.hex()
    return node


def _algorithm_label(node: dict) -> str:
    return node.get("name", node.get("error", "?"))


def name_string(der: bytes) -> str:
    try:
        return x509.Name.from_bytes(der).rfc4514_string()
    except ValueError:
        return f"(undecodable Name {der.hex()})"


def describe_public_key(public_key) -> str:
    family = keymod.key_family(public_key)
    if family == "rsa":
        return f"rsa-{public_key.key_size}"
    if family == "ec":
        return f"ec-{public_key.curve.name}"
    if family == "ml-dsa":
        return signing.VERIFIERS.by_oid(signing.ml_dsa_oid(public_key)).name
    return type(public_key).__name__.replace("PublicKey", "")


def _key_type(get_key: Callable[[], object], fallback_oid: ObjectIdentifier | None) -> str:
    try:
        return describe_public_key(get_key())
    except Exception:  # a key type cryptography (or this project) does not know
        return oid_name(fallback_oid) if fallback_oid is not None else "unknown"


def _time(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- attribute values ---


def _string_value(der: bytes) -> str:
    tag, start, stop = ber.read_tlv(der)
    if tag in (0x13, 0x16, 0x0C, 0x14, 0x1A):  # Printable, IA5, UTF8, T61, Visible
        return der[start:stop].decode("utf-8", "replace")
    raise ValueError(f"not a string (tag {tag:#04x})")


def _octets_value(der: bytes) -> str:
    return cms.decode_der(bytes, der).hex()


def _oid_value(der: bytes) -> str:
    oid = cms.decode_der(ObjectIdentifier, der)
    return f"{oid_name(oid)} ({oid.dotted_string})"


def _time_value(der: bytes) -> str:
    tag, start, stop = ber.read_tlv(der)
    text = der[start:stop].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ (RFC 5280 4.1.2.5.1 windowing)
        year = int(text[:2])
        return f"{1900 + year if year >= 50 else 2000 + year}-{text[2:4]}-{text[4:6]}T{text[6:8]}:{text[8:10]}:{text[10:12]}Z"
    if tag == 0x18:
        return f"{text[:4]}-{text[4:6]}-{text[6:8]}T{text[8:10]}:{text[10:12]}:{text[12:14]}Z"
    raise ValueError("not a time")


def _enum_value(names: Callable[[int], str]) -> Callable[[bytes], str]:
    def decode(der: bytes) -> str:
        text = _string_value(der)
        try:
            return f"{text} ({names(int(text))})"
        except (ValueError, KeyError):
            return f"{text} (unknown)"

    return decode


def _protection_value(der: bytes) -> str:
    value = cms.decode_der(cms.CMSAlgorithmProtection, der)
    parts = [f"digest {oid_name(value.digest_algorithm.algorithm)}"]
    if value.signature_algorithm is not None:
        parts.append(f"signature {oid_name(value.signature_algorithm.algorithm)}")
    if value.mac_algorithm is not None:
        parts.append(f"mac {oid_name(value.mac_algorithm.algorithm)}")
    return ", ".join(parts)


def _key_name(oid: ObjectIdentifier) -> str:
    return pkcs8.pq_algorithm_name(oid) or oid_name(oid)


def _response_key_value(der: bytes) -> str:
    """responseKey (design section 4): "ML-KEM-768 public key, SKI <hex>". The SKI is RFC 5280
    4.2.1.2 method 1 (SHA-1 of the subjectPublicKey bits): the rid a CA's reply names it by."""
    oid, raw = spki_raw_public_key(der)
    ski = hashlib.sha1(raw).hexdigest()
    kem = KEMS.get(oid)
    if kem is not None:
        text = f"{_key_name(oid)} public key, SKI {ski}"
        if len(raw) != kem.public_key_size:
            return f"{text} (malformed: {len(raw)} bytes, {_key_name(oid)} keys have {kem.public_key_size})"
        if not kem.available:
            return f"{text} ({_key_name(oid)} is not supported by this build: a pqscep CA refuses it)"
        return text
    try:
        name = describe_public_key(serialization.load_der_public_key(der))
    except Exception:  # a key type cryptography or this project does not know
        name = _key_name(oid)
    return f"{name} public key, SKI {ski} (not an ML-KEM key: a pqscep CA refuses it)"


def _kem_pop_challenge_value(der: bytes) -> str:
    """kemPopChallenge: KemCiphertextInfo { kem, ct } (RFC 9810), e.g. "KemCiphertextInfo: kem
    ML-KEM-768, ct 1088 bytes (sha256 ...)"."""
    value = cms.decode_der(cms.KemCiphertextInfo, der)
    kem_oid = cms.parse_algorithm(value.kem).oid
    text = f"KemCiphertextInfo: kem {_key_name(kem_oid)}, ct {len(value.ct)} bytes " \
           f"(sha256 {hashlib.sha256(value.ct).hexdigest()[:16]}...)"
    kem = KEMS.get(kem_oid)
    if kem is not None and len(value.ct) != kem.ciphertext_size:
        text += f" (wrong size: {_key_name(kem_oid)} ciphertexts have {kem.ciphertext_size} bytes)"
    return text


def _kem_pop_proof_value(der: bytes) -> str:
    """kemPopProof: SEQUENCE { macAlgorithm, mac }, e.g. "macAlgorithm hmac-sha256, mac 32 bytes <hex>"."""
    value = cms.decode_der(cms.KemPopProof, der)
    algorithm = cms.parse_algorithm(value.mac_algorithm)
    return f"macAlgorithm {oid_name(algorithm.oid)}, mac {len(value.mac)} bytes {value.mac.hex()}"


def _message_type_name(number: int) -> str:
    return MESSAGE_TYPE_NAMES[MessageType(number)]


def _status_name(number: int) -> str:
    return PkiStatus(number).name


def _fail_info_name(number: int) -> str:
    return FAIL_INFO_NAMES[FailInfo(number)]


ATTRIBUTES: dict[ObjectIdentifier, tuple[str, Callable[[bytes], object]]] = {
    oids.CONTENT_TYPE: ("contentType", _oid_value),
    oids.MESSAGE_DIGEST: ("messageDigest", _octets_value),
    oids.SIGNING_TIME: ("signingTime", _time_value),
    oids.CMS_ALGORITHM_PROTECTION: ("cmsAlgorithmProtection", _protection_value),
    oids.SCEP_MESSAGE_TYPE: ("messageType", _enum_value(_message_type_name)),
    oids.SCEP_PKI_STATUS: ("pkiStatus", _enum_value(_status_name)),
    oids.SCEP_FAIL_INFO: ("failInfo", _enum_value(_fail_info_name)),
    oids.SCEP_FAIL_INFO_TEXT: ("failInfoText", _string_value),
    oids.SCEP_TRANSACTION_ID: ("transactionID", _string_value),
    oids.SCEP_SENDER_NONCE: ("senderNonce", _octets_value),
    oids.SCEP_RECIPIENT_NONCE: ("recipientNonce", _octets_value),
    # The post-quantum SCEP attributes (PROVISIONAL OIDs, see asn1.oids).
    oids.SCEP_KEM_POP_CHALLENGE: ("kemPopChallenge", _kem_pop_challenge_value),
    oids.SCEP_KEM_POP_PROOF: ("kemPopProof", _kem_pop_proof_value),
    oids.SCEP_RESPONSE_KEY: ("responseKey", _response_key_value),
}


def attribute_nodes(attributes: dict[ObjectIdentifier, list[bytes]]) -> list[dict]:
    nodes = []
    for oid, values in attributes.items():
        name, decoder = ATTRIBUTES.get(oid, (None, None))
        node: dict = {"name": name or oid.dotted_string, "oid": oid.dotted_string}
        decoded = []
        for value in values:
            if decoder is None:
                decoded.append(value.hex())
                continue
            try:
                decoded.append(decoder(value))
            except Exception as exc:  # a malformed value: show it raw, say why
                decoded.append(f"(undecodable: {str(exc)[:80]}) {value.hex()}")
        node["value"] = decoded[0] if len(decoded) == 1 else decoded
        nodes.append(node)
    return nodes


def _attribute_set_nodes(attrs) -> list[dict]:
    """Nodes for a decoded `SetOf[cms.Attribute]` (unprotected / auth attributes)."""
    if attrs is None:
        return []
    mapping: dict[ObjectIdentifier, list[bytes]] = {}
    for attr in attrs.as_list():
        mapping.setdefault(attr.attr_type, []).extend(cms.tlv_bytes(v) for v in attr.attr_values.as_list())
    return attribute_nodes(mapping)


def _protection_check(signer: signed.SignerInfoView) -> str:
    """Whether the CMSAlgorithmProtection attribute (RFC 6211) names the SignerInfo's own
    digest and signature algorithms (the signature check refuses it otherwise)."""
    values = signer.signed_attrs[oids.CMS_ALGORITHM_PROTECTION]
    if len(values) != 1:
        return f"malformed: {len(values)} values (RFC 6211: exactly one)"
    try:
        value = cms.decode_der(cms.CMSAlgorithmProtection, values[0])
    except cms.Asn1Error as exc:
        return f"malformed: {exc}"
    differences = []
    if value.digest_algorithm.algorithm != signer.digest_algorithm.oid:
        differences.append(f"digest {oid_name(value.digest_algorithm.algorithm)}, "
                           f"SignerInfo {oid_name(signer.digest_algorithm.oid)}")
    if value.signature_algorithm is None:
        differences.append("no signatureAlgorithm")
    elif value.signature_algorithm.algorithm != signer.signature_algorithm.oid:
        differences.append(f"signature {oid_name(value.signature_algorithm.algorithm)}, "
                           f"SignerInfo {oid_name(signer.signature_algorithm.oid)}")
    if value.mac_algorithm is not None:
        differences.append("macAlgorithm present (RFC 6211: absent in a SignedData)")
    if differences:
        return "does NOT match the SignerInfo: " + "; ".join(differences)
    return "matches the SignerInfo's digest and signature algorithms"


# --- certificates, CRLs, CSRs ---


def certificate_node(cert: x509.Certificate) -> dict:
    return {
        "type": "Certificate",
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:#x}",
        "key": _key_type(cert.public_key, cert.public_key_algorithm_oid),
        "not_before": _time(cert.not_valid_before_utc),
        "not_after": _time(cert.not_valid_after_utc),
        "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
    }


def crl_node(crl: x509.CertificateRevocationList) -> dict:
    return {
        "type": "CRL",
        "issuer": crl.issuer.rfc4514_string(),
        "last_update": _time(crl.last_update_utc),
        "next_update": _time(crl.next_update_utc) if crl.next_update_utc else None,
        "revoked": len(list(crl)),
    }


def _extension_value(ext: x509.Extension) -> object:
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
    statement names (design section 5), which is in the statement or signed the pkiMessage."""
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


def csr_node(csr: x509.CertificateSigningRequest, inspector: Inspector) -> dict:
    kem_key = _key_family_of(csr) == "ml-kem"
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
    node: dict = {
        "type": "PKCS#10 CertificationRequest",
        "subject": csr.subject.rfc4514_string(),
        "key": _key_type(csr.public_key, None),
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
            node["challenge_password"] = password.decode("utf-8", "replace") if isinstance(password, bytes) else password
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


def _key_family_of(csr: x509.CertificateSigningRequest) -> str | None:
    try:
        return keymod.key_family(csr.public_key())
    except Exception:  # a key type this cryptography build cannot load
        return None


# --- the inspector ---


@dataclass
class KeyEntry:
    label: str  # the file it came from
    key: object
    certificate: x509.Certificate | None = None  # its certificate, when one of --cert matches


def _rid_node(rid) -> dict:
    if isinstance(rid, bytes):
        return {"subject_key_identifier": rid.hex()}
    return {"issuer": name_string(cms.tlv_bytes(rid.issuer)), "serial": f"{rid.serial_number:#x}"}


class _OneKtri:
    """A KeyTransRecipient that answers for exactly one KeyTransRecipientInfo (by its encoding).

    With a bare key (no certificate), `KeyTransRecipient` matches every KTRI and the first one
    wins. With OpenSSL's implicit rejection, RSA PKCS#1 v1.5 decryption with the wrong key
    returns random bytes instead of failing, so the first KTRI addressed to someone else would
    yield a wrong key. Trying each (key, KTRI) pair on its own avoids that.
    """

    tag = cms.KTRI_TAG
    kind = "ktri"

    def __init__(self, key, info_der: bytes):
        self._inner = enveloped.KeyTransRecipient(None, key)
        self._info_der = info_der

    def matches(self, info_der: bytes) -> bool:
        return info_der == self._info_der

    def unwrap(self, info_der: bytes, *, allow_legacy: bool) -> bytes:
        return self._inner.unwrap(info_der, allow_legacy=allow_legacy)


def _rsa_recipients(entry: KeyEntry, infos: list[bytes]) -> list:
    if entry.certificate is not None:
        return [enveloped.KeyTransRecipient(entry.certificate, entry.key)]
    return [_OneKtri(entry.key, info) for info in infos if info[0] == cms.KTRI_TAG]


def _kem_recipients(entry: KeyEntry, infos: list[bytes]) -> list:
    # With a certificate, only KEMRecipientInfos naming it; without, any of this KEM's (the
    # responseKey of a request is named by an SKI no certificate carries).
    return [KemRecipient(entry.key, certificate=entry.certificate)]


# key family -> recipients to try for one key, given the RecipientInfos (DER) of the envelope.
RECIPIENT_FACTORIES: dict[str, Callable[[KeyEntry, list[bytes]], list]] = {
    "rsa": _rsa_recipients,
    "ml-kem": _kem_recipients,
}


@dataclass
class Inspector:
    keys: list[KeyEntry] = field(default_factory=list)
    certificates: list[x509.Certificate] = field(default_factory=list)  # --cert: extra signer candidates
    show_secrets: bool = False
    passwords: list[bytes] = field(default_factory=list, repr=False)  # --password: opens PWRIs; never shown
    problems: list[str] = field(default_factory=list)
    innermost: bytes | None = None  # the last (deepest) decrypted content
    # Signer certificates of the SignedData seen so far: an ML-KEM CSR inside is signed by one.
    signer_certificates: list[x509.Certificate] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)

    # what a blob is

    def payload(self, data: bytes, depth: int = 0) -> dict:
        if depth > MAX_DEPTH:
            self.problem("nesting too deep")
            return {"type": "error", "error": "nesting too deep"}
        for sniff in PAYLOADS:
            node = sniff(self, data, depth)
            if node is not None:
                return node
        node: dict = {"type": "unknown", "length": len(data)}
        try:
            decoded = data.decode("utf-8")
        except UnicodeDecodeError:
            decoded = None
        if decoded is not None and decoded.isprintable():
            node["text"] = decoded[:200] + ("..." if len(decoded) > 200 else "")
        else:
            node["hex"] = data[:64].hex() + ("..." if len(data) > 64 else "")
        return node

    def content_info(self, data: bytes, depth: int) -> dict:
        normalised = signed.normalise(data)
        content_info = cms.decode(cms.ContentInfo, normalised)
        handler = CONTENT_TYPES.get(content_info.content_type)
        if handler is None:
            return {"type": "ContentInfo", "content_type": oid_name(content_info.content_type),
                    "content_length": len(cms.tlv_bytes(content_info.content))}
        try:
            return handler(self, normalised, depth)
        except (cms.Asn1Error, signed.SignedDataError, ValueError) as exc:
            self.problem(f"{oid_name(content_info.content_type)} does not decode: {exc}")
            return {"type": oid_name(content_info.content_type), "error": str(exc)[:200]}

    # SignedData

    def signed_data(self, data: bytes, depth: int) -> dict:
        content_info = cms.decode(cms.ContentInfo, data)
        raw = cms.decode_der(cms.SignedData, cms.tlv_bytes(content_info.content))
        message = signed.parse_signed_data(data)
        node: dict = {
            "type": "SignedData",
            "version": raw.version,
            "content_type": oid_name(message.content_type),
            "digest_algorithms": [_algorithm_label(algorithm_node(a)) for a in raw.digest_algorithms.as_list()],
            "certificates": [certificate_node(c) for c in message.certificates],
        }
        if message.crls:
            node["crls"] = [crl_node(c) for c in message.crls]
        node["signers"] = [self._signer_node(message, s) for s in message.signer_infos]
        if not message.signer_infos:
            node["signers"] = "none (a certs-only SignedData)"
        if message.content is None:
            node["content"] = "absent"
        else:
            node["content"] = self.payload(message.content, depth + 1)
        return node

    def _signer_node(self, message: signed.SignedMessage, signer: signed.SignerInfoView) -> dict:
        sid = ({"subject_key_identifier": signer.subject_key_id.hex()} if signer.subject_key_id is not None
               else {"issuer": name_string(signer.issuer_der or b""), "serial": f"{signer.serial:#x}"})
        node: dict = {
            "type": "SignerInfo",
            "version": signer.raw.version,
            "sid": sid,
            "digest_algorithm": signer.digest_algorithm and oid_name(signer.digest_algorithm.oid),
            "signature_algorithm": oid_name(signer.signature_algorithm.oid),
            "signed_attributes": attribute_nodes(signer.signed_attrs),
        }
        if oids.CMS_ALGORITHM_PROTECTION in signer.signed_attrs:
            node["algorithm_protection"] = _protection_check(signer)
        if signer.raw.unsigned_attrs is not None:
            node["unsigned_attributes"] = _attribute_set_nodes(signer.raw.unsigned_attrs)
        cert = message.signer_certificate(signer)
        where = None
        if cert is not None:
            where = f"certificate #{message.certificates.index(cert) + 1} in the SignedData ({cert.subject.rfc4514_string()})"
        else:
            extra = signed.SignedMessage(message.content_type, message.content, self.certificates, [], [])
            cert = extra.signer_certificate(signer)
            if cert is not None:
                where = f"--cert ({cert.subject.rfc4514_string()})"
        if cert is None:
            node["verified"] = False
            node["verification"] = "the signer's certificate is not included (give it with --cert)"
            self.problem("a SignerInfo's certificate is missing: signature not verified")
            return node
        self.signer_certificates.append(cert)
        try:
            signed.verify_signer(message, signer, cert.public_key(), allow_legacy=True)
        except (signed.SignedDataError, ValueError, TypeError) as exc:
            node["verified"] = False
            node["verification"] = f"does NOT verify with {where}: {exc}"
            self.problem(f"signature does not verify: {exc}")
        else:
            node["verified"] = True
            node["verification"] = f"verifies with {where}"
        return node

    # EnvelopedData and AuthEnvelopedData

    def enveloped_data(self, data: bytes, depth: int) -> dict:
        content_info = cms.decode(cms.ContentInfo, data)
        env = cms.decode_der(cms.EnvelopedData, cms.tlv_bytes(content_info.content))
        node = self._envelope_common("EnvelopedData", env, env.encrypted_content_info)
        if env.unprotected_attrs is not None:
            node["unprotected_attributes"] = _attribute_set_nodes(env.unprotected_attrs)
        node["decryption"] = self._decrypt(data, env.recipient_infos, depth)
        return node

    def auth_enveloped_data(self, data: bytes, depth: int) -> dict:
        content_info = cms.decode(cms.ContentInfo, data)
        env = cms.decode_der(cms.AuthEnvelopedData, cms.tlv_bytes(content_info.content))
        node = self._envelope_common("AuthEnvelopedData", env, env.auth_encrypted_content_info)
        node["mac_length"] = len(env.mac)
        if env.auth_attrs is not None:
            node["auth_attributes"] = _attribute_set_nodes(env.auth_attrs)
        if env.unauth_attrs is not None:
            node["unauth_attributes"] = _attribute_set_nodes(env.unauth_attrs)
        node["decryption"] = self._decrypt(data, env.recipient_infos, depth)
        return node

    def _envelope_common(self, kind: str, env, eci) -> dict:
        try:
            ciphertext_length = len(ber.join_constructed_string(cms.tlv_bytes(eci.encrypted_content)))
        except ber.BerError:
            ciphertext_length = None
        return {
            "type": kind,
            "version": env.version,
            "originator_info": "present" if env.originator_info is not None else "absent",
            "recipient_infos": [self.recipient_info(cms.tlv_bytes(i)) for i in env.recipient_infos.as_list()],
            "content_type": oid_name(eci.content_type),
            "content_encryption": algorithm_node(eci.content_encryption_algorithm),
            "encrypted_content_length": ciphertext_length,
        }

    def recipient_info(self, der: bytes) -> dict:
        handler = RECIPIENT_INFOS.get(der[0])
        if handler is None:
            return {"type": f"unknown RecipientInfo (tag {der[0]:#04x})"}
        try:
            return handler(self, der)
        except (cms.Asn1Error, ValueError) as exc:
            return {"type": f"RecipientInfo (tag {der[0]:#04x})", "error": str(exc)[:160]}

    def _decrypt(self, data: bytes, infos, depth: int) -> dict | str:
        info_ders = [cms.tlv_bytes(i) for i in infos.as_list()]
        has_pwri = any(info[0] == cms.PWRI_TAG for info in info_ders)
        if not self.keys and not self.passwords:
            return "not attempted (give --key or --password)" if has_pwri else "not attempted (give --key)"
        errors = []
        # (label for errors, "with" text, recipient): every key's recipients, then the password.
        candidates = []
        for entry in self.keys:
            try:
                family = keymod.key_family(entry.key)
            except ValueError:
                family = type(entry.key).__name__
            factory = RECIPIENT_FACTORIES.get(family)
            if factory is None:
                errors.append(f"{entry.label}: a {family} key cannot open any RecipientInfo yet")
                continue
            shown = entry.label + (f" + certificate {entry.certificate.subject.rfc4514_string()}"
                                   if entry.certificate is not None else "")
            candidates.extend((entry.label, shown, recipient) for recipient in factory(entry, info_ders))
        for number, password in enumerate(self.passwords, 1):
            # The password itself is never shown: only which option it came from.
            label = "--password" if len(self.passwords) == 1 else f"--password #{number}"
            if not has_pwri:
                errors.append(f"{label}: the envelope has no PasswordRecipientInfo")
                continue
            candidates.append((label, label, PasswordRecipient(password)))
        for label, shown, recipient in candidates:
            try:
                opened = enveloped.open_envelope(data, [recipient], allow_legacy=True)
            except (enveloped.EnvelopeError, cms.Asn1Error, ValueError) as exc:
                errors.append(f"{label}: {exc}")
                continue
            self.innermost = opened.content
            return {
                "decrypted": True,
                "with": shown,
                "recipient_info": opened.recipient_kind,
                "cipher": opened.cipher.name + (" (legacy)" if opened.cipher.legacy else ""),
                "content_length": len(opened.content),
                "content": self.payload(opened.content, depth + 1),
            }
        if not candidates and not errors:
            errors.append("no RecipientInfo the given keys can open")
        reason = "; ".join(dict.fromkeys(errors))[:400] or "no matching RecipientInfo"
        self.problem(f"decryption failed: {reason}")
        return {"decrypted": False, "error": reason}

    # RecipientInfo forms

    def ktri(self, der: bytes) -> dict:
        info = cms.decode_der(cms.KeyTransRecipientInfo, der)
        return {
            "type": "KeyTransRecipientInfo",
            "version": info.version,
            "rid": _rid_node(info.rid),
            "key_encryption_algorithm": _algorithm_label(algorithm_node(info.key_encryption_algorithm)),
            "encrypted_key_length": len(info.encrypted_key),
        }

    def kari(self, der: bytes) -> dict:
        return {"type": "KeyAgreeRecipientInfo", "note": "not decoded"}

    def kekri(self, der: bytes) -> dict:
        return {"type": "KEKRecipientInfo", "note": "not decoded"}

    def pwri(self, der: bytes) -> dict:
        """PasswordRecipientInfo (RFC 3211): the KDF with its iteration count, PRF and salt, and
        the KEK algorithm (id-alg-PWRI-KEK with its CBC cipher, or an AES key wrap)."""
        info = cms.decode_der(cms.PasswordRecipientInfo, cms.implicit_to_sequence(der))
        node: dict = {"type": "PasswordRecipientInfo", "version": info.version}
        notes = []
        kda = info.key_derivation_algorithm
        if kda is None:
            node["key_derivation_algorithm"] = "absent (the KEK would be agreed out of band)"
        else:
            node["key_derivation_algorithm"] = oid_name(kda.algorithm)
            if kda.algorithm == oids.PBKDF2:
                try:
                    params = cms.decode_der(cms.PBKDF2Params, cms.tlv_bytes(kda.parameters))
                except cms.Asn1Error as exc:
                    notes.append(f"PBKDF2 parameters do not decode: {exc}")
                else:
                    node["iterations"] = params.iteration_count
                    if not MIN_ITERATIONS <= params.iteration_count <= MAX_ITERATIONS:
                        notes.append(f"iteration count outside {MIN_ITERATIONS}..{MAX_ITERATIONS:,}: "
                                     "a pqscep CA refuses it")
                    node["prf"] = (oid_name(params.prf.algorithm) if params.prf is not None
                                   else "hmac-sha1 (PBKDF2's DEFAULT: prf absent)")
                    node["salt_length"] = len(params.salt)
                    if params.key_length is not None:
                        node["key_length"] = params.key_length
        try:
            kea = cms.parse_algorithm(info.key_encryption_algorithm)
            if kea.oid == oids.PWRI_KEK:
                inner = cms.parse_algorithm(kea.parameters) if kea.parameters is not None else None
                node["key_encryption_algorithm"] = (f"id-alg-PWRI-KEK with {oid_name(inner.oid)}" if inner
                                                    else "id-alg-PWRI-KEK without its KEK cipher")
            else:
                node["key_encryption_algorithm"] = oid_name(kea.oid)
        except cms.Asn1Error as exc:
            node["key_encryption_algorithm"] = {"error": str(exc)}
        node["encrypted_key_length"] = len(info.encrypted_key)
        if notes:
            node["notes"] = notes
        return node

    def ori(self, der: bytes) -> dict:
        info = cms.decode_der(cms.OtherRecipientInfo, cms.implicit_to_sequence(der))
        handler = OTHER_RECIPIENT_INFOS.get(info.ori_type)
        if handler is None:
            return {"type": "OtherRecipientInfo", "ori_type": oid_name(info.ori_type)}
        return handler(self, cms.tlv_bytes(info.ori_value))

    def kemri(self, der: bytes) -> dict:
        """KEMRecipientInfo (RFC 9629): kem, kdf, kekLength, ukm, wrap and rid, with notes where
        the fields do not fit together (what a recipient refuses)."""
        info = cms.decode_der(cms.KEMRecipientInfo, der)
        kem = cms.parse_algorithm(info.kem)
        kdf = cms.parse_algorithm(info.kdf)
        wrap = cms.parse_algorithm(info.wrap)
        node = {
            "type": "KEMRecipientInfo",
            "ori_type": "id-ori-kem",
            "version": info.version,
            "rid": _rid_node(info.rid),
            "kem": _key_name(kem.oid),
            "kem_ciphertext_length": len(info.kemct),
            "kdf": oid_name(kdf.oid),
            "kek_length": info.kek_length,
            "ukm": info.ukm.hex() if info.ukm is not None else None,
            "wrap": oid_name(wrap.oid),
            "encrypted_key_length": len(info.encrypted_key),
        }
        notes = []
        if info.version != 0:
            notes.append(f"version {info.version} (RFC 9629: 0)")
        kem_entry = KEMS.get(kem.oid)
        if kem_entry is None:
            notes.append(f"unknown KEM {kem.oid.dotted_string}")
        elif len(info.kemct) != kem_entry.ciphertext_size:
            notes.append(f"kemct has {len(info.kemct)} bytes; {_key_name(kem.oid)} ciphertexts have "
                         f"{kem_entry.ciphertext_size}")
        if KDFS.get(kdf.oid) is None:
            notes.append(f"unknown KDF {kdf.oid.dotted_string}")
        wrap_entry = KEY_WRAPS.get(wrap.oid)
        if wrap_entry is None:
            notes.append(f"unknown key wrap {wrap.oid.dotted_string}")
        elif info.kek_length != wrap_entry.kek_size:
            notes.append(f"kekLength {info.kek_length} does not match {wrap_entry.name} "
                         f"({wrap_entry.kek_size}-byte KEK)")
        for what, algorithm in (("KEM", kem), ("KDF", kdf), ("wrap", wrap)):
            if algorithm.parameters not in (None, cms.NULL):
                notes.append(f"{what} AlgorithmIdentifier has parameters (must be absent)")
        if notes:
            node["notes"] = notes
        return node

    # data

    def data_content(self, data: bytes, depth: int) -> dict:
        content_info = cms.decode(cms.ContentInfo, data)
        inner = cms.decode_der(bytes, cms.tlv_bytes(content_info.content))
        return {"type": "data", "content": self.payload(inner, depth + 1)}


CONTENT_TYPES: dict[ObjectIdentifier, Callable[[Inspector, bytes, int], dict]] = {
    oids.SIGNED_DATA: Inspector.signed_data,
    oids.ENVELOPED_DATA: Inspector.enveloped_data,
    oids.AUTH_ENVELOPED_DATA: Inspector.auth_enveloped_data,
    oids.DATA: Inspector.data_content,
}

RECIPIENT_INFOS: dict[int, Callable[[Inspector, bytes], dict]] = {
    cms.KTRI_TAG: Inspector.ktri,
    cms.KARI_TAG: Inspector.kari,
    cms.KEKRI_TAG: Inspector.kekri,
    cms.PWRI_TAG: Inspector.pwri,
    cms.ORI_TAG: Inspector.ori,
}

OTHER_RECIPIENT_INFOS: dict[ObjectIdentifier, Callable[[Inspector, bytes], dict]] = {
    oids.ORI_KEM: Inspector.kemri,
}


# --- payload sniffers: each returns a node, or None when the blob is not of its kind ---


def _sequence_children(data: bytes) -> list[tuple[int, int, int]] | None:
    """(tag, start, stop) of the elements of a DER SEQUENCE spanning all of `data`, else None."""
    try:
        tag, start, stop = ber.read_tlv(data)
        if tag != 0x30 or stop != len(data):
            return None
        children, pos = [], start
        while pos < stop:
            child_tag, child_start, child_stop = ber.read_tlv(data, pos)
            children.append((child_tag, pos, child_stop))
            pos = child_stop
        return children
    except ber.BerError:
        return None


def _sniff_content_info(inspector: Inspector, data: bytes, depth: int) -> dict | None:
    try:
        der = ber.to_der(data)
    except ber.BerError:
        return None
    children = _sequence_children(der)
    if not children or len(children) != 2 or children[0][0] != 0x06 or children[1][0] != 0xA0:
        return None
    try:
        return inspector.content_info(data, depth)
    except (cms.Asn1Error, IndexError) as exc:
        inspector.problem(f"ContentInfo does not decode: {exc}")
        return {"type": "ContentInfo", "error": str(exc)[:200]}


def _sniff_csr(inspector: Inspector, data: bytes, depth: int) -> dict | None:
    try:
        csr = x509.load_der_x509_csr(data)
    except ValueError:
        return None
    return csr_node(csr, inspector)


def _sniff_certificate(inspector: Inspector, data: bytes, depth: int) -> dict | None:
    try:
        return certificate_node(x509.load_der_x509_certificate(data))
    except ValueError:
        return None


def _sniff_crl(inspector: Inspector, data: bytes, depth: int) -> dict | None:
    try:
        return crl_node(x509.load_der_x509_crl(data))
    except ValueError:
        return None


def _sniff_issuer_and(inspector: Inspector, data: bytes, depth: int) -> dict | None:
    """IssuerAndSerialNumber (GetCert, GetCRL) or IssuerAndSubject (CertPoll)."""
    children = _sequence_children(data)
    if not children or len(children) != 2 or children[0][0] != 0x30:
        return None
    try:
        if children[1][0] == 0x02:
            value = cms.decode_der(cms.IssuerAndSerialNumber, data)
            return {"type": "IssuerAndSerialNumber", "issuer": name_string(cms.tlv_bytes(value.issuer)),
                    "serial": f"{value.serial_number:#x}"}
        if children[1][0] == 0x30:
            value = cms.decode_der(IssuerAndSubject, data)
            return {"type": "IssuerAndSubject", "issuer": name_string(cms.tlv_bytes(value.issuer)),
                    "subject": name_string(cms.tlv_bytes(value.subject))}
    except cms.Asn1Error:
        return None
    return None


PAYLOADS: list[Callable[[Inspector, bytes, int], dict | None]] = [
    _sniff_content_info,
    _sniff_csr,
    _sniff_certificate,
    _sniff_crl,
    _sniff_issuer_and,
]


# --- input ---


class InputError(ValueError):
    pass


def read_input(data: bytes) -> bytes:
    """DER as is; PEM (the first block, any label: PKCS7, CMS, CERTIFICATE REQUEST...); or base64
    text, also URL-encoded or as a whole `message=...` query (a GET PKIOperation)."""
    stripped = data.strip()
    if not stripped:
        raise InputError("the input is empty")
    if b"-----BEGIN" in stripped:
        lines = stripped.decode("ascii", "replace").splitlines()
        try:
            begin = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN"))
            end = next(i for i, line in enumerate(lines) if i > begin and line.startswith("-----END"))
        except StopIteration:
            raise InputError("a PEM block without its END line") from None
        body = "".join(line.strip() for line in lines[begin + 1:end] if ":" not in line)
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise InputError(f"the PEM body is not base64: {exc}") from None
    if stripped[:1] == b"\x30":
        return data
    try:
        text = stripped.decode("ascii")
    except UnicodeDecodeError:
        raise InputError("not DER, PEM or base64") from None
    if "message=" in text:
        text = urllib.parse.parse_qs(text.split("?", 1)[-1]).get("message", [""])[0]
    elif "%" in text:
        text = urllib.parse.unquote(text)
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            decoded = decoder(text.encode("ascii"), validate=True) if decoder is base64.b64decode \
                else decoder(text.encode("ascii"))
        except (binascii.Error, ValueError):
            continue
        if decoded[:1] == b"\x30":
            return decoded
    raise InputError("not DER, PEM or base64 of a DER structure")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def passphrase_from_env(variable: str | None) -> bytes | None:
    """The passphrase held by the environment variable named `variable` (--key-passphrase-env).
    Errors never repeat what was given: it might be a passphrase typed in the wrong place."""
    if variable is None:
        return None
    if not _ENV_NAME.match(variable):
        raise InputError("--key-passphrase-env takes the NAME of an environment variable that holds the "
                         "passphrase, not the passphrase itself")
    value = os.environ.get(variable)
    if value is None:
        raise InputError("the environment variable named by --key-passphrase-env is not set")
    return value.encode("utf-8")


def load_key_file(path: Path, passphrase: bytes | None):
    """A private key through `pkcs8.load_any_private_key` (every RFC 9881/9935 form), with a
    one-line InputError that never contains the passphrase."""
    data = path.read_bytes()
    try:
        try:
            return pkcs8.load_any_private_key(data, passphrase)
        except TypeError:
            if passphrase is None:
                raise
            return pkcs8.load_any_private_key(data, None)  # the passphrase was for another --key
    except TypeError:
        raise InputError(f"{path} is an encrypted key: put its passphrase in an environment variable and "
                         "name that variable with --key-passphrase-env VAR") from None
    except key_errors.UnsupportedKeyForm as exc:
        raise InputError(f"{path}: this build cannot use the key: {str(exc)[:300]}") from None
    except key_errors.InvalidPrivateKey as exc:
        raise InputError(f"{path} is not a valid private key: {str(exc)[:300]}") from None
    except UnsupportedAlgorithm as exc:
        raise InputError(f"{path}: this cryptography build cannot load the key ({exc})") from None
    except ValueError as exc:
        wrong = " (or the passphrase is wrong)" if passphrase is not None else ""
        raise InputError(f"{path} is not a private key{wrong}: {str(exc)[:120]}") from None


def _load_key_entries(key_files: tuple[Path, ...], cert_files: tuple[Path, ...],
                      passphrase: bytes | None = None) -> tuple[list[KeyEntry], list]:
    certs = []
    for path in cert_files:
        data = path.read_bytes()
        try:
            if b"-----BEGIN" in data:
                certs.extend(x509.load_pem_x509_certificates(data))
            else:
                certs.append(x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise InputError(f"{path} is not a certificate: {exc}") from None
    entries = []
    for path in key_files:
        key = load_key_file(path, passphrase)
        entry = KeyEntry(str(path), key)
        public = _spki(key)
        entry.certificate = next((c for c in certs if _spki(c) == public), None)
        entries.append(entry)
    return entries, certs


def _spki(key_or_cert) -> bytes | None:
    from cryptography.hazmat.primitives import serialization

    try:
        public = key_or_cert.public_key()
        return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except Exception:
        return None


# --- rendering ---

_GOOD = {"verified": True, "decrypted": True, "signature_valid": True}


def _label(key: str, value) -> str:
    text = f"[bold]{escape(key)}[/]: {escape(str(value))}"
    if key in _GOOD:
        colour = "green" if value is True else "red"
        text = f"[bold]{escape(key)}[/]: [{colour}]{escape(str(value))}[/]"
    return text


def _add(tree: Tree, key: str | None, value) -> None:
    if isinstance(value, dict):
        title = value.get("type") or value.get("name")
        heading = f"[bold]{escape(key)}[/]" if key else ""
        if title:
            heading = f"{heading}: [cyan]{escape(str(title))}[/]" if heading else f"[cyan]{escape(str(title))}[/]"
        if "value" in value and "name" in value and set(value) <= {"name", "oid", "value"}:
            shown = value["value"]
            oid = value["oid"] if value["name"] != value["oid"] else ""
            tree.add(f"[bold]{escape(value['name'])}[/]{' [dim](' + oid + ')[/]' if oid else ''}: "
                     f"{escape(json.dumps(shown) if isinstance(shown, list) else str(shown))}")
            return
        branch = tree.add(heading or "-")
        for k, v in value.items():
            if k in ("type",) or (k == "name" and title == v):
                continue
            _add(branch, k, v)
    elif isinstance(value, list):
        if not value:
            tree.add(f"[bold]{escape(key or '')}[/]: (none)")
            return
        if all(not isinstance(v, (dict, list)) for v in value):
            tree.add(f"[bold]{escape(key or '')}[/]: {escape(', '.join(str(v) for v in value))}")
            return
        branch = tree.add(f"[bold]{escape(key or '')}[/] ({len(value)})")
        for item in value:
            _add(branch, None, item)
    else:
        tree.add(_label(key or "", value))


def render(tree_data: dict, title: str) -> Tree:
    root = Tree(f"[bold]{escape(title)}[/]")
    _add(root, None, tree_data)
    return root


# --- the command ---


@click.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--key", "key_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key (PEM/DER; RSA, EC, ML-KEM and ML-DSA in every RFC 9881/9935 form) to decrypt "
                   "envelopes with; repeatable.")
@click.option("--key-passphrase-env", "passphrase_env", metavar="VAR",
              help="Name of an environment variable holding the passphrase of encrypted --key files "
                   "(the passphrase itself is never taken on the command line).")
@click.option("--password", "password", metavar="PW",
              help="Password (e.g. the SCEP challenge) to open PasswordRecipientInfo envelopes with; never printed.")
@click.option("--cert", "cert_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Certificate of a --key (to pick its RecipientInfo), or of a signer that is not included.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a tree.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the innermost decrypted content (e.g. the CSR DER of a PKCSReq) here.")
@click.option("--show-secrets", is_flag=True, help="Show the challengePassword of a CSR.")
def inspect_cmd(file: Path, key_files, passphrase_env: str | None, password: str | None, cert_files, as_json: bool,
                out: Path | None, show_secrets: bool) -> None:
    """Decode a SCEP message or any CMS ContentInfo (SignedData, EnvelopedData,
    AuthEnvelopedData), a CSR, certificate or CRL: DER, PEM or base64. Verifies signatures;
    with --key (or --password for a PasswordRecipientInfo) decrypts envelopes and shows what they hold."""
    err = Console(stderr=True, highlight=False)
    try:
        raw = click.get_binary_stream("stdin").read() if str(file) == "-" else file.read_bytes()
        data = read_input(raw)
        entries, certs = _load_key_entries(tuple(key_files), tuple(cert_files), passphrase_from_env(passphrase_env))
    except (InputError, OSError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise click.exceptions.Exit(EXIT_FAILURE)
    passwords = [password.encode("utf-8")] if password is not None else []
    inspector = Inspector(keys=entries, certificates=certs, show_secrets=show_secrets, passwords=passwords)
    tree_data = inspector.payload(data)
    if tree_data.get("type") == "unknown":
        inspector.problem("the input is not a structure pqscep knows")
    result = {"file": str(file), "ok": not inspector.problems, "problems": inspector.problems, "structure": tree_data}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        Console(highlight=False, soft_wrap=False).print(render(tree_data, str(file)))
    code = EXIT_OK
    if out is not None:
        if inspector.innermost is None:
            err.print("[yellow]nothing was decrypted: --out not written[/]")
            code = EXIT_FAILURE
        else:
            out.write_bytes(inspector.innermost)
            err.print(f"innermost decrypted content ({len(inspector.innermost)} bytes) written to {escape(str(out))}")
    if inspector.problems:
        for text in inspector.problems:
            err.print(f"[bold red]problem:[/] {escape(text)}")
        code = EXIT_VERIFY
    elif code == EXIT_OK and not as_json:
        err.print("[green]decoded; every signature verified, every envelope tried opened[/]")
    raise click.exceptions.Exit(code)


COMMANDS = [inspect_cmd]
