"""The requester's workflows: enroll (PKCSReq), poll (CertPoll), renew (RenewalReq), GetCert,
GetCRL, on top of the sans-IO `protocol.client` and the HTTP `transport`.

A `ScepSession` talks to one SCEP endpoint: it fetches and caches GetCACaps and GetCACert,
checks the CA pin, picks the content cipher and digest from the capabilities, and runs one
pkiMessage round trip (`transact`), saving every message on the wire when asked (`Dumper`).

This module is the client's top level: the only place that reads the clock and the system's
randomness (`os.urandom`, `datetime.now(UTC)`). Both are parameters of `ScepSession`, so tests
can replay a run; the protocol functions below get them passed in.

Key types: the CertRep envelope is a KeyTransRecipientInfo (RSA key transport) encrypted to the
certificate that signed the request, so that certificate's key must be able to decrypt, i.e.
be RSA, unless the CA lists ML-KEM: then the reply goes to a fresh ML-KEM responseKey and any
signing key type works (EC, ML-DSA); otherwise they are refused clearly (`check_can_decrypt`).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ..asn1 import oids
from ..cms import enveloped
from ..cms.kem import KemOriginator, KemRecipient, key_identifier
from ..cms.signed import build_certs_only
from ..crypto import keys as keymod
from ..crypto.registry import CIPHERS, DIGESTS, ContentCipher, DigestAlgorithm, UnknownAlgorithm
from ..csr.pkcs10 import build_kem_csr
from ..protocol import client as proto
from ..protocol import kempop
from ..protocol.messages import (
    FAIL_INFO_NAMES,
    MESSAGE_TYPE_NAMES,
    FailInfo,
    MessageType,
    PkiStatus,
    response_key_attribute,
)
from .transport import CaCaps, ScepTransport, TransportError

__all__ = [
    "CaFailure",
    "Dumper",
    "EnrollmentError",
    "FAIL_INFO_NAMES",
    "MESSAGE_TYPE_NAMES",
    "Outcome",
    "PendingState",
    "ScepSession",
    "TransportError",
    "VerificationError",
    "answer_kem_challenge",
    "check_can_decrypt",
    "kem_recipient",
    "UnusableKey",
    "choose_algorithms",
    "enroll",
    "get_cert",
    "get_crl",
    "poll_once",
    "renew",
    "resume",
    "transient_signer",
    "utc_now",
    "wait_for_certificate",
]

RandomBytes = Callable[[int], bytes]
Clock = Callable[[], datetime.datetime]

NONCE_SIZE = 16  # RFC 8894 section 3.2.1.5
STATE_VERSION = 1

def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class EnrollmentError(Exception):
    """The operation cannot be done as asked (unusable key, bad state file...)."""


class VerificationError(EnrollmentError):
    """A check failed: CA pin, reply signature, nonce, transaction, envelope decryption."""


class UnusableKey(EnrollmentError):
    """The key cannot be used with this CA (e.g. it cannot decrypt the CA's reply)."""


class CaFailure(EnrollmentError):
    """The CA answered CertRep FAILURE."""

    def __init__(self, outcome: Outcome):
        self.outcome = outcome
        super().__init__(describe_failure(outcome.fail_info, outcome.fail_info_text))


def describe_failure(fail_info: FailInfo | None, text: str | None) -> str:
    name = f"{FAIL_INFO_NAMES[fail_info]} ({int(fail_info)})" if fail_info is not None else "no failInfo"
    return f"{name}: {text}" if text else name


# --- dumping the wire ---


class Dumper:
    """Saves every message sent or received as DIR/NN-Name.ext (01-GetCACaps.txt, 02-GetCACert.der,
    03-PKCSReq.der, 04-CertRep.der...). A None directory saves nothing."""

    def __init__(self, directory: Path | str | None):
        self.directory = Path(directory) if directory else None
        self.count = 0
        self.saved: list[Path] = []
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Continue the numbering of an earlier run into the same directory.
            numbers = [int(p.name[:2]) for p in self.directory.glob("[0-9][0-9]-*") if p.name[:2].isdigit()]
            self.count = max(numbers, default=0)

    def save(self, name: str, ext: str, data: bytes) -> Path | None:
        if self.directory is None:
            return None
        self.count += 1
        path = self.directory / f"{self.count:02d}-{name}.{ext}"
        path.write_bytes(data)
        self.saved.append(path)
        return path


# --- algorithm choice ---


def choose_algorithms(
    caps: CaCaps, *, cipher: str | None = None, digest: str | None = None
) -> tuple[ContentCipher, DigestAlgorithm]:
    """The content cipher and digest for requests (RFC 8894 section 3.5.2): AES-256-CBC when the
    CA lists AES (or SCEPStandard), else 3DES; SHA-256 when listed, else SHA-1. Explicit names
    override the choice."""
    try:
        chosen_cipher = CIPHERS.by_name(cipher) if cipher and cipher != "auto" else None
        chosen_digest = DIGESTS.by_name(digest) if digest and digest != "auto" else None
    except UnknownAlgorithm as exc:
        raise EnrollmentError(str(exc)) from None
    if chosen_cipher is None:
        # AES-GCM (AuthEnvelopedData) when the CA says AES-GCM (design section 1).
        chosen_cipher = CIPHERS.by_name("aes256-gcm" if caps.aes_gcm else "aes256-cbc" if caps.aes else "des3-cbc")
    if chosen_digest is None:
        chosen_digest = DIGESTS.by_name("sha256" if caps.sha256 else "sha1")
    if chosen_cipher.aead and not caps.aes_gcm:
        raise EnrollmentError(f"{chosen_cipher.name} needs AuthEnvelopedData, which this CA does not list (AES-GCM)")
    return chosen_cipher, chosen_digest


# --- keys and transient certificates ---


def check_can_decrypt(key, what: str = "the key", caps: CaCaps | None = None) -> None:
    """The CertRep is encrypted to the request signer's RSA key (RFC 8894), or, with a CA that
    lists ML-KEM, to the responseKey the client sends (design section 4), so any key type works."""
    family = keymod.key_family(key)
    if family == "rsa" or (caps is not None and caps.ml_kem):
        return
    raise UnusableKey(
        f"{what} is {family}: it cannot decrypt the CA's reply, which RFC 8894 encrypts with RSA key "
        "transport to the request's signer; use an RSA key, or a CA that lists ML-KEM (post-quantum "
        "SCEP: the reply is encrypted to a responseKey)"
    )


def _serial(random_bytes: RandomBytes) -> int:
    return (int.from_bytes(random_bytes(16), "big") >> 1) or 1  # positive, at most 127 bits


def transient_signer(
    random_bytes: RandomBytes,
    now: datetime.datetime,
    *,
    key=None,
    subject: x509.Name | None = None,
    key_type: str = "rsa-2048",
) -> tuple[object, x509.Certificate]:
    """A key (new RSA unless given) and a self-signed certificate to sign a request with
    (RFC 8894 section 2.3)."""
    key = key if key is not None else keymod.generate_key(key_type)
    subject = subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pqscep transient signer")])
    cert = proto.self_signed_certificate(key, subject, now=now, serial=_serial(random_bytes))
    return key, cert


def public_key_der(key) -> bytes:
    public = key.public_key() if hasattr(key, "public_key") else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_transaction_id(key) -> str:
    """RFC 8894 section 3.2.1.1: a hash of the public key (here SHA-256 of the SPKI, hex)."""
    return hashlib.sha256(public_key_der(key)).hexdigest().upper()


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


# --- results and saved state ---


@dataclass
class Outcome:
    status: PkiStatus
    transaction_id: str
    message_type: MessageType
    certificate: x509.Certificate | None = None  # the issued certificate for our key (enroll/renew/poll)
    certificates: list[x509.Certificate] = field(default_factory=list)
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)
    fail_info: FailInfo | None = None
    fail_info_text: str | None = None
    state: PendingState | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class PendingState:
    """What `pqscep poll` needs to resume a PENDING enrollment. No secret is in it: the key
    stays in its own file (key_path), the challenge is not needed to poll."""

    url: str
    operation: str  # "PKCSReq" or "RenewalReq"
    transaction_id: str
    key_path: str  # the requested certificate's key
    signer_cert_pem: str  # the certificate that signed the request (self-signed, or the old one)
    signer_key_path: str  # the key of signer_cert (== key_path for an initial enrollment)
    ca_certs_pem: list[str]
    subject_der_b64: str
    subject: str  # RFC 4514, for humans
    cipher: str
    digest: str
    use_post: bool
    created: str
    cert_out: str | None = None
    cert_format: str = "pem"
    version: int = STATE_VERSION
    # ML-KEM requests (design section 5): the CSR exactly as sent, for the MAC of a kemPopProof
    # if the CA answers a later poll with a kemPopChallenge. None for other keys.
    kem_csr_der_b64: str | None = None

    def save(self, path: Path) -> None:
        data = json.dumps(asdict(self), indent=2).encode() + b"\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    @classmethod
    def load(cls, path: Path) -> PendingState:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise EnrollmentError(f"cannot read state file {path}: {exc}") from None
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            raise EnrollmentError(f"{path} is not a pqscep state file (version {STATE_VERSION})")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise EnrollmentError(f"state file {path} is incomplete or has unknown fields: {exc}") from None

    @property
    def subject_name(self) -> x509.Name:
        return x509.Name.from_bytes(base64.b64decode(self.subject_der_b64))


