"""The CA side of SCEP as a sans-IO state machine: request bytes in, reply bytes out.

`Responder.receive(body)` checks and opens a pkiMessage and returns a `PkiRequest`, or raises
`RequestRejected`: with `reply_possible` when enough of the message was readable to sign a
CertRep FAILURE (RFC 8894 section 3.3.2), otherwise the HTTP layer answers 400/413 with the
one-line reason. `Responder.success/pending/failure` build the signed CertRep.

Every failure after the RecipientInfo step (key transport, KEM decapsulation and unwrap, PWRI
unwrap, CBC padding, GCM tag, and, in an unauthenticated AES-CBC envelope, messageData that is
not what the message type needs or a CSR whose signature does not verify) is the one answer
`UNDECRYPTABLE` with `failed_attempt` set: CBC lets whoever replays a recorded envelope flip
plaintext bits through the IV, so any answer that depends on the plaintext is a padding oracle.

It does no I/O: no HTTP, no database, no clock (`now` is passed in), no randomness of its own
(`random_bytes` is passed in). Decisions (issue, wait, refuse) are made above it, by the CA.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ..asn1 import cms, der, oids
from ..cms import enveloped, signed
from ..cms.signed import SignedDataError
from ..crypto.keys import KeyFamily, key_family
from ..crypto.registry import DIGESTS, ContentCipher, UnknownAlgorithm
from .messages import (
    FailInfo,
    IssuerAndSubject,
    MessageType,
    PkiStatus,
    ProtocolError,
    ScepAttributes,
    read_octets,
    read_printable,
    scep_attributes,
)
from .requests import (
    CertificationRequest,
    CertPollRequest,
    Csr,
    GetCertRequest,
    GetCrlRequest,
    PartialRequest,
    PkiRequest,
    SignedRequest,
)

__all__ = ["RequestRejected", "Responder", "ResponderKeys", "DEFAULT_MAX_MESSAGE", "UNDECRYPTABLE"]

RandomBytes = Callable[[int], bytes]
DEFAULT_MAX_MESSAGE = 256 * 1024  # the largest pkiMessage accepted (a PQ request is ~20 KiB)
_MAX_TRANSACTION_ID = 128
_NONCE_SIZE = 16  # RFC 8894 section 3.2.1.5: 16 bytes
UNDECRYPTABLE = "cannot decrypt the pkcsPKIEnvelope"  # the one failInfoText after the RecipientInfo step


class RequestRejected(Exception):
    """A request that is refused. When `reply_possible`, answer with a signed CertRep FAILURE
    carrying `fail_info` and `text`; otherwise answer HTTP `http_status` with `text`.
    `failed_attempt`: the service counts it against the client address's rate limit."""

    def __init__(
        self,
        text: str,
        fail_info: FailInfo = FailInfo.BAD_REQUEST,
        *,
        partial: PartialRequest | None = None,
        http_status: int = 400,
        failed_attempt: bool = False,
    ):
        super().__init__(text)
        self.text = text
        self.fail_info = fail_info
        self.partial = partial
        self.http_status = http_status
        self.failed_attempt = failed_attempt

    @property
    def reply_possible(self) -> bool:
        return self.partial is not None


@dataclass
class ResponderKeys:
    """The keys a profile answers with: the CertRep signer (the CA, or an RA signing
    certificate) and the recipients that can open request envelopes (CA or RA encryption key)."""

    signer_certificate: x509.Certificate
    signer_key: object
    recipients: list
    # Certificates put in every CertRep's SignedData besides the signer's (e.g. the CA above an RA).
    extra_certificates: list[x509.Certificate] = field(default_factory=list)


