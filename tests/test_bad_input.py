"""Bad input, over real HTTP, to one real `pqscep serve`: every row must get a clean answer.

Each row of TABLE builds one request (method, path+query, body), usually a correct PKCSReq made
with `pqscep.protocol.client` and then damaged in exactly one place (tests/scep_messages.py),
and states the answer: an HTTP status with a substring of the one-line text reason, or a signed
CertRep FAILURE with a given failInfo (verified against the profile's GetCACert bundle).
Whatever the row, the server must never answer 500 or show a traceback.

Every request of a row carries the row id: its CN is "bad-<row>" and its transactionID
"<row>.<random>", so that after the table the database can be checked: no certificate for a
"bad-" subject, and no transaction left half-way (state 'received').

The "pq" profile is a post-quantum profile of the draft (docs/draft), Section 3 (ML-DSA-65 CA,
ML-KEM-768 recipient certificate, AES-GCM): its rows are ML-DSA-signed PKCSReqs with a
responseKey and a KEMRecipientInfo envelope (tests/scep_messages.py `kem_envelope`), each
damaged in one place. failInfo (RFC 8894 section 3.2.1.4) as the server answers it, following
the draft where it decides (Sections 4, 5.1, 6.1, 6.2 and 10.6): badAlg for an
algorithm the CA does not implement or that does not fit (KEM, KDF, wrap, kekLength, cipher),
badMessageCheck for what fails an integrity or decryption check (signature, CMSAlgorithmProtection,
GCM tag and AAD, a KEMRecipientInfo for no key of the CA, a KEM ciphertext of the wrong size),
badRequest for a message that breaks the protocol's rules (a responseKey that is not one usable
ML-KEM public key, no key to encrypt the reply to).

Rows that expose a server bug are marked xfail(strict=True) with the details in the reason.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import random
import secrets
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.asn1 import BitString, UTCTime
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from peers import unavailable
from scep_messages import (
    Identity,
    algorithm_protection,
    csr_der,
    envelope,
    kem_envelope,
    name,
    now,
    pki_message,
    raw_csr,
    with_public_key_info,
)
from server_proc import ServerProcess, init_data, pqscep

from pqscep.asn1 import ber, cms, oids
from pqscep.ca.policy import challenge_digest
from pqscep.ca.transactions import TxState
from pqscep.cms.signed import attribute
from pqscep.crypto.keys import generate_key
from pqscep.protocol import client
from pqscep.protocol.messages import FailInfo, MessageType, PkiStatus, printable_attribute
from pqscep.storage.db import open_store

PROFILES = ("default", "legacy", "manual", "ratelimited", "pq")
RATE_LIMIT = 3  # failed challenges the "ratelimited" profile allows per address
MAX_BODY = 256 * 1024  # the server's default max_body_bytes
from pqscep.http.app import MAX_QUERY  # noqa: E402

CONFIG = f"""\
[server]
host = "127.0.0.1"
database = "sqlite:///pqscep.db"
default_profile = "default"
ca_passphrase_file = "secrets/ca-passphrase"

# Static challenge "secret" (written by `pqscep init --challenge secret`) and one-time ones.
[profiles.default]
challenge_file = "secrets/challenge-default"
one_time_challenges = true
rate_limit_failures = 1000

[profiles.legacy]
challenge_file = "secrets/challenge-default"
allow_legacy_algorithms = true
rate_limit_failures = 1000

[profiles.manual]
challenge_file = "secrets/challenge-default"
manual_approval = true
rate_limit_failures = 1000

[profiles.ratelimited]
challenge_file = "secrets/challenge-default"
rate_limit_failures = {RATE_LIMIT}

