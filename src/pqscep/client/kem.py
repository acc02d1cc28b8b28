"""Certificates for ML-KEM keys, the draft (docs/draft), Section 7. An ML-KEM key cannot sign,
so its CSR is signed by another certificate (`RequestSigner`: an existing device certificate, or
a transient ML-DSA-65 one) and names that signer in an RFC 9883 possession statement; the CA
proves the requester holds the KEM key as its profile says. In challenge mode the CA answers
PENDING with a kemPopChallenge, which `answer_kem_challenge` answers at once with a kemPopProof.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from ..asn1 import oids
from ..cms import enveloped
from ..crypto import keys as keymod
from ..crypto.registry import ContentCipher
from ..csr.pkcs10 import build_kem_csr
from ..protocol import client as proto
from ..protocol import kem_pop
from ..protocol.messages import MessageType, PkiStatus
from .errors import VerificationError
from .outcome import Outcome, check_issuer, outcome_of
from .pending import PendingState
from .requester import PrivateKey, check_kem_pop, key_transaction_id, reply_kem_recipient
from .session import ScepSession
from .signer import RequestSigner

__all__ = ["answer_kem_challenge", "enroll_kem", "san_extensions"]


def san_extensions(dns_names: Sequence[str] | None) -> list[x509.Extension] | None:
    """The subjectAltName extension of a KEM CSR, None without DNS names."""
    if not dns_names:
        return None
    san = x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names])
    return [x509.Extension(san.oid, False, san)]


def answer_kem_challenge(session: ScepSession, result: proto.CertRepResult, message_type: MessageType, *,
                         key: PrivateKey, csr_der: bytes, transaction_id: str, subject: x509.Name,
                         signer: RequestSigner, recipients: list[enveloped.Recipient], cipher: ContentCipher | None,
                         use_post: bool | None) -> tuple[proto.CertRepResult, MessageType]:
    """Draft Section 7.2, step 4: a PENDING with a kemPopChallenge is answered at once by a CertPoll
    with the kemPopProof (same transactionID, same signer); anything else is returned as it is."""
    if result.status != PkiStatus.PENDING:
        return result, message_type
    values = result.attributes.get(oids.SCEP_KEM_POP_CHALLENGE)
    if not values:
        return result, message_type
    if len(values) != 1:
        raise VerificationError("the CertRep has more than one kemPopChallenge")
    try:
        proof = kem_pop.make_proof(key, values[0], transaction_id, csr_der)
    except kem_pop.PopError as exc:
        raise VerificationError(f"cannot answer the CA's kemPopChallenge: {exc.text}") from None
    session.kem_challenges_answered += 1
    result = session.transact(
        MessageType.CERT_POLL,
        proto.poll_content(session.bundle().ca.subject, subject),
        transaction_id=transaction_id,
        signer=signer,
        recipients=recipients,
        cipher=cipher,
        use_post=use_post,
        extra_attributes=[kem_pop.proof_attribute(proof)],
    )
    return result, MessageType.CERT_POLL


def enroll_kem(session: ScepSession, *, key: PrivateKey, subject: x509.Name, challenge: str | None,
               dns_names: Sequence[str], key_path: Path | None, cert_out: str | None, cert_format: str,
               signer: RequestSigner | None) -> Outcome:
    """PKCSReq for the ML-KEM `key`, signed by `signer` (None: a transient ML-DSA-65 one, whose
    key is saved next to `key_path` if the CA answers PENDING, for polling later)."""
    caps = session.caps()
    check_kem_pop(caps)
    session.bundle()
    cipher, digest = session.algorithms()
    transient = signer is None
    if signer is None:
        # RFC 8894 section 2.3's transient self-signed certificate, with an ML-DSA-65 key: the
        # reply goes to the new KEM key, so the signer need not decrypt anything.
        signer = RequestSigner.generate("ml-dsa-65", subject, random_bytes=session.random_bytes, now=session.now())
    else:
        signer.check_key_matches()
    signer = signer.defaulting_digest(digest)
    csr_der = build_kem_csr(key.public_key(), subject, signer.private_key, signer.certificate,
                                   challenge_password=challenge, extensions=san_extensions(dns_names))
    transaction_id = key_transaction_id(key)
    recipients: list[enveloped.Recipient] = [reply_kem_recipient(key)]
    if signer.family == keymod.KeyFamily.RSA:
        recipients.append(signer.reply_recipient())
    result = session.transact(MessageType.PKCS_REQ, csr_der, transaction_id=transaction_id, signer=signer,
                              recipients=recipients, cipher=cipher, use_post=caps.post)
    result, message_type = answer_kem_challenge(
        session, result, MessageType.PKCS_REQ, key=key, csr_der=csr_der, transaction_id=transaction_id,
        subject=subject, signer=signer, recipients=recipients, cipher=cipher, use_post=caps.post)
    outcome = outcome_of(result, message_type, key)
    check_issuer(session, outcome)
    if outcome.status == PkiStatus.PENDING:
        if transient and key_path is not None:
            # Polling later needs the signer: keep the transient key next to the new one.
            signer = signer.with_key_path(Path(key_path).with_suffix(".signer.key"))
            assert signer.key_path is not None
            keymod.write_private_key(signer.key_path, signer.private_key, None)
            outcome.saved_signer_key = signer.key_path
        outcome.state = PendingState.for_request(
            session, operation="PKCSReq", transaction_id=transaction_id, key_path=key_path, signer=signer,
            subject=subject, cipher=cipher, use_post=caps.post, cert_out=cert_out,
            cert_format=cert_format, kem_csr_der=csr_der,
        )
    return outcome