# --- one endpoint ---


class ScepSession:
    """One SCEP endpoint: capabilities, CA certificates, and pkiMessage round trips."""

    def __init__(
        self,
        url: str,
        transport: ScepTransport,
        *,
        dumper: Dumper | None = None,
        pin: str | None = None,
        cipher: str | None = None,
        digest: str | None = None,
        random_bytes: RandomBytes = os.urandom,
        clock: Clock = utc_now,
        caps: CaCaps | None = None,
        bundle: proto.CaBundle | None = None,
    ):
        self.url = url
        self.transport = transport
        self.dumper = dumper or Dumper(None)
        self.pin = pin
        self.cipher_name = cipher
        self.digest_name = digest
        self.random_bytes = random_bytes
        self.clock = clock
        self._caps = caps
        self._bundle = bundle
        self.notes: list[str] = []

    # capabilities and CA certificates

    def caps(self) -> CaCaps:
        if self._caps is None:
            try:
                self._caps = self.transport.get_ca_caps(self.url)
            except TransportError as exc:
                if exc.status is None:
                    raise
                self.dumper.save("GetCACaps-error", "txt", exc.body)
                self.notes.append(f"GetCACaps failed ({exc}); assuming no capabilities")
                self._caps = CaCaps(())
            else:
                self.dumper.save("GetCACaps", "txt", self._caps.raw)
        return self._caps

    def bundle(self) -> proto.CaBundle:
        if self._bundle is None:
            content_type, body = self._fetch_ca_cert()
            try:
                bundle = proto.parse_ca_certs(content_type, body)
                proto.check_pin(bundle, self.pin)
            except proto.ClientError as exc:
                raise VerificationError(str(exc)) from None
            self._bundle = bundle
        return self._bundle

    def _fetch_ca_cert(self) -> tuple[str, bytes]:
        try:
            content_type, body = self.transport.get_ca_cert(self.url)
        except TransportError as exc:
            if exc.body:
                self.dumper.save("GetCACert-error", "txt", exc.body)
            raise
        self.dumper.save("GetCACert", "der", body)
        self.ca_cert_reply = (content_type, body)
        return content_type, body

    def ca_cert_raw(self) -> tuple[str, bytes]:
        """The GetCACert reply as received (for `pqscep cacert --der`), pin-checked."""
        self._bundle = None
        self.bundle()
        return self.ca_cert_reply

    def algorithms(self) -> tuple[ContentCipher, DigestAlgorithm]:
        return choose_algorithms(self.caps(), cipher=self.cipher_name, digest=self.digest_name)

    def now(self) -> datetime.datetime:
        return self.clock()

    # one round trip: transact = read(send(prepare(...)))

    def transact(self, message_type: MessageType, content: bytes, **kwargs) -> proto.CertRepResult:
        """Build, send and read one pkiMessage round trip (arguments: `prepare`)."""
        request = self.prepare(message_type, content, **kwargs)
        return self.read(request, self.send(request))

    def prepare(
        self,
        message_type: MessageType,
        content: bytes,
        *,
        transaction_id: str,
        signer_key,
        signer_cert: x509.Certificate,
        recipients: list,
        cipher: ContentCipher | None = None,
        digest: DigestAlgorithm | None = None,
        use_post: bool | None = None,
        extra_attributes: list = (),  # type: ignore[assignment]
    ) -> PreparedRequest:
        """The signed, enveloped pkiMessage and what reading its reply needs (no I/O but the
        CA's capabilities and certificates, fetched once per session)."""
        caps = self.caps()
        bundle = self.bundle()
        if cipher is None or digest is None:
            chosen_cipher, chosen_digest = self.algorithms()
            cipher = cipher or chosen_cipher
            digest = digest or chosen_digest
        if use_post is None:
            use_post = caps.post
        sender_nonce = self.random_bytes(NONCE_SIZE)
        extra_attributes = list(extra_attributes)
        if caps.ml_kem and bundle.kem_recipient is not None:
            # Post-quantum SCEP (design sections 3 and 4): the envelope goes to the CA's ML-KEM
            # recipient certificate, and the reply to a fresh ML-KEM key of ours (responseKey),
            # whatever our signing key is, so that neither direction relies on RSA.
            originator = KemOriginator(bundle.kem_recipient.public_key(), certificate=bundle.kem_recipient)
            response_key = keymod.generate_key(_kem_key_type(bundle.kem_recipient))
            extra_attributes.append(response_key_attribute(response_key.public_key()))
            recipients = [*recipients, kem_recipient(response_key)]
        else:
            originator = enveloped.KeyTransOriginator(bundle.encipherer)
        message = proto.build_pki_message(
            message_type=message_type,
            transaction_id=transaction_id,
            sender_nonce=sender_nonce,
            content=content,
            originator=originator,
            cipher=cipher,
            signer_key=signer_key,
            signer_cert=signer_cert,
            digest=digest,
            random_bytes=self.random_bytes,
            extra_attributes=extra_attributes,
        )
        self.dumper.save(MESSAGE_TYPE_NAMES[message_type], "der", message)
        return PreparedRequest(message, transaction_id, sender_nonce, recipients, use_post)

    def send(self, request: PreparedRequest) -> bytes:
        """POST (or GET) the pkiMessage; the CertRep bytes as received."""
        try:
            reply = self.transport.pki_operation(self.url, request.message, request.use_post)
        except TransportError as exc:
            if exc.body:
                self.dumper.save("CertRep-error", "txt", exc.body)
            raise
        self.dumper.save("CertRep", "der", reply)
        return reply

    def read(self, request: PreparedRequest, reply: bytes) -> proto.CertRepResult:
        """Verify and open the CertRep that answers `request`."""
        try:
            return proto.parse_cert_rep(
                reply,
                bundle=self.bundle(),
                transaction_id=request.transaction_id,
                sender_nonce=request.sender_nonce,
                recipients=request.recipients,
            )
        except proto.ClientError as exc:
            raise VerificationError(str(exc)) from None


