"""Operator commands: `pqscep init`, `pqscep serve`, `pqscep admin ...` (challenges, pending
requests, certificates and revocation, CRLs). All scriptable: no prompts, clear exit codes."""

from __future__ import annotations

import datetime
import json
import secrets
import sys
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..asn1.text import escape_text
from ..ca.transactions import TxState
from ..service.config import ConfigError, load_config

# The server stack (SQLAlchemy, Alembic, Starlette) is imported inside the commands that need
# it, so that client commands in the same executable start fast.

DATA_OPTION = click.option(
    "--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), envvar="PQSCEP_DATA",
    default=Path("pqscep-data"), show_default=True, help="Data directory (configuration, keys, database).",
)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _fail(message: str, code: int = 1):
    click.echo(f"pqscep: {message}", err=True)
    sys.exit(code)


def _config(data_dir: Path):
    try:
        return load_config(data_dir)
    except ConfigError as exc:
        _fail(str(exc))


def _store(config):
    from ..storage.db import open_store

    return open_store(config.database_url)


def _profile_name(config, profile: str | None) -> str:
    name = profile or config.default_profile
    if name not in config.profiles:
        _fail(f"no profile {name!r}; configured: {', '.join(sorted(config.profiles))}")
    return name


PROFILE_OPTION = click.option("--profile", "-p", help="Profile name (default: the configured default profile).")


@click.command()
@DATA_OPTION
@click.option("--challenge", help="Static challenge password of the default profile (random if omitted).")
@click.option("--port", type=int, default=8080, show_default=True)
def init(data_dir: Path, challenge: str | None, port: int) -> None:
    """Create configuration, CA keys and database in DATA."""
    from ..service.setup import init_data_dir

    try:
        config = init_data_dir(data_dir, challenge=challenge, port=port)
        store = _store(config)
        store.close()
    except ConfigError as exc:
        _fail(str(exc))
    for name in config.profiles:
        cert = x509.load_pem_x509_certificate((config.data_dir / "profiles" / name / "ca.pem").read_bytes())
        from cryptography.hazmat.primitives import hashes

        click.echo(f"profile {name}: CA {cert.subject.rfc4514_string()} "
                   f"sha256 {cert.fingerprint(hashes.SHA256()).hex()}")
    click.echo(f"initialised {config.data_dir}; start with: pqscep serve --data {data_dir}")


@click.command()
@DATA_OPTION
@click.option("--host", help="Listen address (default from the configuration: 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default from the configuration).")
@click.option("--workers", type=int, default=1, show_default=True, help="Server processes.")
def serve(data_dir: Path, host: str | None, port: int | None, workers: int) -> None:
    """Run the SCEP server (uvicorn)."""
    from ..http.server import run

    try:
        run(data_dir, host=host, port=port, workers=workers)
    except ConfigError as exc:
        _fail(str(exc))


@click.group()
def admin() -> None:
    """Operator tasks on a data directory."""


@admin.group()
def challenge() -> None:
    """One-time challenge passwords (NDES style)."""


@challenge.command("create")
@DATA_OPTION
@PROFILE_OPTION
@click.option("--count", type=click.IntRange(1, 10000), default=1, show_default=True)
@click.option("--ttl", "ttl_minutes", type=click.IntRange(1), help="Minutes until expiry (profile default).")
@click.option("--note", help="Free text stored with the challenge (e.g. the device).")
def challenge_create(
    data_dir: Path, profile: str | None, count: int, ttl_minutes: int | None, note: str | None
) -> None:
    """Print COUNT new single-use challenges, one a line. Only their SHA-256 is stored."""
    from ..ca.policy import challenge_digest

    config = _config(data_dir)
    name = _profile_name(config, profile)
    settings = config.profiles[name]
    if not settings.challenge.one_time:
        _fail(f"profile {name} does not accept one-time challenges (one_time_challenges = false)")
    ttl = datetime.timedelta(minutes=ttl_minutes) if ttl_minutes else settings.challenge.one_time_ttl
    store, now = _store(config), _now()
    for _ in range(count):
        password = secrets.token_urlsafe(16)  # 128 bits
        store.add_challenge(name, challenge_digest(password), now + ttl, now, note)
        click.echo(password)


@challenge.command("list")
@DATA_OPTION
@PROFILE_OPTION
@click.option("--all", "include_used", is_flag=True, help="Include used ones.")
def challenge_list(data_dir: Path, profile: str | None, include_used: bool) -> None:
    """List challenges (never their value: only digests are stored)."""
    config = _config(data_dir)
    name = _profile_name(config, profile)
    for record in _store(config).list_challenges(name, include_used=include_used):
        state = "used" if record.used_at else ("expired" if record.expires_at <= _now() else "open")
        click.echo(f"{record.id}\t{state}\texpires {record.expires_at:%Y-%m-%dT%H:%M:%SZ}\t"
                   f"{escape_text(record.note or '')}")


@admin.command("prune")
@DATA_OPTION
def prune_cmd(data_dir: Path) -> None:
    """Delete old failed attempts and expired challenges (what the server does every few minutes)."""
    from ..service.housekeeping import prune

    config = _config(data_dir)
    pruned = prune(_store(config), config.profiles.values(), _now())
    click.echo(f"pruned {pruned.failures} failed attempts, {pruned.challenges} one-time challenges, "
               f"{pruned.kem_challenges} KEM challenges")


@admin.group()
def pending() -> None:
    """Requests waiting for manual approval."""


