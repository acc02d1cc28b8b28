"""A profile's settings: one CA with its SCEP policy (challenge, approval, renewal, algorithms),
served at /scep/<name>. Plain data; loading from TOML is in `pqscep.settings`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from enum import StrEnum

from .authority import IssuancePolicy

__all__ = ["ChallengeSettings", "KemPopMode", "NamePolicy", "ProfileSettings", "RateLimit", "KEM_POP_MODES",
           "SAN_TYPES"]


# Proof of possession for ML-KEM keys (draft Section 7): challenge-response (7.2), the certificate
# encrypted to the new key (7.3), the RFC 9883 statement of a signer certificate this CA issued (7.4).
class KemPopMode(StrEnum):
    """How a profile has an ML-KEM key's possession proven. A member is its value as a string
    (`str` equality, formatting and JSON), which is the profile's kem_pop setting."""

    CHALLENGE = "challenge"
    ENCRYPTED_CERT = "encrypted-cert"
    STATEMENT = "statement"


KEM_POP_MODES: tuple[KemPopMode, ...] = tuple(KemPopMode)


@dataclass(frozen=True)
class ChallengeSettings:
    # A static password for every device of the profile (micromdm's `-challenge`); None = none.
    static_password: str | None = None
    # One-time passwords an operator generates (the NDES way); each works once, until it expires.
    one_time: bool = False
    one_time_ttl: datetime.timedelta = datetime.timedelta(hours=1)
    # An MDM's webhook that decides (POST JSON of the CSR's details, 2xx + {"allow": true}).
    webhook_url: str | None = None
    webhook_timeout: float = 5.0
    webhook_secret: str | None = None  # sent as an HMAC-SHA256 header so the MDM can trust us

    @property
    def required(self) -> bool:
        return bool(self.static_password or self.one_time or self.webhook_url)


# SubjectAltName types a name policy can allow, by the name the configuration uses.
SAN_TYPES = ("dns", "email", "ip", "uri", "upn", "other", "directory", "registered-id")


@dataclass(frozen=True)
class NamePolicy:
    """Which names a profile certifies (checked for every request, renewals included).

    `subject_attributes`: the RFC 4514 attribute names allowed in the subject (None: any);
    `subject_patterns`: (attribute, regular expression) pairs, every value of that attribute
    must match the whole expression; `san_types` the SubjectAltName types allowed;
    `san_patterns`: (type, expression) pairs for the values of a type (dns, email, ip, uri);
    `allow_wildcards`: a "*" in a DNS name or a subject value; `max_sans`: the most SANs."""

    subject_attributes: tuple[str, ...] | None = None
    subject_patterns: tuple[tuple[str, str], ...] = ()
    san_types: tuple[str, ...] = SAN_TYPES
    san_patterns: tuple[tuple[str, str], ...] = ()
    allow_wildcards: bool = False
    max_sans: int = 20


@dataclass(frozen=True)
class RateLimit:
    """Failed challenge attempts allowed per client address within `window`."""

    max_failures: int = 10
    window: datetime.timedelta = datetime.timedelta(minutes=15)


@dataclass(frozen=True)
class ProfileSettings:
    name: str
    ca_key_type: str = "rsa-2048"
    ca_subject: str = "CN=pqscep CA"
    ca_validity_days: int = 3650
    # Separate RA signing and encryption certificates (NDES arrangement) instead of the CA key.
    use_ra: bool = False
    issuance: IssuancePolicy = field(default_factory=IssuancePolicy)
    challenge: ChallengeSettings = field(default_factory=ChallengeSettings)
    manual_approval: bool = False
    # RenewalReq is accepted in the last `renewal_window_days` of a certificate's life (0: any time).
    renewal_window_days: int = 0
    allow_rekey: bool = True  # renewal with a new key
    # A renewal (a request signed by a valid certificate of this CA for its own names) may ask
    # for fewer subjectAltNames than the certificate has; never for others.
    renewal_san_subset: bool = False
    # Renewals issue without manual approval (the certificate they renew was approved once).
    renewals_pre_approved: bool = False
    names: NamePolicy = field(default_factory=NamePolicy)
    # Capabilities an operator may switch off (GetCACaps stops listing them, requests that use
    # them are refused): Triple DES envelopes, RenewalReq, SHA-1 message digests.
    des3: bool = True
    renewal: bool = True
    sha1: bool = True
    allow_legacy_algorithms: bool = False  # single DES and MD5 (logged when used)
    crl_validity: datetime.timedelta = datetime.timedelta(days=1)
    # Post-quantum update (draft Sections 3 and 5.1): an ML-KEM recipient certificate the CA issues
    # for request envelopes ("ml-kem-768" or "ml-kem-1024"), and AuthEnvelopedData (AES-GCM).
    kem_recipient_key_type: str | None = None
    aes_gcm: bool = False
    # PasswordRecipientInfo keyed by the static challenge (RFC 8894 section 3.1): off unless the
    # profile enables it (each one costs a PBKDF2 derivation and is a guess at the challenge).
    # `pwri_iterations`: the rounds the CA writes; `pwri_max_iterations`: the most it derives with
    # for a request (one derivation at 100,000 rounds of HMAC-SHA-256 costs ~15 ms of CPU).
    password_recipient: bool = False
    pwri_iterations: int = 100_000
    pwri_max_iterations: int = 100_000
    rate_limit: RateLimit = field(default_factory=RateLimit)
    max_message_size: int = 256 * 1024
    # ML-KEM certificates (draft Section 7): how possession of the key is proven; None = the
    # profile does not certify ML-KEM keys. The challenge's shared secret lives `kem_pop_ttl`.
    kem_pop: KemPopMode | None = None
    kem_pop_ttl: datetime.timedelta = datetime.timedelta(minutes=10)