@dataclass(frozen=True)
class PreparedRequest:
    """A pkiMessage ready to send, with what checking its CertRep needs (`ScepSession.read`)."""

    message: bytes
    transaction_id: str
    sender_nonce: bytes
    recipients: list
    use_post: bool


def _kem_key_type(recipient: x509.Certificate) -> str:
    """The responseKey's parameter set: the same as the CA's recipient certificate."""
    from cryptography.hazmat.primitives.asymmetric import mlkem

    return "ml-kem-1024" if isinstance(recipient.public_key(), mlkem.MLKEM1024PublicKey) else "ml-kem-768"


def _outcome(result: proto.CertRepResult, message_type: MessageType, key=None) -> Outcome:
    outcome = Outcome(
        status=result.status,
        transaction_id=result.transaction_id,
        message_type=message_type,
        certificates=list(result.certificates),
        crls=list(result.crls),
        fail_info=result.fail_info,
        fail_info_text=result.fail_info_text,
    )
    if result.status == PkiStatus.SUCCESS and key is not None:
        wanted = public_key_der(key)
        outcome.certificate = next((c for c in result.certificates if public_key_der(c.public_key()) == wanted), None)
        if outcome.certificate is None:
            raise VerificationError("the CertRep holds no certificate for the requested key")
    return outcome


