"""SCEP over HTTP (RFC 8894 section 4), requester side, on a synchronous `httpx.Client`.

The user gives the SCEP endpoint (``http://host:8080/scep``, ``.../cgi-bin/pkiclient.exe``);
every request goes to that URL with ``operation=...`` added to its query string.
PKIOperation is a POST of ``application/x-pki-message`` when the CA's GetCACaps lists
POSTPKIOperation or SCEPStandard, otherwise a GET with ``message=`` holding the standard
base64 of the pkiMessage, URL-encoded (RFC 8894 section 4.3).

Replies are read with a size cap (`DEFAULT_MAX_REPLY`), requests have timeouts, and every
failure is a `TransportError` whose message is one line: what was asked, of whom, and why
(for an HTTP error: the status and the first line of the server's text).

One `ScepTransport` wraps one `httpx.Client`, which is not meant to be shared between threads:
give each worker thread its own transport (what `pqscep bench` does).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import httpx

__all__ = [
    "CaCaps",
    "DEFAULT_MAX_REPLY",
    "DEFAULT_TIMEOUT",
    "PKI_MESSAGE_TYPE",
    "ScepTransport",
    "TransportError",
]

DEFAULT_MAX_REPLY = 4 * 1024 * 1024  # bytes: far above any SCEP reply, small enough for memory
DEFAULT_TIMEOUT = 30.0  # seconds, for connect, each read and each write
PKI_MESSAGE_TYPE = "application/x-pki-message"
_MAX_ERROR_TEXT = 200  # characters of the server's error text quoted in a TransportError


class TransportError(Exception):
    """The SCEP server could not be reached or answered with an HTTP error.

    `status` is the HTTP status (None when no answer came), `body` the first bytes of what the
    server sent with an error status (for `--dump`), `operation` the SCEP operation asked.
    """

    def __init__(self, message: str, *, status: int | None = None, body: bytes = b"", operation: str = ""):
        super().__init__(message)
        self.status = status
        self.body = body
        self.operation = operation


@dataclass(frozen=True)
class CaCaps:
    """The keywords of a GetCACaps reply (RFC 8894 section 3.5.2), compared case-insensitively."""

    keywords: tuple[str, ...]
    raw: bytes = b""

    @classmethod
    def parse(cls, body: bytes) -> CaCaps:
        text = body.decode("utf-8", "replace")
        words = tuple(w.strip() for w in text.replace("\r", "\n").split("\n") if w.strip())
        return cls(words, body)

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and keyword.lower() in {k.lower() for k in self.keywords}

    @property
    def post(self) -> bool:
        """PKIOperation may be POSTed (SCEPStandard implies POSTPKIOperation, RFC 8894 3.5.2)."""
        return "POSTPKIOperation" in self or "SCEPStandard" in self

    @property
    def aes(self) -> bool:
        return "AES" in self or "SCEPStandard" in self

    @property
    def sha256(self) -> bool:
        return "SHA-256" in self or "SCEPStandard" in self

    @property
    def renewal(self) -> bool:
        return "Renewal" in self

    # The post-quantum update's keywords (draft Section 2).
    @property
    def ml_kem(self) -> bool:
        return "ML-KEM" in self

    @property
    def ml_dsa(self) -> bool:
        return "ML-DSA" in self

    @property
    def aes_gcm(self) -> bool:
        return "AES-GCM" in self


def _first_line(body: bytes) -> str:
    """The server's first non-empty line of text, printable and bounded, for an error message."""
    text = body[:4096].decode("utf-8", "replace")
    for line in text.splitlines():
        line = "".join(ch if ch.isprintable() else "?" for ch in line.strip())
        if line:
            return line[:_MAX_ERROR_TEXT]
    return ""


