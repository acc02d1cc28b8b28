"""SignedData (RFC 5652 section 5) as a node: its certificates and CRLs, each SignerInfo with
its attributes, and whether its signature verifies (with an included certificate, else one
given with --cert). A pkiMessage (RFC 8894 section 3) is a SignedData whose content, the
pkcsPKIEnvelope, is inspected in turn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..asn1 import cms, oids
from ..cms import signed
from .attributes import attribute_nodes, attribute_set_nodes, protection_check
from .certificates import certificate_node, crl_node
from .names import algorithm_label, algorithm_node, name_string, oid_name

if TYPE_CHECKING:
    from .inspector import Inspector

__all__ = ["signed_data"]


def signed_data(inspector: Inspector, data: bytes, depth: int) -> dict[str, Any]:
    content_info = cms.decode(cms.ContentInfo, data)
    raw = cms.decode_der(cms.SignedData, cms.tlv_bytes(content_info.content))
    message = signed.parse_signed_data(data)
    node: dict[str, Any] = {
        "type": "SignedData",
        "version": raw.version,
        "content_type": oid_name(message.content_type),
        "digest_algorithms": [algorithm_label(algorithm_node(a)) for a in raw.digest_algorithms.as_list()],
        "certificates": [certificate_node(c) for c in message.certificates],
    }
    if message.crls:
        node["crls"] = [crl_node(c) for c in message.crls]
    node["signers"] = [_signer_node(inspector, message, s) for s in message.signer_infos]
    if not message.signer_infos:
        node["signers"] = "none (a certs-only SignedData)"
    if message.content is None:
        node["content"] = "absent"
    else:
        node["content"] = inspector.payload(message.content, depth + 1)
    return node


def _signer_node(inspector: Inspector, message: signed.SignedMessage, signer: signed.SignerInfoView) -> dict[str, Any]:
    sid = ({"subject_key_identifier": signer.subject_key_id.hex()} if signer.subject_key_id is not None
           else {"issuer": name_string(signer.issuer_der or b""), "serial": f"{signer.serial:#x}"})
    node: dict[str, Any] = {
        "type": "SignerInfo",
        "version": signer.raw.version,
        "sid": sid,
        "digest_algorithm": signer.digest_algorithm and oid_name(signer.digest_algorithm.oid),
        "signature_algorithm": oid_name(signer.signature_algorithm.oid),
        "signed_attributes": attribute_nodes(signer.signed_attrs),
    }
    if oids.CMS_ALGORITHM_PROTECTION in signer.signed_attrs:
        node["algorithm_protection"] = protection_check(signer)
    if signer.raw.unsigned_attrs is not None:
        node["unsigned_attributes"] = attribute_set_nodes(signer.raw.unsigned_attrs)
    cert = message.signer_certificate(signer)
    where = None
    if cert is not None:
        number = message.certificates.index(cert) + 1
        where = f"certificate #{number} in the SignedData ({cert.subject.rfc4514_string()})"
    else:
        extra = signed.SignedMessage(message.content_type, message.content, inspector.certificates, [], [])
        cert = extra.signer_certificate(signer)
        if cert is not None:
            where = f"--cert ({cert.subject.rfc4514_string()})"
    if cert is None:
        node["verified"] = False
        node["verification"] = "the signer's certificate is not included (give it with --cert)"
        inspector.problem("a SignerInfo's certificate is missing: signature not verified")
        return node
    inspector.signer_certificates.append(cert)
    try:
        signed.verify_signer(message, signer, cert.public_key(), allow_legacy=True)
    except (signed.SignedDataError, ValueError, TypeError) as exc:
        node["verified"] = False
        node["verification"] = f"does NOT verify with {where}: {exc}"
        inspector.problem(f"signature does not verify: {exc}")
    else:
        node["verified"] = True
        node["verification"] = f"verifies with {where}"
    return node