def _check_issuer(session: ScepSession, outcome: Outcome) -> None:
    cert = outcome.certificate
    if cert is None:
        return
    issuers = [c for c in session.bundle().all if c.subject == cert.issuer]
    for issuer in issuers:
        try:
            cert.verify_directly_issued_by(issuer)
            return
        except Exception:  # InvalidSignature, a key type cryptography cannot verify with...
            continue
    outcome.notes.append("the issued certificate is not signed by a certificate from GetCACert (intermediate CA?)")


# --- workflows ---


def enroll(
    session: ScepSession,
    *,
    key,
    subject: x509.Name,
    challenge: str | None,
    dns_names: list[str] = (),  # type: ignore[assignment]
    key_path: Path | None = None,
    cert_out: str | None = None,
    cert_format: str = "pem",
    signer_key=None,
    signer_cert: x509.Certificate | None = None,
    signer_key_path: Path | None = None,
) -> Outcome:
    """PKCSReq with a transient self-signed certificate (RFC 8894 section 3.3.1).

    An ML-KEM `key` cannot sign: the request is signed by `signer_key`/`signer_cert` (an existing
    device certificate) or a transient ML-DSA-65 one, and proves possession of the KEM key as
    design section 5 says (`_enroll_kem`)."""
    if keymod.key_family(key) == "ml-kem":
        return _enroll_kem(session, key=key, subject=subject, challenge=challenge, dns_names=list(dns_names),
                           key_path=key_path, cert_out=cert_out, cert_format=cert_format, signer_key=signer_key,
                           signer_cert=signer_cert, signer_key_path=signer_key_path)
    check_can_decrypt(key, caps=session.caps())
    use_post = session.caps().post
    session.bundle()
    cipher, digest = session.algorithms()
    csr = proto.build_csr(key, subject, challenge=challenge, dns_names=list(dns_names))
    _, signer_cert = transient_signer(session.random_bytes, session.now(), key=key, subject=subject)
    transaction_id = key_transaction_id(key)
    result = session.transact(
        MessageType.PKCS_REQ,
        csr.public_bytes(serialization.Encoding.DER),
        transaction_id=transaction_id,
        signer_key=key,
        signer_cert=signer_cert,
        recipients=[enveloped.KeyTransRecipient(signer_cert, key)],
        cipher=cipher,
        digest=digest,
        use_post=use_post,
    )
    outcome = _outcome(result, MessageType.PKCS_REQ, key)
    _check_issuer(session, outcome)
    if outcome.status == PkiStatus.PENDING:
        outcome.state = _pending_state(
            session, "PKCSReq", transaction_id, key_path, key_path, signer_cert, subject, cipher, digest,
            use_post, cert_out, cert_format,
        )
    return outcome