# Post-quantum (draft Section 3): ML-DSA-65 CA, ML-KEM-768 recipient certificate, AES-GCM.
[profiles.pq]
ca_key_type = "ml-dsa-65"
kem_recipient = "ml-kem-768"
aes_gcm = true
challenge_file = "secrets/challenge-default"
rate_limit_failures = 1000
"""


# --- requests and the environment that sends them ---


@dataclass
class Req:
    method: str
    target: str  # path and query
    body: bytes | Iterable[bytes] | None = None
    # What reading the CertRep needs (PKIOperation requests only).
    profile: str = "default"
    transaction_id: str | None = None
    sender_nonce: bytes | None = None
    identity: Identity | None = None


_ROW = object()  # "derive from the row id"


def _path(profile: str) -> str:
    return "/scep" if profile == "default" else f"/scep/{profile}"


class Env:
    def __init__(self, server: ServerProcess):
        self.server = server
        self.data = server.data_dir
        self.db_url = f"sqlite:///{self.data / 'pqscep.db'}"
        self.http = httpx.Client(base_url=server.base, timeout=60)
        self.bundles = {}
        for profile in PROFILES:
            reply = self.http.get(_path(profile), params={"operation": "GetCACert"})
            assert reply.status_code == 200, reply.text
            self.bundles[profile] = client.parse_ca_certs(reply.headers["content-type"], reply.content)
        self.row = "setup"
        self.ran: set[str] = set()

    def ca(self, profile: str = "default") -> x509.Certificate:
        return self.bundles[profile].ca

    # --- sending ---

    def send(self, req: Req) -> httpx.Response:
        log_offset = self.server.log_path.stat().st_size
        if len(req.target) > 60_000:  # httpx refuses URLs this long
            reply = _raw_http(self.server.port, req.method, req.target)
        else:
            reply = self.http.request(req.method, req.target, content=req.body)
        if reply.status_code == 500:
            with open(self.server.log_path, "rb") as log:
                log.seek(log_offset)
                tail = log.read().decode(errors="replace")[-4000:]
            raise AssertionError(f"500 from the server: {reply.text.strip()}\nserver log:\n{tail}")
        assert b"Traceback" not in reply.content, reply.text
        return reply

    def cert_rep(self, req: Req, reply: httpx.Response) -> client.CertRepResult:
        assert reply.status_code == 200, f"HTTP {reply.status_code}: {reply.text}"
        assert reply.headers["content-type"] == "application/x-pki-message"
        return client.parse_cert_rep(reply.content, bundle=self.bundles[req.profile],
                                     transaction_id=req.transaction_id, sender_nonce=req.sender_nonce,
                                     recipients=req.identity.recipients)

    def enroll(self, req: Req) -> client.CertRepResult:
        """Send a set-up request of a row and read its CertRep."""
        return self.cert_rep(req, self.send(req))

    # --- building ---

    def tid(self) -> str:
        return f"{self.row}.{secrets.token_hex(6)}"

    def cn(self, suffix: str = "") -> str:
        return f"bad-{self.row}{suffix}"

    def request(self, message_type, content: bytes, *, profile: str = "default", identity: Identity | None = None,
                tid=_ROW, nonce=_ROW, pki_envelope=None, replace_e_content=None, **damage) -> Req:
        """A pkiMessage of `message_type` carrying `content`, POSTed to the profile.
        `pki_envelope` and `replace_e_content` may be functions of (content, recipient cert)."""
        identity = identity or Identity.new(self.cn())
        tid = self.tid() if tid is _ROW else tid
        nonce = os.urandom(16) if nonce is _ROW else nonce
        # The request envelope's recipient: the ML-KEM recipient certificate of a PQ profile.
        recipient = self.bundles[profile].kem_recipient_cert or self.bundles[profile].encipherer
        if callable(pki_envelope):
            pki_envelope = pki_envelope(content, recipient)
        if callable(replace_e_content):
            replace_e_content = replace_e_content(content, recipient)
        body = pki_message(signer=identity, content=content, recipient=recipient, message_type=message_type,
                           transaction_id=tid, sender_nonce=nonce, pki_envelope=pki_envelope,
                           replace_e_content=replace_e_content, **damage)
        return Req("POST", _path(profile) + "?operation=PKIOperation", body, profile, tid, nonce, identity)

    def pkcsreq(self, cn=_ROW, *, challenge: str | None = "secret", identity: Identity | None = None,
                csr: bytes | None = None, content: bytes | None = None,
                message_type=MessageType.PKCS_REQ, **kw) -> Req:
        """A PKCSReq for CN `cn` (default "bad-<row>") with the static challenge, signed by a
        fresh self-signed key unless `identity` is given; `csr`/`content` replace the CSR."""
        cn = self.cn() if cn is _ROW else cn
        identity = identity or Identity.new(cn)
        if csr is None:
            csr = csr_der(identity.key, cn, challenge=challenge)
        return self.request(message_type, csr if content is None else content, identity=identity, **kw)

    def pq(self, cn=_ROW, *, kind: str = "ml-dsa-65", identity: Identity | None = None, response_key=True,
           challenge: str | None = "secret", cipher: str = "aes256-gcm", envelope: dict | None = None,
           pki_envelope=None, extra_attributes=(), **damage) -> Req:
        """A post-quantum PKCSReq at the "pq" profile: signed by a fresh `kind` key (ML-DSA-65;
        CMSAlgorithmProtection included), with a responseKey of a fresh ML-KEM-768 key, and the
        CSR in a `cipher` envelope with one KEMRecipientInfo for the CA's ML-KEM-768 recipient
        certificate. `envelope` holds `kem_envelope` options (the damage to the envelope);
        `response_key`: True (the identity's), False (none), or a list of attribute values (DER)."""
        cn = self.cn() if cn is _ROW else cn
        identity = identity or Identity.new(cn, kind=kind, response_key=response_key is True)
        attrs = list(extra_attributes)
        if response_key is True:
            attrs.append(identity.response_key_attribute)
        elif response_key:
            attrs.append(attribute(oids.SCEP_RESPONSE_KEY, *response_key))
        if pki_envelope is None:
            options = envelope or {}
            pki_envelope = lambda c, r: kem_envelope(c, r, cipher, **options)  # noqa: E731
        return self.request(MessageType.PKCS_REQ, csr_der(identity.key, cn, challenge=challenge), profile="pq",
                            identity=identity, pki_envelope=pki_envelope, extra_attributes=attrs, **damage)


def _raw_http(port: int, method: str, target: str, body: bytes = b"") -> httpx.Response:
    """One HTTP/1.1 exchange over a plain socket, for request lines httpx will not send."""
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" \
           f"Content-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:

        def send() -> None:
            with contextlib.suppress(OSError):  # the server may answer and close before reading everything
                sock.sendall(head.encode("ascii") + body)

        # Read while sending, so that an early answer is not lost to a connection reset.
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        sender.join(timeout=60)
    head_bytes, _, content = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    assert lines and lines[0].startswith("HTTP/1.1 "), f"no HTTP answer: {data[:200]!r}"
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if ":" in line]
    return httpx.Response(int(lines[0].split()[1]), headers=headers, content=content)


# --- expected answers ---


@dataclass(frozen=True)
class Http:
    """An HTTP error with a one-line text reason containing `reason`."""

    status: int
    reason: str

    def check(self, env: Env, req: Req, reply: httpx.Response) -> None:
        assert reply.status_code == self.status, f"HTTP {reply.status_code}: {reply.text[:300]}"
        assert reply.headers["content-type"].startswith("text/plain")
        text = reply.text
        assert len(text.strip().splitlines()) == 1 and len(text) < 400, f"not one line: {text!r}"
        assert self.reason in text, f"{self.reason!r} not in {text!r}"


@dataclass(frozen=True)
class Failure:
    """A CertRep FAILURE, signed by the profile's CA, with this failInfo and a failInfoText
    containing `text`."""

    info: FailInfo
    text: str = ""

    def check(self, env: Env, req: Req, reply: httpx.Response) -> None:
        rep = env.cert_rep(req, reply)
        assert rep.status == PkiStatus.FAILURE, f"{rep.status.name}, expected FAILURE"
        assert rep.fail_info == self.info, f"failInfo {rep.fail_info!r} ({rep.fail_info_text}), expected {self.info!r}"
        assert rep.fail_info_text, "FAILURE without failInfoText"
        assert self.text in rep.fail_info_text, f"{self.text!r} not in {rep.fail_info_text!r}"


