"""PKIOperation over one keep-alive `http.client` connection: the sender of `pqscep bench`.

`pqscep bench` shares the machine with the server it measures, so every millisecond of CPU
its workers spend per request is taken from that server. Measured against `pqscep serve` on
loopback (`benchmarks/client_send.sh`: 300 POSTed PKCSReqs from one process,
`time.thread_time()` around each send): `ScepTransport.pki_operation` on httpx costs about
three times the client CPU of the same exchange on `http.client` (1.15-1.46 ms against
0.32-0.46 ms). Under `bench --concurrency 8` the httpx workers took about 0.45 of the two
cores from the server, these about 0.2.

So the bench's exchanges go through `KeepAliveSender`, which has the same
`pki_operation(url, body, use_post)` as `transport.ScepTransport` and the same rules: a reply
size cap, timeouts, one-line `TransportError`s. It does less: no redirects (a bench is
pointed at the final URL), no proxies, no cookies. Everything else (`pqscep enroll`, the
bench's own discovery and the checks after the clock) keeps `ScepTransport`.

Written on the standard library's `http.client` because what it replaces is exactly the
per-request machinery of the maintained client (httpx) that the bench cannot afford.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from urllib.parse import SplitResult, quote, urlsplit

from .transport import DEFAULT_MAX_REPLY, DEFAULT_TIMEOUT, PKI_MESSAGE_TYPE, TransportError, _first_line

__all__ = ["KeepAliveSender"]


class KeepAliveSender:
    """Sends PKIOperations to one SCEP endpoint over one persistent connection (one thread)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, max_reply: int = DEFAULT_MAX_REPLY,
                 user_agent: str = "pqscep"):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"PKIOperation: URL {url!r} is not http:// or https://", operation="PKIOperation")
        self._url = url
        self._parts: SplitResult = parts
        self._where = f"{parts.scheme}://{parts.netloc}{parts.path}"
        self.timeout = timeout
        self.max_reply = max_reply
        # The request line and headers are the same for every send: made once here.
        self._query_prefix = f"{parts.path or '/'}?{parts.query + '&' if parts.query else ''}operation=PKIOperation"
        self._get_headers = {"User-Agent": user_agent}
        self._post_headers = {"User-Agent": user_agent, "Content-Type": PKI_MESSAGE_TYPE}
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            p = self._parts
            host = p.hostname or ""  # urlsplit of a URL the transport checked has a host
            if p.scheme == "https":
                self._conn = http.client.HTTPSConnection(host, p.port, timeout=self.timeout,
                                                         context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(host, p.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> KeepAliveSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pki_operation(self, url: str, body: bytes, use_post: bool) -> bytes:
        """PKIOperation: send a pkiMessage, return the CertRep bytes (RFC 8894 section 4.3)."""
        # Only the endpoint this sender was made for: a second endpoint needs its own sender.
        if url != self._url and urlsplit(url)[:3] != self._parts[:3]:
            raise ValueError(f"KeepAliveSender for {self._where} asked to send to {url}")
        if use_post:
            method, target, content, headers = "POST", self._query_prefix, body, self._post_headers
        else:
            # Standard base64, with '+', '/' and '=' percent-encoded in the query string.
            message = quote(base64.b64encode(body).decode("ascii"), safe="")
            method, target, content, headers = "GET", f"{self._query_prefix}&message={message}", None, \
                self._get_headers
        # A kept-alive connection the server closed in the meantime fails on first use: send
        # once more on a new one. Only then: a request that reached the server is not repeated.
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, target, body=content, headers=headers)
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 2:
                    raise self._error(f"connection lost: {exc or type(exc).__name__}") from None
                continue
            except TimeoutError:
                self.close()
                raise self._error(f"timed out after {self.timeout:g}s") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise self._error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
            return self._read(response)
        raise AssertionError("unreachable")

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        declared = response.getheader("Content-Length")
        try:
            if declared and declared.isdigit() and int(declared) > self.max_reply:
                self.close()
                raise self._error(f"reply of {declared} bytes is over the {self.max_reply}-byte limit",
                                  status=response.status)
            reply = response.read(self.max_reply + 1)
        except TimeoutError:
            self.close()
            raise self._error(f"timed out reading the reply after {self.timeout:g}s") from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise self._error(f"reading the reply failed: {exc}") from None
        if len(reply) > self.max_reply:
            self.close()
            raise self._error(f"reply is over the {self.max_reply}-byte limit", status=response.status)
        # Reading up to the cap read the whole body, so the connection is ready for the next one.
        if response.will_close:
            self.close()
        if response.status != 200:
            line = _first_line(reply)
            reason = f"HTTP {response.status} {response.reason}".rstrip()
            raise self._error(reason + (f": {line}" if line else ""), status=response.status, body=reply[:4096])
        if not reply:
            raise self._error("empty reply", status=200)
        return reply

    def _error(self, reason: str, *, status: int | None = None, body: bytes = b"") -> TransportError:
        return TransportError(f"PKIOperation to {self._where}: {reason}", status=status, body=body,
                              operation="PKIOperation")