class ScepTransport:
    """Sends SCEP operations to one or more SCEP endpoints over one `httpx.Client`."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_reply: int = DEFAULT_MAX_REPLY,
        client: httpx.Client | None = None,
        user_agent: str = "pqscep",
    ):
        self.timeout = timeout
        self.max_reply = max_reply
        self._own_client = client is None
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=5,
            headers={"User-Agent": user_agent},
        )

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> ScepTransport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the operations (RFC 8894 section 4) ---

    def get_ca_caps(self, url: str) -> CaCaps:
        """GetCACaps. Raises TransportError on an HTTP error; the enrollment layer treats an
        HTTP error status as "no capabilities" (RFC 8894 section 3.5.2: assume none)."""
        _, body = self._request("GetCACaps", url, "GET", {"operation": "GetCACaps"})
        return CaCaps.parse(body)

    def get_ca_cert(self, url: str, ca_ident: str | None = None) -> tuple[str, bytes]:
        """GetCACert: (Content-Type, body): one DER certificate or a certs-only PKCS#7."""
        params = {"operation": "GetCACert"}
        if ca_ident:
            params["message"] = ca_ident
        return self._request("GetCACert", url, "GET", params)

    def get_next_ca_cert(self, url: str, ca_ident: str | None = None) -> tuple[str, bytes]:
        """GetNextCACert: (Content-Type, body): a SignedData over the next CA certificates."""
        params = {"operation": "GetNextCACert"}
        if ca_ident:
            params["message"] = ca_ident
        return self._request("GetNextCACert", url, "GET", params)

    def pki_operation(self, url: str, body: bytes, use_post: bool) -> bytes:
        """PKIOperation: send a pkiMessage, return the CertRep bytes."""
        if use_post:
            content_type, reply = self._request(
                "PKIOperation",
                url,
                "POST",
                {"operation": "PKIOperation"},
                content=body,
                headers={"Content-Type": PKI_MESSAGE_TYPE},
            )
        else:
            # Standard base64; httpx percent-encodes '+', '/' and '=' in the query string.
            message = base64.b64encode(body).decode("ascii")
            content_type, reply = self._request(
                "PKIOperation", url, "GET", {"operation": "PKIOperation", "message": message}
            )
        if not reply:
            raise TransportError(f"PKIOperation to {_origin(url)}: empty reply", status=200, operation="PKIOperation")
        return reply

    # --- plumbing ---

    def _request(
        self,
        operation: str,
        url: str,
        method: str,
        params: dict[str, str],
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[str, bytes]:
        where = _origin(url)
        try:
            request = self.client.build_request(method, url, params=params, content=content, headers=headers)
            response = self.client.send(request, stream=True)
        except httpx.TimeoutException:
            raise TransportError(
                f"{operation} to {where}: timed out after {self.timeout:g}s", operation=operation
            ) from None
        except httpx.InvalidURL as exc:
            raise TransportError(f"{operation}: bad URL {url!r}: {exc}", operation=operation) from None
        except httpx.UnsupportedProtocol:
            raise TransportError(f"{operation}: URL {url!r} is not http:// or https://", operation=operation) from None
        except httpx.TooManyRedirects:
            raise TransportError(f"{operation} to {where}: too many redirects", operation=operation) from None
        except httpx.HTTPError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TransportError(f"{operation} to {where}: {reason}", operation=operation) from None
        try:
            body = self._read_limited(response, operation, where)
        finally:
            response.close()
        if response.status_code >= 400 or response.status_code < 200:
            line = _first_line(body)
            reason = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
            raise TransportError(
                f"{operation} to {where}: {reason}" + (f": {line}" if line else ""),
                status=response.status_code,
                body=body[:4096],
                operation=operation,
            )
        if response.status_code != 200:
            raise TransportError(
                f"{operation} to {where}: unexpected HTTP {response.status_code} {response.reason_phrase}",
                status=response.status_code,
                body=body[:4096],
                operation=operation,
            )
        return response.headers.get("Content-Type", ""), body

    def _read_limited(self, response: httpx.Response, operation: str, where: str) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_reply:
            raise TransportError(
                f"{operation} to {where}: reply of {declared} bytes is over the {self.max_reply}-byte limit",
                status=response.status_code,
                operation=operation,
            )
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_reply:
                    raise TransportError(
                        f"{operation} to {where}: reply is over the {self.max_reply}-byte limit",
                        status=response.status_code,
                        operation=operation,
                    )
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise TransportError(
                f"{operation} to {where}: timed out reading the reply after {self.timeout:g}s", operation=operation
            ) from None
        except httpx.HTTPError as exc:
            raise TransportError(f"{operation} to {where}: reading the reply failed: {exc}",
                                 operation=operation) from None
        return b"".join(chunks)


def _origin(url: str) -> str:
    """scheme://host:port/path of a URL, for messages (never its query: it may hold a message)."""
    try:
        parsed = httpx.URL(url)
        return str(parsed.copy_with(query=None, fragment=None))
    except Exception:  # an unparsable URL is reported by the request itself
        return url.split("?", 1)[0]
