"""The five flows of the test vectors (draft section "Examples"), one folder each:
pq-enrollment, kem-pop-challenge, kem-pop-encrypted-cert, kem-pop-statement and
password-recipient. Each writes its messages, their envelopes and KDF inputs, and values.txt.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography import x509
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from ..asn1 import cms
from ..asn1.oid_names import asn1_name
from ..ca.profile import KemPopMode
from ..client.requester import key_transaction_id
from ..cms import signed
from ..cms.kem import KemRecipient
from ..cms.password import PasswordOriginator, PasswordRecipient, pwri_kek_unwrap
from ..crypto.registry import PBKDF2_PRFS
from ..csr.pkcs10 import build_kem_csr
from ..protocol import client as proto
from ..protocol import kem_pop
from ..protocol.messages import MessageType, response_key_attribute
from ..protocol.requests import CertificationRequest, Csr, PkiRequest, SignedRequest
from . import material as mat
from .context import CBC, GCM, MINUTE, Vectors, certificate_der, check_certrep, spki_der, subject_name
from .keys import Encapsulation, resign_csr
from .output import Values

__all__ = ["kem_pop_flow", "password_recipient", "pq_enrollment"]

def pq_enrollment(v: Vectors) -> None:
    flow, out = "pq-enrollment", v.out
    values = Values("pq-enrollment: ML-DSA-65 requester, ML-KEM-768 both ways (draft sections 4 to 6)")
    caps = v.service.get_ca_caps(v.profile).body
    out.text(flow, "GetCACaps.txt", caps.decode(), "GetCACaps reply (text/plain), one keyword a line")
    bundle = v.service.get_ca_cert(v.profile).body
    out.der(flow, "GetCACert", bundle, "ContentInfo",
            "GetCACert reply: certs-only SignedData (application/x-x509-ca-ra-cert) with both certificates")
    out.der(flow, "ca-certificate", certificate_der(v.ca_cert), "Certificate",
            "the CA certificate, ML-DSA-65, self-signed")
    out.der(flow, "kem-recipient-certificate", certificate_der(v.recipient_cert), "Certificate",
            "the CA's ML-KEM-768 recipient certificate (keyUsage keyEncipherment only)")
    client = mat.stream(f"{flow}/requester")
    signer_cert = v.self_signed("device", "pqscep vectors device", mat.REQUEST_TIME, client)
    out.der(flow, "requester-certificate", certificate_der(signer_cert), "Certificate",
            "the requester's self-signed ML-DSA-65 signer certificate (RFC 8894 section 2.3)")
    csr = v.csr("device", "pqscep vectors device")
    out.der(flow, "csr", csr, "CertificationRequest", "PKCS #10 request for the ML-DSA-65 key, challengePassword")
    response_key = v.m.kem["response-key"].public_key()
    out.der(flow, "response-key", spki_der(response_key), "SubjectPublicKeyInfo",
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
        v.kem_message(flow, values, f"PKCSReq-{tag}", message, log[-1], csr, "the CA's recipient certificate",
                      envelope_text=f"pkcsPKIEnvelope of the PKCSReq ({kind}, KEMRecipientInfo); plaintext: the CSR",
                      message_text=f"PKCSReq pkiMessage ({kind}), SignedData by the ML-DSA-65 requester, "
                                   "with responseKey")
        request = _enrollment(v.responder.receive(message))
        if issued is None:
            issued = v.issue(request.csr.parsed, mat.REQUEST_TIME)
            out.der(flow, "issued-certificate", certificate_der(issued), "Certificate", "the certificate the CA issues")
            inner = signed.build_certs_only([issued])
            out.der(flow, "CertRep-certs-only", inner, "ContentInfo",
                    "degenerate certs-only SignedData: the plaintext of each CertRep envelope")
        rlog: list[Encapsulation] = []
        reply, answered = v.reply(flow, f"CertRep-{tag}", message, mat.REQUEST_TIME + MINUTE, issued, rlog)
        v.kem_message(flow, values, f"CertRep-{tag}", reply, rlog[-1], signed.build_certs_only([issued]),
                      "the responseKey",
                      envelope_text=f"pkcsPKIEnvelope of the CertRep ({kind}) to the responseKey "
                                    "(rid subjectKeyIdentifier)",
                      message_text=f"CertRep SUCCESS ({kind}), signed by the CA")
        got = check_certrep(v, reply, answered, [KemRecipient(v.m.kem["response-key"])])
        assert got == [issued]
    out.text(flow, "values.txt", values.render(), "intermediate values of every step", numbered=False)


def _kem_flow(v: Vectors, flow: str, mode: KemPopMode, values: Values) -> None:
    """The ML-KEM enrollments of draft Sections 7.2 to 7.4 (modes challenge, encrypted-cert, statement)."""
    out = v.out
    client = mat.stream(f"{flow}/requester")
    kem_name = {
        KemPopMode.CHALLENGE: "challenge-kem",
        KemPopMode.ENCRYPTED_CERT: "encrypted-kem",
        KemPopMode.STATEMENT: "statement-kem",
    }[mode]
    kem_key = v.m.kem[kem_name]
    cn = f"pqscep vectors {mode} ML-KEM device"
    if mode == KemPopMode.STATEMENT:
        # The device's own names: a certificate of this CA authorizes only its own subject and
        # SANs without a challenge (docs/security.md), here for the device's new ML-KEM key.
        cn = "pqscep vectors identity"
        signer = "statement-identity"
        csr_template = proto.build_csr(v.m.real(signer), subject_name("pqscep vectors identity"))
        signer_cert = v.issue(x509.load_der_x509_csr(resign_csr(csr_template, v.m.dsa[signer])), mat.IDENTITY_TIME)
        out.der(flow, "identity-certificate", certificate_der(signer_cert), "Certificate",
                "the device's ML-DSA-65 identity certificate, issued by the CA before: signs the request")
        password = None
    else:
        signer = "challenge-signer" if mode == KemPopMode.CHALLENGE else "encrypted-signer"
        signer_cert = v.self_signed(signer, f"pqscep vectors {mode} signer", mat.REQUEST_TIME, client)
        out.der(flow, "signer-certificate", certificate_der(signer_cert), "Certificate",
                "the requester's transient self-signed ML-DSA-65 signer certificate")
        password = mat.CHALLENGE_PASSWORD
    # v.m.dsa holds deterministic ML-DSA stand-ins (vectors/keys.py) with the same sign().
    csr = build_kem_csr(kem_key.public_key(), subject_name(cn), v.m.dsa[signer],  # type: ignore[arg-type]
                        signer_cert, challenge_password=password)
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
    v.kem_message(flow, values, "PKCSReq", message, log[-1], csr, "the CA's recipient certificate",
                  envelope_text="pkcsPKIEnvelope of the PKCSReq (AuthEnvelopedData, KEMRecipientInfo); "
                                "plaintext: the CSR",
                  message_text="PKCSReq pkiMessage, signed by the ML-DSA-65 signer")
    request = _enrollment(v.responder.receive(message))
    assert request.csr.kem_statement is not None
    now = mat.REQUEST_TIME + MINUTE
    final_request = message
    if mode == KemPopMode.CHALLENGE:
        # Draft Section 7.2, step 2: the CA encapsulates to the CSR's key and answers PENDING.
        clog: list[Encapsulation] = []
        challenge, value = kem_pop.issue_challenge(v.kem_public(kem_name, clog, f"{flow}/challenge"))
        out.der(flow, "kemPopChallenge", value, "KemCiphertextInfo",
                "kemPopChallenge attribute value: KemCiphertextInfo { id-alg-ml-kem-768, ct }")
        pending, _ = v.reply(flow, "CertRep-PENDING", message, now, None, [], status="PENDING",
                             attributes=[kem_pop.challenge_attribute(value)])
        out.der(flow, "CertRep-PENDING", pending, "ContentInfo", "CertRep PENDING with the kemPopChallenge")
        v.signed_values(values, "CertRep-PENDING", pending)
        # The requester: decapsulate, derive K, MAC the CSR (kem_pop.make_proof).
        proof = kem_pop.make_proof(kem_key, value, transaction_id, csr)
        other_info, pop_key = kem_pop.derive_pop_key(challenge.shared_secret, transaction_id, csr)
        mac = hmac.new(pop_key, csr, hashlib.sha256).digest()
        out.der(flow, "KemOtherInfo", other_info, "KemOtherInfo",
                "DER(KemOtherInfo): the HKDF info of the proof-of-possession key K")
        out.der(flow, "kemPopProof", proof, "KemPopProof",
                "kemPopProof attribute value: KemPopProof { hmacWithSHA256, HMAC-SHA256(K, DER(CSR)) }")
        values.section("KEM proof of possession, challenge-response (draft Section 7.2)")
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
                         flow=f"{flow}/certpoll", extra=[kem_pop.proof_attribute(proof)])
        v.kem_message(flow, values, "CertPoll", poll, log[-1], content, "the CA's recipient certificate",
                      envelope_text="pkcsPKIEnvelope of the CertPoll; plaintext: IssuerAndSubject (in values.txt)",
                      message_text="CertPoll (GetCertInitial) with the kemPopProof")
        polled = v.responder.receive(poll)
        assert polled.kem_pop_proof is not None
        kem_pop.verify_proof(challenge.shared_secret, polled.kem_pop_proof, transaction_id, csr)  # the CA's check
        final_request = poll
        now = now + MINUTE
    issued = v.issue(request.csr.parsed, now)
    out.der(flow, "issued-certificate", certificate_der(issued), "Certificate",
            "the ML-KEM-768 certificate the CA issues (keyUsage keyEncipherment)")
    inner = signed.build_certs_only([issued])
    out.der(flow, "CertRep-certs-only", inner, "ContentInfo", "certs-only SignedData: the CertRep envelope's plaintext")
    rlog: list[Encapsulation] = []
    if final_request is not message:
        polled = v.responder.receive(final_request)
        reply, answered = _success_for_poll(v, flow, polled, request.csr, issued, now, rlog)
    else:
        reply, answered = v.reply(flow, "CertRep", message, now, issued, rlog)
    v.kem_message(flow, values, "CertRep", reply, rlog[-1], inner, "the certified ML-KEM key",
                  envelope_text="pkcsPKIEnvelope of the CertRep, to the new ML-KEM key (rid subjectKeyIdentifier)",
                  message_text="CertRep SUCCESS, encrypted to the new ML-KEM key")
    assert check_certrep(v, reply, answered, [KemRecipient(kem_key)]) == [issued]
    out.text(flow, "values.txt", values.render(), "intermediate values of every step", numbered=False)


def _enrollment(request: PkiRequest) -> CertificationRequest:
    """The PKCSReq a flow just built, as the responder parsed it."""
    assert isinstance(request, CertificationRequest), type(request).__name__
    return request


def _success_for_poll(v: Vectors, flow: str, request: SignedRequest, csr: Csr, issued, now, log):
    """A CertPoll carries no CSR; the service takes it from the transaction, so the reply rule
    (the CSR's ML-KEM key) is applied with the enrollment's CSR."""
    originator = v.reply_originator(request, f"{flow}/CertRep", log, csr)
    reply = v.responder.success(request, certificates=[issued], originator=originator, now=now,
                                random_bytes=mat.stream(f"{flow}/ca/CertRep"))
    return reply, request


def kem_pop_flow(v: Vectors, mode: KemPopMode) -> None:
    flow = f"kem-pop-{mode}"
    titles = {
        KemPopMode.CHALLENGE: "ML-KEM-768 key, challenge-response proof of possession (draft Section 7.2)",
        KemPopMode.ENCRYPTED_CERT: "ML-KEM-768 key, encrypted-certificate proof of possession (draft Section 7.3)",
        KemPopMode.STATEMENT: "ML-KEM-768 key, RFC 9883 statement proof of possession (draft Section 7.4)",
    }
    _kem_flow(v, flow, mode, Values(f"{flow}: {titles[mode]}"))


def password_recipient(v: Vectors) -> None:
    """RFC 8894 section 3.1's PasswordRecipientInfo (draft section 5.2) from an ECDSA P-256
    requester whose signatures use RFC 6979 deterministic nonces; the reply comes back under
    the same password (draft Section 6.1, rule 4)."""
    flow, out = "password-recipient", v.out
    values = Values("password-recipient: ECDSA P-256 requester, PasswordRecipientInfo (PBKDF2-SHA256, PWRI-KEK)")
    client = mat.stream(f"{flow}/requester")
    name = "password-device"
    signer_cert = v.self_signed(name, "pqscep vectors ECDSA device", mat.REQUEST_TIME, client)
    out.der(flow, "requester-certificate", certificate_der(signer_cert), "Certificate",
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
    v.enveloped_message(flow, values, "PKCSReq", message,
                        lambda envelope: _pwri_values(v, values, "PKCSReq", envelope, csr),
                        envelope_text="pkcsPKIEnvelope of the PKCSReq: EnvelopedData, AES-256-CBC, "
                                      "PasswordRecipientInfo",
                        message_text="PKCSReq pkiMessage, SignedData by the ECDSA requester")
    request = _enrollment(v.responder.receive(message))
    assert request.envelope_kind == "pwri"
    now = mat.REQUEST_TIME + MINUTE
    issued = v.issue(request.csr.parsed, now)
    out.der(flow, "issued-certificate", certificate_der(issued), "Certificate",
            "the ECDSA P-256 certificate the CA issues")
    inner = signed.build_certs_only([issued])
    out.der(flow, "CertRep-certs-only", inner, "ContentInfo", "certs-only SignedData: the CertRep envelope's plaintext")
    reply, answered = v.reply(flow, "CertRep", message, now, issued, [])
    v.enveloped_message(flow, values, "CertRep", reply,
                        lambda envelope: _pwri_values(v, values, "CertRep", envelope, inner),
                        envelope_text="pkcsPKIEnvelope of the CertRep: PasswordRecipientInfo under the same "
                                      "password, new salt",
                        message_text="CertRep SUCCESS, signed by the ML-DSA-65 CA")
    recipients = [PasswordRecipient(mat.CHALLENGE_PASSWORD.encode())]
    assert check_certrep(v, reply, answered, recipients) == [issued]
    out.text(flow, "values.txt", values.render(), "intermediate values of every step", numbered=False)


def _pwri_values(v: Vectors, values: Values, what: str, envelope: bytes, plaintext: bytes) -> None:
    """PBKDF2 (RFC 8018), the RFC 3211 key wrap and the content encryption, recomputed."""
    info = cms.decode(cms.ContentInfo, envelope)
    body = cms.decode_der(cms.EnvelopedData, cms.tlv_bytes(info.content))
    (ri,) = body.recipient_infos.as_list()
    pwri = cms.decode_der(cms.PasswordRecipientInfo, cms.implicit_to_sequence(cms.tlv_bytes(ri)))
    params = cms.decode_der(cms.PBKDF2Params, cms.tlv_bytes(pwri.key_derivation_algorithm.parameters))
    kea = cms.parse_algorithm(pwri.key_encryption_algorithm)
    assert kea.parameters is not None
    kek_cipher = cms.parse_algorithm(kea.parameters)
    assert kek_cipher.parameters is not None
    kek_iv = cms.decode_der(bytes, kek_cipher.parameters)
    prf = PBKDF2_PRFS.by_oid(params.prf.algorithm)
    kek = PBKDF2HMAC(prf.hash_factory(), 32, params.salt, params.iteration_count).derive(
        mat.CHALLENGE_PASSWORD.encode()
    )
    cek = pwri_kek_unwrap(CBC, kek, kek_iv, pwri.encrypted_key)
    eci = body.encrypted_content_info
    content_algorithm = cms.parse_algorithm(eci.content_encryption_algorithm)
    assert content_algorithm.parameters is not None
    iv = cms.decode_der(bytes, content_algorithm.parameters)
    ciphertext = cms.decode_der(bytes, b"\x04" + cms.tlv_bytes(eci.encrypted_content)[1:])
    assert CBC.decrypt_cbc(cek, iv, ciphertext) == plaintext
    values.section(f"{what}: PasswordRecipientInfo (RFC 3211, RFC 8018)")
    values.hex("salt", params.salt)
    values.text("iterationCount", params.iteration_count, "decimal")
    values.text("prf", prf.name)
    values.hex("KEK = PBKDF2-HMAC-SHA256(password, salt, iterationCount, 32)", kek)
    values.text("keyEncryptionAlgorithm", f"{asn1_name(kea.oid)} with {asn1_name(kek_cipher.oid)}")
    values.hex("PWRI-KEK IV", kek_iv)
    values.hex("CEK (content-encryption key)", cek)
    values.hex("encryptedKey (RFC 3211 section 2.3 wrap of the CEK)", pwri.encrypted_key)
    values.text("content encryption", asn1_name(content_algorithm.oid))
    values.hex("CBC IV", iv)
    values.hex("encryptedContent", ciphertext)
    v.plaintext(values, plaintext)


