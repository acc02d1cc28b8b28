"""Request policy as a chain of small checks (the micromdm/scep model): signer, KEM proof by
statement, rate limit, challenge, approval. Each check returns None to pass the request on, or
a `PolicyVerdict` that ends the chain: refuse (a signed FAILURE with failInfo and a one-line
reason) or hold (PENDING until an operator decides).

Every input a check reads is computed before the chain runs (`build_context`), so the checks
are independent of one another and of their order, except that the first verdict wins.
What a verdict does to the transaction is ca.transactions' decision.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..protocol.messages import FailInfo, MessageType
from ..protocol.requests import CertificationRequest
from .profile import KemPopMode, ProfileSettings
from .transactions import PolicyVerdict

log = logging.getLogger("pqscep.policy")

__all__ = [
    "Check",
    "Context",
    "PolicyStore",
    "SignerStanding",
    "WebhookPoster",
    "build_context",
    "challenge_digest",
    "check_kem_pop",
    "evaluate",
    "hold",
    "key_fingerprint",
    "refuse",
    "standard_checks",
]


def refuse(fail_info: FailInfo, text: str, *, failed_attempt: bool = False) -> PolicyVerdict:
    """End the chain: a signed FAILURE with `fail_info` and the one-line `text`."""
    return PolicyVerdict(refused=True, fail_info=fail_info, text=text, failed_attempt=failed_attempt)


def hold(text: str = "waiting for approval") -> PolicyVerdict:
    """End the chain: PENDING until an operator decides."""
    return PolicyVerdict(hold=True, text=text)


class WebhookPoster(Protocol):
    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]: ...


class IssuedCertificateView(Protocol):
    """What the policy reads of a certificate the store has (storage.CertificateRecord)."""

    @property
    def status(self) -> str: ...


class PolicyStore(Protocol):
    """The store operations the policy uses (storage.Store has them; this layer is below it)."""

    def get_certificate(self, profile: str, serial: int) -> IssuedCertificateView | None: ...
    def count_failures(self, key: str, since: datetime.datetime) -> int: ...
    def record_failure(self, key: str, now: datetime.datetime) -> None: ...
    def consume_challenge(self, profile: str, digest: bytes, now: datetime.datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class SignerStanding:
    """Who signed the request, as far as this CA knows: found before the chain runs, so that
    no check depends on another having run first."""

    issued_here: bool  # the signer certificate verifies as issued by this profile's CA
    record: IssuedCertificateView | None  # the store's record of it, when issued here and known


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a check may read. Checks never write into it."""

    profile: ProfileSettings
    request: CertificationRequest
    now: datetime.datetime
    client_address: str | None
    store: PolicyStore
    ca_certificate: x509.Certificate
    signer: SignerStanding
    webhook: WebhookPoster | None = None

    @property
    def csr(self) -> x509.CertificateSigningRequest:
        return self.request.csr.parsed


Check = Callable[[Context], PolicyVerdict | None]


def build_context(profile: ProfileSettings, request: CertificationRequest, *, now: datetime.datetime,
                  client_address: str | None, store: PolicyStore, ca_certificate: x509.Certificate,
                  webhook: WebhookPoster | None = None) -> Context:
    """The chain's inputs, computed once: the signer's standing needs a signature check and,
    for a certificate of this CA, a lookup in the store."""
    signer = request.signer_certificate
    issued_here = _issued_by_us(signer, ca_certificate)
    record = store.get_certificate(profile.name, signer.serial_number) if issued_here else None
    return Context(profile, request, now, client_address, store, ca_certificate, SignerStanding(issued_here, record),
                   webhook)


def evaluate(checks: list[Check], ctx: Context) -> PolicyVerdict:
    """Run the chain: the first check that has a verdict ends it; if none has, the request passes.
    A refusal that counts as a failed attempt is recorded for the rate limit."""
    for check in checks:
        verdict = check(ctx)
        if verdict is None:
            continue
        if verdict.refused and verdict.failed_attempt:
            record_failed_attempt(ctx)
        return verdict
    return PolicyVerdict.passed()


