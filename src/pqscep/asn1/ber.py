"""BER to DER normalisation, and the few raw TLV helpers the structures need.

cryptography's declarative ASN.1 decoder is strict DER. Real SCEP clients send BER: Apple and
Bouncy Castle use indefinite lengths, micromdm sends the encryptedContent as a constructed
OCTET STRING. This module rewrites such input as DER before it is decoded. It is written by hand
because no maintained library on the `cryptography` stack does BER to DER conversion.

The conversion is schema-less, so it does what can be done without knowing the types:
- indefinite and non-minimal lengths become minimal definite lengths;
- constructed universal string types (OCTET STRING, BIT STRING, character strings) become
  primitive, their segments concatenated (X.690 8.7.3 / 10.2);
- the elements of a SET / SET OF are sorted by their encodings (X.690 11.6).
Implicitly tagged constructed strings ([0] IMPLICIT OCTET STRING in EncryptedContentInfo) look
like EXPLICIT tags here, so the CMS layer joins those itself (see `join_constructed_string`).
"""

from __future__ import annotations

__all__ = [
    "BerError",
    "MAX_DEPTH",
    "der_length",
    "encode_tlv",
    "join_constructed_string",
    "read_tlv",
    "to_der",
]

MAX_DEPTH = 64  # nesting deeper than any CMS structure: a guard against stack exhaustion

# Universal tag numbers of the string types that BER may send in constructed form.
_STRING_TAGS = frozenset({3, 4, 12, 18, 19, 20, 21, 22, 25, 26, 27, 28, 30})
_SET_TAG = 0x31


class BerError(ValueError):
    """The input is not a well-formed BER encoding."""


def der_length(length: int) -> bytes:
    """The DER encoding of a length (X.690 10.1: the minimal definite form)."""
    if length < 0x80:
        return bytes((length,))
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def encode_tlv(tag: int, content: bytes) -> bytes:
    """A DER TLV for a single-byte tag."""
    length = len(content)
    if length < 0x80:  # the short form inline: most TLVs of a reply, one call fewer each
        return bytes((tag, length)) + content
    return bytes((tag,)) + der_length(length) + content


def _read_header(data: bytes, pos: int, end: int) -> tuple[bytes, int, int | None]:
    """Return (tag bytes, position of content, content length or None if indefinite)."""
    if pos >= end:
        raise BerError("truncated: tag expected")
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:  # high tag number form (X.690 8.1.2.4)
        while True:
            if pos >= end:
                raise BerError("truncated tag")
            byte = data[pos]
            pos += 1
            if not byte & 0x80:
                break
            if pos - start > 6:
                raise BerError("tag number too large")
    tag = data[start:pos]
    if pos >= end:
        raise BerError("truncated: length expected")
    first_len = data[pos]
    pos += 1
    if first_len < 0x80:
        if pos + first_len > end:
            raise BerError("truncated: content runs past the end")
        return tag, pos, first_len
    if first_len == 0x80:
        if not first & 0x20:
            raise BerError("indefinite length on a primitive encoding")
        return tag, pos, None
    count = first_len & 0x7F
    if count > 8 or pos + count > end:
        raise BerError("bad length")
    length = int.from_bytes(data[pos : pos + count], "big")
    pos += count
    if pos + length > end:
        raise BerError("truncated: content runs past the end")
    return tag, pos, length


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, int, int]:
    """Read one definite-length TLV: return (first tag byte, content start, content end)."""
    tag, start, length = _read_header(data, pos, len(data))
    if length is None:
        raise BerError("indefinite length where DER is required")
    return tag[0], start, start + length


def _convert(data: bytes, pos: int, end: int, depth: int) -> tuple[bytes, int]:
    """Convert the TLV at data[pos:], which must end by `end`; return (DER, next position)."""
    if depth > MAX_DEPTH:
        raise BerError("nesting too deep")
    tag, pos, length = _read_header(data, pos, end)
    first = tag[0]
    if not first & 0x20:  # primitive: copy
        assert length is not None
        return encode_tlv_bytes(tag, data[pos : pos + length]), pos + length
    children: list[bytes] = []
    if length is None:
        while True:
            if pos + 2 > end:
                raise BerError("truncated: end-of-contents expected")
            if data[pos] == 0 and data[pos + 1] == 0:
                pos += 2
                break
            child, pos = _convert(data, pos, end, depth + 1)
            children.append(child)
    else:
        stop = pos + length
        while pos < stop:
            child, pos = _convert(data, pos, stop, depth + 1)
            children.append(child)
    if len(tag) == 1 and first & 0xC0 == 0 and (first & 0x1F) in _STRING_TAGS:
        # A constructed universal string: its segments are themselves strings of that type.
        return encode_tlv(first & 0xDF, b"".join(_string_content(c) for c in children)), pos
    if first == _SET_TAG:
        children.sort()
    return encode_tlv_bytes(tag, b"".join(children)), pos


def _string_content(der: bytes) -> bytes:
    _, start, stop = read_tlv(der)
    return der[start:stop]


def encode_tlv_bytes(tag: bytes, content: bytes) -> bytes:
    return tag + der_length(len(content)) + content


def to_der(data: bytes) -> bytes:
    """Rewrite one BER-encoded value as DER. Trailing bytes after it are an error."""
    try:
        der, pos = _convert(data, 0, len(data), 0)
    except RecursionError as exc:  # pragma: no cover - MAX_DEPTH stops it first
        raise BerError("nesting too deep") from exc
    if pos != len(data):
        raise BerError(f"{len(data) - pos} trailing bytes after the value")
    return der


def join_constructed_string(der: bytes, _depth: int = 0) -> bytes:
    """The content of an (implicitly tagged) string TLV, joining segments if constructed.

    Used for `[0] IMPLICIT OCTET STRING` fields such as EncryptedContentInfo.encryptedContent,
    which BER senders (micromdm) split into OCTET STRING segments.
    """
    if _depth > MAX_DEPTH:
        raise BerError("string segments nested too deep")
    first, start, stop = read_tlv(der)
    if not first & 0x20:
        return der[start:stop]
    parts = []
    pos = start
    while pos < stop:
        child_tag, child_start, child_stop = read_tlv(der, pos)
        if child_tag == 0x24:  # a nested constructed segment (already joined by to_der)
            parts.append(join_constructed_string(der[pos:child_stop], _depth + 1))
        elif child_tag != 0x04:
            raise BerError("constructed string segment is not an OCTET STRING")
        else:
            parts.append(der[child_start:child_stop])
        pos = child_stop
    return b"".join(parts)
