"""The SCEP service: four operations (GetCACaps, GetCACert, GetNextCACert, PKIOperation), as
micromdm/scep has them, over the sans-IO responder, the authority, the policy chain and a store.

Transport-free: the HTTP layer maps a request to one of these calls and writes the `Reply`.
The clock and the randomness are injected, so tests can pin time.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..asn1 import oids
from ..ca import policy, transactions
from ..ca.authority import IssuanceError, random_serial
from ..ca.profile import KemPopMode, ProfileSettings
from ..ca.transactions import ActionKind, Attempt, KemChallengeView, PolicyVerdict, Write
from ..cms import enveloped, signed
from ..cms.enveloped import Originator
from ..cms.kem import KemOriginator, key_identifier
from ..cms.password import PasswordOriginator
from ..crypto.keys import KeyFamily, key_family
from ..protocol import kem_pop
from ..protocol.messages import FailInfo, MessageType
from ..protocol.requests import (
    CertificationRequest,
    CertPollRequest,
    Csr,
    GetCertRequest,
    GetCrlRequest,
    PartialRequest,
    SignedRequest,
)
from ..protocol.server import RequestRejected
from ..storage.errors import ChallengeUnavailable, DuplicateSerial
from ..storage.repository import IssuedCertificate, Store, TransactionRecord
from .profiles import Profile, Reply

log = logging.getLogger("pqscep.service")


__all__ = ["Profile", "Reply", "ScepService", "CONTENT_TYPES"]

CONTENT_TYPES = {
    "ca": "application/x-x509-ca-cert",
    "ca-ra": "application/x-x509-ca-ra-cert",
    "next-ca": "application/x-x509-next-ca-cert",
    "pki": "application/x-pki-message",
    "caps": "text/plain",
}


def _signer_key_fingerprint(cert: x509.Certificate) -> bytes:
    """`policy.key_fingerprint` of a pkiMessage signer's key, which a request needs up to three
    times. Not cached: the certificate is the requester's choice, so a cache keyed by it grows
    with what anyone sends, and the fingerprint costs 2-5 us (docs/benchmarks.md, section 5)."""
    return policy.key_fingerprint(cert.public_key())


class ScepService:
    def __init__(
        self,
        profiles: dict[str, Profile],
        store: Store,
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
        # Only the current CA and what it issued, also during a rollover's overlap: clients take
        # the CA out of this reply to check CertReps and to pick the envelope's recipient, and a
        # previous CA of the same name in it would make that choice ambiguous. The next CA is
        # GetNextCACert's (RFC 8894 section 4.7); the previous one is not served at all.
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
            # Over the limit, a PasswordRecipientInfo is not tried: a right guess would otherwise
            # reach the rate-limit refusal and answer differently from a wrong one.
            guesses = not policy.over_rate_limit(self.store, profile.settings, client_address, now)
            request = responder.receive(body, password_recipients=guesses)
        except RequestRejected as exc:
            self._count_failed_attempt(profile, exc, now, client_address)
            return self._rejected(profile, exc, now)
        refusal = _switched_off(profile.settings, request)
        if refusal is not None:
            return self._failure(profile, request, *refusal, now)
        if request.cipher is not None and request.cipher.legacy:
            log.warning("profile %s: legacy cipher %s used by transaction %s", profile.name,
                        request.cipher.name, request.transaction_id)
        try:
            if isinstance(request, CertificationRequest):
                return self._enroll(profile, request, now, client_address)
            if isinstance(request, CertPollRequest):
                return self._poll(profile, request, now, client_address)
            if isinstance(request, GetCertRequest):
                return self._get_cert(profile, request, now)
            return self._get_crl(profile, request, now)
        except RequestRejected as exc:
            self._count_failed_attempt(profile, exc, now, client_address)
            return self._rejected(profile, exc, now)
        except ChallengeUnavailable:
            # Another request spent the one-time challenge between the policy's look-up and
            # this outcome's write (nothing was written): the same answer as a wrong one.
            if client_address and profile.settings.rate_limit.max_failures > 0:
                self.store.record_failure(policy.rate_key(profile.name, client_address), now)
            return self._failure(profile, request, FailInfo.BAD_REQUEST, policy.WRONG_CHALLENGE, now)

    def _count_failed_attempt(self, profile: Profile, exc: RequestRejected, now: datetime.datetime,
                              client_address: str | None) -> None:
        """An envelope that did not decrypt is a guess at a secret (the challenge behind a PWRI,
        the plaintext behind a replayed CBC envelope): it counts against the address's limit."""
        if exc.failed_attempt:
            policy.record_failure_for(self.store, profile.name, client_address, now)

    # --- helpers ---

    def _rejected(self, profile: Profile, exc: RequestRejected, now: datetime.datetime) -> Reply:
        if exc.partial is None:
            return Reply(exc.http_status, "text/plain", (exc.text + "\n").encode(), f"http-{exc.http_status}")
        log.info("profile %s: FAILURE %s for %s: %s", profile.name, exc.fail_info.name,
                 exc.partial.transaction_id, exc.text)
        reply = profile.responder.failure(exc.partial, exc.fail_info, exc.text, now=now,
                                          random_bytes=self.random_bytes)
        return Reply(200, CONTENT_TYPES["pki"], reply, f"failure:{exc.fail_info.name}")

    def _failure(self, profile: Profile, request: PartialRequest, fail_info: FailInfo, text: str,
                 now: datetime.datetime) -> Reply:
        return self._rejected(profile, RequestRejected(text, fail_info, partial=request), now)

    def _success(self, profile: Profile, request: SignedRequest, csr: Csr | None, now: datetime.datetime, *,
                 certificates: Sequence[x509.Certificate] = (), crls: Sequence[x509.CertificateRevocationList] = (),
                 originator: Originator | None = None) -> Reply:
        originator = originator or self.reply_originator(profile, request, csr)
        reply = profile.responder.success(request, certificates=certificates, crls=crls, originator=originator,
                                          now=now, random_bytes=self.random_bytes)
        return Reply(200, CONTENT_TYPES["pki"], reply, "success")

    def reply_originator(self, profile: Profile, request: SignedRequest, csr: Csr | None) -> Originator:
        """Who the CertRep envelope is encrypted to (draft Section 6.1): the requested ML-KEM
        key (`csr`: the request's, or for a CertPoll the stored one); else the requester's
        responseKey; else the signer's RSA key (RFC 8894 3.3.2); else, for a request that came
        in a PasswordRecipientInfo, the same challenge password."""
        if csr is not None and key_family(csr.public_key) == KeyFamily.ML_KEM:
            return KemOriginator(csr.public_key, subject_key_identifier=key_identifier(csr.public_key))
        if request.response_key is not None:
            key = request.response_key
            return KemOriginator(key, subject_key_identifier=key_identifier(key))
        if key_family(request.signer_public_key) == KeyFamily.RSA:
            return enveloped.KeyTransOriginator(request.signer_certificate)
        password = profile.settings.challenge.static_password
        if request.envelope_kind == "pwri" and password:
            return PasswordOriginator(password.encode("utf-8"), profile.settings.pwri_iterations)
        raise RequestRejected(
            "no way to encrypt the reply: the signer key cannot decrypt and no responseKey was sent",
            FailInfo.BAD_REQUEST,
            partial=request,
        )

    # --- PKCSReq / RenewalReq / CertPoll: the transaction's decision ---

    def _enroll(self, profile: Profile, request: CertificationRequest, now: datetime.datetime,
                client_address: str | None) -> Reply:
        # Refuse what we could never issue before touching a one-time challenge.
        try:
            profile.authority.check_request(request.csr.parsed, subject=request.csr.subject,
                                            public_key=request.csr.public_key)
        except IssuanceError as exc:
            return self._failure(profile, request, FailInfo.BAD_REQUEST, str(exc), now)
        # The reply must be encryptable to the requester before anything is decided. Kept for
        # the reply: for an ML-KEM responseKey it costs a key identifier (SHA-1 of the key).
        originator = self.reply_originator(profile, request, request.csr)
        # The transaction is named by the ID and the CSR's key: a request under a known ID with
        # another key is another transaction (migration 0003), so nobody can lock a device out.
        record = self.store.get_transaction(profile.name, request.transaction_id,
                                            policy.key_fingerprint(request.csr.public_key))
        attempt = self._attempt(profile, request, request.csr, poll=False)
        return self._carry_out(profile, request, request.csr, record, attempt, now, client_address, originator)

    def _poll(self, profile: Profile, request: CertPollRequest, now: datetime.datetime,
              client_address: str | None) -> Reply:
        """CertPoll (RFC 8894 section 3.3.3) continues the stored enrollment: its CSR is the
        stored one, the signature and envelope this message's. It carries no CSR, so its signer
        picks the transaction among those under the ID (the device polls with the signer of its
        request; for an ML-KEM key that is not the CSR's key)."""
        record = self.store.get_polled_transaction(profile.name, request.transaction_id,
                                                   _signer_key_fingerprint(request.signer_certificate))
        csr = Csr.load(record.csr_der) if record is not None and record.csr_der else None
        attempt = self._attempt(profile, request, csr, poll=True)
        return self._carry_out(profile, request, csr, record, attempt, now, client_address, None)

    def _attempt(self, profile: Profile, request: SignedRequest, csr: Csr | None, *, poll: bool) -> Attempt:
        return Attempt(
            signer_key_fingerprint=_signer_key_fingerprint(request.signer_certificate),
            csr_der=None if poll or csr is None else csr.der,
            kem_challenge_mode=csr is not None and _kem_challenge_mode(profile, csr),
            has_kem_proof=request.kem_pop_proof is not None,
        )

    def _carry_out(self, profile: Profile, request: SignedRequest, csr: Csr | None,
                   record: TransactionRecord | None, attempt: Attempt, now: datetime.datetime,
                   client_address: str | None, originator: Originator | None, *,
                   after_lost_race: bool = False) -> Reply:
        """Read, decide, act: ca.transactions decides; this runs what it asks for (the policy, the
        KEM proof check) and then its action."""
        verdict: PolicyVerdict | None = None
        challenge: KemChallengeView | None = None
        checked = False
        while True:
            action = transactions.decide(record, attempt, verdict=verdict, kem_challenge=challenge,
                                         proof_checked=checked, now=now)
            if action.kind is ActionKind.EVALUATE_POLICY:
                if after_lost_race or not isinstance(request, CertificationRequest):
                    return self._failure(profile, request, FailInfo.BAD_REQUEST, "transaction state changed", now)
                ctx = policy.build_context(profile.settings, request, now=now, client_address=client_address,
                                           store=self.store, ca_certificates=profile.signer_issuers,
                                           webhook=self.webhook)
                verdict = policy.evaluate(self.checks, ctx)
            elif action.kind is ActionKind.CHECK_KEM_PROOF:
                assert csr is not None
                challenge, checked = self._spend_kem_challenge(profile, request, csr, attempt, now), True
            else:
                break
        if action.kind is ActionKind.REFUSE:
            return self._failure(profile, request, action.fail_info, action.text, now)
        assert csr is not None  # every other action follows a stored or a new CSR
        if action.kind is ActionKind.REPLAY_CERTIFICATE:
            assert record is not None and record.cert_serial is not None
            stored = self.store.get_certificate(profile.name, record.cert_serial)
            assert stored is not None  # written in the same database transaction as the state
            return self._success(profile, request, csr, now, certificates=[x509.load_der_x509_certificate(stored.der)])
        if (
            action.write is not None
            and action.kind is not ActionKind.ISSUE
            and not self._settle(profile, request, csr, now, action.write)
        ):
            return self._lost_race(profile, request, csr, attempt, now, client_address, originator, after_lost_race)
        if action.kind is ActionKind.PENDING:
            if action.write is not None:
                log.info("profile %s: PENDING %s (%s)", profile.name, request.transaction_id, verdict and verdict.text)
            reply = profile.responder.pending(request, now=now, random_bytes=self.random_bytes)
            return Reply(200, CONTENT_TYPES["pki"], reply, "pending")
        if action.kind is ActionKind.SEND_KEM_CHALLENGE:
            if action.write is not None:
                log.info("profile %s: PENDING %s (KEM proof of possession)", profile.name, request.transaction_id)
            return self._send_kem_challenge(profile, request, csr, attempt, now)
        assert action.kind is ActionKind.ISSUE and action.write is not None
        return self._issue(profile, request, csr, now, action.write, attempt, client_address, originator,
                           after_lost_race)

    def _settle(self, profile: Profile, request: SignedRequest, csr: Csr, now: datetime.datetime, write: Write, *,
                certificate: IssuedCertificate | None = None) -> bool:
        return self.store.settle_transaction(
            profile.name,
            request.transaction_id,
            expect_state=write.expect,
            new_state=write.new,
            signer_key_fingerprint=_signer_key_fingerprint(request.signer_certificate),
            message_type=request.message_type or 0,
            csr_der=csr.der,
            signer_cert_der=signed.certificate_der(request.signer_certificate),
            # The issued certificate's subject is the CSR's (Authority.issue copies it).
            subject=certificate.subject if certificate is not None else csr.subject_text,
            certificate=certificate,
            spend_challenge=write.spend_challenge,
            key_fingerprint=policy.key_fingerprint(csr.public_key),
            now=now,
        )

    def _lost_race(self, profile: Profile, request: SignedRequest, csr: Csr, attempt: Attempt,
                   now: datetime.datetime, client_address: str | None, originator: Originator | None,
                   after_lost_race: bool) -> Reply:
        """Another server process moved this transaction first: answer from the state it left,
        as a poll would (once; a second lost race, or a state that needs the policy again, is
        refused and the device retries)."""
        record = None if after_lost_race else self.store.get_transaction(
            profile.name, request.transaction_id, policy.key_fingerprint(csr.public_key))
        if record is None:
            return self._failure(profile, request, FailInfo.BAD_REQUEST, "transaction state changed", now)
        as_poll = dataclasses.replace(attempt, csr_der=None)
        return self._carry_out(profile, request, csr, record, as_poll, now, client_address, originator,
                               after_lost_race=True)

    # --- proof of possession for ML-KEM keys (draft Section 7.2) ---

    def _send_kem_challenge(self, profile: Profile, request: SignedRequest, csr: Csr, attempt: Attempt,
                            now: datetime.datetime) -> Reply:
        """Answer PENDING with the transaction's kemPopChallenge: the live one, sent again
        unchanged (RFC 8894 section 3.3.1: a repeated request gets the same answer, so a
        replayed PKCSReq or CertPoll cannot cancel the challenge the device is answering), or,
        when there is none (or it expired, or a proof spent it), a fresh one: encapsulated to
        the CSR's key and kept with its shared secret under the transaction, in the database,
        so that any server process of the profile can check the answer."""
        try:
            fresh, value = kem_pop.issue_challenge(csr.public_key)
        except kem_pop.PopError as exc:
            return self._failure(profile, request, exc.fail_info, exc.text, now)
        standing = self.store.put_kem_challenge(
            profile.name,
            request.transaction_id,
            fresh.shared_secret,
            hashlib.sha256(csr.der).digest(),
            attempt.signer_key_fingerprint,
            now + profile.settings.kem_pop_ttl,
            now,
            challenge=value,
            key_fingerprint=policy.key_fingerprint(csr.public_key),
        )
        assert standing.challenge is not None  # a live one has its value; else ours was written
        reply = profile.responder.pending(request, now=now, random_bytes=self.random_bytes,
                                          attributes=[kem_pop.challenge_attribute(standing.challenge)])
        return Reply(200, CONTENT_TYPES["pki"], reply, "pending:kem-challenge")

    def _spend_kem_challenge(self, profile: Profile, request: SignedRequest, csr: Csr, attempt: Attempt,
                             now: datetime.datetime) -> KemChallengeView | None:
        """Spend the transaction's KEM challenge (gone after the first proof, whatever follows)
        and check the request's kemPopProof against it, for `transactions.decide` to judge."""
        taken = self.store.take_kem_challenge(profile.name, request.transaction_id, now,
                                              policy.key_fingerprint(csr.public_key))
        if taken is None:
            return None
        mac_error = None
        if taken.outcome == "ok":  # live, and spent by this call: the only case its secret is used
            assert request.kem_pop_proof is not None
            try:
                kem_pop.verify_proof(taken.secret, request.kem_pop_proof, request.transaction_id, csr.der)
            except kem_pop.PopError as exc:
                mac_error = (exc.fail_info, exc.text)
        return KemChallengeView(
            expires_at=taken.expires_at,
            spent_before=taken.outcome == "spent",
            signer_key_fingerprint=taken.signer_key_fingerprint,
            csr_digest=taken.csr_digest,
            mac_error=mac_error,
            request_csr_digest=hashlib.sha256(csr.der).digest(),
            request_signer_fingerprint=attempt.signer_key_fingerprint,
        )

    def _issue(self, profile: Profile, request: SignedRequest, csr: Csr, now: datetime.datetime, write: Write,
               attempt: Attempt, client_address: str | None, originator: Originator | None,
               after_lost_race: bool) -> Reply:
        for _ in range(5):
            serial = random_serial(self.random_bytes)
            try:
                cert = profile.authority.issue(csr.parsed, serial=serial, now=now, checked=True, subject=csr.subject,
                                               public_key=csr.public_key)
            except IssuanceError as exc:
                return self._failure(profile, request, FailInfo.BAD_REQUEST, str(exc), now)
            issued = IssuedCertificate(
                serial=serial,
                der=signed.certificate_der(cert),
                subject=csr.subject_text,  # Authority.issue copies the CSR's subject
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                # The certified key is the CSR's, already parsed once for this request.
                key_fingerprint=policy.key_fingerprint(csr.public_key),
            )
            try:
                settled = self._settle(profile, request, csr, now, write, certificate=issued)
            except DuplicateSerial:
                continue
            if not settled:
                return self._lost_race(profile, request, csr, attempt, now, client_address, originator,
                                       after_lost_race)
            log.info("profile %s: issued serial %x to %s (%s)", profile.name, serial, issued.subject,
                     request.transaction_id)
            return self._success(profile, request, csr, now, certificates=[cert], originator=originator)
        return self._failure(profile, request, FailInfo.BAD_REQUEST, "could not allocate a serial number", now)

    # --- GetCert / GetCRL ---

    def _get_cert(self, profile: Profile, request: GetCertRequest, now: datetime.datetime) -> Reply:
        ca = profile.authority.certificate
        if request.issuer_der != ca.subject.public_bytes():
            return self._failure(profile, request, FailInfo.BAD_CERT_ID, "issuer is not this CA", now)
        if not 0 < request.serial < 1 << 160:  # RFC 5280 4.1.2.2: positive, at most 20 octets
            return self._failure(profile, request, FailInfo.BAD_CERT_ID, "no certificate with that serial", now)
        record = self.store.get_certificate(profile.name, request.serial)
        if record is None:
            return self._failure(profile, request, FailInfo.BAD_CERT_ID, "no certificate with that serial", now)
        cert = x509.load_der_x509_certificate(record.der)
        originator: Originator | None = None
        if key_family(cert.public_key()) == KeyFamily.ML_KEM:
            # An ML-KEM certificate goes only to the holder of its key, whoever asks: in the
            # encrypted-certificate mode (draft Section 7.3) being able to read it IS the proof
            # of possession, which a GetCert answered to the asker's key would undo.
            originator = KemOriginator(cert.public_key(), certificate=cert)
        return self._success(profile, request, None, now, certificates=[cert], originator=originator)

    def _get_crl(self, profile: Profile, request: GetCrlRequest, now: datetime.datetime) -> Reply:
        if request.issuer_der != profile.authority.certificate.subject.public_bytes():
            return self._failure(profile, request, FailInfo.BAD_CERT_ID, "issuer is not this CA", now)
        crl = self.current_crl(profile, now)
        return self._success(profile, request, None, now, crls=[crl])

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