class Responder:
    """One profile's SCEP protocol engine."""

    def __init__(
        self,
        keys: ResponderKeys,
        *,
        allow_legacy: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE,
        accept_aes_gcm: bool = False,
    ):
        self.keys = keys
        self.allow_legacy = allow_legacy
        self.accept_aes_gcm = accept_aes_gcm
        self.max_message_size = max_message_size

    # --- requests ---

    def receive(self, body: bytes, *, password_recipients: bool = True) -> PkiRequest:
        """`password_recipients=False`: PasswordRecipientInfos are not tried (the caller's rate
        limit for guesses at the challenge is used up)."""
        if len(body) > self.max_message_size:
            raise RequestRejected(f"message of {len(body)} bytes is over the {self.max_message_size}-byte limit",
                                  http_status=413)
        if not body:
            raise RequestRejected("empty message")
        try:
            message = signed.parse_signed_data(body)
        except (cms.Asn1Error, SignedDataError) as exc:
            raise RequestRejected(f"not a SCEP pkiMessage: {exc}") from None
        if len(message.signer_infos) != 1:
            raise RequestRejected(f"a pkiMessage has one signer, this one has {len(message.signer_infos)}")
        signer = message.signer_infos[0]
        partial, attrs = self._partial(signer)
        if partial.digest is None:
            raise RequestRejected(
                f"digest algorithm {signer.digest_algorithm.oid.dotted_string} is not supported",
                FailInfo.BAD_ALG,
                partial=PartialRequest(partial.transaction_id, partial.sender_nonce, DIGESTS.by_name("sha256")),
            )
        try:
            message_type = MessageType(attrs.message_type) if attrs.message_type is not None else None
        except ValueError:
            message_type = None
        if message_type is None or message_type == MessageType.CERT_REP:
            raise RequestRejected(
                f"unsupported messageType {attrs.message_type}", FailInfo.BAD_REQUEST, partial=partial
            )
        partial = dataclasses.replace(partial, message_type=int(message_type))

        certificate = message.signer_certificate(signer)
        if certificate is None:
            raise RequestRejected(
                "the signer's certificate is not in the message", FailInfo.BAD_CERT_ID, partial=partial
            )
        try:
            signer_key = certificate.public_key()
            digest = signed.verify_signer(message, signer, signer_key, allow_legacy=self.allow_legacy)
        except SignedDataError as exc:
            info = {"algorithm": FailInfo.BAD_ALG, "malformed": FailInfo.BAD_REQUEST}.get(
                exc.reason, FailInfo.BAD_MESSAGE_CHECK)
            raise RequestRejected(f"signature check failed: {exc}", info, partial=partial) from None
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # a signer key this server cannot use
            raise RequestRejected(f"signature check failed: the signer's key is not supported ({str(exc)[:80]})",
                                  FailInfo.BAD_ALG, partial=partial) from None
        if message.content_type != oids.DATA or message.content is None:
            raise RequestRejected("the pkiMessage carries no pkcsPKIEnvelope", FailInfo.BAD_REQUEST, partial=partial)
        try:
            recipients = [r for r in self.keys.recipients if password_recipients or r.tag != cms.PWRI_TAG]
            opened = enveloped.open_envelope(message.content, recipients, allow_legacy=self.allow_legacy)
        except enveloped.EnvelopeError as exc:
            if not exc.decryption:
                info = FailInfo.BAD_ALG if exc.bad_algorithm else FailInfo.BAD_MESSAGE_CHECK
                raise RequestRejected(f"cannot open the pkcsPKIEnvelope: {exc}", info, partial=partial) from None
            # One answer for every decryption failure (wrong key, bad padding, bad tag): telling
            # them apart would make the CA a padding oracle for envelopes an attacker recorded.
            raise _undecryptable(partial) from None
        except cms.Asn1Error as exc:
            raise RequestRejected(f"malformed pkcsPKIEnvelope: {exc}", FailInfo.BAD_REQUEST, partial=partial) from None

        if opened.authenticated and not self.accept_aes_gcm:
            raise RequestRejected("AuthEnvelopedData (AES-GCM) is not enabled on this profile", FailInfo.BAD_ALG,
                                  partial=partial)
        verified = dataclasses.replace(partial, digest=digest)
        common = dict(
            transaction_id=partial.transaction_id,
            sender_nonce=partial.sender_nonce,
            digest=digest,
            message_type=int(message_type),
            signer_certificate=certificate,
            signer_public_key=signer_key,  # loaded once, for the signature check above
            content=opened.content,
            cipher=opened.cipher,
            envelope_kind=opened.recipient_kind,
            authenticated_envelope=opened.authenticated,
            attributes=attrs,
            response_key=_response_key(signer, partial),
            kem_pop_proof=_kem_pop_proof(signer, partial),
        )
        try:
            return _typed_request(message_type, common, certificate, verified)
        except _SignedCsrRejected:
            raise  # about a CSR whose signature verified: it tells the signer only what it signed
        except RequestRejected:
            if opened.authenticated:
                # AES-GCM: the tag verified, so the plaintext is what the holder of the CEK wrote
                # (a replayed envelope with changed blocks fails the tag above); the specific
                # answer tells that sender nothing it did not choose.
                raise
            raise _undecryptable(verified) from None

    def _partial(self, signer: signed.SignerInfoView) -> tuple[PartialRequest, ScepAttributes]:
        """transactionID and senderNonce, read before the signature is checked, so that even a
        request with a bad signature gets a signed FAILURE it can match to its transaction."""
        try:
            attrs = scep_attributes(signer)
        except (ProtocolError, cms.Asn1Error, SignedDataError) as exc:
            # A FAILURE is still possible when the two attributes it needs are readable.
            partial = self._bare_partial(signer)
            if partial is None:
                raise RequestRejected(f"transactionID or senderNonce missing or malformed ({exc})") from None
            raise RequestRejected(str(exc), FailInfo.BAD_REQUEST, partial=partial) from None
        if not attrs.transaction_id or attrs.sender_nonce is None:
            raise RequestRejected("transactionID or senderNonce missing or malformed")
        if len(attrs.transaction_id) > _MAX_TRANSACTION_ID:
            raise RequestRejected("transactionID is too long")
        if not 8 <= len(attrs.sender_nonce) <= 64:
            raise RequestRejected("senderNonce must be 8 to 64 bytes (RFC 8894: 16)")
        try:
            digest = DIGESTS.by_oid(signer.digest_algorithm.oid, allow_legacy=self.allow_legacy)
        except UnknownAlgorithm:
            digest = None
        return PartialRequest(attrs.transaction_id, attrs.sender_nonce, digest), attrs  # type: ignore[arg-type]

    def _bare_partial(self, signer: signed.SignerInfoView) -> PartialRequest | None:
        try:
            transaction_id = read_printable(signer.single(oids.SCEP_TRANSACTION_ID), "transactionID")
            nonce = read_octets(signer.single(oids.SCEP_SENDER_NONCE), "senderNonce")
            digest = DIGESTS.by_oid(signer.digest_algorithm.oid, allow_legacy=self.allow_legacy)
        except (ProtocolError, cms.Asn1Error, SignedDataError, UnknownAlgorithm):
            return None
        if (
            not transaction_id
            or nonce is None
            or len(transaction_id) > _MAX_TRANSACTION_ID
            or not 8 <= len(nonce) <= 64
        ):
            return None
        return PartialRequest(transaction_id, nonce, digest)

    # --- replies ---

    def success(
        self,
        request: SignedRequest,
        *,
        certificates: Sequence[x509.Certificate] = (),
        crls: Sequence[x509.CertificateRevocationList] = (),
        originator: enveloped.Originator,
        now: datetime.datetime,
        random_bytes: RandomBytes,
        attributes: Sequence[bytes] = (),
    ) -> bytes:
        """CertRep SUCCESS: a certs-only SignedData with the certificates (or CRL), enveloped by
        `originator` (an `enveloped.*Originator` for the key the requester can decrypt with)."""
        inner = signed.build_certs_only(list(certificates), list(crls))
        envelope = enveloped.seal_envelope(inner, originator, request.cipher or _default_cipher(), random_bytes)
        return self._cert_rep(request, PkiStatus.SUCCESS, envelope, now, random_bytes, list(attributes))

    def pending(self, request: PartialRequest, *, now, random_bytes: RandomBytes, attributes=()) -> bytes:
        return self._cert_rep(request, PkiStatus.PENDING, None, now, random_bytes, list(attributes))

    def failure(
        self,
        request: PartialRequest,
        fail_info: FailInfo,
        text: str | None,
        *,
        now,
        random_bytes: RandomBytes,
    ) -> bytes:
        attrs = [signed.attribute_der(oids.SCEP_FAIL_INFO, der.printable_string(str(int(fail_info))))]
        if text:
            # failInfoText (RFC 8894 section 3.2.1.4): one line, bounded, no secrets.
            attrs.append(signed.attribute_der(oids.SCEP_FAIL_INFO_TEXT, der.utf8_string(text.replace("\n", " ")[:256])))
        return self._cert_rep(request, PkiStatus.FAILURE, None, now, random_bytes, attrs)

    def _cert_rep(self, request, status, envelope, now, random_bytes, extra) -> bytes:
        # The attributes as DER (signed.attribute_der): built for every reply.
        attributes = [
            signed.attribute_der(oids.SCEP_MESSAGE_TYPE, der.printable_string(str(int(MessageType.CERT_REP)))),
            signed.attribute_der(oids.SCEP_TRANSACTION_ID, _transaction_id_value(request.transaction_id)),
            signed.attribute_der(oids.SCEP_PKI_STATUS, der.printable_string(str(int(status)))),
            signed.attribute_der(oids.SCEP_RECIPIENT_NONCE, der.octet_string(request.sender_nonce)),
            signed.attribute_der(oids.SCEP_SENDER_NONCE, der.octet_string(random_bytes(_NONCE_SIZE))),
            # RFC 5652 11.3 signingTime, in whole seconds.
            signed.attribute_der(oids.SIGNING_TIME, der.cms_time(now.replace(microsecond=0))),
            *extra,
        ]
        certs = [self.keys.signer_certificate, *self.keys.extra_certificates]
        return signed.build_signed_data(
            content_type=oids.DATA,
            content=envelope,
            signer_key=self.keys.signer_key,
            signer_cert=self.keys.signer_certificate,
            # Answer with the requester's digest (it may know no other); SHA-1 in, SHA-1 out.
            digest=request.digest,
            attributes=attributes,
            certificates=certs,
        )


