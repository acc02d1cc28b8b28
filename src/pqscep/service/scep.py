"""The SCEP service: four operations (GetCACaps, GetCACert, GetNextCACert, PKIOperation), as
micromdm/scep has them, over the sans-IO responder, the authority, the policy chain and a store.

Transport-free: the HTTP layer maps a request to one of these calls and writes the `Reply`.
The clock and the randomness are injected, so tests can pin time.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..asn1 import oids
from ..ca import policy
from ..ca.authority import Authority, IssuanceError, random_serial
from ..ca.profile import ProfileSettings
from ..cms import enveloped, signed
from ..cms.kem import KemOriginator, key_identifier
from ..cms.password import PasswordOriginator
from ..crypto.keys import key_family
from ..protocol import kempop
from ..protocol.messages import FailInfo, MessageType
from ..protocol.server import PartialRequest, PkiRequest, RequestRejected, Responder
from ..storage.errors import DuplicateSerial
from ..storage.repository import IssuedCertificate

log = logging.getLogger("pqscep.service")


__all__ = ["Profile", "Reply", "ScepService", "CONTENT_TYPES"]

CONTENT_TYPES = {
    "ca": "application/x-x509-ca-cert",
    "ca-ra": "application/x-x509-ca-ra-cert",
    "next-ca": "application/x-x509-next-ca-cert",
    "pki": "application/x-pki-message",
    "caps": "text/plain",
}


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    # For logs and metrics: what happened, never a secret.
    outcome: str = ""


@dataclass
class Profile:
    """A profile at run time: its settings, CA, responder and the certificates it publishes."""

    settings: ProfileSettings
    authority: Authority
    responder: Responder
    # GetCACert bundle besides the CA certificate: RA certificates, intermediates.
    ra_certificates: list[x509.Certificate] = field(default_factory=list)
    next_ca_certificates: list[x509.Certificate] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def kem_recipient(self) -> x509.Certificate | None:
        """The ML-KEM recipient certificate of GetCACert (design section 2), if any."""
        for cert in self.ra_certificates:
            if key_family(cert.public_key()) == "ml-kem":
                return cert
        return None

    def capabilities(self) -> list[str]:
        """GetCACaps keywords (RFC 8894 section 3.5.2 and design section 1), only those that
        are true here. SHA-224 and SHA-384 are listed too: they are supported, and strongSwan
        5.9.8 misreads the list so that its AES check looks for SHA-384."""
        caps = ["AES", "DES3", "POSTPKIOperation", "Renewal", "SHA-1", "SHA-224", "SHA-256", "SHA-384", "SHA-512",
                "SCEPStandard"]
        if self.next_ca_certificates:
            caps.append("GetNextCACert")
        if key_family(self.responder.keys.signer_key) == "ml-dsa":
            caps.append("ML-DSA")
        if self.kem_recipient is not None:
            caps.append("ML-KEM")
        if self.settings.aes_gcm:
            caps.append("AES-GCM")
        if self.settings.kem_pop:
            caps.append("KEMPoP")
        return caps




@functools.lru_cache(maxsize=4096)
def _signer_key_fingerprint(cert: x509.Certificate) -> bytes:
    """`policy.key_fingerprint` of a pkiMessage signer's key. A request needs it up to three
    times (transaction lookup, settle, the resume checks), and a device's retries and polls
    come with the same certificate; certificates hash and compare by their DER."""
    return policy.key_fingerprint(cert.public_key())


class ScepService:
    def __init__(
        self,
        profiles: dict[str, Profile],
        store,
        *,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        random_bytes: Callable[[int], bytes] = os.urandom,
        webhook: policy.WebhookPoster | None = None,
        checks: list[policy.Check] | None = None,
    ):
        self.profiles = profiles
        self.store = store
        self.clock = clock
        self.random_bytes = random_bytes
        self.webhook = webhook
        self.checks = checks if checks is not None else policy.standard_checks()

    # --- the four operations ---

    def get_ca_caps(self, profile: Profile) -> Reply:
        return Reply(200, CONTENT_TYPES["caps"], ("\n".join(profile.capabilities()) + "\n").encode(), "caps")

    def get_ca_cert(self, profile: Profile) -> Reply:
        ca = profile.authority.certificate
        if not profile.ra_certificates:
            return Reply(200, CONTENT_TYPES["ca"], signed.certificate_der(ca), "cacert")
        # RFC 8894 section 4.2.1.2: RA certificates and the CA certificate, certs-only.
        bundle = signed.build_certs_only([*profile.ra_certificates, ca])
        return Reply(200, CONTENT_TYPES["ca-ra"], bundle, "cacert")

    def get_next_ca_cert(self, profile: Profile) -> Reply:
        if not profile.next_ca_certificates:
            return Reply(404, "text/plain", b"no CA rollover is in progress for this profile\n", "no-next-ca")
        # RFC 8894 section 4.7: certs-only bundle of the new certificates, signed by the current CA.
        keys = profile.responder.keys
        content = signed.build_certs_only(profile.next_ca_certificates)
        body = signed.build_signed_data(
            content_type=oids.DATA,
            content=content,
            signer_key=keys.signer_key,
            signer_cert=keys.signer_certificate,
            digest=_sha256(),
            attributes=[],
            certificates=[keys.signer_certificate],
        )
        return Reply(200, CONTENT_TYPES["next-ca"], body, "nextcacert")

    def pki_operation(self, profile: Profile, body: bytes, client_address: str | None = None) -> Reply:
        now = self.clock()
        responder = profile.responder
        try:
            request = responder.receive(body)
        except RequestRejected as exc:
            return self._rejected(profile, exc, now)
        if request.cipher is not None and request.cipher.legacy:
            log.warning("profile %s: legacy cipher %s used by transaction %s", profile.name,
                        request.cipher.name, request.transaction_id)
        try:
            handler = {
                MessageType.PKCS_REQ: self._enroll,
                MessageType.RENEWAL_REQ: self._enroll,
                MessageType.CERT_POLL: self._poll,
                MessageType.GET_CERT: self._get_cert,
                MessageType.GET_CRL: self._get_crl,
            }[MessageType(request.message_type)]
            return handler(profile, request, now, client_address)
        except RequestRejected as exc:
            return self._rejected(profile, exc, now)

    # --- helpers ---

    def _rejected(self, profile: Profile, exc: RequestRejected, now) -> Reply:
        if exc.partial is None:
            return Reply(exc.http_status, "text/plain", (exc.text + "\n").encode(), f"http-{exc.http_status}")
        log.info("profile %s: FAILURE %s for %s: %s", profile.name, exc.fail_info.name,
                 exc.partial.transaction_id, exc.text)
        reply = profile.responder.failure(exc.partial, exc.fail_info, exc.text, now=now,
                                          random_bytes=self.random_bytes)
        return Reply(200, CONTENT_TYPES["pki"], reply, f"failure:{exc.fail_info.name}")

    def _failure(self, profile: Profile, request: PartialRequest, fail_info: FailInfo, text: str, now) -> Reply:
        return self._rejected(profile, RequestRejected(text, fail_info, partial=request), now)

    def _pending(self, profile: Profile, request: PkiRequest, now) -> Reply:
        reply = profile.responder.pending(request, now=now, random_bytes=self.random_bytes)
        return Reply(200, CONTENT_TYPES["pki"], reply, "pending")

    def _success(self, profile: Profile, request: PkiRequest, now, *, certificates=(), crls=(),
                 originator=None) -> Reply:
        originator = originator or self.reply_originator(profile, request)
        reply = profile.responder.success(request, certificates=list(certificates), crls=list(crls),
                                          originator=originator, now=now, random_bytes=self.random_bytes)
        return Reply(200, CONTENT_TYPES["pki"], reply, "success")

    def reply_originator(self, profile: Profile, request: PkiRequest):
        """Who the CertRep envelope is encrypted to (design section 4): the requested ML-KEM
        key; else the requester's responseKey; else the signer's RSA key (RFC 8894 3.3.2); else,
        for a request that came in a PasswordRecipientInfo, the same challenge password."""
        signer = request.signer_certificate
        assert signer is not None
        if request.csr is not None and key_family(request.csr_public_key) == "ml-kem":
            key = request.csr_public_key
            return KemOriginator(key, subject_key_identifier=key_identifier(key))
        if request.response_key is not None:
            key = request.response_key
            return KemOriginator(key, subject_key_identifier=key_identifier(key))
        if key_family(request.signer_public_key) == "rsa":
            return enveloped.KeyTransOriginator(signer)
        password = profile.settings.challenge.static_password
        if request.envelope_kind == "pwri" and password:
            return PasswordOriginator(password.encode("utf-8"), profile.settings.pwri_iterations)
        raise RequestRejected(
            "no way to encrypt the reply: the signer key cannot decrypt and no responseKey was sent",
            FailInfo.BAD_REQUEST,
            partial=request,
        )

    def _context(self, profile: Profile, request: PkiRequest, now, client_address) -> policy.Context:
        return policy.Context(
            profile=profile.settings,
            request=request,
            now=now,
            client_address=client_address,
            store=self.store,
            ca_certificate=profile.authority.certificate,
            webhook=self.webhook,
        )

    # --- PKCSReq / RenewalReq ---

    def _enroll(self, profile: Profile, request: PkiRequest, now, client_address) -> Reply:
        signer = request.signer_certificate
        assert signer is not None and request.csr is not None
        # Refuse what we could never issue before touching a one-time challenge.
        try:
            profile.authority.check_request(request.csr, subject=request.csr_subject,
                                            public_key=request.csr_public_key)
        except IssuanceError as exc:
            return self._failure(profile, request, FailInfo.BAD_REQUEST, str(exc), now)
        # The reply must be encryptable to the requester before anything is decided. Kept for
        # the reply: for an ML-KEM responseKey it costs a key identifier (SHA-1 of the key).
        originator = self.reply_originator(profile, request)
        fingerprint = _signer_key_fingerprint(signer)
        record = self.store.get_transaction(profile.name, request.transaction_id)
        expect_state = None  # a new transaction: inserted with its outcome, in one write
        if record is not None:
            if record.signer_key_fingerprint != fingerprint:
                return self._failure(profile, request, FailInfo.BAD_REQUEST,
                                     "transactionID already in use with another key", now)
            if record.csr_der == request.raw_csr:
                resumed = self._resume(profile, request, record, now)  # a retransmission
                if resumed is not None:
                    return resumed
            elif record.state not in ("issued", "rejected", "failed"):
                return self._failure(profile, request, FailInfo.BAD_REQUEST,
                                     "transactionID already in use for another request in progress", now)
            # Same key, finished transaction, new request: clients that derive the transactionID
            # from the key (micromdm, strongSwan) reuse it when they renew with the same key.
            expect_state = record.state
        return self._decide(profile, request, now, client_address, expect_state=expect_state, originator=originator)

    def _resume(self, profile: Profile, request: PkiRequest, record, now) -> Reply | None:
        """Answer from the transaction's state without deciding again (RFC 8894 section 3.3.1:
        a repeated request gets the same answer)."""
        if record.state == "issued":
            cert = self.store.get_certificate(profile.name, record.cert_serial)
            return self._success(profile, request, now, certificates=[x509.load_der_x509_certificate(cert.der)])
        if record.state == "pending":
            if self._kem_challenge_mode(profile, request) and not self._awaiting_approval(profile, request):
                return self._kem_pending(profile, request, record, now)
            return self._pending(profile, request, now)
        if record.state == "rejected":
            return self._failure(profile, request, FailInfo.BAD_REQUEST, record.fail_text or "request rejected", now)
        if record.state == "approved":
            if self._kem_challenge_mode(profile, request):
                # Approved by the operator: the KEM proof of possession is still owed.
                return self._kem_pending(profile, request, record, now, expect_state="approved")
            return self._issue(profile, request, now, expect_state="approved")
        return None  # received or failed: decide again

    def _settle(self, profile: Profile, request: PkiRequest, now, *, expect_state, new_state: str,
                certificate: IssuedCertificate | None = None) -> bool:
        signer = request.signer_certificate
        assert signer is not None and request.csr is not None
        return self.store.settle_transaction(
            profile.name,
            request.transaction_id,
            expect_state=expect_state,
            new_state=new_state,
            signer_key_fingerprint=_signer_key_fingerprint(signer),
            message_type=request.message_type,
            csr_der=request.raw_csr,
            signer_cert_der=signed.certificate_der(signer),
            # The issued certificate's subject is the CSR's (Authority.issue copies it).
            subject=certificate.subject if certificate is not None else request.csr_subject_text,
            certificate=certificate,
            now=now,
        )

    def _lost_race(self, profile: Profile, request: PkiRequest, now) -> Reply:
        """Another server process settled this transaction first: answer with its outcome."""
        record = self.store.get_transaction(profile.name, request.transaction_id)
        resumed = self._resume(profile, request, record, now) if record is not None else None
        return resumed or self._failure(profile, request, FailInfo.BAD_REQUEST, "transaction state changed", now)

    def _decide(self, profile: Profile, request: PkiRequest, now, client_address, *, expect_state,
                originator=None) -> Reply:
        ctx = self._context(profile, request, now, client_address)
        for check in self.checks:
            verdict = check(ctx)
            if verdict is None:
                continue
            if verdict.pending:
                if not self._settle(profile, request, now, expect_state=expect_state, new_state="pending"):
                    return self._lost_race(profile, request, now)
                log.info("profile %s: PENDING %s (%s)", profile.name, request.transaction_id, verdict.text)
                return self._pending(profile, request, now)
            if verdict.count_as_failed_attempt:
                policy.record_failed_attempt(ctx)
            # A refused request leaves no transaction behind: the device may fix it and retry.
            return self._failure(profile, request, verdict.fail_info, verdict.text, now)
        if self._kem_challenge_mode(profile, request):
            return self._kem_challenge(profile, request, now, expect_state=expect_state)
        return self._issue(profile, request, now, expect_state=expect_state, originator=originator)

    # --- proof of possession for ML-KEM keys (design section 5 a) ---

    @staticmethod
    def _kem_challenge_mode(profile: Profile, request: PkiRequest) -> bool:
        """The request is for an ML-KEM key at a profile that wants the challenge-response proof.
        (The other modes need nothing here: encrypted-cert issues at once and the reply goes to
        the new key, rule 1 of `reply_originator`; statement is `policy.check_kem_pop`.)"""
        if profile.settings.kem_pop != "challenge" or request.csr is None:
            return False
        try:
            return key_family(request.csr_public_key) == "ml-kem"
        except ValueError:
            return False

    def _kem_challenge(self, profile: Profile, request: PkiRequest, now, *, expect_state) -> Reply:
        """The request passed every check: keep it PENDING (one write) and challenge the key."""
        if not self._settle(profile, request, now, expect_state=expect_state, new_state="pending"):
            return self._lost_race(profile, request, now)
        log.info("profile %s: PENDING %s (KEM proof of possession)", profile.name, request.transaction_id)
        return self._send_kem_challenge(profile, request, now)

    def _send_kem_challenge(self, profile: Profile, request: PkiRequest, now) -> Reply:
        """Encapsulate to the CSR's key, keep the shared secret under the transactionID (in the
        database, so any server process of the profile can check the answer), and answer PENDING
        with the kemPopChallenge. The ciphertext is not kept, so a repeated request cannot get the
        same challenge again: it gets a fresh one, which replaces (and so kills) the earlier one."""
        assert request.csr is not None and request.signer_certificate is not None
        try:
            challenge, value = kempop.issue_challenge(request.csr_public_key)
        except kempop.PopError as exc:
            return self._failure(profile, request, exc.fail_info, exc.text, now)
        self.store.put_kem_challenge(
            profile.name,
            request.transaction_id,
            challenge.shared_secret,
            hashlib.sha256(request.raw_csr).digest(),
            _signer_key_fingerprint(request.signer_certificate),
            now + profile.settings.kem_pop_ttl,
            now,
        )
        reply = profile.responder.pending(request, now=now, random_bytes=self.random_bytes,
                                          attributes=[kempop.challenge_attribute(value)])
        return Reply(200, CONTENT_TYPES["pki"], reply, "pending:kem-challenge")

    def _awaiting_approval(self, profile: Profile, request: PkiRequest) -> bool:
        """A PENDING transaction of a manual-approval profile with no KEM challenge yet is waiting
        for the operator (check_approval came before the challenge); the proof comes after."""
        return profile.settings.manual_approval and not self.store.has_kem_challenge(profile.name,
                                                                                   request.transaction_id)

    def _kem_pending(self, profile: Profile, request: PkiRequest, record, now, *, expect_state="pending") -> Reply:
        """A CertPoll or repeated PKCSReq for a transaction waiting for its KEM proof (PENDING, or
        APPROVED by the operator of a manual-approval profile)."""
        if request.kem_pop_proof is None:
            return self._send_kem_challenge(profile, request, now)
        assert request.signer_certificate is not None
        # Spent by this read, whatever follows: the challenge dies after the first proof.
        taken = self.store.take_kem_challenge(profile.name, request.transaction_id, now)
        if taken is None:
            return self._failure(profile, request, FailInfo.BAD_REQUEST,
                                 "no KEM proof-of-possession challenge was issued for this transaction", now)
        if taken.outcome == "expired":
            return self._failure(profile, request, FailInfo.BAD_TIME,
                                 "the KEM proof-of-possession challenge has expired; send the request again", now)
        if taken.outcome != "ok":
            return self._failure(profile, request, FailInfo.BAD_REQUEST,
                                 "the KEM proof-of-possession challenge was already answered; send the request again",
                                 now)
        if not hmac.compare_digest(taken.signer_key_fingerprint,
                                   _signer_key_fingerprint(request.signer_certificate)):
            return self._failure(profile, request, FailInfo.BAD_REQUEST,
                                 "the KEM proof is not signed by the certificate of the request", now)
        if not hmac.compare_digest(taken.csr_digest, hashlib.sha256(request.raw_csr).digest()):
            return self._failure(profile, request, FailInfo.BAD_REQUEST,
                                 "the KEM challenge was issued for another CSR", now)
        try:
            kempop.verify_proof(taken.secret, request.kem_pop_proof, request.transaction_id, request.raw_csr)
        except kempop.PopError as exc:
            log.info("profile %s: KEM proof refused for %s: %s", profile.name, request.transaction_id, exc.text)
            return self._failure(profile, request, exc.fail_info, exc.text, now)
        return self._issue(profile, request, now, expect_state=expect_state)

    def _issue(self, profile: Profile, request: PkiRequest, now, *, expect_state, originator=None) -> Reply:
        csr = request.csr
        assert csr is not None
        for _ in range(5):
            serial = random_serial(self.random_bytes)
            try:
                cert = profile.authority.issue(csr, serial=serial, now=now, checked=True, subject=request.csr_subject,
                                               public_key=request.csr_public_key)
            except IssuanceError as exc:
                return self._failure(profile, request, FailInfo.BAD_REQUEST, str(exc), now)
            issued = IssuedCertificate(
                serial=serial,
                der=signed.certificate_der(cert),
                subject=request.csr_subject_text,  # Authority.issue copies the CSR's subject
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                # The certified key is the CSR's, already parsed once for this request.
                key_fingerprint=policy.key_fingerprint(request.csr_public_key),
            )
            try:
                settled = self._settle(profile, request, now, expect_state=expect_state, new_state="issued",
                                       certificate=issued)
            except DuplicateSerial:
                continue
            if not settled:
                return self._lost_race(profile, request, now)
            log.info("profile %s: issued serial %x to %s (%s)", profile.name, serial, issued.subject,
                     request.transaction_id)
            return self._success(profile, request, now, certificates=[cert], originator=originator)
        return self._failure(profile, request, FailInfo.BAD_REQUEST, "could not allocate a serial number", now)

    # --- CertPoll (GetCertInitial) ---

    def _poll(self, profile: Profile, request: PkiRequest, now, client_address) -> Reply:
        record = self.store.get_transaction(profile.name, request.transaction_id)
        if record is None:
            return self._failure(profile, request, FailInfo.BAD_CERT_ID, "no such transaction", now)
        assert request.signer_certificate is not None
        if record.signer_key_fingerprint != _signer_key_fingerprint(request.signer_certificate):
            return self._failure(profile, request, FailInfo.BAD_REQUEST,
                                 "the poll is not signed by the key of the original request", now)
        request.csr = x509.load_der_x509_csr(record.csr_der) if record.csr_der else None
        request.raw_csr = record.csr_der or b""
        if record.state == "failed":
            return self._failure(profile, request, FailInfo(record.fail_info or 2),
                                 record.fail_text or "request failed", now)
        resumed = self._resume(profile, request, record, now)
        if resumed is not None:
            return resumed
        return self._failure(profile, request, FailInfo.BAD_REQUEST, "the request was never completed; send it again",
                             now)

    # --- GetCert / GetCRL ---

    def _get_cert(self, profile: Profile, request: PkiRequest, now, client_address) -> Reply:
        assert request.issuer_and_serial is not None
        issuer, serial = request.issuer_and_serial
        ca = profile.authority.certificate
        if issuer != ca.subject.public_bytes():
            return self._failure(profile, request, FailInfo.BAD_CERT_ID, "issuer is not this CA", now)
        if not 0 < serial < 1 << 160:  # RFC 5280 4.1.2.2: positive, at most 20 octets
            return self._failure(profile, request, FailInfo.BAD_CERT_ID, "no certificate with that serial", now)
        record = self.store.get_certificate(profile.name, serial)
        if record is None:
            return self._failure(profile, request, FailInfo.BAD_CERT_ID, "no certificate with that serial", now)
        cert = x509.load_der_x509_certificate(record.der)
        originator = None
        if key_family(cert.public_key()) == "ml-kem":
            # An ML-KEM certificate goes only to the holder of its key, whoever asks: in the
            # encrypted-certificate mode (design section 5 b) being able to read it IS the proof
            # of possession, which a GetCert answered to the asker's key would undo.
            originator = KemOriginator(cert.public_key(), certificate=cert)
        return self._success(profile, request, now, certificates=[cert], originator=originator)

    def _get_crl(self, profile: Profile, request: PkiRequest, now, client_address) -> Reply:
        assert request.issuer_and_serial is not None
        issuer, _serial = request.issuer_and_serial
        if issuer != profile.authority.certificate.subject.public_bytes():
            return self._failure(profile, request, FailInfo.BAD_CERT_ID, "issuer is not this CA", now)
        crl = self.current_crl(profile, now)
        return self._success(profile, request, now, crls=[crl])

    def current_crl(self, profile: Profile, now: datetime.datetime | None = None, *, force: bool = False):
        """The latest CRL, signed anew when it is due (half its validity gone) or forced."""
        now = now or self.clock()
        latest = self.store.latest_crl(profile.name)
        validity = profile.settings.crl_validity
        if latest is not None and not force and now < latest.next_update - validity / 2:
            return x509.load_der_x509_crl(latest.der)
        number = self.store.next_crl_number(profile.name)
        crl = profile.authority.crl(self.store.revoked_certificates(profile.name), number=number, now=now,
                                    next_update=validity)
        self.store.store_crl(profile.name, number, crl.public_bytes(serialization.Encoding.DER), now, now + validity)
        return crl


def _sha256():
    from ..crypto.registry import DIGESTS

    return DIGESTS.by_name("sha256")
