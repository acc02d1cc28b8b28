"""Signed, unprotected and authenticated attributes, decoded by OID (`ATTRIBUTES`): the CMS
ones (RFC 5652 section 11, RFC 6211), the SCEP ones (RFC 8894 section 3.2.1) and the
post-quantum SCEP ones (responseKey, kemPopChallenge, kemPopProof; PROVISIONAL OIDs, see
asn1.oids), which are decoded, not dumped. An attribute without a decoder shows as hex."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.asn1 import SetOf
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ObjectIdentifier

from ..asn1 import ber, cms, oids
from ..asn1.oid_names import attribute_name
from ..cms import signed
from ..crypto.registry import KEMS
from ..crypto.spki import spki_raw_public_key
from ..protocol.messages import FAIL_INFO_NAMES, MESSAGE_TYPE_NAMES, FailInfo, MessageType, PkiStatus
from .names import describe_public_key, key_name, oid_name

__all__ = ["ATTRIBUTES", "attribute_nodes", "attribute_set_nodes", "protection_check"]


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
        century = 1900 if year >= 50 else 2000
        return f"{century + year}-{text[2:4]}-{text[4:6]}T{text[6:8]}:{text[8:10]}:{text[10:12]}Z"
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


def _response_key_value(der: bytes) -> str:
    """responseKey (draft Section 6.2): "ML-KEM-768 public key, SKI <hex>". The SKI is RFC 5280
    4.2.1.2 method 1 (SHA-1 of the subjectPublicKey bits): the rid a CA's reply names it by."""
    oid, raw = spki_raw_public_key(der)
    ski = hashlib.sha1(raw).hexdigest()
    kem = KEMS.get(oid)
    if kem is not None:
        text = f"{key_name(oid)} public key, SKI {ski}"
        if len(raw) != kem.public_key_size:
            return f"{text} (malformed: {len(raw)} bytes, {key_name(oid)} keys have {kem.public_key_size})"
        if not kem.available:
            return f"{text} ({key_name(oid)} is not supported by this build: a pqscep CA refuses it)"
        return text
    try:
        name = describe_public_key(serialization.load_der_public_key(der))
    except Exception:  # a key type cryptography or this project does not know
        name = key_name(oid)
    return f"{name} public key, SKI {ski} (not an ML-KEM key: a pqscep CA refuses it)"


def _kem_pop_challenge_value(der: bytes) -> str:
    """kemPopChallenge: KemCiphertextInfo { kem, ct } (RFC 9810), e.g. "KemCiphertextInfo: kem
    ML-KEM-768, ct 1088 bytes (sha256 ...)"."""
    value = cms.decode_der(cms.KemCiphertextInfo, der)
    kem_oid = cms.parse_algorithm(value.kem).oid
    text = f"KemCiphertextInfo: kem {key_name(kem_oid)}, ct {len(value.ct)} bytes " \
           f"(sha256 {hashlib.sha256(value.ct).hexdigest()[:16]}...)"
    kem = KEMS.get(kem_oid)
    if kem is not None and len(value.ct) != kem.ciphertext_size:
        text += f" (wrong size: {key_name(kem_oid)} ciphertexts have {kem.ciphertext_size} bytes)"
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


_DECODERS: dict[ObjectIdentifier, Callable[[bytes], object]] = {
    oids.CONTENT_TYPE: _oid_value,
    oids.MESSAGE_DIGEST: _octets_value,
    oids.SIGNING_TIME: _time_value,
    oids.CMS_ALGORITHM_PROTECTION: _protection_value,
    oids.SCEP_MESSAGE_TYPE: _enum_value(_message_type_name),
    oids.SCEP_PKI_STATUS: _enum_value(_status_name),
    oids.SCEP_FAIL_INFO: _enum_value(_fail_info_name),
    oids.SCEP_FAIL_INFO_TEXT: _string_value,
    oids.SCEP_TRANSACTION_ID: _string_value,
    oids.SCEP_SENDER_NONCE: _octets_value,
    oids.SCEP_RECIPIENT_NONCE: _octets_value,
    # The post-quantum SCEP attributes (PROVISIONAL OIDs, see asn1.oids).
    oids.SCEP_KEM_POP_CHALLENGE: _kem_pop_challenge_value,
    oids.SCEP_KEM_POP_PROOF: _kem_pop_proof_value,
    oids.SCEP_RESPONSE_KEY: _response_key_value,
}
# Each attribute under its name in asn1.oid_names.
ATTRIBUTES: dict[ObjectIdentifier, tuple[str, Callable[[bytes], object]]] = {
    oid: (attribute_name(oid), decoder) for oid, decoder in _DECODERS.items()
}


def attribute_nodes(attributes: dict[ObjectIdentifier, list[bytes]]) -> list[dict[str, Any]]:
    nodes = []
    for oid, values in attributes.items():
        name, decoder = ATTRIBUTES.get(oid, (None, None))
        node: dict[str, Any] = {"name": name or oid.dotted_string, "oid": oid.dotted_string}
        decoded: list[object] = []
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


def attribute_set_nodes(attrs: SetOf[cms.Attribute] | None) -> list[dict[str, Any]]:
    """Nodes for a decoded `SetOf[cms.Attribute]` (unprotected / auth attributes)."""
    if attrs is None:
        return []
    mapping: dict[ObjectIdentifier, list[bytes]] = {}
    for attr in attrs.as_list():
        mapping.setdefault(attr.attr_type, []).extend(cms.tlv_bytes(v) for v in attr.attr_values.as_list())
    return attribute_nodes(mapping)


def protection_check(signer: signed.SignerInfoView) -> str:
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