class _SignedCsrRejected(RequestRejected):
    """A refusal of a CSR whose signature already verified with the pkiMessage signer's key: a
    replayer's changed blocks cannot reach it, so its specific answer is no padding oracle."""


def _undecryptable(partial: PartialRequest) -> RequestRejected:
    return RequestRejected(UNDECRYPTABLE, FailInfo.BAD_MESSAGE_CHECK, partial=partial, failed_attempt=True)


def _transaction_id_value(transaction_id: str) -> bytes:
    """The CertRep's transactionID: a PrintableString (RFC 8894 section 3.2.1.1). Requests are
    read more leniently (messages.read_printable takes a UTF8String or IA5String of printable
    ASCII), and such an ID may hold characters a PrintableString cannot ("_", "@", ...): it is
    then echoed as a UTF8String, so that the client still finds its own ID in the reply
    instead of the server failing to answer at all."""
    try:
        return der.printable_string(transaction_id)
    except ValueError:
        return der.utf8_string(transaction_id)


def _response_key(signer: signed.SignerInfoView, partial: PartialRequest):
    """The responseKey signed attribute (draft Section 6.2): one SubjectPublicKeyInfo of an
    ML-KEM key the requester holds. PROVISIONAL OID, see asn1/oids.py."""
    try:
        value = signer.single(oids.SCEP_RESPONSE_KEY)
    except SignedDataError as exc:
        raise RequestRejected(str(exc), FailInfo.BAD_REQUEST, partial=partial) from None
    if value is None:
        return None
    try:
        key = serialization.load_der_public_key(value)
    except UnsupportedAlgorithm:  # e.g. ML-KEM-512 (draft Section 6.2: ML-KEM-768 or -1024) or an unknown algorithm
        raise RequestRejected("responseKey holds a key algorithm this CA does not support", FailInfo.BAD_ALG,
                              partial=partial) from None
    except (ValueError, TypeError):
        raise RequestRejected("responseKey is not a SubjectPublicKeyInfo this CA can use", FailInfo.BAD_REQUEST,
                              partial=partial) from None
    try:
        family: str = key_family(key)
    except ValueError:
        family = type(key).__name__
    if family != KeyFamily.ML_KEM:
        raise RequestRejected(f"responseKey must be an ML-KEM key, not {family}", FailInfo.BAD_REQUEST,
                              partial=partial)
    return key