def renew(
    session: ScepSession,
    *,
    old_cert: x509.Certificate,
    old_key,
    new_key=None,
    challenge: str | None = None,
    subject: x509.Name | None = None,
    dns_names: list[str] | None = None,
    key_path: Path | None = None,
    old_key_path: Path | None = None,
    cert_out: str | None = None,
    cert_format: str = "pem",
) -> Outcome:
    """RenewalReq signed with the existing certificate and key (RFC 8894 section 3.3.1.2).

    `new_key` None re-uses the old key. When the CA does not advertise Renewal, a PKCSReq
    signed with the existing certificate is sent instead (and a note says so).
    """
    check_can_decrypt(old_key, "the existing certificate's key", caps=session.caps())
    key = new_key if new_key is not None else old_key
    check_can_decrypt(key, caps=session.caps())
    if public_key_der(old_cert) != public_key_der(old_key):
        raise EnrollmentError("--key is not the private key of --cert")
    cipher, digest = session.algorithms()
    caps = session.caps()
    message_type = MessageType.RENEWAL_REQ
    outcome_notes = []
    if not caps.renewal:
        message_type = MessageType.PKCS_REQ
        outcome_notes.append("the CA does not advertise Renewal: sent a PKCSReq signed with the existing certificate")
    subject = subject if subject is not None else old_cert.subject
    if dns_names is None:
        try:
            san = old_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns_names = san.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            dns_names = []
    kem = keymod.key_family(key) == "ml-kem"
    if kem:
        # Design section 5: the CSR of the new ML-KEM key is signed by the current certificate's
        # key and names it in its RFC 9883 statement.
        _check_kem_pop_cap(caps)
        csr_der = build_kem_csr(key.public_key(), subject, old_key, old_cert, challenge_password=challenge,
                                extensions=_san_extensions(dns_names))
    else:
        csr_der = proto.build_csr(key, subject, challenge=challenge, dns_names=list(dns_names)).public_bytes(
            serialization.Encoding.DER)
    # A fresh key gets the hash of its public key; a re-used key a random ID, so the CA does
    # not take the renewal for a replay of the original enrollment.
    transaction_id = (
        key_transaction_id(key) if new_key is not None else session.random_bytes(16).hex().upper()
    )
    recipients = [enveloped.KeyTransRecipient(old_cert, old_key)]
    if kem:
        recipients = [kem_recipient(key), *recipients]
    result = session.transact(
        message_type,
        csr_der,
        transaction_id=transaction_id,
        signer_key=old_key,
        signer_cert=old_cert,
        recipients=recipients,
        cipher=cipher,
        digest=digest,
        use_post=caps.post,
    )
    if kem:
        result, message_type = answer_kem_challenge(
            session, result, message_type, key=key, csr_der=csr_der, transaction_id=transaction_id,
            subject=subject, signer_key=old_key, signer_cert=old_cert, recipients=recipients, cipher=cipher,
            digest=digest, use_post=caps.post)
    outcome = _outcome(result, message_type, key)
    outcome.notes[:0] = outcome_notes
    _check_issuer(session, outcome)
    if outcome.status == PkiStatus.PENDING:
        outcome.state = _pending_state(
            session, MESSAGE_TYPE_NAMES[message_type], transaction_id, key_path, old_key_path, old_cert, subject,
            cipher, digest, caps.post, cert_out, cert_format,
        )
        if kem:
            outcome.state.kem_csr_der_b64 = base64.b64encode(csr_der).decode("ascii")
    return outcome


