"""The inspector's input as DER: DER as is, the first PEM block of any label, or base64 text
(also URL-encoded, or a whole `message=...` query: a GET PKIOperation, RFC 8894 section 4.1)."""

from __future__ import annotations

import base64
import binascii
import urllib.parse

__all__ = ["InputError", "read_input"]


class InputError(ValueError):
    """The input (or a key or certificate file) cannot be read: a one-line reason."""


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