def key_fingerprint(public_key) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo: how the store names a key."""
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def challenge_digest(password: str) -> bytes:
    """One-time challenges are stored as SHA-256 digests: they are 128-bit random strings, so
    a fast hash is enough and a database leak does not reveal a usable password."""
    return hashlib.sha256(password.encode("utf-8")).digest()


def _issued_by_us(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    # verify_directly_issued_by compares the issuer with the CA's subject first (ValueError
    # when they differ, as for every transient self-signed signer), without building the two
    # names as Python objects the way `cert.issuer != ca.subject` does.
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, Exception):  # InvalidSignature and unsupported key types
        return False


def check_signer(ctx: Context) -> PolicyVerdict | None:
    """RFC 8894 section 3.3.1: PKCSReq is signed by the requester's self-signed certificate for
    the CSR's key (or a certificate this CA issued); RenewalReq by the current certificate."""
    request, signer, standing = ctx.request, ctx.request.signer_certificate, ctx.signer
    if standing.issued_here:
        if standing.record is None:
            return refuse(FailInfo.BAD_CERT_ID, "the signer certificate is not known to this CA")
        if standing.record.status == "revoked":
            return refuse(FailInfo.BAD_CERT_ID, "the signer certificate is revoked")
        if not signer.not_valid_before_utc <= ctx.now <= signer.not_valid_after_utc:
            return refuse(FailInfo.BAD_TIME, "the signer certificate is not valid now")
    if request.is_renewal:
        if not standing.issued_here:
            return refuse(FailInfo.BAD_REQUEST, "RenewalReq must be signed by a certificate this CA issued")
        window = ctx.profile.renewal_window_days
        if window and signer.not_valid_after_utc - ctx.now > datetime.timedelta(days=window):
            return refuse(FailInfo.BAD_REQUEST, f"renewal is allowed only in the last {window} days of the certificate")
        if request.csr.subject != signer.subject:
            return refuse(FailInfo.BAD_REQUEST, "a renewal must keep the certificate's subject")
        if not ctx.profile.allow_rekey and request.csr.public_key != request.signer_public_key:
            return refuse(FailInfo.BAD_REQUEST, "this profile does not allow re-key on renewal")
        return None
    if request.csr.kem_statement is not None:
        # An ML-KEM key cannot sign: the CSR was checked to be signed by this signer and to name
        # it in its RFC 9883 statement (protocol.server); the proof of possession is check_kem_pop's
        # (statement) or the service's (challenge, encrypted certificate).
        return None
    # Public keys compare by value (cryptography's __eq__, for every key type it loads).
    if not standing.issued_here and request.csr.public_key != request.signer_public_key:
        return refuse(FailInfo.BAD_REQUEST, "the CSR's key is not the key that signed the message")
    return None


def _known_signer(ctx: Context) -> bool:
    """The signer is a valid, unrevoked certificate of this CA (check_signer refused the rest)."""
    return ctx.signer.record is not None


def check_kem_pop(ctx: Context) -> PolicyVerdict | None:
    """Draft Section 7.4: in statement mode the RFC 9883 statement alone is the proof, so the
    certificate it names (the pkiMessage signer) must be one this CA issued and that is valid and
    not revoked now (check_signer, which runs first, refused the others)."""
    if ctx.request.csr.kem_statement is None or ctx.profile.kem_pop != KemPopMode.STATEMENT:
        return None
    if not _known_signer(ctx):
        return refuse(FailInfo.BAD_REQUEST, "statement proof of possession: the signer certificate must be "
                      "one this CA issued")
    return None


def check_rate_limit(ctx: Context) -> PolicyVerdict | None:
    limit = ctx.profile.rate_limit
    if not ctx.client_address or limit.max_failures <= 0:
        return None
    failures = ctx.store.count_failures(_rate_key(ctx), ctx.now - limit.window)
    if failures >= limit.max_failures:
        return refuse(FailInfo.BAD_REQUEST, "too many failed attempts from this address; retry later")
    return None