def read_csr(csr: x509.CertificateSigningRequest) -> str | None:
    """Parse the parts of a CSR the CA will use that its subject does not hold (the caller
    reads that: `PkiRequest.csr_subject`), so that a malformed one is refused here
    (badRequest) rather than failing deep in the CA; return its challengePassword."""
    try:
        for extension in csr.extensions:
            extension.value  # noqa: B018 - force the parse
    except ValueError as exc:
        raise ValueError(f"the PKCS#10 extensions do not parse: {exc}") from None
    try:
        attr = csr.attributes.get_attribute_for_oid(oids.CHALLENGE_PASSWORD)
    except x509.AttributeNotFound:
        return None
    except ValueError as exc:
        raise ValueError(f"the PKCS#10 attributes (challengePassword) do not parse: {exc}") from None
    value = attr.value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _kem_pop_proof(signer: signed.SignerInfoView, partial: PartialRequest) -> bytes | None:
    """The kemPopProof signed attribute (draft Section 7.2, step 4, PROVISIONAL OID): one value."""
    try:
        return signer.single(oids.SCEP_KEM_POP_PROOF)
    except SignedDataError as exc:
        raise RequestRejected(str(exc), FailInfo.BAD_REQUEST, partial=partial) from None


def _typed_request(message_type: MessageType, common: dict, signer: x509.Certificate,
                   verified: PartialRequest) -> PkiRequest:
    """The typed request for the messageData of `message_type` (RFC 8894 section 3.3)."""
    data: bytes = common["content"]
    try:
        if message_type in (MessageType.PKCS_REQ, MessageType.RENEWAL_REQ):
            return CertificationRequest(**common, csr=_read_csr(data, signer, verified))
        if message_type == MessageType.CERT_POLL:
            ias = cms.decode(IssuerAndSubject, data)
            return CertPollRequest(
                **common, issuer_der=cms.tlv_bytes(ias.issuer), subject_der=cms.tlv_bytes(ias.subject)
            )
        serial = cms.decode(cms.IssuerAndSerialNumber, data)  # GetCert, GetCRL
        kind = GetCertRequest if message_type == MessageType.GET_CERT else GetCrlRequest
        return kind(**common, issuer_der=cms.tlv_bytes(serial.issuer), serial=serial.serial_number)
    except RequestRejected:
        raise
    except (cms.Asn1Error, *signed.X509_PARSE_ERRORS) as exc:
        raise RequestRejected(f"malformed {message_type.name} messageData: {str(exc)[:120]}",
                              FailInfo.BAD_REQUEST, partial=verified) from None


