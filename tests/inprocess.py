"""The SCEP server in the test process: the same app `pqscep serve` builds (http.server.build_app),
behind an httpx.Client whose transport hands each request to the ASGI app (no socket), with a
fake clock and seeded randomness.

For tests of rules (which request is issued, pended, challenged, refused or replayed, and when
a KEM challenge expires): no port, no process start, no `time.sleep`; time moves only when the
test says so. The wire itself (uvicorn, sockets, real peers) keeps its own tests, which start
`pqscep serve` with server_proc.ServerProcess.

`InProcessServer` answers like ServerProcess (`url()`, `data_dir`), so a test reads the same
whichever it gets; give `Requester`/`KemClient` its `http` client.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import threading
from pathlib import Path

import httpx

from pqscep.ca.policy import WebhookPoster
from pqscep.http.server import build_app
from pqscep.service.config import load_config


class FakeClock:
    """A clock that stands still until `advance` moves it (UTC, whole seconds)."""

    def __init__(self, start: datetime.datetime | None = None):
        self.now = start or datetime.datetime.now(datetime.UTC).replace(microsecond=0)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: float) -> datetime.datetime:
        """Move forward by a `datetime.timedelta(**delta)`; returns the new time."""
        step = datetime.timedelta(**delta)
        assert step >= datetime.timedelta(0), "time only moves forward"
        self.now += step
        return self.now


class SeededRandom:
    """Deterministic bytes (SHA-256 in counter mode over a seed), so a run can be repeated.
    Each call gives new bytes: serial numbers, nonces and IVs stay distinct."""

    def __init__(self, seed: bytes | None = None):
        self.seed = seed if seed is not None else os.urandom(16)
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            self._counter += 1
            out += hashlib.sha256(self.seed + self._counter.to_bytes(8, "big")).digest()
        return bytes(out[:n])

    def __repr__(self) -> str:
        return f"SeededRandom(seed=bytes.fromhex({self.seed.hex()!r}))"


class AsgiTransport(httpx.BaseTransport):
    """A synchronous httpx transport in front of an ASGI app: httpx's own ASGITransport (which is
    async only) run on an event loop in a thread of its own, as uvicorn runs the app on its loop.
    Written here because httpx has no synchronous ASGI transport and Starlette's TestClient
    (which does this) is deprecated with httpx."""

    def __init__(self, app, *, client: tuple[str, int] = ("127.0.0.1", 50000), timeout: float = 120):
        # raise_app_exceptions=False: what the app does not handle becomes the 500 a real client
        # would see, so tests assert on answers, as they do over the wire.
        self._asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=client)
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asgi-transport", daemon=True)
        self._thread.start()
        self._lifespan_events: asyncio.Queue = asyncio.Queue()
        self._lifespan_replies: asyncio.Queue = asyncio.Queue()
        self._lifespan = asyncio.run_coroutine_threadsafe(self._run_lifespan(app), self._loop)
        self._lifespan_step("startup")

    async def _run_lifespan(self, app) -> None:
        """The ASGI lifespan protocol, as uvicorn speaks it: startup before the first request,
        shutdown (the app stops its thread pool) on close."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await app(scope, self._lifespan_events.get, self._lifespan_replies.put)

    def _lifespan_step(self, step: str) -> None:
        async def go() -> None:
            await self._lifespan_events.put({"type": f"lifespan.{step}"})
            reply = await self._lifespan_replies.get()
            assert reply["type"] == f"lifespan.{step}.complete", reply

        asyncio.run_coroutine_threadsafe(go(), self._loop).result(self._timeout)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def exchange() -> httpx.Response:
            response = await self._asgi.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return asyncio.run_coroutine_threadsafe(exchange(), self._loop).result(self._timeout)

    def close(self) -> None:
        if not self._lifespan.done():
            self._lifespan_step("shutdown")
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()


class InProcessServer:
    """`pqscep serve` for `data_dir` (made by server_proc.init_data), in this process."""

    base = "http://testserver"

    def __init__(self, data_dir: Path, *, clock: FakeClock | None = None, random: SeededRandom | None = None,
                 webhook: WebhookPoster | None = None):
        self.data_dir = data_dir
        self.clock = clock or FakeClock()
        self.random = random or SeededRandom()
        self.config = load_config(data_dir)
        app, self.service = build_app(self.config, clock=self.clock, random_bytes=self.random, webhook=webhook)
        self.http = httpx.Client(transport=AsgiTransport(app), base_url=self.base)

    @property
    def store(self):
        return self.service.store

    def url(self, path: str = "/scep") -> str:
        return self.base + path

    def close(self) -> None:
        self.http.close()
        self.service.store.close()

    def __enter__(self) -> InProcessServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