@dataclass(frozen=True)
class Success:
    """A CertRep SUCCESS carrying the certificate for `cn` (positive controls)."""

    cn: str

    def check(self, env: Env, req: Req, reply: httpx.Response) -> None:
        rep = env.cert_rep(req, reply)
        assert rep.status == PkiStatus.SUCCESS, f"{rep.status.name}: {rep.fail_info!r} {rep.fail_info_text}"
        assert rep.certificates[0].subject == name(self.cn)


# --- small builders ---


def _valid(e: Env) -> bytes:
    return e.pkcsreq().body  # type: ignore[return-value]


def _cut(at: Callable[[int], int]) -> Callable[[Env], Req]:
    def build(e: Env) -> Req:
        body = _valid(e)
        return Req("POST", "/scep?operation=PKIOperation", body[: at(len(body))])
    return build


def _post(body: bytes | Callable[[Env], bytes], target: str = "/scep?operation=PKIOperation") -> Callable[[Env], Req]:
    return lambda e: Req("POST", target, body(e) if callable(body) else body)


def _get(target: str) -> Callable[[Env], Req]:
    return lambda e: Req("GET", target)


def _retype(value: str):
    """tamper= for pki_message: rewrite the messageType attribute after signing."""
    def tamper(attrs):
        return [printable_attribute(oids.SCEP_MESSAGE_TYPE, value) if a.attr_type == oids.SCEP_MESSAGE_TYPE else a
                for a in attrs]
    return tamper


def _utf8_transaction_id(e: Env) -> Req:
    """A PKCSReq whose transactionID is a UTF8String with characters a PrintableString cannot
    hold (as some clients send): it must be answered, with the same ID."""
    tid = f"{e.tid()}_dev@x"
    req = e.pkcsreq("ok-utf8-tid", tid=None, extra_attributes=[attribute(oids.SCEP_TRANSACTION_ID, cms.encode(tid))])
    req.transaction_id = tid
    return req


class _RawCertificate:
    """Stands in for a certificate in pki_message(certificates=...): gives back raw DER."""

    def __init__(self, der: bytes):
        self.der = der

    def public_bytes(self, encoding) -> bytes:
        return self.der


def _damage_name(der: bytes, name_der: bytes) -> bytes:
    """`der` with the first string value inside its first copy of `name_der` retagged as a
    BOOLEAN: the lengths stay right, so cryptography loads it and fails only when it reads
    that Name (a case random mutation found: read only later, in the policy code, it would end
    in a 500)."""
    start = der.index(name_der)
    damaged = bytearray(name_der)
    damaged[next(i for i, b in enumerate(damaged) if b in (0x0C, 0x13))] = 0x01
    return der[:start] + bytes(damaged) + der[start + len(name_der):]


def _signer_certificate_with_damaged_issuer(e: Env) -> Req:
    identity = Identity.new(e.cn())
    der = identity.cert.public_bytes(Encoding.DER)
    broken = _damage_name(der, identity.cert.issuer.public_bytes())
    return e.pkcsreq(identity=identity, certificates=[_RawCertificate(broken)])


def _csr_with_damaged_subject(e: Env) -> Req:
    """A CSR whose subject Name does not parse, correctly signed by its own key (so only the
    subject is wrong, as an attacker holding the key can make it)."""
    from cryptography.hazmat.primitives.asymmetric import padding

    identity = Identity.new(e.cn())
    good = csr_der(identity.key, e.cn(), challenge="secret")
    request = cms.decode_der(cms.CertificationRequest, good)
    info = cms.tlv_bytes(request.certification_request_info)
    info = _damage_name(info, cms.tlv_bytes(cms.decode_der(cms.CertificationRequestInfo, info).subject))
    signature = identity.key.sign(info, padding.PKCS1v15(), hashes.SHA256())
    csr = ber.encode_tlv(0x30, info + cms.tlv_bytes(request.signature_algorithm)
                         + ber.encode_tlv(0x03, b"\x00" + signature))
    return e.pkcsreq(identity=identity, csr=csr)


def _nested_segments(depth: int) -> bytes:
    """An encryptedContent [0] holding OCTET STRING segments nested `depth` deep (BER allows
    constructed segments inside constructed segments)."""
    inner = ber.encode_tlv(0x04, b"\x00" * 16)
    for _ in range(depth):
        inner = ber.encode_tlv(0x24, inner)
    return ber.encode_tlv(0xA0, inner)


def _name_der(cn_value_tlv: bytes) -> bytes:
    """A Name with one CN whose value is the given TLV (of any type)."""
    atv = ber.encode_tlv(0x30, bytes.fromhex("0603550403") + cn_value_tlv)
    return ber.encode_tlv(0x30, ber.encode_tlv(0x31, atv))


def _challenge_attr(*values: bytes) -> bytes:
    """A PKCS#9 challengePassword attribute with these value TLVs (possibly none)."""
    return ber.encode_tlv(0x30, bytes.fromhex("06092a864886f70d010907") + ber.encode_tlv(0x31, b"".join(values)))


def _odd_csr(e: Env, name_der: bytes, attributes_der: bytes) -> Req:
    identity = Identity.new(e.cn())
    return e.pkcsreq(identity=identity, csr=raw_csr(identity.key, name_der, attributes_der))


def _cn_tlv(text: str) -> bytes:
    return ber.encode_tlv(0x0C, text.encode())


def _create_challenge(e: Env) -> str:
    out = pqscep("admin", "challenge", "create", "--data", e.data, "--profile", "default")
    return out.stdout.decode().strip()


def _issuer_and_serial(e: Env, message_type, issuer: x509.Name, serial: int) -> Req:
    return e.request(message_type, client.issuer_and_serial_content(issuer, serial))