def _read_csr(data: bytes, signer: x509.Certificate, verified: PartialRequest) -> Csr:
    """The CSR of a PKCSReq or RenewalReq, with every part the CA will use parsed now (so that
    a damaged one is a FAILURE here rather than an error later) and its signature checked."""
    csr = x509.load_der_x509_csr(data)
    try:
        subject = csr.subject
        subject_text = subject.rfc4514_string()
    except ValueError as exc:
        raise ValueError(f"the PKCS#10 subject does not parse: {exc}") from None
    csr.extensions  # noqa: B018 - cryptography parses fields when first read
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        # Without its key a CSR's signature cannot verify either: the same answer as a bad one.
        raise RequestRejected("the PKCS#10 signature does not verify", FailInfo.BAD_MESSAGE_CHECK,
                              partial=verified) from None
    kem_statement = None
    if _key_family_or_none(public_key) == KeyFamily.ML_KEM:
        # A KEM key cannot sign its own request (draft Section 7.1): the CSR is signed by the
        # pkiMessage signer's key and names that certificate in its statement.
        kem_statement = _check_kem_csr(data, csr, signer, verified)
    elif not _csr_signature_ok(csr):
        raise RequestRejected("the PKCS#10 signature does not verify", FailInfo.BAD_MESSAGE_CHECK, partial=verified)
    return Csr(data, csr, public_key, subject, subject_text, read_csr(csr), kem_statement)


