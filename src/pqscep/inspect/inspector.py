"""The `Inspector`: what it was given (keys, certificates, passwords), what it found (problems,
the innermost decrypted content), and the dispatch of a blob to its decoder: `PAYLOADS` says
what a blob is, `CONTENT_TYPES` maps a ContentInfo contentType (RFC 5652 section 3) to the
decoder of its content (SignedData, EnvelopedData, AuthEnvelopedData, data)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509 import ObjectIdentifier

from ..asn1 import cms, oids
from ..cms import signed
from .envelopes import auth_enveloped_data, enveloped_data
from .keys import KeyEntry
from .names import oid_name
from .payloads import PAYLOADS
from .signed_data import signed_data

__all__ = ["CONTENT_TYPES", "MAX_DEPTH", "Inspector", "data_content"]

MAX_DEPTH = 12  # nested ContentInfos; SCEP needs 4 (SignedData > EnvelopedData > SignedData > certs)


@dataclass
class Inspector:
    """One inspection: decodes blobs into nodes (JSON-ready dicts) and collects the problems."""

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

    def payload(self, data: bytes, depth: int = 0) -> dict[str, Any]:
        """The node of whatever `data` is: the first of `PAYLOADS` that knows it, else "unknown"
        with its text or the start of its hex."""
        if depth > MAX_DEPTH:
            self.problem("nesting too deep")
            return {"type": "error", "error": "nesting too deep"}
        for sniff in PAYLOADS:
            found = sniff(self, data, depth)
            if found is not None:
                return found
        node: dict[str, Any] = {"type": "unknown", "length": len(data)}
        try:
            decoded: str | None = data.decode("utf-8")
        except UnicodeDecodeError:
            decoded = None
        if decoded is not None and decoded.isprintable():
            node["text"] = decoded[:200] + ("..." if len(decoded) > 200 else "")
        else:
            node["hex"] = data[:64].hex() + ("..." if len(data) > 64 else "")
        return node

    def content_info(self, data: bytes, depth: int) -> dict[str, Any]:
        """A ContentInfo (BER or DER) by its contentType (`CONTENT_TYPES`)."""
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


def data_content(inspector: Inspector, data: bytes, depth: int) -> dict[str, Any]:
    """id-data: the OCTET STRING it holds, inspected in turn."""
    content_info = cms.decode(cms.ContentInfo, data)
    inner = cms.decode_der(bytes, cms.tlv_bytes(content_info.content))
    return {"type": "data", "content": inspector.payload(inner, depth + 1)}


CONTENT_TYPES: dict[ObjectIdentifier, Callable[[Inspector, bytes, int], dict[str, Any]]] = {
    oids.SIGNED_DATA: signed_data,
    oids.ENVELOPED_DATA: enveloped_data,
    oids.AUTH_ENVELOPED_DATA: auth_enveloped_data,
    oids.DATA: data_content,
}
