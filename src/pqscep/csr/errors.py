"""`CsrError`: a certification request, or the RFC 9883 statement in it, that cannot be used.

The `reason` is the same vocabulary as `cms.signed.SignedDataError`'s, for the caller to map to
its protocol's failure code (SCEP's failInfo, RFC 8894 section 3.2.1.4):

* "malformed": not DER, not the structure, or inconsistent (badRequest);
* "algorithm": a signature algorithm not implemented here, or one that does not fit the key
  (badAlg);
* "signature": the signature does not verify (badMessageCheck). The text never says where it
  differs.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["CsrError", "Reason"]

Reason = Literal["malformed", "algorithm", "signature"]


class CsrError(ValueError):
    """A PKCS #10 request or its privateKeyPossessionStatement refused; `text` says why."""

    def __init__(self, text: str, reason: Reason = "malformed"):
        super().__init__(text)
        self.text = text
        self.reason: Reason = reason

    def __repr__(self) -> str:
        return f"CsrError({self.reason}, {self.text!r})"
