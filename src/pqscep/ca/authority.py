"""The built-in certificate authority: CA and RA certificate creation, issuance from a PKCS#10
request under an issuance policy, and CRLs. Pure functions of their inputs (time and serials
are passed in); persistence is the caller's.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..crypto.keys import KeyFamily, key_family

__all__ = [
    "Authority",
    "IssuancePolicy",
    "IssuanceError",
    "create_ca_certificate",
    "issue_ra_certificate",
    "random_serial",
    "EKU_NAMES",
]

CLOCK_SKEW = datetime.timedelta(minutes=5)  # not_before is back-dated for devices with slow clocks

EKU_NAMES = {
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsecIKE": ExtendedKeyUsageOID.IPSEC_IKE,
    "ocspSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}


class IssuanceError(ValueError):
    """The request cannot be issued under this policy (a one-line reason for failInfoText)."""


def _signature_hash(ca_key) -> hashes.SHA256 | None:
    # ML-DSA signs the message itself (RFC 9881); RSA and ECDSA CAs sign with SHA-256.
    return None if key_family(ca_key) == KeyFamily.ML_DSA else hashes.SHA256()


def random_serial(random_bytes) -> int:
    """A positive serial of 127 random bits (RFC 5280 4.1.2.2 allows 20 octets; CA/B Forum asks
    for at least 64 bits of randomness). Uniqueness is enforced by the database."""
    value = int.from_bytes(random_bytes(16), "big") >> 1
    return value or 1


def _key_usage(**enabled: bool) -> x509.KeyUsage:
    flags = dict(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    flags.update(enabled)
    return x509.KeyUsage(**flags)


# keyUsage of an issued end-entity certificate, by the family of its public key.
END_ENTITY_KEY_USAGE = {
    KeyFamily.RSA: _key_usage(digital_signature=True, key_encipherment=True),
    KeyFamily.EC: _key_usage(digital_signature=True, key_agreement=True),
    KeyFamily.ML_DSA: _key_usage(digital_signature=True),  # RFC 9881 section 5
    KeyFamily.ML_KEM: _key_usage(key_encipherment=True),  # RFC 9935 section 4: keyEncipherment only
}


def create_ca_certificate(
    key,
    subject: x509.Name,
    *,
    now: datetime.datetime,
    days: int,
    serial: int,
    signs_scep_messages: bool = True,
) -> x509.Certificate:
    """A self-signed root CA certificate. With `signs_scep_messages` (no RA) an RSA CA also gets
    digitalSignature and keyEncipherment, since it signs CertReps and opens request envelopes."""
    family = key_family(key)
    usage = dict(key_cert_sign=True, crl_sign=True, digital_signature=True)
    if signs_scep_messages and family == KeyFamily.RSA:
        usage["key_encipherment"] = True
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(**usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return builder.sign(key, _signature_hash(key))


def issue_ra_certificate(
    ca_key,
    ca_cert: x509.Certificate,
    public_key,
    subject: x509.Name,
    *,
    purpose: str,
    now: datetime.datetime,
    days: int,
    serial: int,
) -> x509.Certificate:
    """An RA certificate for SCEP: purpose "sign" (CertRep signer, digitalSignature) or
    "encrypt" (request envelope recipient, keyEncipherment), as NDES has them. RFC 8894
    section 3.5.1 lets clients tell them apart by keyUsage."""
    usage = _key_usage(digital_signature=True) if purpose == "sign" else _key_usage(key_encipherment=True)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    return builder.sign(ca_key, _signature_hash(ca_key))


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]


@dataclass(frozen=True)
class IssuancePolicy:
    """What goes into an issued certificate (per profile)."""

    validity_days: int = 365
    extended_key_usage: tuple[str, ...] = ("clientAuth",)
    copy_subject_alt_names: bool = True
    crl_distribution_url: str | None = None
    # Key families the profile certifies (ML-KEM needs the proof of possession of draft Section 7).
    allowed_key_families: tuple[str, ...] = (KeyFamily.RSA, KeyFamily.EC, KeyFamily.ML_DSA)
    min_rsa_bits: int = 2048


@dataclass
class Authority:
    """A CA key and certificate with an issuance policy."""

    certificate: x509.Certificate
    key: object
    policy: IssuancePolicy = field(default_factory=IssuancePolicy)
    # (certificate, its subject Name, the AuthorityKeyIdentifier it gives): parsed once, not
    # on every issuance; rebuilt if `certificate` is replaced.
    _issuer: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def _issuer_name_and_key_id(self) -> tuple[x509.Name, x509.AuthorityKeyIdentifier]:
        cached = self._issuer
        if cached is None or cached[0] is not self.certificate:
            cached = self._issuer = (self.certificate, self.certificate.subject, _authority_key_id(self.certificate))
        return cached[1], cached[2]

    def check_request(self, csr: x509.CertificateSigningRequest, *, subject: x509.Name | None = None,
                      public_key=None) -> None:
        """Refuse what the policy does not allow, before anything is issued. `subject` and
        `public_key`: the CSR's, if the caller has already read them (cryptography builds the
        Name and parses the key again on every read)."""
        if subject is None:
            subject = csr.subject
        public = csr.public_key() if public_key is None else public_key
        try:
            family = key_family(public)
        except ValueError:
            raise IssuanceError("the requested key type is not supported") from None
        if family not in self.policy.allowed_key_families:
            raise IssuanceError(f"this profile does not certify {family} keys")
        if family == KeyFamily.RSA and public.key_size < self.policy.min_rsa_bits:  # type: ignore[union-attr]
            raise IssuanceError(f"RSA keys must have at least {self.policy.min_rsa_bits} bits")
        if not subject.rdns and not self._requested_sans(csr):
            raise IssuanceError("the request has neither a subject nor subjectAltNames")

    @staticmethod
    def _requested_sans(csr: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
        try:
            return csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return None
        except ValueError:
            raise IssuanceError("the request's extensions do not parse") from None

    def issue(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        serial: int,
        now: datetime.datetime,
        validity_days: int | None = None,
        checked: bool = False,
        subject: x509.Name | None = None,
        public_key=None,
    ) -> x509.Certificate:
        """The certificate for `csr` under this policy. `checked`: the caller already ran
        `check_request` on this CSR (the service does, before it spends a one-time challenge).
        `subject` and `public_key`: the CSR's, as for `check_request`."""
        if subject is None:
            subject = csr.subject
        public = csr.public_key() if public_key is None else public_key
        if not checked:
            self.check_request(csr, subject=subject, public_key=public)
        family = key_family(public)
        days = validity_days or self.policy.validity_days
        not_after = min(now + datetime.timedelta(days=days), self.certificate.not_valid_after_utc)
        issuer, authority_key_id = self._issuer_name_and_key_id()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(serial)
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(END_ENTITY_KEY_USAGE[family], critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(authority_key_id, critical=False)
        )
        ekus = [EKU_NAMES[name] for name in self.policy.extended_key_usage if family != KeyFamily.ML_KEM]
        if ekus:
            builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        sans = self._requested_sans(csr) if self.policy.copy_subject_alt_names else None
        if sans is not None:
            builder = builder.add_extension(sans, critical=not subject.rdns)
        if self.policy.crl_distribution_url:
            point = x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(self.policy.crl_distribution_url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
            builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
        return builder.sign(self.key, _signature_hash(self.key))  # type: ignore[arg-type]

    def crl(
        self,
        revoked: list[tuple[int, datetime.datetime, str | None]],
        *,
        number: int,
        now: datetime.datetime,
        next_update: datetime.timedelta,
    ) -> x509.CertificateRevocationList:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now)
            .next_update(now + next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(_authority_key_id(self.certificate), critical=False)
        )
        for serial, when, reason in revoked:
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
            flag = REVOCATION_REASONS.get(reason or "unspecified")
            if flag is not None and flag != x509.ReasonFlags.unspecified:
                entry = entry.add_extension(x509.CRLReason(flag), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self.key, _signature_hash(self.key))  # type: ignore[arg-type]


REVOCATION_REASONS = {flag.value: flag for flag in x509.ReasonFlags}


def name_from_common_name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)
