"""The requester's workflows over a `ScepSession`: enroll (PKCSReq), renew (RenewalReq), poll
(CertPoll) until the CA decides, GetCert and GetCRL (RFC 8894 section 3.3). Each returns an
`Outcome`; a PENDING one carries the `PendingState` to poll with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..cms import enveloped
from ..crypto import keys as keymod
from ..crypto.registry import CIPHERS
from ..csr.pkcs10 import build_kem_csr
from ..protocol import client as proto
from ..protocol.messages import MESSAGE_TYPE_NAMES, MessageType, PkiStatus
from .errors import EnrollmentError
from .kem import answer_kem_challenge, enroll_kem, san_extensions
from .outcome import Outcome, check_issuer, outcome_of
from .pending import PendingState
from .requester import (
    PrivateKey,
    check_can_decrypt,
    check_kem_pop,
    key_transaction_id,
    load_private_key_file,
    reply_kem_recipient,
)
from .session import ScepSession
from .signer import RequestSigner

__all__ = ["enroll", "get_cert", "get_crl", "poll_once", "renew", "wait_for_certificate"]


def enroll(
    session: ScepSession,
    *,
    key: PrivateKey,
    subject: x509.Name,
    challenge: str | None,
    dns_names: Sequence[str] = (),
    key_path: Path | None = None,
    cert_out: str | None = None,
    cert_format: str = "pem",
    signer: RequestSigner | None = None,
) -> Outcome:
    """PKCSReq with a transient self-signed certificate (RFC 8894 section 3.3.1).

    An ML-KEM `key` cannot sign: the request is signed by `signer` (an existing device
    certificate) or a transient ML-DSA-65 one, and proves possession of the KEM key as draft
    Section 7 says (`kem.enroll_kem`). Other keys sign their own request; `signer` is for
    ML-KEM keys only. `key_path` (the file `key` is in), `cert_out` and `cert_format` go into
    the pending state if the CA answers PENDING."""
    if keymod.key_family(key) == keymod.KeyFamily.ML_KEM:
        return enroll_kem(session, key=key, subject=subject, challenge=challenge, dns_names=list(dns_names),
                          key_path=key_path, cert_out=cert_out, cert_format=cert_format, signer=signer)
    check_can_decrypt(key, caps=session.caps())
    use_post = session.caps().post
    session.bundle()
    cipher, digest = session.algorithms()
    csr = proto.build_csr(key, subject, challenge=challenge, dns_names=list(dns_names))
    signer = RequestSigner.transient(key, subject, random_bytes=session.random_bytes, now=session.now(),
                                     key_path=key_path).defaulting_digest(digest)
    transaction_id = key_transaction_id(key)
    result = session.transact(
        MessageType.PKCS_REQ,
        csr.public_bytes(serialization.Encoding.DER),
        transaction_id=transaction_id,
        signer=signer,
        recipients=[signer.reply_recipient()],
        cipher=cipher,
        use_post=use_post,
    )
    outcome = outcome_of(result, MessageType.PKCS_REQ, key)
    check_issuer(session, outcome)
    if outcome.status == PkiStatus.PENDING:
        outcome.state = PendingState.for_request(
            session, operation="PKCSReq", transaction_id=transaction_id, key_path=key_path, signer=signer,
            subject=subject, cipher=cipher, use_post=use_post, cert_out=cert_out, cert_format=cert_format,
        )
    return outcome


def renew(
    session: ScepSession,
    *,
    current: RequestSigner,
    new_key: PrivateKey | None = None,
    challenge: str | None = None,
    subject: x509.Name | None = None,
    dns_names: Sequence[str] | None = None,
    key_path: Path | None = None,
    cert_out: str | None = None,
    cert_format: str = "pem",
) -> Outcome:
    """RenewalReq signed with the existing certificate and key, `current` (RFC 8894 section
    3.3.1.2).

    `new_key` None re-uses the old key. When the CA does not advertise Renewal, a PKCSReq
    signed with the existing certificate is sent instead (`Outcome.renewal_sent_as_pkcs_req`).
    `key_path` is the file of the key to be certified, for the pending state.
    """
    old_key, old_cert = current.private_key, current.certificate
    check_can_decrypt(old_key, "the existing certificate's key", caps=session.caps())
    key = new_key if new_key is not None else old_key
    check_can_decrypt(key, caps=session.caps())
    current.check_key_matches()
    cipher, digest = session.algorithms()
    current = current.defaulting_digest(digest)
    caps = session.caps()
    message_type = MessageType.RENEWAL_REQ
    if not caps.renewal:
        message_type = MessageType.PKCS_REQ
    subject = subject if subject is not None else old_cert.subject
    if dns_names is None:
        try:
            san = old_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns_names = san.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            dns_names = []
    kem = keymod.key_family(key) == keymod.KeyFamily.ML_KEM
    if kem:
        # Draft Section 7.5: the CSR of the new ML-KEM key is signed by the current certificate's
        # key and names it in its RFC 9883 statement.
        check_kem_pop(caps)
        csr_der = build_kem_csr(key.public_key(), subject, old_key, old_cert, challenge_password=challenge,
                                       extensions=san_extensions(dns_names))
    else:
        csr_der = proto.build_csr(key, subject, challenge=challenge, dns_names=list(dns_names)).public_bytes(
            serialization.Encoding.DER)
    # A fresh key gets the hash of its public key; a re-used key a random ID, so the CA does
    # not take the renewal for a replay of the original enrollment.
    transaction_id = (
        key_transaction_id(key) if new_key is not None else session.random_bytes(16).hex().upper()
    )
    recipients: list[enveloped.Recipient] = [current.reply_recipient()]
    if kem:
        recipients = [reply_kem_recipient(key), *recipients]
    result = session.transact(
        message_type,
        csr_der,
        transaction_id=transaction_id,
        signer=current,
        recipients=recipients,
        cipher=cipher,
        use_post=caps.post,
    )
    if kem:
        result, message_type = answer_kem_challenge(
            session, result, message_type, key=key, csr_der=csr_der, transaction_id=transaction_id,
            subject=subject, signer=current, recipients=recipients, cipher=cipher, use_post=caps.post)
    outcome = outcome_of(result, message_type, key)
    outcome.renewal_sent_as_pkcs_req = not caps.renewal
    check_issuer(session, outcome)
    if outcome.status == PkiStatus.PENDING:
        outcome.state = PendingState.for_request(
            session, operation=MESSAGE_TYPE_NAMES[message_type], transaction_id=transaction_id, key_path=key_path,
            signer=current, subject=subject, cipher=cipher, use_post=caps.post, cert_out=cert_out,
            cert_format=cert_format, kem_csr_der=csr_der if kem else None,
        )
    return outcome


def poll_once(session: ScepSession, state: PendingState) -> Outcome:
    """CertPoll (GetCertInitial) for a PENDING request (RFC 8894 section 3.3.3)."""
    key = load_private_key_file(state.key_path)
    signer = state.request_signer(key)
    check_can_decrypt(signer.private_key, "the request signer's key", caps=session.caps())
    bundle = session.bundle()
    content = proto.poll_content(bundle.ca.subject, state.subject_name)
    recipients: list[enveloped.Recipient] = [signer.reply_recipient()]
    kem_csr_der = state.kem_csr_der
    if kem_csr_der is not None:
        recipients.insert(0, reply_kem_recipient(key))
    cipher = CIPHERS.by_name(state.cipher)
    result = session.transact(
        MessageType.CERT_POLL,
        content,
        transaction_id=state.transaction_id,
        signer=signer,
        recipients=recipients,
        cipher=cipher,
        use_post=state.use_post,
    )
    if kem_csr_der is not None:
        result, _ = answer_kem_challenge(
            session, result, MessageType.CERT_POLL, key=key, csr_der=kem_csr_der,
            transaction_id=state.transaction_id, subject=state.subject_name, signer=signer,
            recipients=recipients, cipher=cipher, use_post=state.use_post)
    outcome = outcome_of(result, MessageType.CERT_POLL, key)
    check_issuer(session, outcome)
    if outcome.status == PkiStatus.PENDING:
        outcome.state = state
    return outcome


def wait_for_certificate(
    session: ScepSession,
    state: PendingState,
    *,
    wait: float,
    interval: float,
    poll_first: bool = True,
    on_pending: Callable[[Outcome, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Outcome | None:
    """Poll until the CA answers SUCCESS or FAILURE or `wait` seconds have passed.

    With `poll_first`, the first CertPoll goes out at once; otherwise after `interval`.
    Returns the last outcome (PENDING when time ran out), or None if no poll was sent.
    """
    deadline = monotonic() + max(wait, 0.0)
    outcome = None
    if not poll_first:
        if wait <= 0:
            return None
        sleep(min(interval, max(deadline - monotonic(), 0.0)))
    while True:
        outcome = poll_once(session, state)
        if outcome.status != PkiStatus.PENDING:
            return outcome
        remaining = deadline - monotonic()
        if remaining <= 0:
            return outcome
        if on_pending is not None:
            on_pending(outcome, remaining)
        sleep(min(interval, remaining))


def _issuer_serial_request(session: ScepSession, message_type: MessageType, issuer: x509.Name, serial: int,
                           signer: RequestSigner | None) -> Outcome:
    if signer is None:
        signer = RequestSigner.generate("rsa-2048", random_bytes=session.random_bytes, now=session.now())
    check_can_decrypt(signer.private_key, "the signer key", caps=session.caps())
    signer.check_key_matches()
    result = session.transact(
        message_type,
        proto.issuer_and_serial_content(issuer, serial),
        transaction_id=session.random_bytes(16).hex().upper(),
        signer=signer,
        recipients=[signer.reply_recipient()],
    )
    return outcome_of(result, message_type)


def get_cert(session: ScepSession, *, serial: int, issuer: x509.Name | None = None,
             signer: RequestSigner | None = None) -> Outcome:
    """GetCert (RFC 8894 section 3.3.4): the certificate the CA issued with `serial`, asked by
    `signer` (None: a transient RSA one)."""
    session.caps()
    issuer = issuer if issuer is not None else session.bundle().ca.subject
    return _issuer_serial_request(session, MessageType.GET_CERT, issuer, serial, signer)


def get_crl(session: ScepSession, *, issuer: x509.Name | None = None, serial: int | None = None,
            signer: RequestSigner | None = None) -> Outcome:
    """GetCRL (RFC 8894 section 3.3.5): the CRL covering the certificate (issuer, serial);
    by default the signer certificate's own issuer and serial."""
    session.caps()
    if serial is None:
        if signer is None:
            raise EnrollmentError("GetCRL needs a certificate or a serial number")
        issuer, serial = signer.certificate.issuer, signer.certificate.serial_number
    issuer = issuer if issuer is not None else session.bundle().ca.subject
    return _issuer_serial_request(session, MessageType.GET_CRL, issuer, serial, signer)
