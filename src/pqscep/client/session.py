"""A `ScepSession` talks to one SCEP endpoint: it fetches and caches GetCACaps and GetCACert,
checks the CA pin, picks the content cipher and digest from the capabilities
(`choose_algorithms`), and runs one pkiMessage round trip (`transact`), saving every message on
the wire when asked (`Dumper`).

The session is the client's top level: the only place that reads the clock and the system's
randomness (`os.urandom`, `datetime.now(UTC)`). Both are parameters of `ScepSession`, so tests
can replay a run; the protocol functions get them passed in.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from ..cms import enveloped
from ..cms.kem import KemOriginator
from ..crypto import keys as keymod
from ..crypto.registry import CIPHERS, DIGESTS, ContentCipher, DigestAlgorithm, UnknownAlgorithm
from ..protocol import client as proto
from ..protocol.messages import MESSAGE_TYPE_NAMES, MessageType, response_key_attribute
from .errors import EnrollmentError, VerificationError
from .requester import reply_kem_recipient
from .signer import RequestSigner
from .transport import CaCaps, ScepTransport, TransportError

__all__ = [
    "Clock",
    "Dumper",
    "NONCE_SIZE",
    "PreparedRequest",
    "RandomBytes",
    "ScepSession",
    "choose_algorithms",
    "utc_now",
]

RandomBytes = Callable[[int], bytes]
Clock = Callable[[], datetime.datetime]

NONCE_SIZE = 16  # RFC 8894 section 3.2.1.5


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Dumper:
    """Saves every message sent or received as DIR/NN-Name.ext (01-GetCACaps.txt, 02-GetCACert.der,
    03-PKCSReq.der, 04-CertRep.der...). A None directory saves nothing."""

    def __init__(self, directory: Path | str | None) -> None:
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
        # AES-GCM (AuthEnvelopedData) when the CA says AES-GCM (draft Section 5.1).
        chosen_cipher = CIPHERS.by_name("aes256-gcm" if caps.aes_gcm else "aes256-cbc" if caps.aes else "des3-cbc")
    if chosen_digest is None:
        chosen_digest = DIGESTS.by_name("sha256" if caps.sha256 else "sha1")
    if chosen_cipher.aead and not caps.aes_gcm:
        raise EnrollmentError(f"{chosen_cipher.name} needs AuthEnvelopedData, which this CA does not list (AES-GCM)")
    return chosen_cipher, chosen_digest


@dataclass(frozen=True)
class PreparedRequest:
    """A pkiMessage ready to send, with what checking its CertRep needs (`ScepSession.read`)."""

    message: bytes
    transaction_id: str
    sender_nonce: bytes
    recipients: list[enveloped.Recipient]
    use_post: bool


class ScepSession:
    """One SCEP endpoint: capabilities, CA certificates, and pkiMessage round trips.

    What happened along the way that a caller may want to report: `caps_error` (GetCACaps
    answered an HTTP error, so the session assumed no capabilities, RFC 8894 section 3.5.2) and
    `kem_challenges_answered` (KEM proof-of-possession challenges answered, draft Section 7.2)."""

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
        ca_ident: str | None = None,
    ) -> None:
        self.url = url
        self.transport = transport
        self.dumper = dumper or Dumper(None)
        self.pin = pin
        self.cipher_name = cipher
        self.digest_name = digest
        self.random_bytes = random_bytes
        self.clock = clock
        self.ca_ident = ca_ident  # GetCACert's message= (RFC 8894 section 4.2), for servers hosting several CAs
        self._caps = caps
        self._bundle = bundle
        self.ca_cert_reply: tuple[str, bytes] | None = None  # the last GetCACert reply, as received
        self.caps_error: TransportError | None = None
        self.kem_challenges_answered = 0

    # capabilities and CA certificates

    def caps(self) -> CaCaps:
        if self._caps is None:
            try:
                self._caps = self.transport.get_ca_caps(self.url)
            except TransportError as exc:
                if exc.status is None:
                    raise
                self.dumper.save("GetCACaps-error", "txt", exc.body)
                self.caps_error = exc
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
            content_type, body = self.transport.get_ca_cert(self.url, self.ca_ident)
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
        assert self.ca_cert_reply is not None
        return self.ca_cert_reply

    def algorithms(self) -> tuple[ContentCipher, DigestAlgorithm]:
        return choose_algorithms(self.caps(), cipher=self.cipher_name, digest=self.digest_name)

    def now(self) -> datetime.datetime:
        return self.clock()

    # one round trip: transact = read(send(prepare(...)))

    def transact(self, message_type: MessageType, content: bytes, **kwargs: Any) -> proto.CertRepResult:
        """Build, send and read one pkiMessage round trip (arguments: `prepare`)."""
        request = self.prepare(message_type, content, **kwargs)
        return self.read(request, self.send(request))

    def prepare(
        self,
        message_type: MessageType,
        content: bytes,
        *,
        transaction_id: str,
        signer: RequestSigner,
        recipients: list[enveloped.Recipient],
        cipher: ContentCipher | None = None,
        use_post: bool | None = None,
        extra_attributes: Sequence = (),
    ) -> PreparedRequest:
        """The pkiMessage signed by `signer`, enveloped to the CA, and what reading its reply
        needs: `recipients`, the keys that may open the CertRep (no I/O but the CA's
        capabilities and certificates, fetched once per session). A None `cipher`, or a signer
        without a digest, takes the session's choice (`algorithms`)."""
        caps = self.caps()
        bundle = self.bundle()
        digest = signer.digest
        if cipher is None or digest is None:
            chosen_cipher, chosen_digest = self.algorithms()
            cipher = cipher or chosen_cipher
            digest = digest or chosen_digest
        if use_post is None:
            use_post = caps.post
        sender_nonce = self.random_bytes(NONCE_SIZE)
        attributes = list(extra_attributes)
        originator: KemOriginator | enveloped.KeyTransOriginator
        if caps.ml_kem and bundle.kem_recipient_cert is not None:
            # Post-quantum SCEP (draft Sections 5.1 and 6.2): the envelope goes to the CA's ML-KEM
            # recipient certificate, and the reply to a fresh ML-KEM key of ours (responseKey),
            # whatever our signing key is, so that neither direction relies on RSA.
            originator = KemOriginator(bundle.kem_recipient_cert.public_key(), certificate=bundle.kem_recipient_cert)
            response_key = keymod.generate_key(_kem_key_type(bundle.kem_recipient_cert))
            attributes.append(response_key_attribute(response_key.public_key()))
            recipients = [*recipients, reply_kem_recipient(response_key)]
        else:
            originator = enveloped.KeyTransOriginator(bundle.encipherer)
        message = proto.build_pki_message(
            message_type=message_type,
            transaction_id=transaction_id,
            sender_nonce=sender_nonce,
            content=content,
            originator=originator,
            cipher=cipher,
            signer_key=signer.private_key,
            signer_cert=signer.certificate,
            digest=digest,
            random_bytes=self.random_bytes,
            extra_attributes=attributes,
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


def _kem_key_type(recipient: x509.Certificate) -> str:
    """The responseKey's parameter set: the same as the CA's recipient certificate."""
    from cryptography.hazmat.primitives.asymmetric import mlkem

    return "ml-kem-1024" if isinstance(recipient.public_key(), mlkem.MLKEM1024PublicKey) else "ml-kem-768"
