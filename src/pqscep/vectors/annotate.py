"""Annotated text of a DER structure, for the test vectors: an `openssl asn1parse`-like listing
(offset, depth, header and content lengths, tag) with every primitive value in full hex or as
text, and a comment naming each field after the ASN.1 module it comes from (RFC 5652 CMS,
RFC 5280 X.509, RFC 2986 PKCS #10, RFC 9629 KEMRecipientInfo, RFC 9810 KemCiphertextInfo and
KemOtherInfo, RFC 8894 SCEP attributes, the draft's KemPopProof). OCTET STRINGs that carry DER
(eContent, extnValue, attribute values) are opened and shown one level deeper.

A schema here is a small description, not a validator: a structure that does not match it is
still listed, only with fewer names.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.x509 import ObjectIdentifier

from ..asn1 import ber, cms, oids
from ..asn1.oid_names import asn1_name

__all__ = ["annotate"]

# The listing names an OID by its ASN.1 name (asn1.oid_names), and says more where that name
# alone does not: RFC 8894's Verisign-arc attribute names are bare words ("messageType"), and the
# post-quantum SCEP OIDs are provisional.
_VERISIGN_SCEP = frozenset({
    oids.SCEP_MESSAGE_TYPE, oids.SCEP_PKI_STATUS, oids.SCEP_FAIL_INFO, oids.SCEP_SENDER_NONCE,
    oids.SCEP_RECIPIENT_NONCE, oids.SCEP_TRANSACTION_ID,
})


def _oid_label(dotted: str) -> str | None:
    if dotted == "?":
        return None
    oid = ObjectIdentifier(dotted)
    name = asn1_name(oid)
    if name is None:
        return None
    if oid in oids.PROVISIONAL:
        return f"{name} (provisional)"
    return f"{name} (SCEP)" if oid in _VERISIGN_SCEP else name


_UNIVERSAL = {
    0x01: "BOOLEAN", 0x02: "INTEGER", 0x03: "BIT STRING", 0x04: "OCTET STRING", 0x05: "NULL",
    0x06: "OBJECT", 0x0C: "UTF8STRING", 0x13: "PRINTABLESTRING", 0x16: "IA5STRING", 0x17: "UTCTIME",
    0x18: "GENERALIZEDTIME", 0x30: "SEQUENCE", 0x31: "SET",
}

# --- the schema ------------------------------------------------------------------------------
# A type is a str (a name in TYPES, or a leaf: "OID", "INT", "OCTETS", "BITS", "ANY") or a tuple:
#   ("seq", [(field, type, tag or None, optional)]), ("setof", T), ("seqof", T),
#   ("explicit", T)  [n] EXPLICIT: one inner TLV of type T,
#   ("implicit", T)  [n] IMPLICIT of a SEQUENCE/SET type T: the content is T's content,
#   ("der", T)       an OCTET or BIT STRING whose content is the DER of T,
#   ("choice", {tag byte: T}),
#   ("by", field, {dotted OID: T}, default)  chosen by an OID read earlier in the same SEQUENCE.

_ALG_PARAMS = {
    oids.AES256_CBC.dotted_string: "IV",
    oids.AES256_GCM.dotted_string: "GCMParameters",
    oids.PBKDF2.dotted_string: "PBKDF2-params",
    oids.PWRI_KEK.dotted_string: "AlgorithmIdentifier",
    oids.EC_PUBLIC_KEY.dotted_string: "OID",
}

_ATTR_VALUES = {
    oids.CONTENT_TYPE.dotted_string: "OID",
    oids.MESSAGE_DIGEST.dotted_string: "OCTETS",
    oids.CMS_ALGORITHM_PROTECTION.dotted_string: "CMSAlgorithmProtection",
    oids.EXTENSION_REQUEST.dotted_string: "Extensions",
    oids.SCEP_KEM_POP_CHALLENGE.dotted_string: "KemCiphertextInfo",
    oids.SCEP_KEM_POP_PROOF.dotted_string: "KemPopProof",
    oids.SCEP_RESPONSE_KEY.dotted_string: "SubjectPublicKeyInfo",
    oids.PRIVATE_KEY_POSSESSION_STATEMENT.dotted_string: "PrivateKeyPossessionStatement",
}

_CONTENT = {
    oids.SIGNED_DATA.dotted_string: "SignedData",
    oids.ENVELOPED_DATA.dotted_string: "EnvelopedData",
    oids.AUTH_ENVELOPED_DATA.dotted_string: "AuthEnvelopedData",
}


def _seq(*fields) -> tuple:
    return ("seq", [f if len(f) == 4 else (*f, None, False) for f in fields])


_ALGORITHM = _seq(("algorithm", "OID"), ("parameters", ("by", "algorithm", _ALG_PARAMS, "ANY"), None, True))
_SID = ("choice", {0x30: "IssuerAndSerialNumber", 0x80: "OCTETS"})

TYPES: dict[str, Any] = {
    "ContentInfo": _seq(("contentType", "OID"), ("content", ("explicit", ("by", "contentType", _CONTENT, "ANY")))),
    "SignedData": _seq(
        ("version", "INT"), ("digestAlgorithms", ("setof", "AlgorithmIdentifier")),
        ("encapContentInfo", "EncapsulatedContentInfo"),
        ("certificates", ("implicit", ("setof", "Certificate")), 0xA0, True),
        ("crls", ("implicit", ("setof", "ANY")), 0xA1, True),
        ("signerInfos", ("setof", "SignerInfo"))),
    "EncapsulatedContentInfo": _seq(("eContentType", "OID"),
                                    ("eContent", ("explicit", ("der", "ContentInfo")), 0xA0, True)),
    "SignerInfo": _seq(
        ("version", "INT"), ("sid", _SID), ("digestAlgorithm", "AlgorithmIdentifier"),
        ("signedAttrs", ("implicit", ("setof", "Attribute")), 0xA0, True),
        ("signatureAlgorithm", "AlgorithmIdentifier"), ("signature", "OCTETS"),
        ("unsignedAttrs", ("implicit", ("setof", "Attribute")), 0xA1, True)),
    "Attribute": _seq(("attrType", "OID"), ("attrValues", ("setof", ("by", "attrType", _ATTR_VALUES, "ANY")))),
    "CMSAlgorithmProtection": _seq(("digestAlgorithm", "AlgorithmIdentifier"),
                                   ("signatureAlgorithm", ("implicit", _ALGORITHM), 0xA1, True),
                                   ("macAlgorithm", ("implicit", _ALGORITHM), 0xA2, True)),
    "IssuerAndSerialNumber": _seq(("issuer", "Name"), ("serialNumber", "INT")),
    "AlgorithmIdentifier": _ALGORITHM,
    "IV": "OCTETS",
    "GCMParameters": _seq(("aes-nonce", "OCTETS"), ("aes-ICVlen", "INT", 0x02, True)),
    "PBKDF2-params": _seq(("salt", "OCTETS"), ("iterationCount", "INT"), ("keyLength", "INT", 0x02, True),
                          ("prf", "AlgorithmIdentifier", 0x30, True)),
    "EnvelopedData": _seq(
        ("version", "INT"), ("originatorInfo", "ANY", 0xA0, True), ("recipientInfos", ("setof", "RecipientInfo")),
        ("encryptedContentInfo", "EncryptedContentInfo"), ("unprotectedAttrs", "ANY", 0xA1, True)),
    "AuthEnvelopedData": _seq(
        ("version", "INT"), ("originatorInfo", "ANY", 0xA0, True), ("recipientInfos", ("setof", "RecipientInfo")),
        ("authEncryptedContentInfo", "EncryptedContentInfo"), ("authAttrs", "ANY", 0xA1, True),
        ("mac", "OCTETS"), ("unauthAttrs", "ANY", 0xA2, True)),
    "RecipientInfo": ("choice", {
        0x30: "KeyTransRecipientInfo",
        0xA3: ("implicit", "PasswordRecipientInfo"),
        0xA4: ("implicit", "OtherRecipientInfo"),
    }),
    "KeyTransRecipientInfo": _seq(("version", "INT"), ("rid", _SID), ("keyEncryptionAlgorithm", "AlgorithmIdentifier"),
                                  ("encryptedKey", "OCTETS")),
    "PasswordRecipientInfo": _seq(
        ("version", "INT"), ("keyDerivationAlgorithm", ("implicit", _ALGORITHM), 0xA0, True),
        ("keyEncryptionAlgorithm", "AlgorithmIdentifier"), ("encryptedKey", "OCTETS")),
    "OtherRecipientInfo": _seq(
        ("oriType", "OID"),
        ("oriValue", ("by", "oriType", {oids.ORI_KEM.dotted_string: "KEMRecipientInfo"}, "ANY"))),
    "KEMRecipientInfo": _seq(
        ("version", "INT"), ("rid", _SID), ("kem", "AlgorithmIdentifier"), ("kemct", "OCTETS"),
        ("kdf", "AlgorithmIdentifier"), ("kekLength", "INT"), ("ukm", ("explicit", "OCTETS"), 0xA0, True),
        ("wrap", "AlgorithmIdentifier"), ("encryptedKey", "OCTETS")),
    "EncryptedContentInfo": _seq(("contentType", "OID"), ("contentEncryptionAlgorithm", "AlgorithmIdentifier"),
                                 ("encryptedContent", "OCTETS", 0x80, True)),
    "Certificate": _seq(("tbsCertificate", "TBSCertificate"), ("signatureAlgorithm", "AlgorithmIdentifier"),
                        ("signatureValue", "BITS")),
    "TBSCertificate": _seq(
        ("version", ("explicit", "INT"), 0xA0, True), ("serialNumber", "INT"), ("signature", "AlgorithmIdentifier"),
        ("issuer", "Name"), ("validity", _seq(("notBefore", "ANY"), ("notAfter", "ANY"))), ("subject", "Name"),
        ("subjectPublicKeyInfo", "SubjectPublicKeyInfo"), ("extensions", ("explicit", "Extensions"), 0xA3, True)),
    "Name": ("seqof", ("setof", _seq(("type", "OID"), ("value", "ANY")))),
    "Extensions": ("seqof", "Extension"),
    "Extension": _seq(("extnID", "OID"), ("critical", "ANY", 0x01, True), ("extnValue", ("der", "ANY"))),
    "SubjectPublicKeyInfo": _seq(("algorithm", "AlgorithmIdentifier"), ("subjectPublicKey", "BITS")),
    "CertificationRequest": _seq(("certificationRequestInfo", "CertificationRequestInfo"),
                                 ("signatureAlgorithm", "AlgorithmIdentifier"), ("signature", "BITS")),
    "CertificationRequestInfo": _seq(("version", "INT"), ("subject", "Name"), ("subjectPKInfo", "SubjectPublicKeyInfo"),
                                     ("attributes", ("implicit", ("setof", "Attribute")), 0xA0, False)),
    "PrivateKeyPossessionStatement": _seq(("signer", "IssuerAndSerialNumber"), ("cert", "Certificate", 0x30, True)),
    "KemCiphertextInfo": _seq(("kem", "AlgorithmIdentifier"), ("ct", "OCTETS")),
    "KemOtherInfo": _seq(("staticString", ("seqof", "ANY")), ("transactionID", "OCTETS"),
                         ("kemContext", ("explicit", "OCTETS"), 0xA0, True)),
    "KemPopProof": _seq(("macAlgorithm", "AlgorithmIdentifier"), ("mac", "OCTETS")),
    "CMSORIforKEMOtherInfo": _seq(("wrap", "AlgorithmIdentifier"), ("kekLength", "INT"),
                                  ("ukm", ("explicit", "OCTETS"), 0xA0, True)),
    "OneAsymmetricKey": _seq(("version", "INT"), ("privateKeyAlgorithm", "AlgorithmIdentifier"),
                             ("privateKey", ("der", "ANY")), ("attributes", "ANY", 0xA0, True),
                             ("publicKey", "ANY", 0x81, True)),
}


# --- the walker -------------------------------------------------------------------------------


def _children(der: bytes, start: int, stop: int) -> list[int]:
    out, pos = [], start
    while pos < stop:
        out.append(pos)
        pos = ber.read_tlv(der, pos)[2]
    return out


def _oid(content: bytes) -> str:
    return cms.decode_der(ObjectIdentifier, bytes((0x06, len(content))) + content).dotted_string \
        if len(content) < 128 else "?"


def _tag_name(tag: int) -> str:
    if tag in _UNIVERSAL:
        return _UNIVERSAL[tag]
    kind = "cont" if tag & 0xC0 == 0x80 else "appl" if tag & 0xC0 == 0x40 else "priv"
    return f"[{kind} {tag & 0x1F}]"


def _hex_lines(data: bytes, indent: str) -> list[str]:
    return [indent + data[i:i + 32].hex() for i in range(0, len(data), 32)]


class _Writer:
    def __init__(self, der: bytes):
        self.der = der
        self.lines: list[str] = []

    def _line(self, pos: int, depth: int, start: int, stop: int, tag: int, value: str, label: str) -> None:
        cons = "cons" if tag & 0x20 else "prim"
        head = f"{pos:5d}:d={depth:<2d} hl={start - pos:<2d} l={stop - start:5d} {cons}: {_tag_name(tag):<16s}"
        text = f"{head} {value}".rstrip()
        if label:
            text = f"{text:<72s} -- {label}" if len(text) < 72 else f"{text}  -- {label}"
        self.lines.append(text)

    def walk(self, pos: int, depth: int, typ, label: str, ctx: dict | None = None) -> str | None:
        """List the TLV at `pos` as `typ`; return its OID for an OBJECT (for "by" choices)."""
        der = self.der
        tag, start, stop = ber.read_tlv(der, pos)
        if isinstance(typ, str) and typ in TYPES:
            return self.walk(pos, depth, TYPES[typ], f"{label} ({typ})" if label else typ, ctx)
        kind = typ[0] if isinstance(typ, tuple) else typ
        if kind == "by":
            _, field, table, default = typ
            chosen = table.get((ctx or {}).get(field, ""), default)
            return self.walk(pos, depth, chosen, label, ctx)
        if kind == "choice":
            chosen = typ[1].get(tag, "ANY")
            return self.walk(pos, depth, chosen, label, ctx)
        if kind == "explicit":
            self._line(pos, depth, start, stop, tag, "", label)
            inner = _children(der, start, stop)
            for child in inner[:1]:
                self.walk(child, depth + 1, typ[1], "", ctx)
            return None
        if kind == "implicit":
            inner_type = typ[1]
            while isinstance(inner_type, str) and inner_type in TYPES:
                label = f"{label} ({inner_type})" if label else inner_type
                inner_type = TYPES[inner_type]
            self._line(pos, depth, start, stop, tag, "", f"{label} [IMPLICIT]")
            self._body(start, stop, depth, inner_type, ctx)
            return None
        if kind == "der":
            content = der[start:stop]
            skip = 1 if tag == 0x03 else 0
            self._line(pos, depth, start, stop, tag, "encapsulates:" if skip == 0 else "encapsulates (0 unused bits):",
                       label)
            encapsulated = content[skip:]
            try:
                _t, _s, end = ber.read_tlv(encapsulated)
                ok = end == len(encapsulated)
            except ber.BerError:
                ok = False
            if ok:
                sub = _Writer(encapsulated)
                sub.walk(0, depth + 1, typ[1], "")
                offset = start + skip
                for line in sub.lines:  # offsets of the inner DER are shown relative to the outer
                    num, sep, rest = line.partition(":")
                    if sep and num.strip().isdigit():
                        line = f"{int(num) + offset:5d}:{rest}"
                    self.lines.append(line)
            else:
                self.lines.extend(_hex_lines(encapsulated, " " * 8))
            return None
        if kind in ("seq", "setof", "seqof"):
            self._line(pos, depth, start, stop, tag, "", label)
            self._body(start, stop, depth, typ, ctx)
            return None
        return self._leaf(pos, depth, tag, start, stop, label)

    def _body(self, start: int, stop: int, depth: int, typ, outer: dict | None = None) -> None:
        children = _children(self.der, start, stop)
        if isinstance(typ, tuple) and typ[0] in ("setof", "seqof"):
            # The elements of a SET OF / SEQUENCE OF may be typed by an OID of the enclosing
            # SEQUENCE (an Attribute's values by its attrType).
            for child in children:
                self.walk(child, depth + 1, typ[1], "", outer)
            return
        if not (isinstance(typ, tuple) and typ[0] == "seq"):
            for child in children:
                self.walk(child, depth + 1, "ANY", "", None)
            return
        fields = list(typ[1])
        ctx: dict = {}
        for child in children:
            tag = self.der[child]
            while fields and fields[0][3] and fields[0][2] is not None and fields[0][2] != tag:
                fields.pop(0)
            if fields:
                name, ftype, _ftag, _opt = fields.pop(0)
                value = self.walk(child, depth + 1, ftype, name, ctx)
                if value is not None:
                    ctx[name] = value
            else:
                self.walk(child, depth + 1, "ANY", "", ctx)

    def _leaf(self, pos: int, depth: int, tag: int, start: int, stop: int, label: str) -> str | None:
        der = self.der
        content = der[start:stop]
        if tag & 0x20:  # constructed without a schema: list its children
            self._line(pos, depth, start, stop, tag, "", label)
            for child in _children(der, start, stop):
                self.walk(child, depth + 1, "ANY", "")
            return None
        if tag == 0x06:
            dotted = _oid(content)
            name = _oid_label(dotted)
            self._line(pos, depth, start, stop, tag, f":{dotted}" + (f" ({name})" if name else ""), label)
            return dotted
        if tag == 0x02:
            value = int.from_bytes(content, "big", signed=True)
            shown = f":{value}" if abs(value) < 1 << 32 else f":0x{content.hex()}"
            self._line(pos, depth, start, stop, tag, shown, label)
            return None
        if tag in (0x0C, 0x13, 0x16):
            self._line(pos, depth, start, stop, tag, ":" + content.decode("utf-8", "replace"), label)
            return None
        if tag in (0x17, 0x18):
            self._line(pos, depth, start, stop, tag, ":" + content.decode("ascii", "replace"), label)
            return None
        if tag == 0x01:
            self._line(pos, depth, start, stop, tag, ":" + ("TRUE" if content != b"\x00" else "FALSE"), label)
            return None
        if tag == 0x05:
            self._line(pos, depth, start, stop, tag, "", label)
            return None
        if tag == 0x03:
            self._line(pos, depth, start, stop, tag, f"[HEX DUMP] unused bits {content[:1].hex()}", label)
            self.lines.extend(_hex_lines(content[1:], " " * 8))
            return None
        self._line(pos, depth, start, stop, tag, "[HEX DUMP]", label)
        self.lines.extend(_hex_lines(content, " " * 8))
        return None


def annotate(der: bytes, asn1_type: str, title: str) -> str:
    """The annotated listing of `der` read as `asn1_type` (a name in TYPES)."""
    writer = _Writer(der)
    writer.walk(0, 0, TYPES.get(asn1_type, "ANY"), asn1_type)
    header = [
        f"# {title}",
        f"# {asn1_type}, {len(der)} octets of DER, SHA-256 {hashlib.sha256(der).hexdigest()}",
        "# offset:d=depth hl=header length l=content length, tag, value -- field (ASN.1 type)",
        "",
    ]
    return "\n".join(header + writer.lines) + "\n"