def _rate_key(ctx: Context) -> str:
    return rate_key(ctx.profile.name, ctx.client_address)


def rate_key(profile: str, client_address: str | None) -> str:
    """The failed-attempt counter of one client address on one profile."""
    return f"challenge:{profile}:{client_address}"


def over_rate_limit(store: PolicyStore, profile: ProfileSettings, client_address: str | None,
                    now: datetime.datetime) -> bool:
    """Whether the address has used up its failed attempts on the profile (check_rate_limit's test)."""
    limit = profile.rate_limit
    if not client_address or limit.max_failures <= 0:
        return False
    return store.count_failures(rate_key(profile.name, client_address), now - limit.window) >= limit.max_failures


def record_failed_attempt(ctx: Context) -> None:
    record_failure_for(ctx.store, ctx.profile.name, ctx.client_address, ctx.now)


def record_failure_for(store: PolicyStore, profile: str, client_address: str | None, now: datetime.datetime) -> None:
    """Count one failed attempt (a wrong challenge, an envelope that did not decrypt)."""
    if client_address:
        store.record_failure(rate_key(profile, client_address), now)


def check_challenge(ctx: Context) -> PolicyVerdict | None:
    """PKCSReq needs the profile's challenge password (RFC 8894 section 2.3); a renewal signed
    by a certificate of this CA, or a request the CA already knows, does not."""
    settings = ctx.profile.challenge
    if ctx.request.message_type != MessageType.PKCS_REQ or not settings.required or _known_signer(ctx):
        return None
    password = ctx.request.csr.challenge_password
    if not password:
        return refuse(FailInfo.BAD_REQUEST, "challenge password required", failed_attempt=True)
    if settings.static_password and hmac.compare_digest(
        password.encode("utf-8"), settings.static_password.encode("utf-8")
    ):
        return None
    if settings.one_time and ctx.store.consume_challenge(ctx.profile.name, challenge_digest(password), ctx.now):
        return None
    if settings.webhook_url:
        return _ask_webhook(ctx, password)
    return refuse(FailInfo.BAD_REQUEST, "wrong, expired or already used challenge password",
                          failed_attempt=True)


def _ask_webhook(ctx: Context, password: str) -> PolicyVerdict | None:
    settings = ctx.profile.challenge
    assert settings.webhook_url is not None
    csr = ctx.csr
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        san_list = [str(getattr(n, "value", n)) for n in sans]
    except (x509.ExtensionNotFound, ValueError):
        san_list = []
    payload = {
        "profile": ctx.profile.name,
        "transaction_id": ctx.request.transaction_id,
        "message_type": ctx.request.message_type,
        "subject": ctx.request.csr.subject_text,
        "subject_alt_names": san_list,
        "challenge": password,
        "client_address": ctx.client_address,
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    }
    body = json.dumps(payload, sort_keys=True).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if settings.webhook_secret:
        mac = hmac.new(settings.webhook_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        headers["X-Pqscep-Signature"] = f"sha256={mac}"
    if ctx.webhook is None:
        return refuse(FailInfo.BAD_REQUEST, "challenge webhook is not available")
    try:
        status, reply = ctx.webhook(settings.webhook_url, body, headers, settings.webhook_timeout)
    except Exception as exc:  # network errors: refuse, never let the device through
        log.warning("challenge webhook failed: %s", type(exc).__name__)
        return refuse(FailInfo.BAD_REQUEST, "the challenge could not be checked; retry later")
    allowed = False
    if 200 <= status < 300:
        try:
            allowed = json.loads(reply or b"{}").get("allow", True) is True
        except (ValueError, AttributeError):
            allowed = False
    if allowed:
        return None
    return refuse(FailInfo.BAD_REQUEST, "the challenge was refused", failed_attempt=True)


def check_approval(ctx: Context) -> PolicyVerdict | None:
    if ctx.profile.manual_approval and ctx.request.message_type == MessageType.PKCS_REQ:
        return hold()
    return None


def standard_checks() -> list[Check]:
    return [check_signer, check_kem_pop, check_rate_limit, check_challenge, check_approval]
