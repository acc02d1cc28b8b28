"""RecipientInfos as nodes, by their CHOICE tag (`RECIPIENT_INFOS`: ktri 0x30, kari 0xA1,
kekri 0xA2, pwri 0xA3, ori 0xA4; RFC 5652 section 6.2) and, for an OtherRecipientInfo, by its
oriType (`OTHER_RECIPIENT_INFOS`: id-ori-kem, the RFC 9629 KEMRecipientInfo). Each decoder
shows the fields and notes where they do not fit together (what a recipient refuses)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography.x509 import ObjectIdentifier

from ..asn1 import cms, oids
from ..cms.password import MAX_ITERATIONS, MIN_ITERATIONS
from ..crypto.registry import KDFS, KEMS, KEY_WRAPS
from .names import algorithm_label, algorithm_node, key_name, name_string, oid_name

if TYPE_CHECKING:
    from .inspector import Inspector

__all__ = ["OTHER_RECIPIENT_INFOS", "RECIPIENT_INFOS", "kari", "kekri", "kemri", "ktri", "ori", "pwri", "rid_node"]


def rid_node(rid: bytes | cms.IssuerAndSerialNumber) -> dict[str, Any]:
    """A RecipientIdentifier: the subjectKeyIdentifier, or issuer and serial number."""
    if isinstance(rid, bytes):
        return {"subject_key_identifier": rid.hex()}
    return {"issuer": name_string(cms.tlv_bytes(rid.issuer)), "serial": f"{rid.serial_number:#x}"}


def ktri(inspector: Inspector, der: bytes) -> dict[str, Any]:
    info = cms.decode_der(cms.KeyTransRecipientInfo, der)
    return {
        "type": "KeyTransRecipientInfo",
        "version": info.version,
        "rid": rid_node(info.rid),
        "key_encryption_algorithm": algorithm_label(algorithm_node(info.key_encryption_algorithm)),
        "encrypted_key_length": len(info.encrypted_key),
    }


def kari(inspector: Inspector, der: bytes) -> dict[str, Any]:
    return {"type": "KeyAgreeRecipientInfo", "note": "not decoded"}


def kekri(inspector: Inspector, der: bytes) -> dict[str, Any]:
    return {"type": "KEKRecipientInfo", "note": "not decoded"}


def pwri(inspector: Inspector, der: bytes) -> dict[str, Any]:
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
                               else f"{oid_name(oids.HMAC_WITH_SHA1)} (PBKDF2's DEFAULT: prf absent)")
                node["salt_length"] = len(params.salt)
                if params.key_length is not None:
                    node["key_length"] = params.key_length
    try:
        kea = cms.parse_algorithm(info.key_encryption_algorithm)
        if kea.oid == oids.PWRI_KEK:
            inner = cms.parse_algorithm(kea.parameters) if kea.parameters is not None else None
            kek = oid_name(oids.PWRI_KEK)
            node["key_encryption_algorithm"] = (f"{kek} with {oid_name(inner.oid)}" if inner
                                                else f"{kek} without its KEK cipher")
        else:
            node["key_encryption_algorithm"] = oid_name(kea.oid)
    except cms.Asn1Error as exc:
        node["key_encryption_algorithm"] = {"error": str(exc)}
    node["encrypted_key_length"] = len(info.encrypted_key)
    if notes:
        node["notes"] = notes
    return node


def ori(inspector: Inspector, der: bytes) -> dict[str, Any]:
    info = cms.decode_der(cms.OtherRecipientInfo, cms.implicit_to_sequence(der))
    handler = OTHER_RECIPIENT_INFOS.get(info.ori_type)
    if handler is None:
        return {"type": "OtherRecipientInfo", "ori_type": oid_name(info.ori_type)}
    return handler(inspector, cms.tlv_bytes(info.ori_value))


def kemri(inspector: Inspector, der: bytes) -> dict[str, Any]:
    """KEMRecipientInfo (RFC 9629): kem, kdf, kekLength, ukm, wrap and rid, with notes where
    the fields do not fit together (what a recipient refuses)."""
    info = cms.decode_der(cms.KEMRecipientInfo, der)
    kem = cms.parse_algorithm(info.kem)
    kdf = cms.parse_algorithm(info.kdf)
    wrap = cms.parse_algorithm(info.wrap)
    node: dict[str, Any] = {
        "type": "KEMRecipientInfo",
        "ori_type": oid_name(oids.ORI_KEM),
        "version": info.version,
        "rid": rid_node(info.rid),
        "kem": key_name(kem.oid),
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
        notes.append(f"kemct has {len(info.kemct)} bytes; {key_name(kem.oid)} ciphertexts have "
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


RECIPIENT_INFOS: dict[int, Callable[[Inspector, bytes], dict[str, Any]]] = {
    cms.KTRI_TAG: ktri,
    cms.KARI_TAG: kari,
    cms.KEKRI_TAG: kekri,
    cms.PWRI_TAG: pwri,
    cms.ORI_TAG: ori,
}

OTHER_RECIPIENT_INFOS: dict[ObjectIdentifier, Callable[[Inspector, bytes], dict[str, Any]]] = {
    oids.ORI_KEM: kemri,
}
