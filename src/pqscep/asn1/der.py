"""DER writers for the few structures built on every reply: SEQUENCE, SET OF, INTEGER, OCTET
STRING, OBJECT IDENTIFIER, the SCEP string types and CMS time values, by byte concatenation.

cms.py's declarative classes encode the same structures, and tests check that the two agree
byte for byte. They are not used on the hot path because every field there becomes a Python
object and every pre-encoded piece (a certificate, an AlgorithmIdentifier, an attribute value)
must first be decoded into a `TLV` to be spliced in: about 40 Rust calls of 1-2 us each per
CertRep, plus the objects (docs/benchmarks.md). Written by hand because cryptography's
declarative API has no way to splice pre-encoded DER without decoding it.
"""

from __future__ import annotations

import datetime
import functools
import re

from cryptography import x509
from cryptography.hazmat import asn1

from .ber import encode_tlv

# X.680 41.4: the characters a PrintableString may hold.
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")


def sequence(*parts: bytes) -> bytes:
    return encode_tlv(0x30, b"".join(parts))


def set_of(parts) -> bytes:
    """SET OF with its elements in DER order (X.690 11.6: ascending encodings)."""
    return encode_tlv(0x31, b"".join(sorted(parts)))


def context(number: int, content: bytes) -> bytes:
    """A constructed context-specific tag [number] around `content`: an EXPLICIT tag around
    one encoding, or the IMPLICIT tag of a SEQUENCE/SET given its content octets."""
    return encode_tlv(0xA0 | number, content)


def integer(value: int) -> bytes:
    """X.690 8.3: two's complement in the fewest octets."""
    size = ((value if value >= 0 else ~value).bit_length() + 8) // 8
    return encode_tlv(0x02, value.to_bytes(size, "big", signed=True))


def octet_string(value: bytes) -> bytes:
    return encode_tlv(0x04, value)


@functools.lru_cache(maxsize=256)
def oid(value: x509.ObjectIdentifier) -> bytes:
    return asn1.encode_der(value)


def printable_string(text: str) -> bytes:
    if not _PRINTABLE.fullmatch(text):
        raise ValueError(f"{text[:40]!r} is not a PrintableString")
    return encode_tlv(0x13, text.encode("ascii"))


@functools.lru_cache(maxsize=64)
def issuer(cert: x509.Certificate) -> bytes:
    """The DER of `cert`'s issuer Name. Cached, like `issuer_and_serial`: the CA's and RA's
    certificates name the signer of every CertRep and the recipient of every request."""
    return cert.issuer.public_bytes()


@functools.lru_cache(maxsize=64)
def issuer_and_serial(cert: x509.Certificate) -> bytes:
    """RFC 5652 IssuerAndSerialNumber of `cert`."""
    return sequence(issuer(cert), integer(cert.serial_number))


def utf8_string(text: str) -> bytes:
    return encode_tlv(0x0C, text.encode("utf-8"))


def cms_time(when: datetime.datetime) -> bytes:
    """RFC 5652 section 11.3 Time: UTCTime for 1950-2049, GeneralizedTime otherwise, in UTC,
    whole seconds, with the Z form that DER requires (X.690 11.7, 11.8)."""
    when = when.astimezone(datetime.UTC)
    if 1950 <= when.year < 2050:
        return encode_tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return encode_tlv(0x18, when.strftime("%Y%m%d%H%M%SZ").encode("ascii"))
