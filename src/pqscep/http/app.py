"""The HTTP face of the SCEP service (RFC 8894 section 4.1), as a Starlette ASGI app.

Every path answers SCEP: /scep/<profile>[/...] for each profile; /scep, /cgi-bin/pkiclient.exe
and /scep/<anything else> for the default profile. The path alone chooses the profile, the same
way for every operation; GetCACert's `message` (the CA identifier) is accepted and does not
change it. /health reports liveness and the database.

The handlers only translate: the work is done by `ScepService` in a worker thread. Bodies are
read with a size limit before anything else; bad input gets 4xx and a one-line reason.

PKIOperation, the one operation that carries load, is answered by a plain ASGI handler
(`ScepApp.pki_operation_asgi`) in front of Starlette, with its own thread pool: under load,
Starlette's middleware stack, request objects and anyio's thread hand-off cost about a third
of the server's CPU per enrollment beside the service itself (py-spy on `pqscep serve`, see
docs/benchmarks.md). Everything else (the GET operations, /health) goes through Starlette.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..service.scep import Profile, Reply, ScepService
from ..storage import is_unavailable

log = logging.getLogger("pqscep.http")

__all__ = ["create_app"]

# A GET PKIOperation carries the base64 message in the URL: 60 KiB holds the largest
# post-quantum request (ML-DSA-87, about 30 KiB encoded) and stays under the longest URL that
# uvicorn's httptools parser takes (measured: 65,400 bytes pass, 65,500 do not), so the client
# gets our 414, not a parser error. Bigger messages must be POSTed (RFC 8894 section 4.1).
MAX_QUERY = 60 * 1024
# Worker threads per server process for PKIOperations (PQSCEP_THREADS overrides).
THREADS = int(os.environ.get("PQSCEP_THREADS", "0")) or 2 * (os.cpu_count() or 2)


def _text(status: int, reason: str) -> PlainTextResponse:
    return PlainTextResponse(reason.rstrip("\n") + "\n", status_code=status)


def _internal_error(exc: Exception, method: str, path: str) -> tuple[int, str]:
    """(status, one-line reason) for an exception the service did not turn into a reply: 503
    when the database is unreachable (the request may work when retried), else 500. Either
    way the details go to the log only, under an incident number the client is given."""
    incident = uuid.uuid4().hex[:12]
    if is_unavailable(exc):
        log.error("database unavailable (incident %s) on %s %s: %s", incident, method, path,
                  str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return 503, f"database unavailable, retry later (incident {incident})"
    log.exception("internal error %s on %s %s", incident, method, path)
    return 500, f"internal error {incident}; see the server log"


def _raw_query(query: str) -> dict[str, str]:
    """Parse the query string without turning '+' into a space: macOS sends the base64
    message with unescaped '+' and '/' (RFC 8894 section 4.1 asks for escaping; not all do)."""
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        params.setdefault(unquote(key), unquote(value))
    return params


def _decode_message(value: str) -> bytes:
    text = value.strip().replace(" ", "+").replace("\n", "").replace("\r", "")
    text = text.replace("-", "+").replace("_", "/")  # tolerate base64url too
    text += "=" * (-len(text) % 4)
    return base64.b64decode(text, validate=True)


class ScepApp:
    def __init__(self, service: ScepService, default_profile: str, max_body: int, health_check=None):
        self.service = service
        self.default = default_profile
        self.max_body = max_body
        self.health_check = health_check
        # PKIOperations run in these threads. The crypto releases the GIL, but more threads
        # than cores only add switching: the pool stays near the core count.
        self.executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="pqscep-pki")

    def _profile_for(self, path: str) -> Profile | None:
        parts = [p for p in path.strip("/").split("/") if p]
        profiles = self.service.profiles
        if parts and parts[0] == "scep":
            if len(parts) >= 2 and parts[1] in profiles:
                return profiles[parts[1]]
            if len(parts) <= 2:
                return profiles[self.default]
            return None
        if parts[:2] == ["cgi-bin", "pkiclient.exe"] or parts == ["pkiclient.exe"]:
            return profiles[self.default]
        return None

    async def _read_body(self, request: Request) -> bytes | Response:
        body = await self._receive_body(request.scope, request.receive)
        return _text(*body) if isinstance(body, tuple) else body

    # --- PKIOperation without Starlette (module docstring) ---

    async def pki_operation_asgi(self, scope, receive, send) -> bool:
        """Answer `scope` if it is a PKIOperation (POST, or GET with its message); False to
        leave every other request, and every malformed one, to the Starlette route."""
        query = scope.get("query_string", b"")
        if b"operation=PKIOperation" not in query or len(query) > MAX_QUERY:
            return False
        method = scope["method"]
        if method == "POST":
            if query.count(b"=") != 1:  # more parameters than operation: the general path
                return False
        elif method != "GET":
            return False
        profile = self._profile_for(scope["path"])
        if profile is None:
            return False
        started = False
        try:
            if method == "POST":
                body = await self._receive_body(scope, receive)
                if isinstance(body, tuple):  # (status, reason)
                    await _send_text(send, *body)
                    return True
            else:
                try:
                    params = _raw_query(query.decode("ascii"))
                except UnicodeDecodeError:
                    return False
                if params.get("operation") != "PKIOperation" or not params.get("message"):
                    return False
                try:
                    body = _decode_message(params["message"])
                except (binascii.Error, ValueError):
                    return False
                if len(body) > self.max_body:
                    return False
            client = scope.get("client")
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(self.executor, self.service.pki_operation, profile, body,
                                               client[0] if client else None)
            started = True
            await send({"type": "http.response.start", "status": reply.status, "headers": [
                (b"content-type", reply.content_type.encode("latin-1")),
                (b"content-length", str(len(reply.body)).encode("ascii")),
            ]})
            await send({"type": "http.response.body", "body": reply.body})
        except Exception as exc:  # the last line of defence: a bug must not leak a traceback
            if started:  # the reply is on its way (the client went away, say): only log it
                log.warning("PKIOperation reply to %s not delivered: %s", scope["path"], type(exc).__name__)
            else:
                await _send_text(send, *_internal_error(exc, method, scope["path"]))
        return True

    async def _receive_body(self, scope, receive) -> bytes | tuple[int, str]:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > self.max_body:
                        return 413, f"body over the {self.max_body}-byte limit"
                except ValueError:
                    return 400, "bad Content-Length"
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return 400, "request body incomplete"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return 413, f"body over the {self.max_body}-byte limit"
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def scep(self, request: Request) -> Response:
        try:
            return await self._scep(request)
        except Exception as exc:  # the last line of defence: a bug must not leak a traceback
            return _text(*_internal_error(exc, request.method, request.url.path))

    async def _scep(self, request: Request) -> Response:
        profile = self._profile_for(request.url.path)
        if profile is None:
            return _text(404, f"no SCEP profile at {request.url.path}")
        query = request.scope.get("query_string", b"")
        if len(query) > MAX_QUERY:
            return _text(414, "query string too long")
        try:
            params = _raw_query(query.decode("ascii"))
        except UnicodeDecodeError:
            return _text(400, "query string is not ASCII")
        operation = params.get("operation")
        if not operation:
            return _text(400, "missing operation parameter")
        client = request.client.host if request.client else None
        if request.method == "POST":
            if operation != "PKIOperation":
                return _text(405, f"{operation} is a GET operation")
            body = await self._read_body(request)
            if isinstance(body, Response):
                return body
            reply = await self._in_pool(self.service.pki_operation, profile, body, client)
            return self._reply(reply)
        if operation == "GetCACaps":
            return self._reply(self.service.get_ca_caps(profile))
        if operation == "GetCACert":
            # The path alone chooses the profile, for every operation: a `message` (the CA
            # identifier of RFC 8894 section 4.2) that chose another one here would hand the
            # client a CA whose keys the PKIOperations at this URL do not use.
            return self._reply(await self._in_pool(self.service.get_ca_cert, profile))
        if operation == "GetNextCACert":
            return self._reply(await self._in_pool(self.service.get_next_ca_cert, profile))
        if operation == "PKIOperation":
            message = params.get("message")
            if not message:
                return _text(400, "PKIOperation by GET needs a message parameter")
            try:
                body = _decode_message(message)
            except (binascii.Error, ValueError):
                return _text(400, "message parameter is not base64")
            if len(body) > self.max_body:
                return _text(413, f"message over the {self.max_body}-byte limit")
            reply = await self._in_pool(self.service.pki_operation, profile, body, client)
            return self._reply(reply)
        return _text(400, f"unknown operation {operation[:40]!r}")

    async def _in_pool(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    @staticmethod
    def _reply(reply: Reply) -> Response:
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)

    async def health(self, request: Request) -> Response:
        try:
            if self.health_check is not None:
                await self._in_pool(self.health_check)
        except Exception as exc:  # report, don't crash
            return JSONResponse({"status": "error", "database": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "profiles": sorted(self.service.profiles)})


async def _send_text(send, status: int, reason: str) -> None:
    body = (reason.rstrip("\n") + "\n").encode("utf-8")
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode("ascii"))]})
    await send({"type": "http.response.body", "body": body})


class _PkiOperationFirst:
    """ASGI app: PKIOperation requests to `ScepApp.pki_operation_asgi`, the rest to Starlette."""

    def __init__(self, scep: ScepApp, starlette: Starlette):
        self.scep = scep
        self.starlette = starlette

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and await self.scep.pki_operation_asgi(scope, receive, send):
            return
        await self.starlette(scope, receive, send)


def create_app(service: ScepService, *, default_profile: str, max_body: int = 256 * 1024,
               health_check=None):
    app = ScepApp(service, default_profile, max_body, health_check)
    methods = ["GET", "POST"]

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        app.executor.shutdown(wait=False)

    starlette = Starlette(
        routes=[
            Route("/health", app.health, methods=["GET"]),
            Route("/{path:path}", app.scep, methods=methods),
        ],
        lifespan=lifespan,
    )
    return _PkiOperationFirst(app, starlette)