OTHER_CA = name("Some Other CA")


# --- rows that need earlier requests ---


def one_time_reused(e: Env) -> Req:
    password = _create_challenge(e)
    first = e.pkcsreq("ok-one-time-first-use", challenge=password)
    assert e.enroll(first).status == PkiStatus.SUCCESS
    return e.pkcsreq(challenge=password)


def one_time_expired(e: Env) -> Req:
    password = secrets.token_urlsafe(16)
    store = open_store(e.db_url)
    try:
        t = now()
        store.add_challenge("default", challenge_digest(password), expires_at=t - datetime.timedelta(minutes=1),
                            now=t - datetime.timedelta(hours=1))
    finally:
        store.close()
    return e.pkcsreq(challenge=password)


def _pending(e: Env, identity: Identity | None = None) -> Req:
    first = e.pkcsreq(profile="manual", identity=identity)
    rep = e.enroll(first)
    assert rep.status == PkiStatus.PENDING, f"{rep.status.name} {rep.fail_info_text}"
    return first


def tid_other_signer(e: Env) -> Req:
    """The CSR of a pending transaction (no secret) under its ID, signed by another key: it may
    not take the transaction over. (Another CSR key under the same ID is another transaction,
    tests/test_attacks.py, so that is no bad input.)"""
    owner = Identity.new(e.cn())
    csr = csr_der(owner.key, e.cn(), challenge="secret")
    first = e.pkcsreq(profile="manual", identity=owner, csr=csr)
    assert e.enroll(first).status == PkiStatus.PENDING
    return e.pkcsreq(profile="manual", csr=csr, tid=first.transaction_id)  # a fresh signer


def tid_same_key_other_csr(e: Env) -> Req:
    first = _pending(e)
    return e.pkcsreq(e.cn("-second"), profile="manual", identity=first.identity, tid=first.transaction_id)


def poll_other_key(e: Env) -> Req:
    first = _pending(e)
    return e.request(MessageType.CERT_POLL, client.poll_content(e.ca("manual").subject, name(e.cn())),
                     profile="manual", tid=first.transaction_id)


def rate_limited(e: Env) -> Req:
    for _ in range(RATE_LIMIT):
        rep = e.enroll(e.pkcsreq(profile="ratelimited", challenge="not the secret"))
        assert rep.status == PkiStatus.FAILURE and "challenge" in (rep.fail_info_text or "")
    return e.pkcsreq(profile="ratelimited")  # the RIGHT challenge, refused all the same


def too_long_query(e: Env) -> Req:
    return Req("GET", "/scep?operation=PKIOperation&message=" + "A" * (MAX_QUERY + 1024))


def get_wrong_challenge(e: Env) -> Req:
    req = e.pkcsreq(challenge="wrong")
    message = base64.b64encode(req.body).decode()  # type: ignore[arg-type]
    req.method, req.target, req.body = "GET", "/scep?operation=PKIOperation&message=" + \
        message.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"), None
    return req


