"""Request policy as a chain of small checks (the micromdm/scep model): signer, KEM proof by
statement, rate limit, renewal, challenge, webhook, approval. Each check returns None to pass
the request on, or a `PolicyVerdict` that ends the chain: refuse (a signed FAILURE with
failInfo and a one-line reason) or hold (PENDING until an operator decides).

Who may obtain what (docs/security.md): a request signed by a valid, unrevoked certificate of
this CA for that certificate's own subject and subjectAltNames is a renewal and needs no
challenge; every other request, whoever signed it, needs the profile's challenge. Renewals
still go to the webhook and to manual approval (unless the profile pre-approves them).

Every input a check reads is computed before the chain runs (`build_context`), so the checks
are independent of one another and of their order, except that the first verdict wins.
What a verdict does to the transaction is ca.transactions' decision.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..asn1 import oids
from ..protocol.messages import FailInfo
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
    "passing_with",
    "hold",
    "key_fingerprint",
    "rate_key",
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
    def __call__(self, url: str, body: bytes, headers: dict[str, str],
                 timeout: float) -> tuple[int, bytes | None]: ...


class IssuedCertificateView(Protocol):
    """What the policy reads of a certificate the store has (storage.CertificateRecord)."""

    @property
    def status(self) -> str: ...


class PolicyStore(Protocol):
    """The store operations the policy uses (storage.Store has them; this layer is below it)."""

    def get_certificate(self, profile: str, serial: int) -> IssuedCertificateView | None: ...
    def count_failures(self, key: str, since: datetime.datetime) -> int: ...
    def record_failure(self, key: str, now: datetime.datetime) -> None: ...
    def challenge_is_live(self, profile: str, digest: bytes, now: datetime.datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class SignerStanding:
    """Who signed the request, as far as this CA knows: found before the chain runs, so that
    no check depends on another having run first."""

    issued_here: bool  # the signer certificate verifies as issued by this profile's CA (or the previous one)
    record: IssuedCertificateView | None  # the store's record of it, when issued here and known
    valid_now: bool = False  # now is within the signer certificate's validity

    @property
    def in_good_standing(self) -> bool:
        """Issued here, known to the store, not revoked and not expired."""
        return self.issued_here and self.record is not None and self.record.status != "revoked" and self.valid_now


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
    # The request renews the signer certificate: the signer is in good standing and the CSR
    # asks for exactly its subject and subjectAltNames (or fewer SANs where the profile allows).
    renewal: bool = False

    @property
    def csr(self) -> x509.CertificateSigningRequest:
        return self.request.csr.parsed


Check = Callable[[Context], PolicyVerdict | None]


def build_context(profile: ProfileSettings, request: CertificationRequest, *, now: datetime.datetime,
                  client_address: str | None, store: PolicyStore, ca_certificates: tuple[x509.Certificate, ...],
                  webhook: WebhookPoster | None = None) -> Context:
    """The chain's inputs, computed once: the signer's standing needs a signature check and,
    for a certificate of this CA, a lookup in the store. `ca_certificates` is the current CA
    first, then the one it replaced while their overlap lasts (a CA rollover, RFC 8894 4.7): both
    issue into the profile's one serial space, so the store finds either's certificates."""
    signer = request.signer_certificate
    issued_here = any(_issued_by_us(signer, ca) for ca in ca_certificates)
    record = store.get_certificate(profile.name, signer.serial_number) if issued_here else None
    standing = SignerStanding(issued_here, record,
                              signer.not_valid_before_utc <= now <= signer.not_valid_after_utc)
    renewal = standing.in_good_standing and _same_names(request, signer, subset=profile.renewal_san_subset)
    return Context(profile, request, now, client_address, store, ca_certificates[0], standing, webhook, renewal)


def _subject_alt_names(extensions: x509.Extensions) -> frozenset[x509.GeneralName] | None:
    """The SubjectAltName entries, or None when they do not parse."""
    try:
        return frozenset(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return frozenset()
    except ValueError:
        return None


def _same_names(request: CertificationRequest, signer: x509.Certificate, *, subset: bool) -> bool:
    """The CSR asks for the signer certificate's own names: the same subject and the same
    subjectAltNames (a subset of them when `subset`). Names compare by value (x509.Name and
    GeneralName equality), so a re-encoded but equal name still matches."""
    if request.csr.subject != signer.subject:
        return False
    try:
        wanted = _subject_alt_names(request.csr.parsed.extensions)
        held = _subject_alt_names(signer.extensions)
    except ValueError:
        return False
    if wanted is None or held is None:
        return False
    return wanted <= held if subset else wanted == held


def evaluate(checks: list[Check], ctx: Context) -> PolicyVerdict:
    """Run the chain: the first check that has a verdict ends it; if none has, the request passes.
    A refusal that counts as a failed attempt is recorded for the rate limit. A check may pass
    the request on with a one-time challenge to spend (`passing_with`): the final verdict
    carries it, and the challenge is spent with the outcome, in one database transaction."""
    spend: bytes | None = None
    for check in checks:
        verdict = check(ctx)
        if verdict is None:
            continue
        if not (verdict.refused or verdict.hold):
            spend = verdict.spend_challenge or spend
            continue
        if verdict.refused and verdict.failed_attempt:
            record_failed_attempt(ctx)
        if verdict.hold and spend is not None:
            return dataclasses.replace(verdict, spend_challenge=spend)
        return verdict
    return PolicyVerdict(spend_challenge=spend)


def passing_with(spend_challenge: bytes) -> PolicyVerdict:
    """Pass the request on; the one-time challenge with this digest is spent if it issues or
    pends (ScepService writes it with the outcome)."""
    return PolicyVerdict(spend_challenge=spend_challenge)


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
    """RFC 8894 section 3.3.1: a PKCSReq is signed by a transient self-signed certificate (or a
    certificate of this CA, as Cisco IOS renews); a RenewalReq by the certificate it renews.
    A certificate of this CA signs only while it is known, unrevoked and valid.

    The signer's key need not be the CSR's (RFC 8894 section 2.3 makes that a SHOULD): clients
    sign the request of an ML-DSA key with a transient RSA certificate, whose key opens the
    reply. The CSR's own signature proves possession of its key (protocol.server checks it);
    the signer obtains only the certificate, which is public (docs/security.md)."""
    request, standing = ctx.request, ctx.signer
    if standing.issued_here:
        if standing.record is None:
            return refuse(FailInfo.BAD_CERT_ID, "the signer certificate is not known to this CA")
        if standing.record.status == "revoked":
            return refuse(FailInfo.BAD_CERT_ID, "the signer certificate is revoked")
        if not standing.valid_now:
            return refuse(FailInfo.BAD_TIME, "the signer certificate is not valid now")
    if request.is_renewal and not standing.issued_here:
        return refuse(FailInfo.BAD_REQUEST, "RenewalReq must be signed by a certificate this CA issued")
    return None




def _san_type(name: x509.GeneralName) -> str:
    """The configuration's name for a SubjectAltName entry's type (ca.profile.SAN_TYPES)."""
    if isinstance(name, x509.DNSName):
        return "dns"
    if isinstance(name, x509.RFC822Name):
        return "email"
    if isinstance(name, x509.IPAddress):
        return "ip"
    if isinstance(name, x509.UniformResourceIdentifier):
        return "uri"
    if isinstance(name, x509.OtherName):
        return "upn" if name.type_id == oids.MS_UPN else "other"
    if isinstance(name, x509.DirectoryName):
        return "directory"
    return "registered-id"


def check_names(ctx: Context) -> PolicyVerdict | None:
    """The profile's name policy (ca.profile.NamePolicy), for every request, renewals included:
    the policy may have been tightened since the certificate was issued."""
    names = ctx.profile.names
    for attribute in ctx.request.csr.subject:
        label = attribute.rfc4514_attribute_name
        value = attribute.value if isinstance(attribute.value, str) else ""
        if names.subject_attributes is not None and label not in names.subject_attributes:
            return refuse(FailInfo.BAD_REQUEST, f"this profile does not certify subjects with {label}")
        if not names.allow_wildcards and "*" in value:
            return refuse(FailInfo.BAD_REQUEST, "this profile does not certify wildcard names")
        for wanted, expression in names.subject_patterns:
            if wanted == label and not re.fullmatch(expression, value):
                return refuse(FailInfo.BAD_REQUEST, f"the subject's {label} is not one this profile certifies")
    try:
        sans = _subject_alt_names(ctx.csr.extensions)
    except ValueError:
        sans = None
    if sans is None:
        return refuse(FailInfo.BAD_REQUEST, "the request's subjectAltName does not parse")
    if len(sans) > names.max_sans:
        return refuse(FailInfo.BAD_REQUEST, f"this profile certifies at most {names.max_sans} subjectAltNames")
    for san in sans:
        kind = _san_type(san)
        if kind not in names.san_types:
            return refuse(FailInfo.BAD_REQUEST, f"this profile does not certify {kind} subjectAltNames")
        value = str(san.value) if kind in ("dns", "email", "ip", "uri") else ""
        if kind == "dns" and not names.allow_wildcards and "*" in value:
            return refuse(FailInfo.BAD_REQUEST, "this profile does not certify wildcard names")
        for wanted, expression in names.san_patterns:
            if wanted == kind and not re.fullmatch(expression, value):
                return refuse(FailInfo.BAD_REQUEST, f"the {kind} subjectAltName {value[:80]!r} is not one this "
                              "profile certifies")
    return None


def check_renewal(ctx: Context) -> PolicyVerdict | None:
    """The profile's renewal rules, for a request that renews its signer certificate: the
    renewal window and re-key. A RenewalReq that asks for other names is not a renewal: it
    needs the challenge and is judged as a new enrollment (check_challenge)."""
    if not ctx.renewal:
        return None
    request, signer = ctx.request, ctx.request.signer_certificate
    window = ctx.profile.renewal_window_days
    if window and signer.not_valid_after_utc - ctx.now > datetime.timedelta(days=window):
        return refuse(FailInfo.BAD_REQUEST, f"renewal is allowed only in the last {window} days of the certificate")
    if not ctx.profile.allow_rekey and request.csr.public_key != request.signer_public_key:
        return refuse(FailInfo.BAD_REQUEST, "this profile does not allow re-key on renewal")
    return None


def _known_signer(ctx: Context) -> bool:
    """The signer is a valid, unrevoked certificate of this CA."""
    return ctx.signer.in_good_standing


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
    """Every request that is not a renewal of its signer certificate needs the profile's
    challenge password (RFC 8894 section 2.3), whoever signed it. A one-time challenge is
    only looked up here; it is spent with the outcome (ScepService, one database transaction).
    Every way the password can be wrong gets one answer and counts once."""
    settings = ctx.profile.challenge
    if not settings.required or ctx.renewal:
        return None
    password = ctx.request.csr.challenge_password
    if not password:
        if ctx.signer.in_good_standing:
            return refuse(FailInfo.BAD_REQUEST, "a renewal keeps the certificate's subject and subjectAltNames; "
                          "other names need the challenge password", failed_attempt=True)
        return refuse(FailInfo.BAD_REQUEST, "challenge password required", failed_attempt=True)
    if settings.static_password and hmac.compare_digest(
        password.encode("utf-8"), settings.static_password.encode("utf-8")
    ):
        return None
    if settings.one_time:
        digest = challenge_digest(password)
        if ctx.store.challenge_is_live(ctx.profile.name, digest, ctx.now):
            return passing_with(digest)
    if settings.webhook_url:
        return _ask_webhook(ctx, password)
    return refuse(FailInfo.BAD_REQUEST, WRONG_CHALLENGE, failed_attempt=True)


# The answer to a wrong challenge, whoever judged it (the store, the static password or the
# webhook): one text and one failed attempt, so a requester cannot tell which check said no.
WRONG_CHALLENGE = "wrong, expired or already used challenge password"
_WEBHOOK_UNREACHABLE = "the challenge could not be checked; retry later"


def check_renewal_webhook(ctx: Context) -> PolicyVerdict | None:
    """Renewals go to the profile's webhook too (with no challenge): the MDM decides whether
    the device may still hold its certificate."""
    if ctx.renewal and ctx.profile.challenge.webhook_url:
        return _ask_webhook(ctx, None)
    return None


def _ask_webhook(ctx: Context, password: str | None) -> PolicyVerdict | None:
    """Ask the MDM's webhook (README "Configuration"). Fail closed: only a 2xx reply whose body
    is a JSON object with `"allow": true` passes. A `password` of None (a renewal) is sent as
    `"challenge": null`.

    A timeout or a network error refuses with its own text ("retry later") and counts as a
    failed attempt: whether the webhook answers does not depend on the challenge (no
    oracle), and counting bounds how many webhook calls one address can cause. Every reply that
    is not an allow (a "no", a 4xx, a body that is no verdict, a redirect) gets the wrong-challenge
    answer: the webhook may answer those differently for different challenges."""
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
        return refuse(FailInfo.BAD_REQUEST, _WEBHOOK_UNREACHABLE)
    try:
        status, reply = ctx.webhook(settings.webhook_url, body, headers, settings.webhook_timeout)
    except Exception as exc:  # network errors, timeouts, an oversized reply: never let the device through
        log.warning("profile %s: challenge webhook failed: %s", ctx.profile.name, type(exc).__name__)
        return refuse(FailInfo.BAD_REQUEST, _WEBHOOK_UNREACHABLE, failed_attempt=True)
    verdict = _webhook_verdict(status, reply)
    if verdict is True:
        return None
    if verdict is not False:
        log.warning("profile %s: challenge webhook reply is no verdict (HTTP %d: %s)", ctx.profile.name, status,
                    verdict)
    return refuse(FailInfo.BAD_REQUEST, WRONG_CHALLENGE, failed_attempt=True)


def _webhook_verdict(status: int, reply: bytes | None) -> bool | str:
    """True for a 2xx reply whose body is a JSON object with `"allow": true`; False for one with
    `"allow": false`; otherwise why the reply is no verdict (which refuses as well)."""
    if not 200 <= status < 300:
        return "not a 2xx reply"
    try:
        verdict = json.loads(reply or b"")
    except (ValueError, UnicodeDecodeError):
        return "the body is not JSON"
    if not isinstance(verdict, dict) or "allow" not in verdict:
        return "the body is not a JSON object with \"allow\""
    if verdict["allow"] is True:
        return True
    return False if verdict["allow"] is False else "\"allow\" is not a boolean"


def check_approval(ctx: Context) -> PolicyVerdict | None:
    """Manual approval holds every PKCSReq and RenewalReq, renewals included unless the profile
    pre-approves them."""
    if ctx.profile.manual_approval and not (ctx.renewal and ctx.profile.renewals_pre_approved):
        return hold()
    return None


def standard_checks() -> list[Check]:
    return [check_signer, check_kem_pop, check_rate_limit, check_names, check_renewal, check_challenge,
            check_renewal_webhook, check_approval]
