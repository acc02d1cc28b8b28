"""Data directory set-up and loading: `pqscep init` and what `pqscep serve` loads at start.

Layout of a data directory:
    pqscep.toml                     configuration (no secrets)
    pqscep.db                       SQLite database (default)
    secrets/ca-passphrase           encrypts every CA and RA key (0600)
    secrets/challenge-<profile>     static challenge password (0600), if any
    profiles/<name>/ca.pem, ca.key  CA certificate and encrypted PKCS#8 key (0600)
    profiles/<name>/ra-sign.*, ra-encrypt.*   RA certificates and keys, when used
    profiles/<name>/kem-recipient.*           the ML-KEM recipient certificate and key (PQ profile)
    profiles/<name>/next-ca.pem, next-ca.key  the next CA during a rollover (GetNextCACert),
    profiles/<name>/next-kem-recipient.*, next-ra-*.*   and the certificates it issued for SCEP
    profiles/<name>/ca-previous.pem, .key     after a rollover, the CA it replaced: its
                                              certificates still sign renewals
    profiles/<name>/old-<time>-<name>         retired files of earlier rollovers
"""

from __future__ import annotations

import base64
import datetime
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..ca.authority import Authority, create_ca_certificate, issue_ra_certificate, random_serial
from ..ca.profile import ProfileSettings
from ..cms import enveloped
from ..cms.kem import KemRecipient
from ..cms.password import PasswordRecipient
from ..crypto.keys import KeyFamily, generate_key, key_family, write_private_key
from ..crypto.pkcs8 import load_any_private_key
from ..protocol.server import Responder, ResponderKeys
from .config import CONFIG_NAME, ConfigError, ServerConfig, check_secret_mode, load_config
from .scep import Profile

__all__ = [
    "RolloverError",
    "activate_rollover",
    "ensure_profile_keys",
    "init_data_dir",
    "load_profiles",
    "prepare_rollover",
    "profile_dir",
    "write_secret",
]

DEFAULT_CONFIG = """\
# pqscep configuration. Secrets are not kept here: see secrets/ (mode 0600) or the environment.
[server]
host = "127.0.0.1"
port = {port}
database = "sqlite:///pqscep.db"
default_profile = "default"
log_format = "plain"
ca_passphrase_file = "secrets/ca-passphrase"

[profiles.default]
ca_key_type = "rsa-2048"
ca_subject = "CN=pqscep default CA,O=pqscep"
validity_days = 365
extended_key_usage = ["clientAuth"]
challenge_file = "secrets/challenge-default"
one_time_challenges = true
manual_approval = false
renewal_window_days = 0
allow_rekey = true
# Single DES and MD5, for old devices such as micromdm's scepclient 2.1.0. Logged when used.
allow_legacy_algorithms = false
# PasswordRecipientInfo envelopes keyed by the static challenge (RFC 8894 section 3.1), for a
# requester that can use neither the CA's RSA key nor ML-KEM. Each one is a guess at the
# challenge and a PBKDF2 derivation: off unless such requesters exist.
password_recipient = false

# The post-quantum profile (at /scep/pq): an ML-DSA-65 CA, an ML-KEM-768 recipient certificate
# it issues for request envelopes, AES-GCM. Classic clients use the default profile above and
# never see a certificate they cannot parse.
[profiles.pq]
ca_key_type = "ml-dsa-65"
ca_subject = "CN=pqscep post-quantum CA,O=pqscep"
kem_recipient = "ml-kem-768"
aes_gcm = true
# ML-KEM certificates (KEMPoP): the CA encapsulates to the requested key and issues after the
# requester's MAC proves it could decapsulate; "encrypted-cert" and "statement" are the others.
kem_pop = "challenge"
validity_days = 365
extended_key_usage = ["clientAuth"]
challenge_file = "secrets/challenge-default"
one_time_challenges = true
"""


