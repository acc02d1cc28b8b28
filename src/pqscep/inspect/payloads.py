"""What a blob is: `PAYLOADS`, the sniffers tried in turn on what an envelope or eContent holds
(or the input itself), each returning a node or None when the blob is not of its kind:
ContentInfo, PKCS#10, certificate, CRL, IssuerAndSubject, IssuerAndSerialNumber."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography import x509

from ..asn1 import ber, cms
from ..protocol.messages import IssuerAndSubject
from .certificates import certificate_node, crl_node, csr_node
from .names import name_string

if TYPE_CHECKING:
    from .inspector import Inspector

__all__ = ["PAYLOADS"]


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


def _sniff_content_info(inspector: Inspector, data: bytes, depth: int) -> dict[str, Any] | None:
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


def _sniff_csr(inspector: Inspector, data: bytes, depth: int) -> dict[str, Any] | None:
    try:
        csr = x509.load_der_x509_csr(data)
    except ValueError:
        return None
    return csr_node(csr, inspector)


def _sniff_certificate(inspector: Inspector, data: bytes, depth: int) -> dict[str, Any] | None:
    try:
        return certificate_node(x509.load_der_x509_certificate(data))
    except ValueError:
        return None


def _sniff_crl(inspector: Inspector, data: bytes, depth: int) -> dict[str, Any] | None:
    try:
        return crl_node(x509.load_der_x509_crl(data))
    except ValueError:
        return None


def _sniff_issuer_and(inspector: Inspector, data: bytes, depth: int) -> dict[str, Any] | None:
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


PAYLOADS: list[Callable[[Inspector, bytes, int], dict[str, Any] | None]] = [
    _sniff_content_info,
    _sniff_csr,
    _sniff_certificate,
    _sniff_crl,
    _sniff_issuer_and,
]
