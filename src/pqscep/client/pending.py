"""`PendingState`: what resuming a PENDING request needs (RFC 8894 section 3.3.3: the requester
polls with CertPoll under the same transactionID, signed as the request was), and its file, a
JSON object of the dataclass's fields (version `STATE_VERSION`, mode 0600). `resume` opens a
session for polling from it.

No secret is in the file: the keys stay in their own files (the state names them), and the
challenge password is not needed to poll.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509

from ..cms.signed import build_certs_only
from ..crypto.registry import CIPHERS, DIGESTS, ContentCipher
from ..protocol import client as proto
from .errors import EnrollmentError
from .requester import PrivateKey, cert_pem, load_private_key_file
from .session import Clock, Dumper, RandomBytes, ScepSession, utc_now
from .signer import RequestSigner
from .transport import CaCaps, ScepTransport

__all__ = ["PendingState", "STATE_VERSION", "resume"]

STATE_VERSION = 1


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
    # ML-KEM requests (draft Section 7.2, step 3): the CSR exactly as sent, for the MAC of a kemPopProof
    # if the CA answers a later poll with a kemPopChallenge. None for other keys.
    kem_csr_der_b64: str | None = None

    @classmethod
    def for_request(
        cls,
        session: ScepSession,
        *,
        operation: str,
        transaction_id: str,
        key_path: Path | None,
        signer: RequestSigner,
        subject: x509.Name,
        cipher: ContentCipher,
        use_post: bool,
        cert_out: str | None,
        cert_format: str,
        kem_csr_der: bytes | None = None,
    ) -> PendingState:
        """The state of a request the CA answered PENDING: the requested key and the signer's
        key must be in files (`key_path`, `signer.key_path`), and the signer names the digest the
        request was signed with (polls sign with it too)."""
        if key_path is None or signer.key_path is None:
            raise EnrollmentError("the CA answered PENDING but the key was not saved to a file: cannot poll later")
        if signer.digest is None:
            raise ValueError("a pending state needs the digest the request was signed with (RequestSigner.digest)")
        return cls(
            url=session.url,
            operation=operation,
            transaction_id=transaction_id,
            key_path=str(Path(key_path).resolve()),
            signer_cert_pem=cert_pem(signer.certificate),
            signer_key_path=str(Path(signer.key_path).resolve()),
            ca_certs_pem=[cert_pem(c) for c in session.bundle().all],
            subject_der_b64=base64.b64encode(subject.public_bytes()).decode("ascii"),
            subject=subject.rfc4514_string(),
            cipher=cipher.name,
            digest=signer.digest.name,
            use_post=use_post,
            created=session.now().isoformat(timespec="seconds"),
            cert_out=str(Path(cert_out).resolve()) if cert_out else None,
            cert_format=cert_format,
            kem_csr_der_b64=base64.b64encode(kem_csr_der).decode("ascii") if kem_csr_der is not None else None,
        )

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

    @property
    def kem_csr_der(self) -> bytes | None:
        """The CSR of an ML-KEM request as sent (draft Section 7.2, step 3), else None."""
        return base64.b64decode(self.kem_csr_der_b64) if self.kem_csr_der_b64 else None

    def request_signer(self, key: PrivateKey) -> RequestSigner:
        """The signer of the request, its key read from `signer_key_path`, with the request's
        digest; `key`, the requested key already read from `key_path`, is used when the two
        paths are the same."""
        signer_key = key if self.signer_key_path == self.key_path else load_private_key_file(self.signer_key_path)
        certificate = x509.load_pem_x509_certificate(self.signer_cert_pem.encode())
        return RequestSigner(certificate, signer_key, Path(self.signer_key_path), DIGESTS.by_name(self.digest))


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
            word for word, yes in (("POSTPKIOperation", state.use_post),
                                   ("ML-KEM", bundle.kem_recipient_cert is not None),
                                   ("AES-GCM", CIPHERS.by_name(state.cipher).aead)) if yes)),
        bundle=bundle,
    )
