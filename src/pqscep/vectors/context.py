"""The CA of the test vectors and the steps every flow shares (`Vectors`): certificates made by
`ca.authority` and signed again deterministically, requests built by `protocol.client`, replies
built by `protocol.server.Responder` to the recipient `service.scep.ScepService` chooses, and the
value listings of each KEMRecipientInfo and SignerInfo (RFC 9629 section 5, RFC 5652 section 5.4).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import keywrap, serialization
from cryptography.x509.oid import NameOID

from ..asn1 import cms, oids
from ..asn1.oid_names import asn1_name
from ..ca.authority import Authority, IssuancePolicy, create_ca_certificate, issue_ra_certificate, random_serial
from ..ca.profile import ChallengeSettings, KemPopMode, ProfileSettings
from ..cms import signed
from ..cms.kem import KemOriginator, KemRecipient, derive_kek, parse_kem_recipient_info
from ..cms.password import PasswordRecipient
from ..crypto.keys import KeyFamily
from ..crypto.registry import CIPHERS, DIGESTS
from ..protocol import client as proto
from ..protocol.messages import MessageType
from ..protocol.requests import CertificationRequest, Csr, PkiRequest, SignedRequest
from ..protocol.server import Responder, ResponderKeys
from ..service.scep import Profile, ScepService
from . import material as mat
from .fips import DeterministicRandom
from .keys import Encapsulation, mlkem_public_key, resign_certificate, resign_csr, template_hash
from .output import Output, Values

__all__ = ["Vectors", "certificate_der", "check_certrep", "spki_der", "subject_name", "CBC", "GCM", "MINUTE"]

_DER = serialization.Encoding.DER
GCM = CIPHERS.by_name("aes256-gcm")
CBC = CIPHERS.by_name("aes256-cbc")
SHA256 = DIGESTS.by_name("sha256")
SHA512 = DIGESTS.by_name("sha512")
MINUTE = datetime.timedelta(minutes=1)


def subject_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pqscep test vectors")])


def certificate_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(_DER)


def spki_der(public_key) -> bytes:
    return public_key.public_bytes(_DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class Vectors:
    """The CA of every flow, and the steps the flows share."""

    def __init__(self) -> None:
        self.m = mat.Material.load()
        self.out = Output()
        ca_random = mat.stream("ca/serials")
        ca_key, ca_real = self.m.dsa["ca"], self.m.real("ca")
        # RFC 5280 certificates made by ca.authority with cryptography's key of the same seed
        # (a template), then signed again deterministically over the same tbsCertificate.
        template = create_ca_certificate(ca_real, subject_name("pqscep vectors ML-DSA-65 CA"), now=mat.CA_TIME,
                                         days=mat.CA_DAYS, serial=random_serial(ca_random))
        self.ca_cert = resign_certificate(template, ca_key)
        kem_real = self.m.kem["kem-recipient"]
        template = issue_ra_certificate(ca_real, self.ca_cert, kem_real.public_key(),
                                        subject_name("pqscep vectors ML-KEM-768 recipient"), purpose="encrypt",
                                        now=mat.CA_TIME, days=mat.CA_DAYS, serial=random_serial(ca_random))
        self.recipient_cert = resign_certificate(template, ca_key)
        self.ca_serials = ca_random
        self.settings = ProfileSettings(
            name="pq",
            ca_key_type="ml-dsa-65",
            kem_recipient_key_type="ml-kem-768",
            aes_gcm=True,
            kem_pop=KemPopMode.CHALLENGE,
            challenge=ChallengeSettings(static_password=mat.CHALLENGE_PASSWORD),
            pwri_iterations=mat.PWRI_ITERATIONS,
            issuance=IssuancePolicy(allowed_key_families=tuple(KeyFamily)),
        )
        self.authority = Authority(self.ca_cert, ca_real, self.settings.issuance)
        self.responder = Responder(
            ResponderKeys(
                signer_certificate=self.ca_cert,
                signer_key=ca_key,
                recipients=[KemRecipient(kem_real, certificate=self.recipient_cert),
                            PasswordRecipient(mat.CHALLENGE_PASSWORD.encode())],
            ),
            accept_aes_gcm=True,
        )
        self.profile = Profile(self.settings, self.authority, self.responder, ra_certificates=[self.recipient_cert])
        # GetCACaps and GetCACert touch no store: the service answers them from the profile.
        self.service = ScepService({"pq": self.profile}, store=None,  # type: ignore[arg-type]
                                   clock=lambda: mat.REQUEST_TIME)

    # --- certificates and requests -------------------------------------------------------

    def issue(self, csr: x509.CertificateSigningRequest, now: datetime.datetime) -> x509.Certificate:
        """ca.authority.Authority.issue (the CA's real issuance), signed deterministically."""
        template = self.authority.issue(csr, serial=random_serial(self.ca_serials), now=now)
        cert = resign_certificate(template, self.m.dsa["ca"])
        cert.verify_directly_issued_by(self.ca_cert)
        return cert

    def self_signed(self, name: str, cn: str, now: datetime.datetime, random: DeterministicRandom) -> x509.Certificate:
        """RFC 8894 section 2.3's self-signed signer certificate, as protocol.client makes it."""
        template = proto.self_signed_certificate(self.m.real(name), subject_name(cn), now=now,
                                                 serial=random_serial(random))
        return resign_certificate(template, self.m.private_key(name))

    def csr(self, name: str, cn: str) -> bytes:
        """protocol.client.build_csr (challengePassword included), signed deterministically."""
        key = self.m.real(name)
        template = proto.build_csr(key, subject_name(cn), challenge=mat.CHALLENGE_PASSWORD, digest=template_hash(key))
        der = resign_csr(template, self.m.private_key(name))
        assert x509.load_der_x509_csr(der).is_signature_valid
        return der

    def kem_public(self, name: str, log: list[Encapsulation], flow: str):
        """The ML-KEM public key `name`, encapsulating deterministically (m from the flow's stream)."""
        return mlkem_public_key(self.m.kem[name].public_key(), mat.stream(f"{flow}/ml-kem-m/{name}"), log)

    def reply_originator(self, request: SignedRequest, flow: str, log: list[Encapsulation], csr: Csr | None = None):
        """The recipient the service chooses for the CertRep (draft Section 6.1, ScepService's
        own rule), with an ML-KEM key swapped for its deterministic twin. `csr` defaults to the
        request's own (a PKCSReq's); a CertPoll's is the enrollment's."""
        if csr is None and isinstance(request, CertificationRequest):
            csr = request.csr
        originator = self.service.reply_originator(self.profile, request, csr)
        if isinstance(originator, KemOriginator):
            real = originator.public_key
            name = next(n for n, k in self.m.kem.items() if spki_der(k.public_key()) == spki_der(real))
            originator.public_key = self.kem_public(name, log, flow)
        return originator

    # --- writing -------------------------------------------------------------------------

    def enveloped_message(self, flow: str, values: Values, name: str, message: bytes,
                          recipient_values: Callable[[bytes], None], *, envelope_text: str,
                          message_text: str) -> None:
        """Write a pkiMessage in the order every flow lists it: the envelope, its recipient's
        values (`recipient_values(envelope)`), the message, its signed values."""
        envelope = self.envelope_of(message)
        self.out.der(flow, f"{name}-envelope", envelope, "ContentInfo", envelope_text)
        recipient_values(envelope)
        self.out.der(flow, name, message, "ContentInfo", message_text)
        self.signed_values(values, name, message)

    def kem_message(self, flow: str, values: Values, name: str, message: bytes, enc: Encapsulation,
                    plaintext: bytes, recipient: str, *, envelope_text: str, message_text: str) -> None:
        """`enveloped_message` for a KEMRecipientInfo: its KEM values (and KDF input)."""
        self.enveloped_message(
            flow, values, name, message,
            lambda envelope: self.kem_values(flow, values, name, envelope, enc, plaintext, recipient),
            envelope_text=envelope_text, message_text=message_text)

    def envelope_of(self, message: bytes) -> bytes:
        return signed.parse_signed_data(message).content  # type: ignore[return-value]

    def kem_values(self, flow: str, values: Values, what: str, envelope: bytes, enc: Encapsulation,
                   plaintext: bytes, recipient: str) -> None:
        """Every step of the KEMRecipientInfo (RFC 9629 section 5) and the content encryption,
        recomputed from the envelope and the recorded encapsulation, and checked."""
        info = cms.decode(cms.ContentInfo, envelope)
        auth = info.content_type == oids.AUTH_ENVELOPED_DATA
        body = cms.decode_der(cms.AuthEnvelopedData if auth else cms.EnvelopedData, cms.tlv_bytes(info.content))
        (ri,) = body.recipient_infos.as_list()
        view = parse_kem_recipient_info(cms.tlv_bytes(ri))
        assert view.kemct == enc.ciphertext
        kdf_input, kek = derive_kek(enc.shared_secret, view.kdf.oid, view.wrap_der, view.kek_length, view.ukm)
        cek = keywrap.aes_key_unwrap(kek, view.encrypted_key)
        eci = body.auth_encrypted_content_info if auth else body.encrypted_content_info
        algorithm = cms.parse_algorithm(eci.content_encryption_algorithm)
        ciphertext = cms.decode_der(bytes, b"\x04" + cms.tlv_bytes(eci.encrypted_content)[1:])
        if auth:
            assert algorithm.parameters is not None
            nonce = cms.decode_der(cms.GcmParameters, algorithm.parameters).nonce
            assert GCM.decrypt_gcm(cek, nonce, ciphertext, body.mac, None) == plaintext
        else:
            assert algorithm.parameters is not None
            nonce = cms.decode_der(bytes, algorithm.parameters)
            assert CBC.decrypt_cbc(cek, nonce, ciphertext) == plaintext
        kdf_path = self.out.der(flow, f"{what}-kdf-input", kdf_input, "CMSORIforKEMOtherInfo",
                                f"DER(CMSORIforKEMOtherInfo) of the {what} KEMRecipientInfo: the HKDF info")
        values.section(f"{what}: KEMRecipientInfo (RFC 9629, RFC 9936) to {recipient}")
        values.text("kem", asn1_name(view.kem.oid))
        if view.rid_ski is not None:
            values.hex("rid subjectKeyIdentifier", view.rid_ski)
        else:
            values.text("rid issuerAndSerialNumber serial", hex(view.rid_serial or 0))
        values.hex("m (FIPS 203 ML-KEM.Encaps randomness)", enc.m)
        values.hex("ss (ML-KEM shared secret)", enc.shared_secret)
        values.hex("kemct (ML-KEM ciphertext)", enc.ciphertext)
        values.text("kdf", f"{asn1_name(view.kdf.oid)}, salt empty")
        values.hex(f"KDF input info = DER(CMSORIforKEMOtherInfo), also {kdf_path}", kdf_input)
        values.hex("KEK = HKDF-SHA256(ss, salt empty, info, kekLength 32)", kek)
        values.hex("CEK (content-encryption key)", cek)
        values.hex("encryptedKey = AES-256-KW(KEK, CEK) (RFC 3394)", view.encrypted_key)
        content_encryption = asn1_name(algorithm.oid)
        values.text("content encryption", f"{content_encryption} (AuthEnvelopedData)" if auth else content_encryption)
        values.hex("GCM nonce" if auth else "CBC IV", nonce)
        values.hex("encryptedContent", ciphertext)
        if auth:
            values.hex("mac (GCM tag)", body.mac)
        self.plaintext(values, plaintext)

    def plaintext(self, values: Values, plaintext: bytes) -> None:
        """The decrypted content: named by its file when it is one, else in hex."""
        path = next((p for p, d in self.out.files.items() if d == plaintext and p.endswith(".der")), None)
        if path is not None:
            values.text("plaintext (the decrypted content)", f"the DER of {path}")
        else:
            values.hex("plaintext (the decrypted content)", plaintext)

    def signed_values(self, values: Values, what: str, message: bytes) -> None:
        parsed = signed.parse_signed_data(message)
        (si,) = parsed.signer_infos
        digest = DIGESTS.by_oid(si.digest_algorithm.oid)
        values.section(f"{what}: SignerInfo (RFC 5652 section 5.4, RFC 9882)")
        values.text("digestAlgorithm", digest.name)
        values.hex("messageDigest (of the eContent)", digest.digest(parsed.content or b""))
        values.hex("DER(signedAttrs) as signed (SET OF, tag 0x31)", si.signed_attrs_der or b"")
        values.text("signature", f"{len(si.signature)} octets, in the message", "length")

    def request(self, *, message_type: MessageType, content: bytes, transaction_id: str, signer: str,
                signer_cert: x509.Certificate, cipher, random: DeterministicRandom, log: list[Encapsulation],
                flow: str, extra=(), originator=None) -> bytes:
        """A pkiMessage as protocol.client.build_pki_message makes it (draft Section 5.1: the
        envelope goes to the CA's ML-KEM recipient certificate, rid issuerAndSerialNumber)."""
        if originator is None:
            recipient = mlkem_public_key(self.recipient_cert.public_key(), mat.stream(f"{flow}/ml-kem-m/kem-recipient"),
                                         log)
            originator = KemOriginator(recipient, certificate=self.recipient_cert)
        key = self.m.private_key(signer)
        return proto.build_pki_message(
            message_type=message_type, transaction_id=transaction_id, sender_nonce=random(16), content=content,
            originator=originator, cipher=cipher, signer_key=key, signer_cert=signer_cert,
            digest=SHA512 if signer in self.m.dsa else SHA256, random_bytes=random, extra_attributes=list(extra),
        )

    def reply(self, flow: str, what: str, request_der: bytes, now: datetime.datetime,
              cert: x509.Certificate | None, log: list[Encapsulation], *, status: str = "SUCCESS",
              attributes=()) -> tuple[bytes, PkiRequest]:
        """Responder.receive the request, then the CertRep the CA answers with."""
        request = self.responder.receive(request_der)
        ca_random = mat.stream(f"{flow}/ca/{what}")
        if status == "PENDING":
            reply = self.responder.pending(request, now=now, random_bytes=ca_random, attributes=list(attributes))
            return reply, request
        originator = self.reply_originator(request, f"{flow}/{what}", log)  # a fresh m for every reply
        assert cert is not None, "a SUCCESS reply needs the certificate"
        return self.responder.success(request, certificates=[cert], originator=originator, now=now,
                                      random_bytes=ca_random), request


def check_certrep(v: Vectors, reply: bytes, request: PkiRequest, recipients: list) -> list[x509.Certificate]:
    """The requester's side: protocol.client.parse_cert_rep verifies and opens the CertRep."""
    bundle = proto.parse_ca_certs("application/x-x509-ca-ra-cert", signed.build_certs_only([v.recipient_cert,
                                                                                              v.ca_cert]))
    result = proto.parse_cert_rep(reply, bundle=bundle, transaction_id=request.transaction_id,
                                  sender_nonce=request.sender_nonce, recipients=recipients)
    return result.certificates


