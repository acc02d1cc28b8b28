"""Request policy as a chain of small checks (the micromdm/scep model): signer, rate limit,
challenge, approval. Each check returns None to pass the request on, or a `Verdict` that ends
the chain: refuse (a signed FAILURE with failInfo and a one-line reason) or wait (PENDING).
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
from ..protocol.server import PkiRequest
from .profile import ProfileSettings

log = logging.getLogger("pqscep.policy")

__all__ = [
    "Context",
    "Verdict",
    "challenge_digest",
    "check_kem_pop",
    "key_fingerprint",
    "standard_checks",
    "WebhookPoster",
]


@dataclass(frozen=True)
class Verdict:
    pending: bool = False
    fail_info: FailInfo = FailInfo.BAD_REQUEST
    text: str = ""
    count_as_failed_attempt: bool = False

    @classmethod
    def refuse(cls, fail_info: FailInfo, text: str, *, failed_attempt: bool = False) -> Verdict:
        return cls(False, fail_info, text, failed_attempt)

    @classmethod
    def wait(cls, text: str = "waiting for approval") -> Verdict:
        return cls(True, FailInfo.BAD_REQUEST, text)


class WebhookPoster(Protocol):
    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]: ...


@dataclass
class Context:
    profile: ProfileSettings
    request: PkiRequest
    now: datetime.datetime
    client_address: str | None
    store: object  # pqscep.storage.Store (duck-typed: this layer sits below storage)
    ca_certificate: x509.Certificate
    webhook: WebhookPoster | None = None
    issued_signer: object | None = None  # the CertificateRecord when the signer is one of ours

    @property
    def csr(self) -> x509.CertificateSigningRequest:
        assert self.request.csr is not None
        return self.request.csr


Check = Callable[[Context], Verdict | None]


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


def check_signer(ctx: Context) -> Verdict | None:
    """RFC 8894 section 3.3.1: PKCSReq is signed by the requester's self-signed certificate for
    the CSR's key (or a certificate this CA issued); RenewalReq by the current certificate."""
    request, signer = ctx.request, ctx.request.signer_certificate
    assert signer is not None
    ours = _issued_by_us(signer, ctx.ca_certificate)
    if ours:
        serial_record = ctx.store.get_certificate(ctx.profile.name, signer.serial_number)  # type: ignore[attr-defined]
        if serial_record is None:
            return Verdict.refuse(FailInfo.BAD_CERT_ID, "the signer certificate is not known to this CA")
        if serial_record.status == "revoked":
            return Verdict.refuse(FailInfo.BAD_CERT_ID, "the signer certificate is revoked")
        if not signer.not_valid_before_utc <= ctx.now <= signer.not_valid_after_utc:
            return Verdict.refuse(FailInfo.BAD_TIME, "the signer certificate is not valid now")
        ctx.issued_signer = serial_record
    if request.message_type == MessageType.RENEWAL_REQ:
        if not ours:
            return Verdict.refuse(FailInfo.BAD_REQUEST, "RenewalReq must be signed by a certificate this CA issued")
        window = ctx.profile.renewal_window_days
        if window and signer.not_valid_after_utc - ctx.now > datetime.timedelta(days=window):
            return Verdict.refuse(
                FailInfo.BAD_REQUEST, f"renewal is allowed only in the last {window} days of the certificate"
            )
        if ctx.request.csr_subject != signer.subject:
            return Verdict.refuse(FailInfo.BAD_REQUEST, "a renewal must keep the certificate's subject")
        if not ctx.profile.allow_rekey and request.csr_public_key != request.signer_public_key:
            return Verdict.refuse(FailInfo.BAD_REQUEST, "this profile does not allow re-key on renewal")
        return None
    if request.kem_statement is not None:
        # An ML-KEM key cannot sign: the CSR was checked to be signed by this signer and to name
        # it in its RFC 9883 statement (protocol.server); the proof of possession is check_kem_pop's
        # (statement) or the service's (challenge, encrypted certificate).
        return None
    # Public keys compare by value (cryptography's __eq__, for every key type it loads).
    if not ours and request.csr_public_key != request.signer_public_key:
        return Verdict.refuse(FailInfo.BAD_REQUEST, "the CSR's key is not the key that signed the message")
    return None


