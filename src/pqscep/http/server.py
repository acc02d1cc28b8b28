"""Assemble and run the server: configuration, store, profiles, service, ASGI app, uvicorn.

`app_factory` is what each uvicorn worker process calls (`--workers N` needs an import
string); it reads the data directory from PQSCEP_DATA.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from ..asn1.text import escape_text
from ..ca.policy import WebhookPoster
from ..service.config import ServerConfig, load_config
from ..service.housekeeping import Housekeeper
from ..service.scep import ScepService
from ..service.setup import ensure_profile_keys, load_profiles
from ..storage.db import open_store
from .app import MAX_QUERY, create_app

MAX_REQUEST_HEAD = MAX_QUERY + 64 * 1024

__all__ = ["build_app", "app_factory", "configure_logging", "run"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class PlainFormatter(logging.Formatter):
    """One line per record: the message, whose arguments include subjects, SANs and transaction
    IDs that requesters choose, is escaped (asn1.text), so a newline in an OU cannot forge a log
    line. A traceback keeps its own lines after it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_text(record.message)
        return super().formatMessage(record)


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Never log request URLs with their query: a GET PKIOperation carries the whole message.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step is noise


# The most of a webhook reply read: a verdict is a few bytes; past this the reply is refused.
WEBHOOK_MAX_REPLY = 64 * 1024


def _webhook_poster() -> WebhookPoster:
    """POST to the webhook: no redirects (a 3xx is not a 2xx, so it refuses), no proxies from
    the environment, the reply read in chunks up to WEBHOOK_MAX_REPLY, and `timeout` seconds for
    the whole exchange: each read of the body gets what is left of it."""
    client = httpx.Client(follow_redirects=False, trust_env=False)

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes | None]:
        deadline = time.monotonic() + timeout
        with client.stream("POST", url, content=body, headers=headers, timeout=httpx.Timeout(timeout)) as reply:
            # httpcore reads the read timeout from this dict before each read of the body.
            limits = reply.request.extensions.get("timeout")
            chunks, size = [], 0
            for chunk in reply.iter_raw():
                size += len(chunk)
                if size > WEBHOOK_MAX_REPLY:
                    return reply.status_code, None  # no verdict: the policy refuses
                chunks.append(chunk)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise httpx.ReadTimeout("webhook exchange over its timeout")
                if isinstance(limits, dict):
                    limits["read"] = left
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("webhook exchange over its timeout")
            return reply.status_code, b"".join(chunks)

    return post


def build_app(config: ServerConfig, *, clock: Callable[[], datetime.datetime] | None = None,
              random_bytes: Callable[[int], bytes] | None = None,
              webhook: WebhookPoster | None = None):
    """The ASGI app and its ScepService for `config`. `clock`, `random_bytes` and `webhook`
    replace the real ones (the in-process test harness pins time and randomness with them)."""
    store = open_store(config.database_url)
    for settings in config.profiles.values():
        ensure_profile_keys(config, settings)  # a profile added to the TOML file gets its CA here
    overrides: dict = {}
    if clock is not None:
        overrides["clock"] = clock
    if random_bytes is not None:
        overrides["random_bytes"] = random_bytes
    service = ScepService(load_profiles(config), store, webhook=webhook or _webhook_poster(), **overrides)

    def health_check() -> None:
        store.count_failures("health", datetime.datetime.now(datetime.UTC))

    return create_app(service, default_profile=config.default_profile, max_body=config.max_body_bytes,
                      health_check=health_check), service


def app_factory():
    config = load_config(Path(os.environ["PQSCEP_DATA"]))
    configure_logging(config.log_format)
    app, service = build_app(config)
    if config.prune_interval_minutes > 0:
        # Each worker process prunes (the deletes are idempotent); `run`'s own build_app, which
        # only prepares keys and schema, starts none.
        Housekeeper(service.store, config.profiles.values(), config.prune_interval_minutes * 60,
                    service.clock).start()
    return app


def run(data_dir: Path, *, host: str | None, port: int | None, workers: int) -> None:
    import uvicorn

    config = load_config(data_dir)
    configure_logging(config.log_format)
    # Create keys and migrate the database once, before workers start.
    build_app(config)
    os.environ["PQSCEP_DATA"] = str(Path(data_dir).resolve())
    uvicorn.run(
        "pqscep.http.server:app_factory",
        factory=True,
        host=host or config.host,
        port=port or config.port,
        workers=workers,
        access_log=False,
        log_config=None,
        server_header=False,
        # h11 refuses a request line over 16 KiB by default; a GET PKIOperation carries the
        # whole message in the URL (a post-quantum one is ~30 KiB in base64). The app itself
        # answers 414 past its own limit, which must therefore be the smaller one.
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD,
    )