# --- ML-KEM keys (design section 5) ---


def _check_kem_pop_cap(caps: CaCaps) -> None:
    if "KEMPoP" not in caps:
        raise UnusableKey("the CA does not list KEMPoP: it does not certify ML-KEM keys (an ML-KEM key cannot "
                          "sign its own request; post-quantum SCEP proves possession another way)")


def kem_recipient(key) -> KemRecipient:
    """The new ML-KEM key opens the CertRep (design section 4, rule 1), named by its SKI (RFC
    5280 4.2.1.2 method 1, as the CA names it)."""
    return KemRecipient(key, subject_key_identifier=key_identifier(key.public_key()))


def _san_extensions(dns_names) -> list[x509.Extension] | None:
    if not dns_names:
        return None
    san = x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names])
    return [x509.Extension(san.oid, False, san)]


def answer_kem_challenge(session: ScepSession, result: proto.CertRepResult, message_type: MessageType, *, key,
                          csr_der: bytes, transaction_id: str, subject: x509.Name, signer_key, signer_cert,
                          recipients: list, cipher, digest, use_post) -> tuple[proto.CertRepResult, MessageType]:
    """Design section 5 a): a PENDING with a kemPopChallenge is answered at once by a CertPoll
    with the kemPopProof (same transactionID, same signer); anything else is returned as it is."""
    if result.status != PkiStatus.PENDING:
        return result, message_type
    values = result.attributes.get(oids.SCEP_KEM_POP_CHALLENGE)
    if not values:
        return result, message_type
    if len(values) != 1:
        raise VerificationError("the CertRep has more than one kemPopChallenge")
    try:
        proof = kempop.make_proof(key, values[0], transaction_id, csr_der)
    except kempop.PopError as exc:
        raise VerificationError(f"cannot answer the CA's kemPopChallenge: {exc.text}") from None
    session.notes.append("the CA sent a KEM proof-of-possession challenge; answered it")
    result = session.transact(
        MessageType.CERT_POLL,
        proto.poll_content(session.bundle().ca.subject, subject),
        transaction_id=transaction_id,
        signer_key=signer_key,
        signer_cert=signer_cert,
        recipients=recipients,
        cipher=cipher,
        digest=digest,
        use_post=use_post,
        extra_attributes=[kempop.proof_attribute(proof)],
    )
    return result, MessageType.CERT_POLL


