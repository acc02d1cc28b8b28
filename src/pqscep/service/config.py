"""Server configuration: a TOML file in the data directory, with environment overrides.

    [server]                      env override
    host = "127.0.0.1"            PQSCEP_HOST
    port = 8080                   PQSCEP_PORT
    database = "sqlite:///pqscep.db"   PQSCEP_DATABASE_URL (relative SQLite paths: data dir)
    default_profile = "default"   PQSCEP_DEFAULT_PROFILE
    log_format = "plain"|"json"   PQSCEP_LOG_FORMAT
    ca_passphrase_file = "secrets/ca-passphrase"   PQSCEP_CA_PASSPHRASE (the passphrase itself)
    max_body_bytes = 262144

    [profiles.NAME]               one table per profile; keys below
    ca_key_type, ca_subject, ca_validity_days, use_ra, validity_days, extended_key_usage,
    key_types (families certified), min_rsa_bits, copy_subject_alt_names, crl_url,
    challenge_file (static challenge, kept out of this file) | PQSCEP_CHALLENGE_<NAME>,
    one_time_challenges, one_time_ttl_minutes, webhook_url, webhook_timeout,
    webhook_secret_file, manual_approval, renewal_window_days, allow_rekey,
    allow_legacy_algorithms, crl_validity_hours, rate_limit_failures, rate_limit_window_minutes,
    kem_recipient (ml-kem-768 | ml-kem-1024: post-quantum request envelopes), aes_gcm,
    password_recipient (accept PasswordRecipientInfo envelopes keyed by the static challenge,
    default false), pwri_iterations (PBKDF2 rounds the CA writes), pwri_max_iterations (the most
    a request may ask the CA to derive with, default 100000; above it the PWRI is refused),
    kem_pop (challenge | encrypted-cert | statement: certify ML-KEM keys with
    that proof of possession; setting it adds ml-kem to key_types, and ml-kem in key_types
    without it means "challenge"), kem_pop_ttl_minutes (lifetime of a KEM challenge, default 10)

Secrets (CA passphrase, challenge, webhook secret) live in files of mode 0600 or in the
environment, never in the TOML file, so the configuration can be shown and versioned.
"""

from __future__ import annotations

import datetime
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..ca.authority import EKU_NAMES, IssuancePolicy
from ..ca.profile import KEM_POP_MODES, ChallengeSettings, KemPopMode, ProfileSettings, RateLimit
from ..crypto.keys import KEY_TYPES, KeyFamily

__all__ = ["ConfigError", "ServerConfig", "load_config", "CONFIG_NAME"]

CONFIG_NAME = "pqscep.toml"
_PROFILE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


class ConfigError(ValueError):
    """The configuration cannot be used (one line naming the file and key)."""


@dataclass
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    database: str = "sqlite:///pqscep.db"
    default_profile: str = "default"
    log_format: str = "plain"
    ca_passphrase: bytes | None = None
    max_body_bytes: int = 256 * 1024
    profiles: dict[str, ProfileSettings] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        """Relative SQLite paths are taken from the data directory."""
        prefix = "sqlite:///"
        if self.database.startswith(prefix) and not self.database.startswith("sqlite:////"):
            path = self.database[len(prefix):]
            if path and path != ":memory:" and not Path(path).is_absolute():
                return prefix + str((self.data_dir / path).resolve())
        return self.database


def _read_secret(data_dir: Path, value: str | None) -> str | None:
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        path = data_dir / path
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None