@pending.command("list")
@DATA_OPTION
@PROFILE_OPTION
@click.option("--json", "as_json", is_flag=True)
def pending_list(data_dir: Path, profile: str | None, as_json: bool) -> None:
    config = _config(data_dir)
    name = _profile_name(config, profile)
    rows = _store(config).list_transactions(name, state=TxState.AWAITING_APPROVAL)
    if as_json:
        click.echo(json.dumps([{"transaction_id": r.transaction_id, "subject": r.subject,
                                "created_at": r.created_at.isoformat()} for r in rows]))
        return
    for r in rows:
        click.echo(f"{escape_text(r.transaction_id)}\t{escape_text(r.subject)}\t"
                   f"{r.created_at:%Y-%m-%dT%H:%M:%SZ}")


@pending.command("approve")
@DATA_OPTION
@PROFILE_OPTION
@click.argument("transaction_id")
def pending_approve(data_dir: Path, profile: str | None, transaction_id: str) -> None:
    """Approve; the certificate is issued when the device polls next."""
    config = _config(data_dir)
    name = _profile_name(config, profile)
    if not _store(config).approve(name, transaction_id, _now()):
        _fail(f"no pending request {transaction_id!r} in profile {name}")
    click.echo(f"approved {transaction_id}")


@pending.command("reject")
@DATA_OPTION
@PROFILE_OPTION
@click.argument("transaction_id")
@click.option("--reason", default="rejected by the operator", show_default=True)
def pending_reject(data_dir: Path, profile: str | None, transaction_id: str, reason: str) -> None:
    config = _config(data_dir)
    name = _profile_name(config, profile)
    if not _store(config).reject(name, transaction_id, reason, _now()):
        _fail(f"no pending request {transaction_id!r} in profile {name}")
    click.echo(f"rejected {transaction_id}")


def _serial(text: str) -> int:
    text = text.strip().lower().replace(":", "")
    try:
        return int(text, 16) if not text.isdigit() or text.startswith("0x") else int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a serial number (hex or decimal)") from None


@admin.group()
def certs() -> None:
    """Issued certificates and revocation."""


@certs.command("list")
@DATA_OPTION
@PROFILE_OPTION
@click.option("--subject")
@click.option("--limit", type=int, default=100, show_default=True)
def certs_list(data_dir: Path, profile: str | None, subject: str | None, limit: int) -> None:
    config = _config(data_dir)
    name = _profile_name(config, profile)
    for r in _store(config).find_certificates(name, subject=subject, limit=limit):
        click.echo(f"{r.serial:x}\t{r.status}\t{r.not_after:%Y-%m-%d}\t{escape_text(r.subject)}")


@certs.command("revoke")
@DATA_OPTION
@PROFILE_OPTION
@click.argument("serial")
@click.option("--reason", default="unspecified", show_default=True,
              type=click.Choice([f.value for f in x509.ReasonFlags if f.value not in ("removeFromCRL",)]))
def certs_revoke(data_dir: Path, profile: str | None, serial: str, reason: str) -> None:
    """Revoke by serial (hex, or decimal when only digits) and publish a new CRL."""
    config = _config(data_dir)
    name = _profile_name(config, profile)
    store = _store(config)
    number = _serial(serial)
    if not store.revoke_certificate(name, number, reason, _now()):
        _fail(f"no valid certificate with serial {number:x} in profile {name}")
    _sign_crl(config, store, name)
    click.echo(f"revoked {number:x}")


def _sign_crl(config, store, name: str):
    from ..service.scep import ScepService
    from ..service.setup import load_profiles

    service = ScepService(load_profiles(config), store)
    return service.current_crl(service.profiles[name], force=True)


@admin.command("crl")
@DATA_OPTION
@PROFILE_OPTION
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the CRL here (PEM).")
def crl(data_dir: Path, profile: str | None, out: Path | None) -> None:
    """Sign a fresh CRL now."""
    config = _config(data_dir)
    name = _profile_name(config, profile)
    result = _sign_crl(config, _store(config), name)
    pem = result.public_bytes(serialization.Encoding.PEM)
    if out:
        out.write_bytes(pem)
    else:
        click.echo(pem.decode(), nl=False)


@admin.command("rollover")
@DATA_OPTION
@PROFILE_OPTION
@click.option("--activate", is_flag=True, help="Make the prepared next CA the current one (the old one is kept).")
def rollover(data_dir: Path, profile: str | None, activate: bool) -> None:
    """CA rollover (RFC 8894 section 3.5.3): prepare the next CA and the recipient and RA
    certificates it issues, served by GetNextCACert, then --activate them once clients have
    fetched them; the old CA's certificates still renew. Restart `serve` after each step."""
    from cryptography.hazmat.primitives import hashes

    from ..service.setup import activate_rollover, prepare_rollover

    config = _config(data_dir)
    name = _profile_name(config, profile)
    settings = config.profiles[name]
    try:
        if activate:
            activate_rollover(config, settings)
            # The stored CRL was signed by the old key: GetCRL would serve it until it is due.
            _sign_crl(config, _store(config), name)
            click.echo(f"profile {name}: the next CA is now current (the old one is ca-previous.pem); "
                       "restart the server")
            return
        cert = prepare_rollover(config, settings)
    except ConfigError as exc:
        _fail(str(exc))
    click.echo(f"profile {name}: next CA prepared, sha256 {cert.fingerprint(hashes.SHA256()).hex()}; "
               "restart the server to serve it with GetNextCACert")


COMMANDS = [init, serve, admin]
