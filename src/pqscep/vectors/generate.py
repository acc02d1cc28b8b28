"""`pqscep vectors`: the example messages of docs/draft (section "Examples"), made by the
project's own code with fixed keys, times and random streams, so every run gives the same bytes.

What runs is what pqscep runs: `protocol.client` builds the requests, `protocol.server.Responder`
opens and checks them and builds the CertReps, `service.scep.ScepService` answers GetCACaps and
GetCACert and chooses the reply's recipient, `ca.authority` makes every certificate, and
`protocol.kempop` makes and checks the KEM proof of possession. The only differences from a
server run are the deterministic keys of `vectors.keys` (signatures and encapsulations) and the
`DeterministicRandom` streams of `vectors.material` where os.urandom would be.

Flows (one folder each): pq-enrollment, kem-pop-challenge, kem-pop-encrypted-cert,
kem-pop-statement, password-recipient; the keys are in keys/.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac

from cryptography import x509
from cryptography.hazmat.primitives import keywrap, serialization
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.x509.oid import NameOID

from ..asn1 import cms, oids
from ..ca.authority import Authority, IssuancePolicy, create_ca_certificate, issue_ra_certificate, random_serial
from ..ca.profile import ChallengeSettings, ProfileSettings
from ..client.enrollment import key_transaction_id
from ..cms import signed
from ..cms.kem import KemOriginator, KemRecipient, derive_kek, parse_kem_recipient_info
from ..cms.password import PasswordOriginator, PasswordRecipient, pwri_kek_unwrap
from ..crypto.registry import CIPHERS, DIGESTS, PBKDF2_PRFS
from ..protocol import client as proto
from ..protocol import kempop
from ..protocol.messages import MessageType, response_key_attribute
from ..protocol.server import PkiRequest, Responder, ResponderKeys
from ..service.scep import Profile, ScepService
from . import material as mat
from .fips import DeterministicRandom
from .keys import Encapsulation, mlkem_public_key, resign_certificate, resign_csr, template_hash
from .output import Output, Values

__all__ = ["generate", "Vectors"]

_DER = serialization.Encoding.DER
GCM = CIPHERS.by_name("aes256-gcm")
CBC = CIPHERS.by_name("aes256-cbc")
SHA256 = DIGESTS.by_name("sha256")
SHA512 = DIGESTS.by_name("sha512")
MINUTE = datetime.timedelta(minutes=1)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pqscep test vectors")])


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(_DER)


def _spki(public_key) -> bytes:
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
        template = create_ca_certificate(ca_real, _name("pqscep vectors ML-DSA-65 CA"), now=mat.CA_TIME,
                                         days=mat.CA_DAYS, serial=random_serial(ca_random))
        self.ca_cert = resign_certificate(template, ca_key)
        kem_real = self.m.kem["kem-recipient"]
        template = issue_ra_certificate(ca_real, self.ca_cert, kem_real.public_key(), _name("pqscep vectors ML-KEM-768 "
                                        "recipient"), purpose="encrypt", now=mat.CA_TIME, days=mat.CA_DAYS,
                                        serial=random_serial(ca_random))
        self.recipient_cert = resign_certificate(template, ca_key)
        self.ca_serials = ca_random
        self.settings = ProfileSettings(
            name="pq",
            ca_key_type="ml-dsa-65",
            kem_recipient_key_type="ml-kem-768",
            aes_gcm=True,
            kem_pop="challenge",
            challenge=ChallengeSettings(static_password=mat.CHALLENGE_PASSWORD),
            pwri_iterations=mat.PWRI_ITERATIONS,
            issuance=IssuancePolicy(allowed_key_families=("rsa", "ec", "ml-dsa", "ml-kem")),
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
        self.service = ScepService({"pq": self.profile}, store=None, clock=lambda: mat.REQUEST_TIME)

    # --- certificates and requests -------------------------------------------------------

    def issue(self, csr: x509.CertificateSigningRequest, now: datetime.datetime) -> x509.Certificate:
        """ca.authority.Authority.issue (the CA's real issuance), signed deterministically."""
        template = self.authority.issue(csr, serial=random_serial(self.ca_serials), now=now)
        cert = resign_certificate(template, self.m.dsa["ca"])
        cert.verify_directly_issued_by(self.ca_cert)
        return cert

    def self_signed(self, name: str, cn: str, now: datetime.datetime, random: DeterministicRandom) -> x509.Certificate:
        """RFC 8894 section 2.3's self-signed signer certificate, as protocol.client makes it."""
        template = proto.self_signed_certificate(self.m.real(name), _name(cn), now=now,
                                                 serial=random_serial(random))
        return resign_certificate(template, self.m.private_key(name))

    def csr(self, name: str, cn: str) -> bytes:
        """protocol.client.build_csr (challengePassword included), signed deterministically."""
        key = self.m.real(name)
        template = proto.build_csr(key, _name(cn), challenge=mat.CHALLENGE_PASSWORD, digest=template_hash(key))
        der = resign_csr(template, self.m.private_key(name))
        assert x509.load_der_x509_csr(der).is_signature_valid
        return der

    def kem_public(self, name: str, log: list[Encapsulation], flow: str):
        """The ML-KEM public key `name`, encapsulating deterministically (m from the flow's stream)."""
        return mlkem_public_key(self.m.kem[name].public_key(), mat.stream(f"{flow}/ml-kem-m/{name}"), log)

    def reply_originator(self, request: PkiRequest, flow: str, log: list[Encapsulation]):
        """The recipient the service chooses for the CertRep (design section 4, ScepService's
        own rule), with an ML-KEM key swapped for its deterministic twin."""
        originator = self.service._reply_originator(self.profile, request)
        if isinstance(originator, KemOriginator):
            real = originator.public_key
            name = next(n for n, k in self.m.kem.items() if _spki(k.public_key()) == _spki(real))
            originator.public_key = self.kem_public(name, log, flow)
        return originator

    # --- writing -------------------------------------------------------------------------

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
            nonce = cms.decode_der(cms.GcmParameters, algorithm.parameters).nonce
            assert GCM.decrypt_gcm(cek, nonce, ciphertext, body.mac, None) == plaintext
        else:
            nonce = cms.decode_der(bytes, algorithm.parameters)
            assert CBC.decrypt_cbc(cek, nonce, ciphertext) == plaintext
        kdf_path = self.out.der(flow, f"{what}-kdf-input", kdf_input, "CMSORIforKEMOtherInfo",
                                f"DER(CMSORIforKEMOtherInfo) of the {what} KEMRecipientInfo: the HKDF info")
        values.section(f"{what}: KEMRecipientInfo (RFC 9629, RFC 9936) to {recipient}")
        values.text("kem", "id-alg-ml-kem-768")
        if view.rid_ski is not None:
            values.hex("rid subjectKeyIdentifier", view.rid_ski)
        else:
            values.text("rid issuerAndSerialNumber serial", hex(view.rid_serial or 0))
        values.hex("m (FIPS 203 ML-KEM.Encaps randomness)", enc.m)
        values.hex("ss (ML-KEM shared secret)", enc.shared_secret)
        values.hex("kemct (ML-KEM ciphertext)", enc.ciphertext)
        values.text("kdf", "id-alg-hkdf-with-sha256, salt empty")
        values.hex(f"KDF input info = DER(CMSORIforKEMOtherInfo), also {kdf_path}", kdf_input)
        values.hex("KEK = HKDF-SHA256(ss, salt empty, info, kekLength 32)", kek)
        values.hex("CEK (content-encryption key)", cek)
        values.hex("encryptedKey = AES-256-KW(KEK, CEK) (RFC 3394)", view.encrypted_key)
        values.text("content encryption", "id-aes256-GCM (AuthEnvelopedData)" if auth else "id-aes256-CBC")
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
        """A pkiMessage as protocol.client.build_pki_message makes it (design section 3: the
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

    def reply(self, flow: str, values: Values, what: str, request_der: bytes, now: datetime.datetime,
              cert: x509.Certificate | None, log: list[Encapsulation], *, status: str = "SUCCESS",
              attributes=()) -> tuple[bytes, PkiRequest]:
        """Responder.receive the request, then the CertRep the CA answers with."""
        request = self.responder.receive(request_der)
        ca_random = mat.stream(f"{flow}/ca/{what}")
        if status == "PENDING":
            return self.responder.pending(request, now=now, random_bytes=ca_random, attributes=list(attributes)), request
        originator = self.reply_originator(request, f"{flow}/{what}", log)  # a fresh m for every reply
        return self.responder.success(request, certificates=[cert], originator=originator, now=now,
                                      random_bytes=ca_random), request


def _check_certrep(v: Vectors, reply: bytes, request: PkiRequest, recipients: list) -> list[x509.Certificate]:
    """The requester's side: protocol.client.parse_cert_rep verifies and opens the CertRep."""
    bundle = proto.parse_ca_certs("application/x-x509-ca-ra-cert", signed.build_certs_only([v.recipient_cert,
                                                                                              v.ca_cert]))
    result = proto.parse_cert_rep(reply, bundle=bundle, transaction_id=request.transaction_id,
                                  sender_nonce=request.sender_nonce, recipients=recipients)
    return result.certificates


# --- flows ----------------------------------------------------------------------------------


def pq_enrollment(v: Vectors) -> None:
    flow, out = "pq-enrollment", v.out
    values = Values("pq-enrollment: ML-DSA-65 requester, ML-KEM-768 both ways (draft sections 4 to 6)")
    caps = v.service.get_ca_caps(v.profile).body
    out.text(flow, "GetCACaps.txt", caps.decode(), "GetCACaps reply (text/plain), one keyword a line")
    bundle = v.service.get_ca_cert(v.profile).body
    out.der(flow, "GetCACert", bundle, "ContentInfo",
            "GetCACert reply: certs-only SignedData (application/x-x509-ca-ra-cert) with both certificates")
    out.der(flow, "ca-certificate", _der(v.ca_cert), "Certificate", "the CA certificate, ML-DSA-65, self-signed")
    out.der(flow, "kem-recipient-certificate", _der(v.recipient_cert), "Certificate",
            "the CA's ML-KEM-768 recipient certificate (keyUsage keyEncipherment only)")
    client = mat.stream(f"{flow}/requester")
    signer_cert = v.self_signed("device", "pqscep vectors device", mat.REQUEST_TIME, client)
    out.der(flow, "requester-certificate", _der(signer_cert), "Certificate",
            "the requester's self-signed ML-DSA-65 signer certificate (RFC 8894 section 2.3)")
    csr = v.csr("device", "pqscep vectors device")
    out.der(flow, "csr", csr, "CertificationRequest", "PKCS #10 request for the ML-DSA-65 key, challengePassword")
    response_key = v.m.kem["response-key"].public_key()
    out.der(flow, "response-key", _spki(response_key), "SubjectPublicKeyInfo",
            "responseKey attribute value: the ML-KEM-768 key the CertRep is encrypted to")
    transaction_id = key_transaction_id(v.m.real("device"))
    values.section("transaction")
    values.text("transactionID", transaction_id)
    values.text("challengePassword", mat.CHALLENGE_PASSWORD)
    issued = None
    for tag, cipher, kind in (("cbc", CBC, "EnvelopedData, AES-256-CBC"),
                              ("gcm", GCM, "AuthEnvelopedData, AES-256-GCM")):
        log: list[Encapsulation] = []
        message = v.request(message_type=MessageType.PKCS_REQ, content=csr, transaction_id=transaction_id,
                            signer="device", signer_cert=signer_cert, cipher=cipher, random=client, log=log,
                            flow=f"{flow}/{tag}", extra=[response_key_attribute(response_key)])
        envelope = v.envelope_of(message)
        out.der(flow, f"PKCSReq-{tag}-envelope", envelope, "ContentInfo",
                f"pkcsPKIEnvelope of the PKCSReq ({kind}, KEMRecipientInfo); plaintext: the CSR")
        v.kem_values(flow, values, f"PKCSReq-{tag}", envelope, log[-1], csr, "the CA's recipient certificate")
        out.der(flow, f"PKCSReq-{tag}", message, "ContentInfo",
                f"PKCSReq pkiMessage ({kind}), SignedData by the ML-DSA-65 requester, with responseKey")
        v.signed_values(values, f"PKCSReq-{tag}", message)
        request = v.responder.receive(message)
        if issued is None:
            issued = v.issue(request.csr, mat.REQUEST_TIME)  # type: ignore[arg-type]
            out.der(flow, "issued-certificate", _der(issued), "Certificate", "the certificate the CA issues")
            inner = signed.build_certs_only([issued])
            out.der(flow, "CertRep-certs-only", inner, "ContentInfo",
                    "degenerate certs-only SignedData: the plaintext of each CertRep envelope")
        rlog: list[Encapsulation] = []
        reply, request = v.reply(flow, values, f"CertRep-{tag}", message, mat.REQUEST_TIME + MINUTE, issued, rlog)
        envelope = v.envelope_of(reply)
        out.der(flow, f"CertRep-{tag}-envelope", envelope, "ContentInfo",
                f"pkcsPKIEnvelope of the CertRep ({kind}) to the responseKey (rid subjectKeyIdentifier)")
        v.kem_values(flow, values, f"CertRep-{tag}", envelope, rlog[-1], signed.build_certs_only([issued]),
                     "the responseKey")
        out.der(flow, f"CertRep-{tag}", reply, "ContentInfo", f"CertRep SUCCESS ({kind}), signed by the CA")
        v.signed_values(values, f"CertRep-{tag}", reply)
        got = _check_certrep(v, reply, request, [KemRecipient(v.m.kem["response-key"])])
        assert got == [issued]
    out.text(flow, "values.txt", values.render(), "intermediate values of every step", numbered=False)


def _kem_flow(v: Vectors, flow: str, mode: str, values: Values) -> None:
    """The ML-KEM enrollments of design section 5 (modes challenge, encrypted-cert, statement)."""
    out = v.out
    client = mat.stream(f"{flow}/requester")
    kem_name = {"challenge": "challenge-kem", "encrypted-cert": "encrypted-kem", "statement": "statement-kem"}[mode]
    kem_key = v.m.kem[kem_name]
    cn = f"pqscep vectors {mode} ML-KEM device"
    if mode == "statement":
        signer = "statement-identity"
        csr_template = proto.build_csr(v.m.real(signer), _name("pqscep vectors identity"))
        signer_cert = v.issue(x509.load_der_x509_csr(resign_csr(csr_template, v.m.dsa[signer])), mat.IDENTITY_TIME)
        out.der(flow, "identity-certificate", _der(signer_cert), "Certificate",
                "the device's ML-DSA-65 identity certificate, issued by the CA before: signs the request")
        password = None
    else:
        signer = "challenge-signer" if mode == "challenge" else "encrypted-signer"
        signer_cert = v.self_signed(signer, f"pqscep vectors {mode} signer", mat.REQUEST_TIME, client)
        out.der(flow, "signer-certificate", _der(signer_cert), "Certificate",
                "the requester's transient self-signed ML-DSA-65 signer certificate")
        password = mat.CHALLENGE_PASSWORD
    csr = kempop.build_kem_csr(kem_key.public_key(), _name(cn), v.m.dsa[signer], signer_cert,
                               challenge_password=password)
    out.der(flow, "csr", csr, "CertificationRequest",
            "PKCS #10 for the ML-KEM-768 key, signed by the signer's ML-DSA-65 key, with the RFC 9883 "
            "privateKeyPossessionStatement naming the signer certificate")
    transaction_id = key_transaction_id(kem_key)
    values.section("transaction")
    values.text("transactionID", transaction_id)
    values.text("challengePassword", password or "(none: the signer certificate is the CA's)")
    log: list[Encapsulation] = []
    message = v.request(message_type=MessageType.PKCS_REQ, content=csr, transaction_id=transaction_id, signer=signer,
                        signer_cert=signer_cert, cipher=GCM, random=client, log=log, flow=f"{flow}/pkcsreq")
    envelope = v.envelope_of(message)
    out.der(flow, "PKCSReq-envelope", envelope, "ContentInfo",
            "pkcsPKIEnvelope of the PKCSReq (AuthEnvelopedData, KEMRecipientInfo); plaintext: the CSR")
    v.kem_values(flow, values, "PKCSReq", envelope, log[-1], csr, "the CA's recipient certificate")
    out.der(flow, "PKCSReq", message, "ContentInfo", "PKCSReq pkiMessage, signed by the ML-DSA-65 signer")
    v.signed_values(values, "PKCSReq", message)
    request = v.responder.receive(message)
    assert request.kem_statement is not None
    now = mat.REQUEST_TIME + MINUTE
    final_request = message
    if mode == "challenge":
        # Design 5 a): the CA encapsulates to the CSR's key and answers PENDING.
        clog: list[Encapsulation] = []
        challenge, value = kempop.issue_challenge(v.kem_public(kem_name, clog, f"{flow}/challenge"))
        out.der(flow, "kemPopChallenge", value, "KemCiphertextInfo",
                "kemPopChallenge attribute value: KemCiphertextInfo { id-alg-ml-kem-768, ct }")
        pending, _ = v.reply(flow, values, "CertRep-PENDING", message, now, None, [], status="PENDING",
                             attributes=[kempop.challenge_attribute(value)])
        out.der(flow, "CertRep-PENDING", pending, "ContentInfo", "CertRep PENDING with the kemPopChallenge")
        v.signed_values(values, "CertRep-PENDING", pending)
        # The requester: decapsulate, derive K, MAC the CSR (kempop.make_proof).
        proof = kempop.make_proof(kem_key, value, transaction_id, csr)
        other_info, pop_key = kempop.derive_pop_key(challenge.shared_secret, transaction_id, csr)
        mac = hmac.new(pop_key, csr, hashlib.sha256).digest()
        out.der(flow, "KemOtherInfo", other_info, "KemOtherInfo",
                "DER(KemOtherInfo): the HKDF info of the proof-of-possession key K")
        out.der(flow, "kemPopProof", proof, "KemPopProof",
                "kemPopProof attribute value: KemPopProof { hmacWithSHA256, HMAC-SHA256(K, DER(CSR)) }")
        values.section("KEM proof of possession, challenge-response (draft section 8.2)")
        values.hex("m (FIPS 203 ML-KEM.Encaps randomness, CA side)", clog[-1].m)
        values.hex("ct (kemPopChallenge ciphertext)", challenge.ciphertext)
        values.hex("ss (shared secret, kept by the CA, decapsulated by the requester)", challenge.shared_secret)
        values.hex("SHA-256(DER(CSR)) (kemContext)", hashlib.sha256(csr).digest())
        values.hex("info = DER(KemOtherInfo)", other_info)
        values.hex("K = HKDF-SHA256(ss, salt empty, info, 32)", pop_key)
        values.hex("mac = HMAC-SHA256(K, DER(CSR))", mac)
        content = proto.poll_content(v.ca_cert.subject, x509.load_der_x509_csr(csr).subject)
        log = []
        poll = v.request(message_type=MessageType.CERT_POLL, content=content, transaction_id=transaction_id,
                         signer=signer, signer_cert=signer_cert, cipher=GCM, random=client, log=log,
                         flow=f"{flow}/certpoll", extra=[kempop.proof_attribute(proof)])
        envelope = v.envelope_of(poll)
        out.der(flow, "CertPoll-envelope", envelope, "ContentInfo",
                "pkcsPKIEnvelope of the CertPoll; plaintext: IssuerAndSubject (in values.txt)")
        v.kem_values(flow, values, "CertPoll", envelope, log[-1], content, "the CA's recipient certificate")
        out.der(flow, "CertPoll", poll, "ContentInfo", "CertPoll (GetCertInitial) with the kemPopProof")
        v.signed_values(values, "CertPoll", poll)
        polled = v.responder.receive(poll)
        kempop.verify_proof(challenge.shared_secret, polled.kem_pop_proof, transaction_id, csr)  # the CA's check
        final_request = poll
        now = now + MINUTE
    issued = v.issue(request.csr, now)  # type: ignore[arg-type]
    out.der(flow, "issued-certificate", _der(issued), "Certificate",
            "the ML-KEM-768 certificate the CA issues (keyUsage keyEncipherment)")
    inner = signed.build_certs_only([issued])
    out.der(flow, "CertRep-certs-only", inner, "ContentInfo", "certs-only SignedData: the CertRep envelope's plaintext")
    rlog: list[Encapsulation] = []
    if final_request is not message:
        polled = v.responder.receive(final_request)
        polled.csr, polled.raw_csr = request.csr, request.raw_csr  # the service reads them from its store
        reply, answered = _success_for_poll(v, flow, polled, issued, now, rlog)
    else:
        reply, answered = v.reply(flow, values, "CertRep", message, now, issued, rlog)
    envelope = v.envelope_of(reply)
    out.der(flow, "CertRep-envelope", envelope, "ContentInfo",
            "pkcsPKIEnvelope of the CertRep, to the new ML-KEM key (rid subjectKeyIdentifier)")
    v.kem_values(flow, values, "CertRep", envelope, rlog[-1], inner, "the certified ML-KEM key")
    out.der(flow, "CertRep", reply, "ContentInfo", "CertRep SUCCESS, encrypted to the new ML-KEM key")
    v.signed_values(values, "CertRep", reply)
    assert _check_certrep(v, reply, answered, [KemRecipient(kem_key)]) == [issued]
    out.text(flow, "values.txt", values.render(), "intermediate values of every step", numbered=False)


def _success_for_poll(v: Vectors, flow: str, request: PkiRequest, issued, now, log):
    """A CertPoll carries no CSR; the service takes it from the transaction, so the reply rule
    (the CSR's ML-KEM key) is applied to the request with its CSR restored."""
    originator = v.reply_originator(request, f"{flow}/CertRep", log)
    reply = v.responder.success(request, certificates=[issued], originator=originator, now=now,
                                random_bytes=mat.stream(f"{flow}/ca/CertRep"))
    return reply, request


def kem_pop(v: Vectors, mode: str) -> None:
    flow = f"kem-pop-{mode}"
    titles = {
        "challenge": "ML-KEM-768 key, challenge-response proof of possession (draft section 8.2)",
        "encrypted-cert": "ML-KEM-768 key, encrypted-certificate proof of possession (draft section 8.3)",
        "statement": "ML-KEM-768 key, RFC 9883 statement proof of possession (draft section 8.4)",
    }
    _kem_flow(v, flow, mode, Values(f"{flow}: {titles[mode]}"))


def password_recipient(v: Vectors) -> None:
    """RFC 8894 section 3.1's PasswordRecipientInfo (draft section 5.2) from an ECDSA P-256
    requester whose signatures use RFC 6979 deterministic nonces; the reply comes back under
    the same password (design section 4, rule 4)."""
    flow, out = "password-recipient", v.out
    values = Values("password-recipient: ECDSA P-256 requester, PasswordRecipientInfo (PBKDF2-SHA256, PWRI-KEK)")
    client = mat.stream(f"{flow}/requester")
    name = "password-device"
    signer_cert = v.self_signed(name, "pqscep vectors ECDSA device", mat.REQUEST_TIME, client)
    out.der(flow, "requester-certificate", _der(signer_cert), "Certificate",
            "the requester's self-signed ECDSA P-256 certificate (RFC 6979 deterministic signature)")
    csr = v.csr(name, "pqscep vectors ECDSA device")
    out.der(flow, "csr", csr, "CertificationRequest", "PKCS #10 for the P-256 key, with challengePassword")
    transaction_id = key_transaction_id(v.m.real(name))
    values.section("transaction")
    values.text("transactionID", transaction_id)
    values.text("password (the challengePassword, UTF-8)", mat.CHALLENGE_PASSWORD)
    originator = PasswordOriginator(mat.CHALLENGE_PASSWORD.encode(), mat.PWRI_ITERATIONS)
    message = v.request(message_type=MessageType.PKCS_REQ, content=csr, transaction_id=transaction_id, signer=name,
                        signer_cert=signer_cert, cipher=CBC, random=client, log=[], flow=flow, originator=originator)
    envelope = v.envelope_of(message)
    out.der(flow, "PKCSReq-envelope", envelope, "ContentInfo",
            "pkcsPKIEnvelope of the PKCSReq: EnvelopedData, AES-256-CBC, PasswordRecipientInfo")
    _pwri_values(v, values, "PKCSReq", envelope, csr)
    out.der(flow, "PKCSReq", message, "ContentInfo", "PKCSReq pkiMessage, SignedData by the ECDSA requester")
    v.signed_values(values, "PKCSReq", message)
    request = v.responder.receive(message)
    assert request.envelope_kind == "pwri"
    now = mat.REQUEST_TIME + MINUTE
    issued = v.issue(request.csr, now)  # type: ignore[arg-type]
    out.der(flow, "issued-certificate", _der(issued), "Certificate", "the ECDSA P-256 certificate the CA issues")
    inner = signed.build_certs_only([issued])
    out.der(flow, "CertRep-certs-only", inner, "ContentInfo", "certs-only SignedData: the CertRep envelope's plaintext")
    reply, answered = v.reply(flow, values, "CertRep", message, now, issued, [])
    envelope = v.envelope_of(reply)
    out.der(flow, "CertRep-envelope", envelope, "ContentInfo",
            "pkcsPKIEnvelope of the CertRep: PasswordRecipientInfo under the same password, new salt")
    _pwri_values(v, values, "CertRep", envelope, inner)
    out.der(flow, "CertRep", reply, "ContentInfo", "CertRep SUCCESS, signed by the ML-DSA-65 CA")
    v.signed_values(values, "CertRep", reply)
    recipients = [PasswordRecipient(mat.CHALLENGE_PASSWORD.encode())]
    assert _check_certrep(v, reply, answered, recipients) == [issued]
    out.text(flow, "values.txt", values.render(), "intermediate values of every step", numbered=False)


def _pwri_values(v: Vectors, values: Values, what: str, envelope: bytes, plaintext: bytes) -> None:
    """PBKDF2 (RFC 8018), the RFC 3211 key wrap and the content encryption, recomputed."""
    info = cms.decode(cms.ContentInfo, envelope)
    body = cms.decode_der(cms.EnvelopedData, cms.tlv_bytes(info.content))
    (ri,) = body.recipient_infos.as_list()
    pwri = cms.decode_der(cms.PasswordRecipientInfo, cms.implicit_to_sequence(cms.tlv_bytes(ri)))
    params = cms.decode_der(cms.PBKDF2Params, cms.tlv_bytes(pwri.key_derivation_algorithm.parameters))
    kea = cms.parse_algorithm(pwri.key_encryption_algorithm)
    kek_cipher = cms.parse_algorithm(kea.parameters)
    kek_iv = cms.decode_der(bytes, kek_cipher.parameters)
    prf = PBKDF2_PRFS.by_oid(params.prf.algorithm)
    kek = PBKDF2HMAC(prf.hash_factory(), 32, params.salt, params.iteration_count).derive(mat.CHALLENGE_PASSWORD.encode())
    cek = pwri_kek_unwrap(CBC, kek, kek_iv, pwri.encrypted_key)
    eci = body.encrypted_content_info
    iv = cms.decode_der(bytes, cms.parse_algorithm(eci.content_encryption_algorithm).parameters)
    ciphertext = cms.decode_der(bytes, b"\x04" + cms.tlv_bytes(eci.encrypted_content)[1:])
    assert CBC.decrypt_cbc(cek, iv, ciphertext) == plaintext
    values.section(f"{what}: PasswordRecipientInfo (RFC 3211, RFC 8018)")
    values.hex("salt", params.salt)
    values.text("iterationCount", params.iteration_count, "decimal")
    values.text("prf", prf.name)
    values.hex("KEK = PBKDF2-HMAC-SHA256(password, salt, iterationCount, 32)", kek)
    values.text("keyEncryptionAlgorithm", "id-alg-PWRI-KEK with id-aes256-CBC")
    values.hex("PWRI-KEK IV", kek_iv)
    values.hex("CEK (content-encryption key)", cek)
    values.hex("encryptedKey (RFC 3211 section 2.3 wrap of the CEK)", pwri.encrypted_key)
    values.text("content encryption", "id-aes256-CBC")
    values.hex("CBC IV", iv)
    values.hex("encryptedContent", ciphertext)
    v.plaintext(values, plaintext)


def write_keys(v: Vectors) -> None:
    for name, kind, role in mat.KEY_NAMES:
        key = v.m.real(name)
        pkcs8 = key.private_bytes(_DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        v.out.der("keys", f"{name}.key", pkcs8, "OneAsymmetricKey/PrivateKeyInfo",
                  f"{kind} private key ({role}); PKCS #8, seed form for ML-DSA/ML-KEM", numbered=False)
        v.out.der("keys", f"{name}.pub", _spki(key.public_key()), "SubjectPublicKeyInfo",
                  f"{kind} public key ({role})", numbered=False)


def generate() -> Output:
    """Every vector file, in memory."""
    from .readme import readme

    v = Vectors()
    write_keys(v)
    pq_enrollment(v)
    for mode in ("challenge", "encrypted-cert", "statement"):
        kem_pop(v, mode)
    password_recipient(v)
    v.out.text("", "README.md", readme(v), "how the vectors are made, laid out and regenerated", numbered=False)
    return v.out