def _enroll_kem(session: ScepSession, *, key, subject, challenge, dns_names, key_path, cert_out, cert_format,
                signer_key, signer_cert, signer_key_path) -> Outcome:
    caps = session.caps()
    _check_kem_pop_cap(caps)
    session.bundle()
    cipher, digest = session.algorithms()
    transient = signer_key is None
    if transient:
        # RFC 8894 section 2.3's transient self-signed certificate, with an ML-DSA-65 key: the
        # reply goes to the new KEM key, so the signer need not decrypt anything.
        signer_key, signer_cert = transient_signer(session.random_bytes, session.now(), subject=subject,
                                                   key_type="ml-dsa-65")
    elif signer_cert is None:
        raise EnrollmentError("a signer key needs its certificate")
    elif public_key_der(signer_cert) != public_key_der(signer_key):
        raise EnrollmentError("--signer-key is not the private key of --signer-cert")
    csr_der = build_kem_csr(key.public_key(), subject, signer_key, signer_cert, challenge_password=challenge,
                            extensions=_san_extensions(dns_names))
    transaction_id = key_transaction_id(key)
    recipients = [kem_recipient(key)]
    if keymod.key_family(signer_key) == "rsa":
        recipients.append(enveloped.KeyTransRecipient(signer_cert, signer_key))
    result = session.transact(MessageType.PKCS_REQ, csr_der, transaction_id=transaction_id, signer_key=signer_key,
                              signer_cert=signer_cert, recipients=recipients, cipher=cipher, digest=digest,
                              use_post=caps.post)
    result, message_type = answer_kem_challenge(
        session, result, MessageType.PKCS_REQ, key=key, csr_der=csr_der, transaction_id=transaction_id,
        subject=subject, signer_key=signer_key, signer_cert=signer_cert, recipients=recipients, cipher=cipher,
        digest=digest, use_post=caps.post)
    outcome = _outcome(result, message_type, key)
    _check_issuer(session, outcome)
    if outcome.status == PkiStatus.PENDING:
        if transient and key_path is not None:
            # Polling later needs the signer: keep the transient key next to the new one.
            signer_key_path = Path(key_path).with_suffix(".signer.key")
            keymod.write_private_key(signer_key_path, signer_key, None)
            outcome.notes.append(f"the transient request signer's key is in {signer_key_path} (for pqscep poll)")
        outcome.state = _pending_state(
            session, "PKCSReq", transaction_id, key_path, signer_key_path, signer_cert, subject, cipher, digest,
            caps.post, cert_out, cert_format,
        )
        outcome.state.kem_csr_der_b64 = base64.b64encode(csr_der).decode("ascii")
    return outcome


def _pending_state(session, operation, transaction_id, key_path, signer_key_path, signer_cert, subject, cipher,
                   digest, use_post, cert_out, cert_format) -> PendingState:
    if key_path is None or signer_key_path is None:
        raise EnrollmentError("the CA answered PENDING but the key was not saved to a file: cannot poll later")
    return PendingState(
        url=session.url,
        operation=operation,
        transaction_id=transaction_id,
        key_path=str(Path(key_path).resolve()),
        signer_cert_pem=cert_pem(signer_cert),
        signer_key_path=str(Path(signer_key_path).resolve()),
        ca_certs_pem=[cert_pem(c) for c in session.bundle().all],
        subject_der_b64=base64.b64encode(subject.public_bytes()).decode("ascii"),
        subject=subject.rfc4514_string(),
        cipher=cipher.name,
        digest=digest.name,
        use_post=use_post,
        created=session.now().isoformat(timespec="seconds"),
        cert_out=str(Path(cert_out).resolve()) if cert_out else None,
        cert_format=cert_format,
    )


def _load_key(path: str, passphrase: bytes | None = None):
    try:
        return keymod.load_private_key(Path(path).read_bytes(), passphrase)
    except OSError as exc:
        raise EnrollmentError(f"cannot read key {path}: {exc.strerror or exc}") from None
    except TypeError:
        raise EnrollmentError(f"key {path} is encrypted: a passphrase is needed") from None
    except ValueError as exc:
        raise EnrollmentError(f"key {path} does not load: {exc}") from None


def resume(state: PendingState, transport: ScepTransport, *, dumper: Dumper | None = None,
           random_bytes: RandomBytes = os.urandom, clock: Clock = utc_now) -> ScepSession:
    """A session for polling, with the CA certificates saved at enrollment time (the pin that
    was checked then still holds: GetCACert is not asked again)."""
    try:
        certs = [x509.load_pem_x509_certificate(p.encode()) for p in state.ca_certs_pem]
        # The same role sorting (CA, RA signer, RA encipherer) as the GetCACert reply had.
        bundle = proto.parse_ca_certs("application/x-x509-ca-ra-cert", build_certs_only(certs))
    except (ValueError, proto.ClientError) as exc:
        raise EnrollmentError(f"state file has unusable CA certificates: {exc}") from None
    return ScepSession(
        state.url,
        transport,
        dumper=dumper,
        cipher=state.cipher,
        digest=state.digest,
        random_bytes=random_bytes,
        clock=clock,
        # Polls use the settings of the original request; GetCACaps is not asked again. A CA
        # with an ML-KEM recipient certificate said ML-KEM, and a GCM cipher means AES-GCM.
        caps=CaCaps(tuple(
            word for word, yes in (("POSTPKIOperation", state.use_post), ("ML-KEM", bundle.kem_recipient is not None),
                                   ("AES-GCM", CIPHERS.by_name(state.cipher).aead)) if yes)),
        bundle=bundle,
    )


