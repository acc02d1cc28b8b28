"""Server configuration: a TOML file in the data directory, with environment overrides.

    [server]                      env override
    host = "127.0.0.1"            PQSCEP_HOST
    port = 8080                   PQSCEP_PORT
    database = "sqlite:///pqscep.db"   PQSCEP_DATABASE_URL (relative SQLite paths: data dir)
    default_profile = "default"   PQSCEP_DEFAULT_PROFILE
    log_format = "plain"|"json"   PQSCEP_LOG_FORMAT
    ca_passphrase_file = "secrets/ca-passphrase"   PQSCEP_CA_PASSPHRASE (the passphrase itself)
    max_body_bytes = 262144
    prune_interval_minutes = 5    how often each worker prunes old failures and challenges (0: never;
                                  then run `pqscep admin prune` from cron)

    [profiles.NAME]               one table per profile; keys below
    ca_key_type, ca_subject, ca_validity_days, use_ra, validity_days, extended_key_usage,
    key_types (families certified), min_rsa_bits, copy_subject_alt_names, crl_url,
    challenge_file (static challenge, kept out of this file) | PQSCEP_CHALLENGE_<NAME>,
    one_time_challenges, one_time_ttl_minutes, webhook_url, webhook_timeout,
    webhook_secret_file, manual_approval, renewal_window_days, allow_rekey, renewal_san_subset
    (a renewal may drop subjectAltNames), renewals_pre_approved (renewals skip manual_approval),
    names (a table: subject_attributes, subject_patterns, san_types, san_patterns,
    allow_wildcards, max_sans; see docs/security.md), des3, renewal, sha1 (capabilities that can
    be switched off),
    allow_legacy_algorithms, crl_validity_hours, rate_limit_failures, rate_limit_window_minutes,
    kem_recipient (ml-kem-768 | ml-kem-1024: post-quantum request envelopes), aes_gcm,
    password_recipient (accept PasswordRecipientInfo envelopes keyed by the static challenge,
    default false), pwri_iterations (PBKDF2 rounds the CA writes), pwri_max_iterations (the most
    a request may ask the CA to derive with, default 100000; above it the PWRI is refused),
    kem_pop (challenge | encrypted-cert | statement: certify ML-KEM keys with
    that proof of possession; setting it adds ml-kem to key_types, and ml-kem in key_types
    without it means "challenge"), kem_pop_ttl_minutes (lifetime of a KEM challenge, default 10)

Secrets (CA passphrase, challenge, webhook secret) live in files of mode 0600 or in the
environment, never in the TOML file, so the configuration can be shown and versioned. A secret
file that group or others can read is refused ("run `chmod 600 FILE`").

webhook_url must be https:// unless its host is loopback (127.0.0.0/8, ::1, localhost);
webhook_timeout (seconds, default 5, at most 60) covers the whole exchange. Only a 2xx reply
whose body is a JSON object with "allow": true allows; anything else refuses.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..ca.authority import EKU_NAMES, IssuancePolicy
from ..ca.profile import (
    KEM_POP_MODES,
    SAN_TYPES,
    ChallengeSettings,
    KemPopMode,
    NamePolicy,
    ProfileSettings,
    RateLimit,
)
from ..crypto.keys import KEY_TYPES, KeyFamily

__all__ = ["ConfigError", "check_secret_mode", "ServerConfig", "load_config", "CONFIG_NAME"]

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
    prune_interval_minutes: float = 5.0
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


def check_secret_mode(path: Path) -> None:
    """Refuse a secret file (passphrase, challenge, webhook key, private key) that group or
    others may read or write: it would give the secret away, so the server does not start on it."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigError(f"secret file {path} is open to group or others (mode {mode & 0o777:o}): "
                          f"run `chmod 600 {path}`")


def _read_secret(data_dir: Path, value: str | None) -> str | None:
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        path = data_dir / path
    try:
        check_secret_mode(path)
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None


def _name_policy(profile: str, table: dict) -> NamePolicy:
    """[profiles.NAME.names]: subject_attributes, subject_patterns (a table attribute ->
    expression), san_types, san_patterns (type -> expression), allow_wildcards, max_sans."""
    where = f"profile {profile}: names"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(table) - {"subject_attributes", "subject_patterns", "san_types", "san_patterns",
                            "allow_wildcards", "max_sans"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")

    def patterns(key: str) -> tuple[tuple[str, str], ...]:
        value = table.get(key, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{where}.{key} must be a table of regular expressions")
        for field_name, expression in value.items():
            try:
                re.compile(expression)
            except (re.error, TypeError) as exc:
                raise ConfigError(f"{where}.{key}.{field_name}: not a regular expression ({exc})") from None
        return tuple(sorted(value.items()))

    san_types = tuple(table.get("san_types", SAN_TYPES))
    bad = [t for t in san_types if t not in SAN_TYPES]
    if bad:
        raise ConfigError(f"{where}.san_types: unknown {', '.join(bad)} (known: {', '.join(SAN_TYPES)})")
    san_patterns = patterns("san_patterns")
    bad = [t for t, _ in san_patterns if t not in ("dns", "email", "ip", "uri")]
    if bad:
        raise ConfigError(f"{where}.san_patterns: patterns apply to dns, email, ip and uri, not {', '.join(bad)}")
    attributes = table.get("subject_attributes")
    max_sans = int(table.get("max_sans", 20))
    if not 0 <= max_sans <= 1000:
        raise ConfigError(f"{where}.max_sans must be between 0 and 1000")
    return NamePolicy(
        subject_attributes=None if attributes is None else tuple(attributes),
        subject_patterns=patterns("subject_patterns"),
        san_types=san_types,
        san_patterns=san_patterns,
        allow_wildcards=bool(table.get("allow_wildcards", False)),
        max_sans=max_sans,
    )


def _webhook_url(name: str, value: object) -> str | None:
    """The webhook sees every challenge: plain http only to a loopback host (a local agent),
    https everywhere else, so the challenge and the verdict cannot be read or forged on the way."""
    if not value:
        return None
    url = str(value)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and _is_loopback(host):
        return url
    raise ConfigError(f"profile {name}: webhook_url {url!r} must be https:// (http:// only to a loopback host)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        "renewal_san_subset", "renewals_pre_approved", "names", "des3", "renewal", "sha1",
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
    webhook_timeout = float(table.get("webhook_timeout", 5.0))
    if not 0 < webhook_timeout <= 60:
        raise ConfigError(f"profile {name}: webhook_timeout must be more than 0 and at most 60 seconds")
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
            webhook_url=_webhook_url(name, table.get("webhook_url")),
            webhook_timeout=webhook_timeout,
            webhook_secret=_read_secret(data_dir, table.get("webhook_secret_file")),
        ),
        manual_approval=bool(table.get("manual_approval", False)),
        renewal_window_days=int(table.get("renewal_window_days", 0)),
        allow_rekey=bool(table.get("allow_rekey", True)),
        renewal_san_subset=bool(table.get("renewal_san_subset", False)),
        renewals_pre_approved=bool(table.get("renewals_pre_approved", False)),
        names=_name_policy(name, table.get("names", {})),
        des3=bool(table.get("des3", True)),
        renewal=bool(table.get("renewal", True)),
        sha1=bool(table.get("sha1", True)),
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
            prune_interval_minutes=float(server.get("prune_interval_minutes", 5)),
        )
        if not 0 <= config.prune_interval_minutes <= 24 * 60:
            raise ConfigError(f"{path}: prune_interval_minutes must be between 0 and 1440")
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
