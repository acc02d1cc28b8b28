"""What the SCEP service serves per profile at run time: a profile's settings with its CA,
responder and published certificates (`Profile`, GetCACaps' keywords), and the service's
answer to one HTTP request (`Reply`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509

from ..ca.authority import Authority
from ..ca.profile import ProfileSettings
from ..crypto.keys import KeyFamily, key_family
from ..protocol.server import Responder

__all__ = ["Profile", "Reply"]


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
    # After a rollover, the CA it replaced (profiles/<name>/ca-previous.pem): not served, but
    # its certificates, valid and not revoked, still sign renewals until they expire.
    previous_ca_certificate: x509.Certificate | None = None

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def signer_issuers(self) -> tuple[x509.Certificate, ...]:
        """The CAs whose certificates count as this profile's: the current one first."""
        previous = (self.previous_ca_certificate,) if self.previous_ca_certificate is not None else ()
        return (self.authority.certificate, *previous)

    @property
    def kem_recipient_cert(self) -> x509.Certificate | None:
        """The ML-KEM recipient certificate of GetCACert (draft Section 3), if any."""
        for cert in self.ra_certificates:
            if key_family(cert.public_key()) == KeyFamily.ML_KEM:
                return cert
        return None

    def capabilities(self) -> list[str]:
        """GetCACaps keywords (RFC 8894 section 3.5.2 and draft Section 2), only those that
        are true here. SHA-224 and SHA-384 are listed too: they are supported, and strongSwan
        5.9.8 misreads the list so that its AES check looks for SHA-384."""
        settings = self.settings
        caps = ["AES", *(["DES3"] if settings.des3 else []), "POSTPKIOperation",
                *(["Renewal"] if settings.renewal else []), *(["SHA-1"] if settings.sha1 else []),
                "SHA-224", "SHA-256", "SHA-384", "SHA-512", "SCEPStandard"]
        if self.next_ca_certificates:
            caps.append("GetNextCACert")
        if key_family(self.responder.keys.signer_key) == KeyFamily.ML_DSA:
            caps.append("ML-DSA")
        if self.kem_recipient_cert is not None:
            caps.append("ML-KEM")
        if self.settings.aes_gcm:
            caps.append("AES-GCM")
        if self.settings.kem_pop:
            caps.append("KEMPoP")
        return caps