def _chunks(total: int) -> Iterable[bytes]:
    for _ in range(total // 4096 + 1):
        yield b"\x30" * 4096


# --- post-quantum helpers ---


def _spki(key) -> bytes:
    public = key.public_key() if hasattr(key, "public_key") else key
    return public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _raw_spki(oid: x509.ObjectIdentifier, public_key: bytes) -> bytes:
    """A SubjectPublicKeyInfo of any algorithm, with no parameters."""
    spki = cms.SubjectPublicKeyInfo(algorithm=cms.algorithm_tlv(oid), subject_public_key=BitString(public_key, 0))
    return cms.encode(spki)


def _other_ml_kem_certificate() -> x509.Certificate:
    """An ML-KEM-768 certificate of another CA: a recipient that is not this CA's."""
    issuer = ec.generate_private_key(ec.SECP256R1())
    t = now()
    return (x509.CertificateBuilder().subject_name(name("another ML-KEM recipient")).issuer_name(OTHER_CA)
            .public_key(generate_key("ml-kem-768").public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(t).not_valid_after(t + datetime.timedelta(days=1)).sign(issuer, hashes.SHA256()))


def _swap_response_key(attrs):
    """tamper= for pki_message: put another ML-KEM key in responseKey after signing (an attacker
    redirecting the reply to a key of its own)."""
    spki = _spki(generate_key("ml-kem-768"))
    return [attribute(oids.SCEP_RESPONSE_KEY, spki) if a.attr_type == oids.SCEP_RESPONSE_KEY else a for a in attrs]


def _time_attribute(when: datetime.datetime):
    return attribute(oids.SIGNING_TIME, cms.encode(UTCTime(when.replace(microsecond=0))))


AAD_TIME = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
# RFC 5083 authAttrs: contentType (id-data) and a signingTime, authenticated as AAD.
AUTH_ATTRS = [attribute(oids.CONTENT_TYPE, cms.encode(oids.DATA)), _time_attribute(AAD_TIME)]


def _later_time(attrs):
    """tamper_auth_attrs=: move the authenticated signingTime by one second after encryption."""
    return [_time_attribute(AAD_TIME + datetime.timedelta(seconds=1)) if a.attr_type == oids.SIGNING_TIME else a
            for a in attrs]


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def _slh_dsa_signer(e: Env) -> Req:
    """A PKCSReq signed by a certificate whose key is SLH-DSA-SHA2-128s (FIPS 205): a signature
    algorithm outside the ML-DSA, RSA and ECDSA signers of draft Section 4, and one cryptography
    cannot load."""
    identity = Identity.new(e.cn())
    slh_dsa = x509.ObjectIdentifier("2.16.840.1.101.3.4.3.20")  # id-slh-dsa-sha2-128s
    cert = with_public_key_info(identity.cert, identity.key, _raw_spki(slh_dsa, os.urandom(32)))
    return e.pq(identity=Identity(identity.key, cert), response_key=[_spki(_new_ml_kem())], signature_oid=slh_dsa)


def _new_ml_kem():
    return generate_key("ml-kem-768")


def bug(reason: str):
    return pytest.mark.xfail(strict=True, reason="BUG: " + reason)


P = pytest.param
UNKNOWN_CIPHER = x509.ObjectIdentifier("2.16.840.1.101.3.4.1.127")
RNG = random.Random(8894)
F = FailInfo
UNKNOWN_KDF = x509.ObjectIdentifier("1.2.840.113549.1.9.16.3.127")  # an unassigned id-alg
UNKNOWN_WRAP = x509.ObjectIdentifier("2.16.840.1.101.3.4.1.125")
UNKNOWN_KEY_ALGORITHM = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1")

TABLE = [
    # --- HTTP layer ---
    P(_post(b""), Http(400, "empty message"), id="empty-post-body"),
    P(_post(b"x" * 40, "/scep?operation=GetCACaps"), Http(405, "GetCACaps is a GET operation"), id="post-getcacaps"),
    P(_get("/scep?operation=PKIOperation&message=%2A%2A%2A"), Http(400, "not base64"), id="get-invalid-base64"),
    P(_get("/scep?operation=PKIOperation"), Http(400, "needs a message parameter"), id="get-without-message"),
    P(_get("/scep?operation=Frobnicate"), Http(400, "unknown operation"), id="get-unknown-operation"),
    P(_get("/scep"), Http(400, "missing operation"), id="missing-operation"),
    P(_get("/scep?message=abc"), Http(400, "missing operation"), id="message-without-operation"),
    P(_get("/no/such/place?operation=GetCACaps"), Http(404, "no SCEP profile"), id="unknown-path"),
    P(_post(b"\x30" * (MAX_BODY + 1)), Http(413, "limit"), id="body-over-limit-content-length"),
    P(lambda e: Req("POST", "/scep?operation=PKIOperation", _chunks(MAX_BODY + 1)), Http(413, "limit"),
      id="body-over-limit-chunked"),
    P(too_long_query, Http(414, "query string too long"), id="query-too-long"),
    # --- not a pkiMessage at all: 400 ---
    P(_cut(lambda n: 1), Http(400, "not a SCEP pkiMessage"), id="truncated-1-byte"),
    P(_cut(lambda n: 4), Http(400, "not a SCEP pkiMessage"), id="truncated-4-bytes"),
    P(_cut(lambda n: n // 2), Http(400, "not a SCEP pkiMessage"), id="truncated-half"),
    P(_cut(lambda n: n - 1), Http(400, "not a SCEP pkiMessage"), id="truncated-last-byte"),
    P(_post(RNG.randbytes(2048)), Http(400, "not a SCEP pkiMessage"), id="random-bytes"),
    P(_post(b"\x30\x80" * 5000 + b"\x00\x00" * 5000), Http(400, "not a SCEP pkiMessage"), id="ber-nesting-bomb"),
    P(_post(lambda e: e.ca().public_bytes(Encoding.DER)), Http(400, "not a SCEP pkiMessage"),
      id="der-certificate-not-cms"),
    P(_post(lambda e: envelope(b"hello", e.ca())), Http(400, "not signedData"), id="contentinfo-enveloped-data"),
    P(lambda e: e.pkcsreq(no_signers=True), Http(400, "has 0"), id="zero-signers"),
    P(lambda e: e.pkcsreq(extra_signers=(Identity.new("bad-second-signer"),)), Http(400, "has 2"), id="two-signers"),
    P(lambda e: e.pkcsreq(tid=None), Http(400, "transactionID or senderNonce missing"), id="no-transaction-id"),
    P(lambda e: e.pkcsreq(nonce=None), Http(400, "transactionID or senderNonce missing"), id="no-sender-nonce"),
    P(lambda e: e.pkcsreq(nonce=b"1234567"), Http(400, "senderNonce must be 8 to 64 bytes"), id="sender-nonce-7-bytes"),
    P(lambda e: e.pkcsreq(tid=e.tid() + "x" * 128), Http(400, "transactionID is too long"),
      id="transaction-id-too-long"),
    P(_utf8_transaction_id, Success("ok-utf8-tid"), id="transaction-id-utf8-outside-printablestring-accepted"),
    P(lambda e: e.pkcsreq(extra_attributes=[printable_attribute(oids.SCEP_MESSAGE_TYPE, "19")]),
      Http(400, "appears twice"), id="message-type-attribute-twice"),
    # --- signed FAILURE replies: the message is readable enough to answer ---
    P(lambda e: e.pkcsreq(message_type=None), Failure(F.BAD_REQUEST, "messageType"), id="message-type-missing"),
    P(lambda e: e.pkcsreq(message_type=99), Failure(F.BAD_REQUEST, "unsupported messageType 99"),
      id="message-type-99"),
    P(lambda e: e.pkcsreq(message_type=MessageType.CERT_REP), Failure(F.BAD_REQUEST, "unsupported messageType 3"),
      id="message-type-certrep-from-client"),
    P(lambda e: e.pkcsreq(message_type="abc"), Failure(F.BAD_REQUEST, "messageType 'abc' is not a number"),
      id="message-type-not-a-number"),
    P(lambda e: e.pkcsreq(flip_signature=True), Failure(F.BAD_MESSAGE_CHECK, "signature"), id="signature-bit-flipped"),
    P(lambda e: e.pkcsreq(tamper=_retype("17")), Failure(F.BAD_MESSAGE_CHECK, "signature does not verify"),
      id="signed-attribute-tampered"),
    P(lambda e: e.pkcsreq(replace_e_content=lambda c, r: envelope(c, r)),
      Failure(F.BAD_MESSAGE_CHECK, "messageDigest does not match"), id="message-digest-mismatch"),
    P(_signer_certificate_with_damaged_issuer, Http(400, "a certificate in the SignedData does not parse"),
      id="signer-certificate-issuer-does-not-parse"),
    P(_csr_with_damaged_subject, Failure(F.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope"),
      id="csr-subject-does-not-parse"),
    P(lambda e: e.pkcsreq(certificates=[]), Failure(F.BAD_CERT_ID, "certificate is not in the message"),
      id="signer-certificate-missing"),
    P(lambda e: e.pkcsreq(digest="md5"), Failure(F.BAD_ALG, "not supported"), id="md5-without-legacy"),
    P(lambda e: e.pkcsreq(cipher="des-cbc"), Failure(F.BAD_ALG, "des-cbc is not enabled"), id="des-without-legacy"),
    P(lambda e: e.pkcsreq(pki_envelope=lambda c, r: envelope(c, r, cipher_oid=UNKNOWN_CIPHER)),
      Failure(F.BAD_ALG, "unsupported content encryption algorithm"), id="envelope-unknown-cipher"),
    P(lambda e: e.pkcsreq(pki_envelope=lambda c, r: envelope(c, Identity.new("other").cert)),
      Failure(F.BAD_MESSAGE_CHECK, "no RecipientInfo"), id="envelope-for-another-key"),
    # Random ciphertext (bad padding) and a truncated block get the same one answer: a CA that
    # told padding errors apart would be a padding oracle for recorded envelopes.
    P(lambda e: e.pkcsreq(pki_envelope=lambda c, r: envelope(c, r,
                                                            encrypted_content=ber.encode_tlv(0x80, os.urandom(64)))),
      Failure(F.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope"), id="envelope-random-ciphertext"),
    P(lambda e: e.pkcsreq(pki_envelope=lambda c, r: envelope(c, r,
                                                            encrypted_content=ber.encode_tlv(0x80, os.urandom(20)))),
      Failure(F.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope"), id="envelope-partial-block"),
    P(lambda e: e.pkcsreq(pki_envelope=lambda c, r: envelope(c, r, encrypted_content=_nested_segments(3000))),
      Failure(F.BAD_MESSAGE_CHECK, "encryptedContent"), id="envelope-segments-nested-3000-deep"),
    # In an AES-CBC envelope, content that is not what the message type needs, and a CSR whose
    # signature does not verify, answer like bad padding: CBC lets a replayer flip plaintext bits.
    P(lambda e: e.pkcsreq(content=b"this is not a PKCS#10 request"),
      Failure(F.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope"),
      id="envelope-content-not-a-csr"),
    P(lambda e: e.pkcsreq(csr=(lambda d: d[:-1] + bytes([d[-1] ^ 1]))(csr_der(Identity.new().key, e.cn()))),
      Failure(F.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope"), id="csr-signature-broken"),
    # RFC 8894 section 2.3 makes the same key a SHOULD: a request signed by another key (a
    # transient signer, whose key opens the reply) is accepted; the CSR's signature is the proof.
    P(lambda e: e.pkcsreq(csr=csr_der(Identity.new().key, "ok-csr-key-not-signer-key", challenge="secret")),
      Success("ok-csr-key-not-signer-key"), id="csr-key-not-signer-key-accepted"),
    P(lambda e: e.pkcsreq(identity=Identity.new(e.cn(), bits=1024)), Failure(F.BAD_REQUEST, "at least 2048 bits"),
      id="csr-rsa-1024"),
    P(lambda e: e.pkcsreq(None), Failure(F.BAD_REQUEST, "neither a subject nor subjectAltNames"),
      id="csr-empty-subject"),
    P(lambda e: e.pkcsreq(identity=Identity.new(e.cn(), kind="ec")), Failure(F.BAD_REQUEST, "no way to encrypt"),
      id="ec-signer-reply-unencryptable"),
    P(lambda e: _odd_csr(e, _name_der(ber.encode_tlv(0x02, b"\x05")), _challenge_attr(_cn_tlv("secret"))),
      Failure(F.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope"), id="csr-subject-cn-is-integer"),
    P(lambda e: _odd_csr(e, _name_der(_cn_tlv(e.cn())), _challenge_attr()),
      Failure(F.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope"), id="csr-challenge-with-no-value"),
    # --- policy ---
    P(lambda e: e.pkcsreq(challenge="not the secret"), Failure(F.BAD_REQUEST, "wrong, expired or already used"),
      id="challenge-wrong"),
    P(lambda e: e.pkcsreq(challenge=None), Failure(F.BAD_REQUEST, "challenge password required"),
      id="challenge-missing"),
    P(one_time_reused, Failure(F.BAD_REQUEST, "wrong, expired or already used"), id="one-time-challenge-reused"),
    P(one_time_expired, Failure(F.BAD_REQUEST, "wrong, expired or already used"), id="one-time-challenge-expired"),
    P(get_wrong_challenge, Failure(F.BAD_REQUEST, "wrong, expired or already used"),
      id="get-pkioperation-wrong-challenge"),
    P(tid_other_signer, Failure(F.BAD_REQUEST, "requested with another signer key"),
      id="transaction-id-replayed-other-signer"),
    P(tid_same_key_other_csr, Failure(F.BAD_REQUEST, "in use for another request in progress"),
      id="transaction-id-same-key-other-csr-pending"),
    P(lambda e: e.pkcsreq(message_type=MessageType.RENEWAL_REQ),
      Failure(F.BAD_REQUEST, "RenewalReq must be signed by a certificate this CA issued"), id="renewal-self-signed"),
    P(rate_limited, Failure(F.BAD_REQUEST, "too many failed attempts"), id="rate-limited-right-challenge"),
    # --- GetCert, GetCRL, CertPoll ---
    P(lambda e: _issuer_and_serial(e, MessageType.GET_CERT, e.ca().subject, 0x5CE9DEAD),
      Failure(F.BAD_CERT_ID, "no certificate with that serial"), id="getcert-unknown-serial"),
    P(lambda e: _issuer_and_serial(e, MessageType.GET_CERT, e.ca().subject, 0), Failure(F.BAD_CERT_ID),
      id="getcert-serial-zero"),
    P(lambda e: _issuer_and_serial(e, MessageType.GET_CERT, OTHER_CA, 1),
      Failure(F.BAD_CERT_ID, "issuer is not this CA"),
      id="getcert-other-issuer"),
    P(lambda e: _issuer_and_serial(e, MessageType.GET_CRL, OTHER_CA, 1),
      Failure(F.BAD_CERT_ID, "issuer is not this CA"),
      id="getcrl-other-issuer"),
    P(lambda e: e.request(MessageType.GET_CERT, b"\x30\x03\x02\x01\x01"),
      Failure(F.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope"),
      id="getcert-malformed-issuer-and-serial"),
    P(lambda e: e.request(MessageType.CERT_POLL, client.poll_content(e.ca().subject, name(e.cn()))),
      Failure(F.BAD_CERT_ID, "no such transaction"), id="certpoll-unknown-transaction"),
    # A poll's signer picks its transaction: another key's poll finds none, the answer of an
    # unknown ID (which says nothing of whether the ID is in use).
    P(poll_other_key, Failure(F.BAD_CERT_ID, "no such transaction"), id="certpoll-signed-by-other-key"),
    # --- post-quantum profile (draft Sections 4 to 6) ---
    # Positive controls: each thing the damaged rows below change is accepted when right.
    P(lambda e: e.pq("ok-pq-gcm"), Success("ok-pq-gcm"), id="pq-ml-dsa-65-kemri-gcm-accepted"),
    P(lambda e: e.pq("ok-pq-cbc", cipher="aes256-cbc"), Success("ok-pq-cbc"), id="pq-kemri-cbc-accepted"),
    P(lambda e: e.pq("ok-pq-ski-ukm", envelope=dict(rid="ski", ukm=b"user keying material", kdf="hkdf-sha512",
                                                   wrap="aes128-wrap")),
      Success("ok-pq-ski-ukm"), id="pq-kemri-ski-ukm-hkdf-sha512-aes128-wrap-accepted"),
    P(lambda e: e.pq("ok-pq-auth-attrs", envelope=dict(auth_attrs=AUTH_ATTRS)), Success("ok-pq-auth-attrs"),
      id="pq-auth-attrs-accepted"),
    # KEMRecipientInfo (RFC 9629)
    P(lambda e: e.pq(envelope=dict(kemct=lambda ct: ct[:-1])), Failure(F.BAD_MESSAGE_CHECK, "kemct has 1087 bytes"),
      id="pq-kemct-one-byte-short"),
    P(lambda e: e.pq(envelope=dict(kemct=lambda ct: ct + os.urandom(480))),
      Failure(F.BAD_MESSAGE_CHECK, "kemct has 1568 bytes"), id="pq-kemct-ml-kem-1024-size"),
    P(lambda e: e.pq(envelope=dict(kek_length=16)),
      Failure(F.BAD_ALG, "kekLength 16 does not match aes256-wrap"), id="pq-kek-length-not-the-wraps"),
    P(lambda e: e.pq(envelope=dict(kdf_oid=UNKNOWN_KDF)),
      Failure(F.BAD_ALG, "unsupported key derivation function " + UNKNOWN_KDF.dotted_string), id="pq-kdf-unknown-oid"),
    P(lambda e: e.pq(envelope=dict(wrap_oid=UNKNOWN_WRAP)),
      Failure(F.BAD_ALG, "unsupported key wrap algorithm " + UNKNOWN_WRAP.dotted_string), id="pq-wrap-unknown-oid"),
    P(lambda e: e.pq(envelope=dict(rid=_other_ml_kem_certificate())),
      Failure(F.BAD_MESSAGE_CHECK, "no RecipientInfo is addressed to a key this side holds"),
      id="pq-kemri-rid-another-ml-kem-certificate"),
    P(lambda e: e.pq(envelope=dict(rid=os.urandom(20))),
      Failure(F.BAD_MESSAGE_CHECK, "no RecipientInfo is addressed to a key this side holds"),
      id="pq-kemri-rid-random-ski"),
    P(lambda e: e.pq(envelope=dict(kem_oid=oids.ML_KEM_1024)),
      Failure(F.BAD_ALG, "uses ml-kem-1024 but this recipient's key is ml-kem-768"), id="pq-kemri-ml-kem-1024-oid"),
    P(lambda e: e.pq(envelope=dict(kem_oid=oids.ML_KEM_512, kemct=lambda ct: ct[:768])),
      Failure(F.BAD_ALG, "uses ml-kem-512"), id="pq-kemri-ml-kem-512"),
    # AuthEnvelopedData (RFC 5083, AES-GCM): one answer for every decryption failure.
    P(lambda e: e.pq(envelope=dict(mac=_flip_last)), Failure(F.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope"),
      id="pq-gcm-tag-tampered"),
    P(lambda e: e.pq(envelope=dict(auth_attrs=AUTH_ATTRS, tamper_auth_attrs=_later_time)),
      Failure(F.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope"), id="pq-auth-attrs-tampered"),
    P(lambda e: e.pq(envelope=dict(icv_len=12)), Failure(F.BAD_MESSAGE_CHECK, "cannot decrypt the pkcsPKIEnvelope"),
      id="pq-gcm-mac-length-not-icv-len"),
    P(lambda e: e.pkcsreq(cipher="aes256-gcm"), Failure(F.BAD_ALG, "AuthEnvelopedData (AES-GCM) is not enabled"),
      id="classic-profile-aes-gcm-envelope"),
    # ML-DSA signatures (RFC 9882) and CMSAlgorithmProtection (RFC 6211)
    P(lambda e: e.pq(tamper=_swap_response_key), Failure(F.BAD_MESSAGE_CHECK, "signature does not verify"),
      id="pq-ml-dsa-response-key-swapped-after-signing"),
    P(lambda e: e.pq(signature_oid=oids.ML_DSA_44), Failure(F.BAD_MESSAGE_CHECK, "ML-DSA-44 signature with a key of "
                                                                                "another ML-DSA size"),
      id="pq-ml-dsa-65-signature-labelled-ml-dsa-44"),
    P(lambda e: e.pq(protection=algorithm_protection(oids.SHA256, oids.ML_DSA_65)),
      Failure(F.BAD_MESSAGE_CHECK, "CMSAlgorithmProtection does not match"), id="pq-algorithm-protection-other-digest"),
    P(lambda e: e.pq(protection=algorithm_protection(oids.SHA512, oids.ML_DSA_87)),
      Failure(F.BAD_MESSAGE_CHECK, "CMSAlgorithmProtection does not match"),
      id="pq-algorithm-protection-other-signature"),
    P(lambda e: e.pq(protection=cms.encode(b"not a CMSAlgorithmProtection")),
      Failure(F.BAD_REQUEST, "CMSAlgorithmProtection"), id="pq-algorithm-protection-malformed"),
    P(_slh_dsa_signer, Failure(F.BAD_ALG), id="pq-signer-certificate-slh-dsa-key"),
    # responseKey (draft Section 6.2, PROVISIONAL OID 1.3.6.1.5.5.7.24.4)
    P(lambda e: e.pq(response_key=[_spki(Identity.new().key)]),
      Failure(F.BAD_REQUEST, "responseKey must be an ML-KEM key, not rsa"), id="pq-response-key-rsa"),
    P(lambda e: e.pq(response_key=[_spki(Identity.new(kind="ec").key)]),
      Failure(F.BAD_REQUEST, "responseKey must be an ML-KEM key, not ec"), id="pq-response-key-ec"),
    P(lambda e: e.pq(response_key=[cms.encode(_new_ml_kem().public_key().public_bytes_raw())]),
      Failure(F.BAD_REQUEST, "responseKey is not a SubjectPublicKeyInfo"), id="pq-response-key-raw-octets-not-spki"),
    P(lambda e: e.pq(response_key=[_raw_spki(oids.ML_KEM_768, _new_ml_kem().public_key().public_bytes_raw()[:-1])]),
      Failure(F.BAD_REQUEST, "responseKey is not a SubjectPublicKeyInfo"),
      id="pq-response-key-ml-kem-768-key-too-short"),
    P(lambda e: e.pq(response_key=[_spki(_new_ml_kem()), _spki(_new_ml_kem())]),
      Failure(F.BAD_REQUEST, "must have exactly one value"), id="pq-response-key-two-values"),
    P(lambda e: e.pq(response_key=[_raw_spki(oids.ML_KEM_512, os.urandom(800))]), Failure(F.BAD_ALG, "responseKey"),
      id="pq-response-key-ml-kem-512"),
    P(lambda e: e.pq(response_key=[_raw_spki(UNKNOWN_KEY_ALGORITHM, os.urandom(64))]),
      Failure(F.BAD_ALG, "responseKey"),
      id="pq-response-key-unknown-algorithm"),
    P(lambda e: e.pq(kind="ec", response_key=False), Failure(F.BAD_REQUEST, "no way to encrypt the reply"),
      id="pq-ec-signer-without-response-key"),
    P(lambda e: e.pq(response_key=False), Failure(F.BAD_REQUEST, "no way to encrypt the reply"),
      id="pq-ml-dsa-signer-without-response-key"),
    # --- positive controls: legacy algorithms where the profile allows them ---
    P(lambda e: e.pkcsreq("ok-legacy-des", profile="legacy", cipher="des-cbc"), Success("ok-legacy-des"),
      id="legacy-des-accepted"),
    P(lambda e: e.pkcsreq("ok-legacy-md5", profile="legacy", digest="md5"), Success("ok-legacy-md5"),
      id="legacy-md5-accepted"),
]

KNOWN_BUG_ROWS = {p.id for p in TABLE if any(m.name == "xfail" for m in p.marks)}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = init_data(tmp_path_factory.mktemp("bad-input") / "data", challenge="secret", config_text=CONFIG)
    server = ServerProcess(data).start()
    try:
        environment = Env(server)
        yield environment
        environment.http.close()
    finally:
        server.stop()


@pytest.mark.parametrize("build, expected", TABLE)
def test_bad_input(env: Env, request, build, expected):
    env.row = request.node.callspec.id
    env.ran.add(env.row)
    req = build(env)
    reply = env.send(req)
    expected.check(env, req, reply)


def test_no_certificate_and_no_half_written_transaction_for_bad_rows(env: Env):
    """After the table: no "bad-" subject was certified, and every transaction the rows left is
    whole: an issued one has its certificate, of an "ok-" subject (the CHECK constraint built
    from ca.transactions.TxState already keeps out any state the state machine does not know)."""
    if not env.ran:  # a -k selection without the table; under CI=true a failure, not a skip
        unavailable("run together with test_bad_input")
    store = open_store(env.db_url, migrate_schema=False)
    try:
        subjects = [c.subject for p in PROFILES for c in store.find_certificates(p, limit=100_000)]
        assert not [s for s in subjects if s.startswith("CN=bad-")], subjects
        for row in TABLE:  # the positive controls that ran left their certificate
            if isinstance(row.values[1], Success) and row.id in env.ran:
                assert f"CN={row.values[1].cn}" in subjects, row.id
        transactions = [(p, t) for p in PROFILES for t in store.list_transactions(p)]
        assert transactions, "the table left no transaction at all"
        for profile, t in transactions:
            row = t.transaction_id.split(".")[0]
            if row in KNOWN_BUG_ROWS:
                continue  # see the row's xfail reason
            assert isinstance(t.state, TxState), (row, t.state, t.subject)
            if t.state is TxState.ISSUED:
                assert t.subject.startswith("CN=ok-"), (row, t.subject)
                assert t.cert_serial is not None and store.get_certificate(profile, t.cert_serial), (row, t)
    finally:
        store.close()