def _key_family_or_none(public_key) -> KeyFamily | None:
    try:
        return key_family(public_key)
    except (ValueError, UnsupportedAlgorithm):
        return None


def _check_kem_csr(data: bytes, csr: x509.CertificateSigningRequest, signer: x509.Certificate,
                   verified: PartialRequest) -> tuple[bytes, int]:
    """Draft Section 7.1: the CSR of an ML-KEM key verifies with the pkiMessage signer's key (that
    binds it to this SCEP transaction: badMessageCheck otherwise), carries one RFC 9883
    privateKeyPossessionStatement naming the signer's certificate (badRequest otherwise), and asks
    for no key usage but keyEncipherment (RFC 9935 section 4; badRequest otherwise). Returns the
    (issuer Name DER, serial) the statement names."""
    from ..csr.errors import CsrError
    from ..csr.pkcs10 import csr_possession_statement, parse_csr, verify_csr_with
    from ..csr.possession import certificate_issuer_der

    try:
        view = parse_csr(data)
        verify_csr_with(view, signer.public_key())
        issuer, serial, _cert = csr_possession_statement(view)
    except CsrError as exc:
        fail_info = {"malformed": FailInfo.BAD_REQUEST, "algorithm": FailInfo.BAD_ALG,
                     "signature": FailInfo.BAD_MESSAGE_CHECK}[exc.reason]
        raise RequestRejected(exc.text, fail_info, partial=verified) from None
    if issuer != certificate_issuer_der(signer) or serial != signer.serial_number:
        raise _SignedCsrRejected("the CSR's privateKeyPossessionStatement does not name the certificate that signed "
                              "the pkiMessage", FailInfo.BAD_REQUEST, partial=verified)
    try:
        usage = csr.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return issuer, serial
    except ValueError:
        return issuer, serial  # read_csr refuses extensions that do not parse
    wanted = {name for name in ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                                "key_agreement", "key_cert_sign", "crl_sign") if getattr(usage, name)}
    if wanted - {"key_encipherment"}:
        raise _SignedCsrRejected(f"an ML-KEM certificate has keyUsage keyEncipherment only (RFC 9935); the CSR asks "
                              f"for {', '.join(sorted(wanted))}", FailInfo.BAD_REQUEST, partial=verified)
    return issuer, serial


def _csr_signature_ok(csr: x509.CertificateSigningRequest) -> bool:
    try:
        return csr.is_signature_valid
    except Exception:  # an unsupported key or signature algorithm in the CSR
        return False


def _default_cipher() -> ContentCipher:
    from ..crypto.registry import CIPHERS

    return CIPHERS.by_name("aes256-cbc")