def write_secret(path: Path, value: str) -> None:
    """Write a secret file with mode 0600 from its creation on."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    os.chmod(path, 0o600)


def _create_private_sqlite_file(url: str) -> None:
    """Create the SQLite file with mode 0600 before SQLite does (it copies the database file's
    mode to its -wal and -shm files), so challenge digests and requests are not world-readable."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and ":memory:" not in url:
        path = Path(url[len(prefix):])
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def profile_dir(config: ServerConfig, name: str) -> Path:
    return config.data_dir / "profiles" / name


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def init_data_dir(data_dir: Path, *, challenge: str | None = None, port: int = 8080,
                  config_text: str | None = None) -> ServerConfig:
    """Create configuration, secrets, CA keys and the database. Refuses to overwrite."""
    data_dir = Path(data_dir)
    if (data_dir / CONFIG_NAME).exists():
        raise ConfigError(f"{data_dir / CONFIG_NAME} exists: this data directory is already initialised")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    if not os.environ.get("PQSCEP_CA_PASSPHRASE"):
        write_secret(data_dir / "secrets" / "ca-passphrase", base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    write_secret(data_dir / "secrets" / "challenge-default", challenge or secrets.token_urlsafe(16))
    (data_dir / CONFIG_NAME).write_text(config_text or DEFAULT_CONFIG.format(port=port), encoding="utf-8")
    config = load_config(data_dir)
    _create_private_sqlite_file(config.database_url)
    for settings in config.profiles.values():
        ensure_profile_keys(config, settings)
    return config


def _parse_subject(text: str) -> x509.Name:
    try:
        return x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise ConfigError(f"bad subject {text!r}: {exc}") from None


def ensure_profile_keys(config: ServerConfig, settings: ProfileSettings) -> None:
    """Create the profile's CA (and RA) keys and certificates if they are not there yet."""
    if not config.ca_passphrase:
        raise ConfigError("no CA passphrase: set PQSCEP_CA_PASSPHRASE or create secrets/ca-passphrase")
    folder = profile_dir(config, settings.name)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.parent.chmod(0o700)
    now = _now()
    if not (folder / "ca.pem").exists():
        key = generate_key(settings.ca_key_type)
        cert = create_ca_certificate(
            key,
            _parse_subject(settings.ca_subject),
            now=now,
            days=settings.ca_validity_days,
            serial=random_serial(os.urandom),
            signs_scep_messages=not settings.use_ra,
        )
        write_private_key(folder / "ca.key", key, config.ca_passphrase)
        _write_cert(folder / "ca.pem", cert)
    ca_key, ca_cert = _load_pair(folder, "ca", config.ca_passphrase)
    _issue_companions(config, settings, folder, "", ca_key, ca_cert, now)


# The certificates a CA issues for its own SCEP service, each a <stem>.pem/.key pair.
COMPANIONS = ("kem-recipient", "ra-sign", "ra-encrypt")


def _issue_companions(config: ServerConfig, settings: ProfileSettings, folder: Path, prefix: str, ca_key: Any,
                      ca_cert: x509.Certificate, now: datetime.datetime) -> None:
    """Create the recipient and RA certificates (files `<prefix><stem>.*`) that `ca_cert` issues
    and that are missing: for the current CA (prefix "") or the next one ("next-")."""
    issue: dict[str, Any] = dict(now=now, days=min(settings.ca_validity_days, 2 * 365))
    if settings.kem_recipient_key_type and not (folder / f"{prefix}kem-recipient.pem").exists():
        # Draft Section 3: the CA's ML-KEM recipient certificate, keyEncipherment only (RFC 9935).
        kem_key = generate_key(settings.kem_recipient_key_type)
        subject = x509.Name.from_rfc4514_string(f"CN=pqscep {settings.name} ML-KEM recipient")
        cert = issue_ra_certificate(ca_key, ca_cert, kem_key.public_key(), subject, purpose="encrypt",
                                    serial=random_serial(os.urandom), **issue)
        write_private_key(folder / f"{prefix}kem-recipient.key", kem_key, config.ca_passphrase)
        _write_cert(folder / f"{prefix}kem-recipient.pem", cert)
    # An RSA encryption certificate for KeyTransRecipientInfo: with an RA, or when nothing else
    # could open a classic request envelope.
    ca_decrypts = key_family(ca_key) == KeyFamily.RSA
    needs_rsa_recipient = settings.use_ra or (not ca_decrypts and not settings.kem_recipient_key_type)
    purposes = (["sign"] if settings.use_ra else []) + (["encrypt"] if needs_rsa_recipient else [])
    for purpose in purposes:
        if (folder / f"{prefix}ra-{purpose}.pem").exists():
            continue
        ra_key = generate_key("rsa-2048")
        subject = x509.Name.from_rfc4514_string(f"CN=pqscep {settings.name} RA {purpose}")
        cert = issue_ra_certificate(ca_key, ca_cert, ra_key.public_key(), subject, purpose=purpose,
                                    serial=random_serial(os.urandom), **issue)
        write_private_key(folder / f"{prefix}ra-{purpose}.key", ra_key, config.ca_passphrase)
        _write_cert(folder / f"{prefix}ra-{purpose}.pem", cert)


class RolloverError(ConfigError):
    """A rollover step that cannot be done in this state (the message says what to do)."""


def prepare_rollover(config: ServerConfig, settings: ProfileSettings) -> x509.Certificate:
    """CA rollover: create the next CA (same subject, valid from now, so that the two overlap)
    and the recipient and RA certificates it issues, as next-*.pem/.key (keys encrypted, 0600).
    GetNextCACert (RFC 8894 section 4.7) serves them until `activate_rollover`."""
    folder = profile_dir(config, settings.name)
    if (folder / "next-ca.pem").exists():
        raise RolloverError(f"profile {settings.name} already has a prepared next CA ({folder / 'next-ca.pem'})")
    if not config.ca_passphrase:
        raise ConfigError("no CA passphrase: set PQSCEP_CA_PASSPHRASE or create secrets/ca-passphrase")
    _, current = _load_pair(folder, "ca", config.ca_passphrase)
    now = _now()
    key = generate_key(settings.ca_key_type)
    cert = create_ca_certificate(key, current.subject, now=now, days=settings.ca_validity_days,
                                 serial=random_serial(os.urandom), signs_scep_messages=not settings.use_ra)
    # The companions first, the CA last: next-ca.pem is what marks a rollover as prepared.
    write_private_key(folder / "next-ca.key", key, config.ca_passphrase)
    _issue_companions(config, settings, folder, "next-", key, cert, now)
    _write_cert(folder / "next-ca.pem", cert)
    return cert


def _issued_by(cert_path: Path, ca: x509.Certificate) -> bool:
    try:
        x509.load_pem_x509_certificate(cert_path.read_bytes()).verify_directly_issued_by(ca)
        return True
    except Exception:  # missing file, another issuer, a bad signature
        return False


def activate_rollover(config: ServerConfig, settings: ProfileSettings) -> None:
    """Make the prepared next CA current: next-ca.* becomes ca.*, the old ca.* becomes
    ca-previous.* (its certificates renew while they are valid), and the recipient and RA
    certificates of the next CA replace those of the old one, which are kept as
    old-<time>-<name>. Each file moves by an atomic rename, a next-* file is there until its
    move is done, and the CA moves last, so an interrupted activation is finished by running
    it again (the server is not running meanwhile: it loads the files at start)."""
    folder = profile_dir(config, settings.name)
    if not (folder / "next-ca.pem").exists():
        raise RolloverError(f"profile {settings.name} has no prepared next CA: run `pqscep admin rollover` first")
    next_cert = x509.load_pem_x509_certificate((folder / "next-ca.pem").read_bytes())
    stamp = _now().strftime("%Y%m%dT%H%M%SZ")
    moved = [stem for stem in COMPANIONS if _issued_by(folder / f"{stem}.pem", next_cert)]
    if not moved and (folder / "next-ca.key").exists():
        # A rollover prepared before the next CA issued its own companions gets them now.
        next_key, _ = _load_pair(folder, "next-ca", config.ca_passphrase)
        _issue_companions(config, settings, folder, "next-", next_key, next_cert, _now())
    for stem in COMPANIONS:
        if stem in moved:
            continue
        if not (folder / f"next-{stem}.pem").exists():
            # The next CA's settings do not use it: the old CA's one is retired, not kept in use.
            for suffix in ("key", "pem"):
                if (folder / f"{stem}.{suffix}").exists():
                    os.replace(folder / f"{stem}.{suffix}", folder / f"old-{stamp}-{stem}.{suffix}")
            continue
        for suffix in ("key", "pem"):
            if (folder / f"next-{stem}.{suffix}").exists():
                _keep(folder / f"{stem}.{suffix}", folder / f"old-{stamp}-{stem}.{suffix}")
                os.replace(folder / f"next-{stem}.{suffix}", folder / f"{stem}.{suffix}")
    for suffix in ("key", "pem"):
        if not (folder / f"next-ca.{suffix}").exists():
            continue
        previous, current = folder / f"ca-previous.{suffix}", folder / f"ca.{suffix}"
        if previous.exists() and not os.path.samefile(previous, current):
            os.replace(previous, folder / f"old-{stamp}-ca-previous.{suffix}")  # the CA before the previous one
        _keep(current, previous)
        os.replace(folder / f"next-ca.{suffix}", current)


def _keep(path: Path, copy: Path) -> None:
    """A second name for `path` (a hard link: the same bytes and mode, 0600 for a key)."""
    if path.exists() and not copy.exists():
        os.link(path, copy)


def _load_pair(folder: Path, stem: str, passphrase: bytes | None):
    try:
        cert = x509.load_pem_x509_certificate((folder / f"{stem}.pem").read_bytes())
        check_secret_mode(folder / f"{stem}.key")
        # Every RFC 9881/9935 ML-DSA/ML-KEM form (seed, both; checked), and all classic keys.
        key = load_any_private_key((folder / f"{stem}.key").read_bytes(), passphrase)
    except FileNotFoundError as exc:
        raise ConfigError(f"missing {exc.filename}: run `pqscep init` or restore the file") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load {folder / stem}.key: wrong passphrase or damaged file ({exc})") from None
    return key, cert


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"cannot load {path}: {exc}") from None