def poll_once(session: ScepSession, state: PendingState) -> Outcome:
    """CertPoll (GetCertInitial) for a PENDING request (RFC 8894 section 3.3.3)."""
    key = _load_key(state.key_path)
    signer_key = key if state.signer_key_path == state.key_path else _load_key(state.signer_key_path)
    signer_cert = x509.load_pem_x509_certificate(state.signer_cert_pem.encode())
    check_can_decrypt(signer_key, "the request signer's key", caps=session.caps())
    bundle = session.bundle()
    content = proto.poll_content(bundle.ca.subject, state.subject_name)
    recipients = [enveloped.KeyTransRecipient(signer_cert, signer_key)]
    if state.kem_csr_der_b64:
        recipients.insert(0, kem_recipient(key))
    cipher, digest = CIPHERS.by_name(state.cipher), DIGESTS.by_name(state.digest)
    result = session.transact(
        MessageType.CERT_POLL,
        content,
        transaction_id=state.transaction_id,
        signer_key=signer_key,
        signer_cert=signer_cert,
        recipients=recipients,
        cipher=cipher,
        digest=digest,
        use_post=state.use_post,
    )
    if state.kem_csr_der_b64:
        result, _ = answer_kem_challenge(
            session, result, MessageType.CERT_POLL, key=key, csr_der=base64.b64decode(state.kem_csr_der_b64),
            transaction_id=state.transaction_id, subject=state.subject_name, signer_key=signer_key,
            signer_cert=signer_cert, recipients=recipients, cipher=cipher, digest=digest, use_post=state.use_post)
    outcome = _outcome(result, MessageType.CERT_POLL, key)
    _check_issuer(session, outcome)
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
                           signer_cert, signer_key) -> Outcome:
    if signer_key is None:
        signer_key, signer_cert = transient_signer(session.random_bytes, session.now())
    elif signer_cert is None:
        raise EnrollmentError("a signer key needs its certificate")
    check_can_decrypt(signer_key, "the signer key", caps=session.caps())
    if public_key_der(signer_cert) != public_key_der(signer_key):
        raise EnrollmentError("--key is not the private key of --cert")
    result = session.transact(
        message_type,
        proto.issuer_and_serial_content(issuer, serial),
        transaction_id=session.random_bytes(16).hex().upper(),
        signer_key=signer_key,
        signer_cert=signer_cert,
        recipients=[enveloped.KeyTransRecipient(signer_cert, signer_key)],
    )
    return _outcome(result, message_type)


def get_cert(session: ScepSession, *, serial: int, issuer: x509.Name | None = None,
             signer_cert: x509.Certificate | None = None, signer_key=None) -> Outcome:
    """GetCert (RFC 8894 section 3.3.4): the certificate the CA issued with `serial`."""
    session.caps()
    issuer = issuer if issuer is not None else session.bundle().ca.subject
    return _issuer_serial_request(session, MessageType.GET_CERT, issuer, serial, signer_cert, signer_key)


def get_crl(session: ScepSession, *, issuer: x509.Name | None = None, serial: int | None = None,
            signer_cert: x509.Certificate | None = None, signer_key=None) -> Outcome:
    """GetCRL (RFC 8894 section 3.3.5): the CRL covering the certificate (issuer, serial);
    by default the signer certificate's own issuer and serial."""
    session.caps()
    if serial is None:
        if signer_cert is None:
            raise EnrollmentError("GetCRL needs a certificate (--cert) or a serial number (--serial)")
        issuer, serial = signer_cert.issuer, signer_cert.serial_number
    issuer = issuer if issuer is not None else session.bundle().ca.subject
    return _issuer_serial_request(session, MessageType.GET_CRL, issuer, serial, signer_cert, signer_key)