def _switched_off(settings: ProfileSettings, request: SignedRequest) -> tuple[FailInfo, str] | None:
    """A capability the profile switched off (and GetCACaps does not list) that the request
    uses anyway: Triple DES, a SHA-1 message digest, RenewalReq."""
    if not settings.des3 and request.cipher is not None and request.cipher.name == "des3-cbc":
        return FailInfo.BAD_ALG, "this profile does not accept Triple DES"
    if not settings.sha1 and request.digest.name == "sha1":
        return FailInfo.BAD_ALG, "this profile does not accept SHA-1"
    if not settings.renewal and request.message_type == MessageType.RENEWAL_REQ:
        return FailInfo.BAD_REQUEST, "this profile does not accept RenewalReq"
    return None


def _kem_challenge_mode(profile: Profile, csr: Csr) -> bool:
    """The request is for an ML-KEM key at a profile that wants the challenge-response proof.
    (The other modes need nothing here: encrypted-cert issues at once and the reply goes to the
    new key, rule 1 of `reply_originator`; statement is `policy.check_kem_pop`.)"""
    if profile.settings.kem_pop != KemPopMode.CHALLENGE:
        return False
    try:
        return key_family(csr.public_key) == KeyFamily.ML_KEM
    except ValueError:
        return False


def _sha256():
    from ..crypto.registry import DIGESTS

    return DIGESTS.by_name("sha256")