def load_profiles(config: ServerConfig) -> dict[str, Profile]:
    profiles = {}
    for name, settings in config.profiles.items():
        folder = profile_dir(config, name)
        ca_key, ca_cert = _load_pair(folder, "ca", config.ca_passphrase)
        signer_key, signer_cert = ca_key, ca_cert
        ra_certs: list[x509.Certificate] = []
        recipients: list = []
        if (folder / "ra-sign.pem").exists():
            signer_key, signer_cert = _load_pair(folder, "ra-sign", config.ca_passphrase)
            ra_certs.append(signer_cert)
        if (folder / "ra-encrypt.pem").exists():
            enc_key, enc_cert = _load_pair(folder, "ra-encrypt", config.ca_passphrase)
            ra_certs.append(enc_cert)
            recipients.append(enveloped.KeyTransRecipient(enc_cert, enc_key))
        if key_family(ca_key) == KeyFamily.RSA:
            # Also open envelopes addressed to the CA itself (clients that ignore RA certificates).
            recipients.append(enveloped.KeyTransRecipient(ca_cert, ca_key))
        kem_certs: list[x509.Certificate] = []
        if (folder / "kem-recipient.pem").exists():
            kem_key, kem_cert = _load_pair(folder, "kem-recipient", config.ca_passphrase)
            kem_certs.append(kem_cert)
            recipients.append(KemRecipient(kem_key, certificate=kem_cert))
        if settings.password_recipient and settings.challenge.static_password:
            # RFC 8894 section 3.1: a PasswordRecipientInfo keyed by the challenge password, only
            # where the profile enables it (every PWRI is a PBKDF2 derivation and a guess).
            recipients.append(PasswordRecipient(settings.challenge.static_password.encode("utf-8"),
                                                max_iterations=settings.pwri_max_iterations))
        next_ca = []
        if (folder / "next-ca.pem").exists():
            # RFC 8894 section 4.7.1: the new CA certificate and the new RA certificates (here
            # also the new ML-KEM recipient certificate, draft Section 3), all issued by it.
            next_ca = [_read_cert(folder / f"next-{stem}.pem") for stem in COMPANIONS
                       if (folder / f"next-{stem}.pem").exists()]
            next_ca.append(_read_cert(folder / "next-ca.pem"))
        previous = folder / "ca-previous.pem"
        responder = Responder(
            ResponderKeys(
                signer_certificate=signer_cert,
                signer_key=signer_key,
                recipients=recipients,
                extra_certificates=[ca_cert] if signer_cert is not ca_cert else [],
            ),
            allow_legacy=settings.allow_legacy_algorithms,
            max_message_size=min(settings.max_message_size, config.max_body_bytes),
            accept_aes_gcm=settings.aes_gcm,
        )
        profiles[name] = Profile(
            settings=settings,
            authority=Authority(ca_cert, ca_key, settings.issuance),
            responder=responder,
            ra_certificates=ra_certs + kem_certs,
            next_ca_certificates=next_ca,
            previous_ca_certificate=_read_cert(previous) if previous.exists() else None,
        )
    return profiles