def check_kem_pop(ctx: Context) -> Verdict | None:
    """Design section 5 c): in statement mode the RFC 9883 statement alone is the proof, so the
    certificate it names (the pkiMessage signer) must be one this CA issued and that is valid and
    not revoked now (check_signer, which runs first, found it: `issued_signer`)."""
    if ctx.request.kem_statement is None or ctx.profile.kem_pop != "statement":
        return None
    if ctx.issued_signer is None:
        return Verdict.refuse(FailInfo.BAD_REQUEST, "statement proof of possession: the signer certificate must be "
                              "one this CA issued")
    return None


def check_rate_limit(ctx: Context) -> Verdict | None:
    limit = ctx.profile.rate_limit
    if not ctx.client_address or limit.max_failures <= 0:
        return None
    failures = ctx.store.count_failures(_rate_key(ctx), ctx.now - limit.window)  # type: ignore[attr-defined]
    if failures >= limit.max_failures:
        return Verdict.refuse(FailInfo.BAD_REQUEST, "too many failed attempts from this address; retry later")
    return None


def _rate_key(ctx: Context) -> str:
    return f"challenge:{ctx.profile.name}:{ctx.client_address}"


def record_failed_attempt(ctx: Context) -> None:
    if ctx.client_address:
        ctx.store.record_failure(_rate_key(ctx), ctx.now)  # type: ignore[attr-defined]


def check_challenge(ctx: Context) -> Verdict | None:
    """PKCSReq needs the profile's challenge password (RFC 8894 section 2.3); a renewal signed
    by a certificate of this CA, or a request the CA already knows, does not."""
    settings = ctx.profile.challenge
    if ctx.request.message_type != MessageType.PKCS_REQ or not settings.required or ctx.issued_signer is not None:
        return None
    password = ctx.request.challenge_password
    if not password:
        return Verdict.refuse(FailInfo.BAD_REQUEST, "challenge password required", failed_attempt=True)
    if settings.static_password and hmac.compare_digest(
        password.encode("utf-8"), settings.static_password.encode("utf-8")
    ):
        return None
    if settings.one_time and ctx.store.consume_challenge(  # type: ignore[attr-defined]
        ctx.profile.name, challenge_digest(password), ctx.now
    ):
        return None
    if settings.webhook_url:
        return _ask_webhook(ctx, password)
    return Verdict.refuse(FailInfo.BAD_REQUEST, "wrong, expired or already used challenge password",
                          failed_attempt=True)


def _ask_webhook(ctx: Context, password: str) -> Verdict | None:
    settings = ctx.profile.challenge
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
        "subject": ctx.request.csr_subject_text,
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
        return Verdict.refuse(FailInfo.BAD_REQUEST, "challenge webhook is not available")
    try:
        status, reply = ctx.webhook(settings.webhook_url, body, headers, settings.webhook_timeout)  # type: ignore[arg-type]
    except Exception as exc:  # network errors: refuse, never let the device through
        log.warning("challenge webhook failed: %s", type(exc).__name__)
        return Verdict.refuse(FailInfo.BAD_REQUEST, "the challenge could not be checked; retry later")
    allowed = False
    if 200 <= status < 300:
        try:
            allowed = json.loads(reply or b"{}").get("allow", True) is True
        except (ValueError, AttributeError):
            allowed = False
    if allowed:
        return None
    return Verdict.refuse(FailInfo.BAD_REQUEST, "the challenge was refused", failed_attempt=True)


def check_approval(ctx: Context) -> Verdict | None:
    if ctx.profile.manual_approval and ctx.request.message_type == MessageType.PKCS_REQ:
        return Verdict.wait()
    return None


def standard_checks() -> list[Check]:
    return [check_signer, check_kem_pop, check_rate_limit, check_challenge, check_approval]
