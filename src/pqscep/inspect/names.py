"""Readable names for what the inspector shows: algorithms and content types by OID (their
names are those of `asn1.oid_names`), X.509 Names, public key types, and times in one UTC form."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.asn1 import TLV
from cryptography.x509 import ObjectIdentifier

from ..asn1 import cms
from ..asn1.oid_names import oid_name
from ..crypto import keys as keymod
from ..crypto import pkcs8, signing

__all__ = [
    "algorithm_label",
    "algorithm_node",
    "describe_public_key",
    "key_name",
    "key_type",
    "name_string",
    "oid_name",
    "utc_time",
]


def key_name(oid: ObjectIdentifier) -> str:
    """The name of an ML-KEM/ML-DSA key algorithm (also those this build cannot use), else `oid_name`."""
    return pkcs8.pq_algorithm_name(oid) or oid_name(oid)


def algorithm_node(tlv_or_der: TLV | bytes) -> dict[str, Any]:
    """An AlgorithmIdentifier as {name, oid[, parameters hex]}, or {error} when it does not decode."""
    try:
        algorithm = cms.parse_algorithm(tlv_or_der)
    except cms.Asn1Error as exc:
        return {"error": str(exc)}
    node: dict[str, Any] = {"name": oid_name(algorithm.oid), "oid": algorithm.oid.dotted_string}
    if algorithm.parameters is not None and algorithm.parameters != cms.NULL:
        node["parameters"] = algorithm.parameters.hex()
    return node


def algorithm_label(node: dict[str, Any]) -> str:
    """The one-word form of an `algorithm_node`."""
    return node.get("name", node.get("error", "?"))


def name_string(der: bytes) -> str:
    """An X.509 Name (DER) in RFC 4514 form."""
    try:
        return x509.Name.from_bytes(der).rfc4514_string()
    except ValueError:
        return f"(undecodable Name {der.hex()})"


def describe_public_key(public_key: Any) -> str:
    """"rsa-2048", "ec-secp256r1", "ML-DSA-65", else the key class's name."""
    family = keymod.key_family(public_key)
    if family == keymod.KeyFamily.RSA:
        return f"rsa-{public_key.key_size}"
    if family == keymod.KeyFamily.EC:
        return f"ec-{public_key.curve.name}"
    if family == keymod.KeyFamily.ML_DSA:
        return signing.VERIFIERS.by_oid(signing.ml_dsa_oid(public_key)).name
    return type(public_key).__name__.replace("PublicKey", "")


def key_type(get_key: Callable[[], object], fallback_oid: ObjectIdentifier | None) -> str:
    """`describe_public_key` of what `get_key` returns; the algorithm OID's name when that fails."""
    try:
        return describe_public_key(get_key())
    except Exception:  # a key type cryptography (or this project) does not know
        return oid_name(fallback_oid) if fallback_oid is not None else "unknown"


def utc_time(value: datetime.datetime) -> str:
    """YYYY-MM-DDTHH:MM:SSZ."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