def _profile(name: str, table: dict, data_dir: Path) -> ProfileSettings:
    if not name or set(name) - _PROFILE_NAME_CHARS:
        raise ConfigError(f"profile name {name!r}: use lower-case letters, digits, - and _")
    known = {
        "ca_key_type", "ca_subject", "ca_validity_days", "use_ra", "validity_days", "extended_key_usage",
        "key_types", "min_rsa_bits", "copy_subject_alt_names", "crl_url", "challenge_file",
        "one_time_challenges", "one_time_ttl_minutes", "webhook_url", "webhook_timeout", "webhook_secret_file",
        "manual_approval", "renewal_window_days", "allow_rekey", "allow_legacy_algorithms",
        "crl_validity_hours", "rate_limit_failures", "rate_limit_window_minutes",
        "kem_recipient", "aes_gcm", "password_recipient", "pwri_iterations", "pwri_max_iterations",
        "kem_pop", "kem_pop_ttl_minutes",
    }
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"profile {name}: unknown key(s) {', '.join(sorted(unknown))}")
    key_type = table.get("ca_key_type", "rsa-2048")
    if key_type not in KEY_TYPES or not KEY_TYPES[key_type].can_sign:
        raise ConfigError(f"profile {name}: ca_key_type {key_type!r} is not a signing key type")
    kem_type = table.get("kem_recipient") or None
    if kem_type is not None and (kem_type not in KEY_TYPES or KEY_TYPES[kem_type].family != KeyFamily.ML_KEM):
        raise ConfigError(f"profile {name}: kem_recipient {kem_type!r} must be ml-kem-768 or ml-kem-1024")
    pwri_iterations = int(table.get("pwri_iterations", 100_000))
    if not 1000 <= pwri_iterations <= 10_000_000:
        raise ConfigError(f"profile {name}: pwri_iterations must be between 1000 and 10000000")
    pwri_max_iterations = int(table.get("pwri_max_iterations", max(100_000, pwri_iterations)))
    if not 1000 <= pwri_max_iterations <= 10_000_000:
        raise ConfigError(f"profile {name}: pwri_max_iterations must be between 1000 and 10000000")
    if pwri_iterations > pwri_max_iterations:
        raise ConfigError(f"profile {name}: pwri_iterations ({pwri_iterations}) is above pwri_max_iterations "
                          f"({pwri_max_iterations}): the CA would refuse its own count")
    password_recipient = table.get("password_recipient", False)
    if not isinstance(password_recipient, bool):
        raise ConfigError(f"profile {name}: password_recipient must be true or false")
    ekus = tuple(table.get("extended_key_usage", ["clientAuth"]))
    for eku in ekus:
        if eku not in EKU_NAMES:
            raise ConfigError(f"profile {name}: unknown extended_key_usage {eku!r}")
    families = tuple(table.get("key_types", [KeyFamily.RSA, KeyFamily.EC, KeyFamily.ML_DSA]))
    kem_pop_value = table.get("kem_pop") or None
    if kem_pop_value is not None and kem_pop_value not in KEM_POP_MODES:
        raise ConfigError(f"profile {name}: kem_pop {kem_pop_value!r} must be one of {', '.join(KEM_POP_MODES)}")
    kem_pop = KemPopMode(kem_pop_value) if kem_pop_value is not None else None
    if kem_pop is None and KeyFamily.ML_KEM in families:
        kem_pop = KemPopMode.CHALLENGE  # the RECOMMENDED default proof (draft Section 7.1)
    if kem_pop is not None and KeyFamily.ML_KEM not in families:
        families = (*families, KeyFamily.ML_KEM)
    kem_pop_ttl = float(table.get("kem_pop_ttl_minutes", 10))
    if not 0 < kem_pop_ttl <= 24 * 60:
        raise ConfigError(f"profile {name}: kem_pop_ttl_minutes must be more than 0 and at most 1440")
    static = os.environ.get(f"PQSCEP_CHALLENGE_{name.upper().replace('-', '_')}") or _read_secret(
        data_dir, table.get("challenge_file")
    )
    return ProfileSettings(
        name=name,
        ca_key_type=key_type,
        ca_subject=table.get("ca_subject", f"CN=pqscep {name} CA"),
        ca_validity_days=int(table.get("ca_validity_days", 3650)),
        use_ra=bool(table.get("use_ra", False)),
        issuance=IssuancePolicy(
            validity_days=int(table.get("validity_days", 365)),
            extended_key_usage=ekus,
            copy_subject_alt_names=bool(table.get("copy_subject_alt_names", True)),
            crl_distribution_url=table.get("crl_url") or None,
            allowed_key_families=families,
            min_rsa_bits=int(table.get("min_rsa_bits", 2048)),
        ),
        challenge=ChallengeSettings(
            static_password=static or None,
            one_time=bool(table.get("one_time_challenges", False)),
            one_time_ttl=datetime.timedelta(minutes=int(table.get("one_time_ttl_minutes", 60))),
            webhook_url=table.get("webhook_url") or None,
            webhook_timeout=float(table.get("webhook_timeout", 5.0)),
            webhook_secret=_read_secret(data_dir, table.get("webhook_secret_file")),
        ),
        manual_approval=bool(table.get("manual_approval", False)),
        renewal_window_days=int(table.get("renewal_window_days", 0)),
        allow_rekey=bool(table.get("allow_rekey", True)),
        allow_legacy_algorithms=bool(table.get("allow_legacy_algorithms", False)),
        crl_validity=datetime.timedelta(hours=int(table.get("crl_validity_hours", 24))),
        rate_limit=RateLimit(
            max_failures=int(table.get("rate_limit_failures", 10)),
            window=datetime.timedelta(minutes=int(table.get("rate_limit_window_minutes", 15))),
        ),
        kem_recipient_key_type=kem_type,
        aes_gcm=bool(table.get("aes_gcm", False)),
        password_recipient=password_recipient,
        pwri_iterations=pwri_iterations,
        pwri_max_iterations=pwri_max_iterations,
        kem_pop=kem_pop,
        kem_pop_ttl=datetime.timedelta(minutes=kem_pop_ttl),
    )


def load_config(data_dir: Path) -> ServerConfig:
    data_dir = Path(data_dir).resolve()
    path = data_dir / CONFIG_NAME
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run `pqscep init --data {data_dir}` first") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    server = raw.get("server", {})
    try:
        config = ServerConfig(
            data_dir=data_dir,
            host=os.environ.get("PQSCEP_HOST", server.get("host", "127.0.0.1")),
            port=int(os.environ.get("PQSCEP_PORT", server.get("port", 8080))),
            database=os.environ.get("PQSCEP_DATABASE_URL", server.get("database", "sqlite:///pqscep.db")),
            default_profile=os.environ.get("PQSCEP_DEFAULT_PROFILE", server.get("default_profile", "default")),
            log_format=os.environ.get("PQSCEP_LOG_FORMAT", server.get("log_format", "plain")),
            max_body_bytes=int(server.get("max_body_bytes", 256 * 1024)),
        )
        passphrase = os.environ.get("PQSCEP_CA_PASSPHRASE") or _read_secret(
            data_dir, server.get("ca_passphrase_file", "secrets/ca-passphrase")
        )
        config.ca_passphrase = passphrase.encode("utf-8") if passphrase else None
        for name, table in raw.get("profiles", {}).items():
            config.profiles[name] = _profile(name, table, data_dir)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{path}: {exc}") from None
    if config.default_profile not in config.profiles:
        raise ConfigError(f"{path}: default_profile {config.default_profile!r} is not a configured profile")
    if config.log_format not in ("plain", "json"):
        raise ConfigError(f"{path}: log_format must be plain or json")
    return config
