"""`pqscep vectors` (the draft's Appendix B): the committed docs/vectors are what the command regenerates, and the
messages in them are real: OpenSSL >= 3.6 verifies and decrypts them, pqscep's own parsers open
them, and pqscep's SCEP service accepts each request and answers it as the vectors say.

- the tree `pqscep vectors --out TMP` writes equals docs/vectors byte for byte (no file more or less),
  and index.json lists every file with an allowed asn1_type; each DER file decodes as that type;
- OpenSSL: `cms -verify` of every SignedData with signers (CertReps and identity-signed requests
  chained to the CA certificate at their signingTime, self-signed requests with -noverify), whose
  eContent is the committed envelope; `cms -decrypt` of every envelope (ML-KEM key with -recip or
  by subjectKeyIdentifier, or -pwri_password), whose plaintext is the committed inner DER;
  `req -verify` of the self-signed CSRs;
- pqscep: open_envelope/parse_signed_data on the same, and the KDF input, KEK and CEK of values.txt
  recomputed from the committed files and keys;
- the service (ScepService, SQLite, fixed clock) accepts every request vector of every flow.
- no production module but the CLI imports pqscep.vectors.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from peers import OpenSSL, openssl_pq_tool

from pqscep.asn1 import cms, oids
from pqscep.ca.profile import KemPopMode
from pqscep.cms import enveloped, kem, signed
from pqscep.crypto import pkcs8
from pqscep.crypto.spki import public_key_from_spki
from pqscep.vectors.output import ASN1_TYPES

ROOT = Path(__file__).parents[1]
VECTORS = ROOT / "docs" / "vectors"
FLOWS = ["pq-enrollment", "kem-pop-challenge", "kem-pop-encrypted-cert", "kem-pop-statement", "password-recipient"]


def _index() -> list[dict]:
    return json.loads((VECTORS / "index.json").read_text())["files"]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- (a) regeneration ------------------------------------------------------------------------


def test_committed_vectors_are_what_the_command_regenerates(tmp_path):
    from pqscep.cli.main import cli

    result = CliRunner().invoke(cli, ["vectors", "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    fresh, committed = _tree(tmp_path / "v"), _tree(VECTORS)
    assert sorted(fresh) == sorted(committed), (
        f"missing from docs/vectors: {sorted(set(fresh) - set(committed))}; "
        f"not regenerated: {sorted(set(committed) - set(fresh))}")
    differ = [name for name in fresh if fresh[name] != committed[name]]
    assert not differ, f"regenerated files differ from the committed ones: {differ}"


def test_rerun_into_the_same_folder_removes_files_it_no_longer_makes(tmp_path):
    from pqscep.cli.main import cli

    out = tmp_path / "v"
    assert CliRunner().invoke(cli, ["vectors", "--out", str(out)]).exit_code == 0
    index = json.loads((out / "index.json").read_text())
    index["files"].append({"path": "pq-enrollment/99-stale.der", "asn1_type": "ContentInfo", "description": "old"})
    (out / "index.json").write_text(json.dumps(index))
    (out / "pq-enrollment" / "99-stale.der").write_bytes(b"old")
    (out / "mine.txt").write_text("not listed: kept")
    assert CliRunner().invoke(cli, ["vectors", "--out", str(out)]).exit_code == 0
    assert not (out / "pq-enrollment" / "99-stale.der").exists()
    assert (out / "mine.txt").exists()


def test_index_lists_every_file_with_a_known_type_and_each_decodes():
    index = _index()
    paths = [e["path"] for e in index]
    assert len(paths) == len(set(paths))
    assert sorted(paths) == sorted(p for p in _tree(VECTORS) if p != "index.json")
    for entry in index:
        assert set(entry) == {"path", "asn1_type", "description"} and entry["description"]
        assert entry["asn1_type"] in ASN1_TYPES
        kind, data = entry["asn1_type"], (VECTORS / entry["path"]).read_bytes()
        assert entry["path"].endswith(".der") == (kind != "text"), entry
        if kind == "ContentInfo":
            cms.decode_der(cms.ContentInfo, data)
        elif kind == "Certificate":
            x509.load_der_x509_certificate(data)
        elif kind == "CertificationRequest":
            x509.load_der_x509_csr(data)
        elif kind == "SubjectPublicKeyInfo":
            public_key_from_spki(data)
        elif kind == "OneAsymmetricKey":
            pkcs8.load_any_private_key(data, None)
        elif kind != "text":
            cls = {"KemCiphertextInfo": cms.KemCiphertextInfo, "KemOtherInfo": cms.KemOtherInfo,
                   "KemPopProof": cms.KemPopProof, "CMSORIforKEMOtherInfo": cms.CMSORIforKEMOtherInfo}[kind]
            assert cms.encode(cms.decode_der(cls, data)) == data  # DER, and nothing but the structure
    for flow in FLOWS:
        assert f"{flow}/values.txt" in paths


# --- what the vectors hold ---------------------------------------------------------------------


def _entries(kind: str = "ContentInfo") -> list[str]:
    return [e["path"] for e in _index() if e["asn1_type"] == kind]


def _signed_messages() -> list[str]:
    """pkiMessages: SignedData with one signer (GetCACert's certs-only bundles have none)."""
    out = []
    for path in _entries():
        data = (VECTORS / path).read_bytes()
        if cms.decode(cms.ContentInfo, data).content_type == oids.SIGNED_DATA and \
                signed.parse_signed_data(data).signer_infos:
            out.append(path)
    return out


def _envelope_file(message_path: str) -> Path:
    """The committed pkcsPKIEnvelope of a message file: NN-<name>.der -> MM-<name>-envelope.der."""
    flow, name = message_path.split("/")
    stem = re.sub(r"^\d+-|\.der$", "", name)
    (found,) = (VECTORS / flow).glob(f"[0-9][0-9]-{stem}-envelope.der")
    return found


def _envelopes() -> list[str]:
    return [p for p in _entries() if p.endswith("-envelope.der")]


def _keys() -> dict[str, object]:
    return {p.name[: -len(".key.der")]: pkcs8.load_any_private_key(p.read_bytes(), None)
            for p in (VECTORS / "keys").glob("*.key.der")}


def _kem_key_named_by(envelope: bytes):
    """(key name, certificate path or None) of the ML-KEM key a KEMRecipientInfo names."""
    info = cms.decode(cms.ContentInfo, envelope)
    body_type = cms.AuthEnvelopedData if info.content_type == oids.AUTH_ENVELOPED_DATA else cms.EnvelopedData
    (ri,) = cms.decode_der(body_type, cms.tlv_bytes(info.content)).recipient_infos.as_list()
    ri = cms.tlv_bytes(ri)
    if ri[0] == cms.PWRI_TAG:
        return None, None
    view = kem.parse_kem_recipient_info(ri)
    for name, key in _keys().items():
        if not hasattr(key, "decapsulate"):
            continue
        if view.rid_ski is not None and view.rid_ski == kem.key_identifier(key.public_key()):
            return name, None
        if view.rid_serial is not None:
            for path in _entries("Certificate"):
                cert = x509.load_der_x509_certificate((VECTORS / path).read_bytes())
                if cert.serial_number == view.rid_serial and cert.public_key() == key.public_key():
                    return name, path
    raise AssertionError("no committed key for this KEMRecipientInfo")


def _password() -> str:
    from pqscep.vectors.material import CHALLENGE_PASSWORD

    return CHALLENGE_PASSWORD


def _plaintext_file(envelope_path: str) -> Path | None:
    """The committed DER that values.txt names as the envelope's plaintext, if any."""
    flow, name = envelope_path.split("/")
    what = re.sub(r"^\d+-|-envelope\.der$", "", name)
    text = (VECTORS / flow / "values.txt").read_text()
    section = text.split(f"## {what}: ", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"plaintext \(the decrypted content\) \(text\): the DER of (\S+)", section)
    return VECTORS / match[1] if match else None


def _own_open(envelope: bytes) -> bytes:
    return enveloped.open_envelope(envelope, _recipients()).content


def _recipients() -> list:
    from pqscep.cms.password import PasswordRecipient

    out: list = [PasswordRecipient(_password().encode())]
    for key in _keys().values():
        if hasattr(key, "decapsulate"):
            out.append(kem.KemRecipient(key, subject_key_identifier=kem.key_identifier(key.public_key())))
    ca = VECTORS / "pq-enrollment"
    recipient_cert = x509.load_der_x509_certificate(next(ca.glob("*-kem-recipient-certificate.der")).read_bytes())
    out.append(kem.KemRecipient(_keys()["kem-recipient"], certificate=recipient_cert))
    return out


# --- (c) pqscep's own reading ------------------------------------------------------------------


def test_pqscep_opens_every_envelope_and_verifies_every_message():
    ca = x509.load_der_x509_certificate(next((VECTORS / "pq-enrollment").glob("*-ca-certificate.der")).read_bytes())
    for path in _envelopes():
        plaintext = _own_open((VECTORS / path).read_bytes())
        expected = _plaintext_file(path)
        if expected is not None:
            assert plaintext == expected.read_bytes(), path
    for path in _signed_messages():
        message = signed.parse_signed_data((VECTORS / path).read_bytes())
        (si,) = message.signer_infos
        cert = message.signer_certificate(si)
        assert cert is not None
        signed.verify_signer(message, si, cert.public_key())
        if "CertRep" in path:
            assert cert == ca
        if message.content:
            assert _envelope_file(path).read_bytes() == message.content, path


def _values(flow: str, section: str) -> dict[str, bytes]:
    """name -> octets of one values.txt section."""
    text = (VECTORS / flow / "values.txt").read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    out, name = {}, None
    for line in body.splitlines()[1:]:
        if line.startswith("  ") and name:
            out[name] += bytes.fromhex(line.strip())
        elif line.endswith("octets):"):
            name = line.rsplit(" (", 1)[0]
            out[name] = b""
        else:
            name = None
    return out


def test_values_txt_intermediates_follow_from_the_committed_files_and_keys():
    """The KEMRecipientInfo steps of values.txt (RFC 9629 section 5): the committed private key
    decapsulates kemct to ss, HKDF of ss over the committed kdf-input file gives the KEK, which
    unwraps encryptedKey to the CEK; and the PoP key and MAC of the challenge flow."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import keywrap

    from pqscep.protocol import kem_pop
    from pqscep.protocol.messages import read_printable

    keys = _keys()
    checked = 0
    for path in _envelopes():
        name, _ = _kem_key_named_by((VECTORS / path).read_bytes())
        if name is None:
            continue
        flow, file = path.split("/")
        what = re.sub(r"^\d+-|-envelope\.der$", "", file)
        values = _values(flow, f"{what}: KEMRecipientInfo")
        ss = keys[name].decapsulate(values["kemct (ML-KEM ciphertext)"])
        assert ss == values["ss (ML-KEM shared secret)"]
        kdf_file = next((VECTORS / flow).glob(f"*-{what}-kdf-input.der")).read_bytes()
        info, kek = kem.derive_kek(ss, "hkdf-sha256", "aes256-wrap", 32)
        assert info == kdf_file == values[f"KDF input info = DER(CMSORIforKEMOtherInfo), also {flow}/"
                                          f"{next((VECTORS / flow).glob(f'*-{what}-kdf-input.der')).name}"]
        assert kek == values["KEK = HKDF-SHA256(ss, salt empty, info, kekLength 32)"]
        wrapped = values["encryptedKey = AES-256-KW(KEK, CEK) (RFC 3394)"]
        assert keywrap.aes_key_unwrap(kek, wrapped) == values["CEK (content-encryption key)"]
        checked += 1
    assert checked == 11  # pq-enrollment 4, kem-pop-challenge 3, the other two modes 2 each
    flow = "kem-pop-challenge"
    values = _values(flow, "KEM proof of possession")
    challenge = next((VECTORS / flow).glob("*-kemPopChallenge.der")).read_bytes()
    csr = next((VECTORS / flow).glob("*-csr.der")).read_bytes()
    _, ct = kem_pop.read_challenge(challenge)
    ss = keys["challenge-kem"].decapsulate(ct)
    assert ss == values["ss (shared secret, kept by the CA, decapsulated by the requester)"]
    request = signed.parse_signed_data(next((VECTORS / flow).glob("*-PKCSReq.der")).read_bytes())
    tid = read_printable(request.signer_infos[0].single(oids.SCEP_TRANSACTION_ID), "transactionID")
    info, key = kem_pop.derive_pop_key(ss, tid, csr)
    assert info == next((VECTORS / flow).glob("*-KemOtherInfo.der")).read_bytes() == values["info = DER(KemOtherInfo)"]
    assert key == values["K = HKDF-SHA256(ss, salt empty, info, 32)"]
    mac = hmac.new(key, csr, hashlib.sha256).digest()
    assert mac == values["mac = HMAC-SHA256(K, DER(CSR))"]
    proof = cms.decode_der(cms.KemPopProof, next((VECTORS / flow).glob("*-kemPopProof.der")).read_bytes())
    assert proof.mac == mac
    kem_pop.verify_proof(ss, next((VECTORS / flow).glob("*-kemPopProof.der")).read_bytes(), tid, csr)


def test_no_secret_or_nonce_is_used_twice():
    """Draft section 5.1: a fresh encapsulation, KEK and CEK for every message; and no IV, nonce,
    salt or senderNonce repeats anywhere in the vectors."""
    fresh = ("m (", "ss (", "KEK", "CEK", "encryptedKey", "GCM nonce", "CBC IV", "PWRI-KEK IV", "salt", "K = ")
    seen: dict[bytes, str] = {}
    for flow in FLOWS:
        text = (VECTORS / flow / "values.txt").read_text()
        for section in text.split("\n## ")[1:]:
            title = section.splitlines()[0]
            for name, value in _values(flow, title).items():
                if name.startswith(fresh):
                    where = f"{flow}: {title}: {name}"
                    assert value not in seen, f"{where} repeats {seen.get(value)}"
                    seen[value] = where
    nonces = []
    for path in _signed_messages():
        si = signed.parse_signed_data((VECTORS / path).read_bytes()).signer_infos[0]
        nonces.append(si.single(oids.SCEP_SENDER_NONCE))
    assert len(nonces) == len(set(nonces))


def test_the_drafts_example_values_are_those_of_the_vectors():
    """Every hex value in the draft's Examples section is a value of docs/vectors (values.txt, or
    a key seed of README.md), and every file it names exists: the draft cannot drift from them."""
    draft = (ROOT / "docs" / "draft" / "draft-pqscep-scep-pq-update.md").read_text()
    section = draft.split("\n# Examples", 1)[1].split("\n# Acknowledgments", 1)[0]
    known: set[bytes] = set()
    for flow in FLOWS:
        text = (VECTORS / flow / "values.txt").read_text()
        for title in (part.splitlines()[0] for part in text.split("\n## ")[1:]):
            known.update(_values(flow, title).values())
        known.update(bytes.fromhex(t) for t in re.findall(r"transactionID \(text\): ([0-9A-F]+)", text))
    readme_text = (VECTORS / "README.md").read_text()
    known.update(bytes.fromhex(h) for h in re.findall(r"\| `([0-9a-f]{64,128})` \|", readme_text))
    blobs: list[bytes] = []
    current: list[str] | None = None
    for line in section.splitlines():
        if re.fullmatch(r"  [0-9a-f]+", line):
            if current is not None:
                current.append(line.strip())
            continue
        if current:
            blobs.append(bytes.fromhex("".join(current)))
        current = [] if line.endswith(":") else None
    blobs += [bytes.fromhex(t) for t in re.findall(r"transactionID is\s+([0-9A-F]{64})", section)]
    assert len(blobs) >= 25
    missing = [b.hex() for b in blobs if b not in known]
    assert not missing, f"values in the draft that docs/vectors does not have: {missing}"
    for name in re.findall(r"\b((?:pq-enrollment|kem-pop-[a-z-]+|password-recipient)/[0-9A-Za-z.-]+\.der)", section):
        assert (VECTORS / name).is_file(), name


# --- (b) OpenSSL -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openssl() -> OpenSSL:
    return openssl_pq_tool()


def _pem(tmp_path: Path, der_path: Path) -> Path:
    pem = tmp_path / (der_path.stem + ".pem")
    pem.write_bytes(x509.load_der_x509_certificate(der_path.read_bytes()).public_bytes(serialization.Encoding.PEM))
    return pem


def _signing_time(message: signed.SignedMessage) -> int | None:
    value = message.signer_infos[0].single(oids.SIGNING_TIME)
    if value is None:
        return None
    when = datetime.datetime.strptime(value[2:].decode(), "%y%m%d%H%M%SZ").replace(tzinfo=datetime.UTC)
    return int(when.timestamp())


def test_openssl_verifies_every_pki_message(openssl, tmp_path):
    ca_der = next((VECTORS / "pq-enrollment").glob("*-ca-certificate.der"))
    ca_pem = _pem(tmp_path, ca_der)
    ca = x509.load_der_x509_certificate(ca_der.read_bytes())
    messages = _signed_messages()
    assert len(messages) >= 14
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for path in messages:
        data = (VECTORS / path).read_bytes()
        message = signed.parse_signed_data(data)
        signer = message.signer_certificate(message.signer_infos[0])
        out = tmp_path / "content.der"
        when = _signing_time(message)
        # A PENDING carries no eContent; its messageDigest is over the empty string (RFC 8894
        # section 3.3.2), which OpenSSL checks as detached content.
        detached = [] if message.content else ["-content", empty]
        if signer.issuer == ca.subject:
            # Chained to the CA certificate, at the message's signingTime (or the request's
            # signer certificate's own time: requests carry no signingTime).
            # -purpose any: the identity certificate is a clientAuth certificate, not an S/MIME one.
            at = when or int(signer.not_valid_before_utc.timestamp()) + 3600
            openssl.run("cms", "-verify", "-binary", "-inform", "DER", "-in", VECTORS / path, "-CAfile", ca_pem,
                        "-attime", at, "-purpose", "any", *detached, "-out", out)
        else:  # a self-signed transient requester: the signature, and its own certificate as anchor
            openssl.run("cms", "-verify", "-binary", "-inform", "DER", "-in", VECTORS / path, "-noverify", "-out", out)
            anchor = tmp_path / "anchor.pem"
            anchor.write_bytes(signer.public_bytes(serialization.Encoding.PEM))
            openssl.run("cms", "-verify", "-binary", "-inform", "DER", "-in", VECTORS / path, "-CAfile", anchor,
                        "-attime", int(signer.not_valid_before_utc.timestamp()) + 3600, "-out", os.devnull)
        assert out.read_bytes() == (message.content or b""), path
        if message.content:
            assert out.read_bytes() == _envelope_file(path).read_bytes(), path


def test_openssl_decrypts_every_envelope(openssl, tmp_path):
    envelopes = _envelopes()
    assert len(envelopes) == 13  # 11 KEMRecipientInfo, 2 PasswordRecipientInfo
    kinds = set()
    for path in envelopes:
        data = (VECTORS / path).read_bytes()
        name, cert_path = _kem_key_named_by(data)
        out = tmp_path / "plain.der"
        if name is None:
            kinds.add("pwri")
            openssl.run("cms", "-decrypt", "-binary", "-inform", "DER", "-in", VECTORS / path,
                        "-pwri_password", _password(), "-out", out)
        else:
            args = ["-recip", _pem(tmp_path, VECTORS / cert_path)] if cert_path else []
            kinds.add("kemri-" + ("cert" if cert_path else "ski"))
            openssl.run("cms", "-decrypt", "-binary", "-inform", "DER", "-in", VECTORS / path,
                        "-inkey", VECTORS / "keys" / f"{name}.key.der", *args, "-out", out)
        assert out.read_bytes() == _own_open(data), path
        expected = _plaintext_file(path)
        if expected is not None:
            assert out.read_bytes() == expected.read_bytes(), path
    assert kinds == {"pwri", "kemri-cert", "kemri-ski"}


def test_openssl_verifies_the_self_signed_csrs_and_the_certificates(openssl, tmp_path):
    ca_pem = _pem(tmp_path, next((VECTORS / "pq-enrollment").glob("*-ca-certificate.der")))
    for path in ("pq-enrollment/06-csr.der", "password-recipient/02-csr.der"):
        openssl.run("req", "-inform", "DER", "-in", VECTORS / path, "-verify", "-noout")
    for path in _entries("Certificate"):
        cert = x509.load_der_x509_certificate((VECTORS / path).read_bytes())
        if cert.issuer == cert.subject and "ca-certificate" not in path:
            continue
        openssl.run("verify", "-CAfile", ca_pem, "-attime", int(cert.not_valid_before_utc.timestamp()) + 3600,
                    "-partial_chain", _pem(tmp_path, VECTORS / path))


# --- the service accepts the requests ----------------------------------------------------------


def _service(tmp_path: Path, mode: KemPopMode, now: datetime.datetime):
    from dataclasses import replace

    from pqscep.ca.authority import Authority
    from pqscep.cms.kem import KemRecipient
    from pqscep.cms.password import PasswordRecipient
    from pqscep.protocol.server import Responder, ResponderKeys
    from pqscep.service.scep import Profile, ScepService
    from pqscep.storage import open_store
    from pqscep.vectors.context import Vectors

    v = Vectors()
    keys = _keys()
    settings = replace(v.settings, kem_pop=mode)
    responder = Responder(ResponderKeys(
        signer_certificate=v.ca_cert, signer_key=keys["ca"],
        recipients=[KemRecipient(keys["kem-recipient"], certificate=v.recipient_cert),
                    PasswordRecipient(_password().encode())]), accept_aes_gcm=True)
    profile = Profile(settings, Authority(v.ca_cert, keys["ca"], settings.issuance), responder,
                      ra_certificates=[v.recipient_cert])
    store = open_store(f"sqlite:///{tmp_path / f'{mode}.db'}")
    clock = {"now": now}
    service = ScepService({"pq": profile}, store, clock=lambda: clock["now"])
    return service, profile, store, clock, v


def _answer(service, profile, path: str):
    reply = service.pki_operation(profile, (VECTORS / path).read_bytes())
    assert reply.status == 200 and reply.outcome, reply
    return reply


def _rid(reply_body: bytes):
    envelope = signed.parse_signed_data(reply_body).content
    (ri,) = cms.decode_der(
        cms.AuthEnvelopedData if cms.decode(cms.ContentInfo, envelope).content_type == oids.AUTH_ENVELOPED_DATA
        else cms.EnvelopedData, cms.tlv_bytes(cms.decode(cms.ContentInfo, envelope).content)).recipient_infos.as_list()
    ri = cms.tlv_bytes(ri)
    return ri[0], kem.parse_kem_recipient_info(ri).rid_ski if ri[0] == cms.ORI_TAG else None


def test_the_service_accepts_every_request_vector(tmp_path):
    """ScepService with the vectors' CA, recipient key and challenge password (SQLite, clock at the
    vectors' time): every PKCSReq is answered SUCCESS (or the PENDING challenge), the reply goes to
    the same recipient as the committed CertRep, and the committed CertPoll's proof is accepted for
    the committed challenge."""
    from pqscep.protocol.messages import PkiStatus
    from pqscep.vectors import material as mat

    now = mat.REQUEST_TIME + datetime.timedelta(minutes=1)
    # pq-enrollment: both PKCSReqs (the second resumes the transaction the first settled).
    service, profile, store, clock, v = _service(tmp_path, KemPopMode.CHALLENGE, now)
    for tag in ("cbc", "gcm"):
        req = next((VECTORS / "pq-enrollment").glob(f"*-PKCSReq-{tag}.der"))
        reply = _answer(service, profile, f"pq-enrollment/{req.name}")
        assert reply.outcome == "success", reply.outcome
        committed = next((VECTORS / "pq-enrollment").glob(f"*-CertRep-{tag}.der")).read_bytes()
        assert _rid(reply.body) == _rid(committed)
    # kem-pop-challenge: PENDING with a fresh challenge; the vectors' challenge replaces it in the
    # store (the service's own encapsulation is random; a live one is never replaced, so it is
    # spent first), then the committed CertPoll proves it.
    flow = VECTORS / "kem-pop-challenge"
    reply = _answer(service, profile, f"kem-pop-challenge/{next(flow.glob('*-PKCSReq.der')).name}")
    assert reply.outcome == "pending:kem-challenge"
    request = profile.responder.receive(next(flow.glob("*-PKCSReq.der")).read_bytes())
    ss = _values("kem-pop-challenge", "KEM proof of possession")[
        "ss (shared secret, kept by the CA, decapsulated by the requester)"]
    import hashlib

    from pqscep.ca import policy

    csr_key = policy.key_fingerprint(request.csr.public_key)
    assert store.take_kem_challenge("pq", request.transaction_id, now, csr_key) is not None
    store.put_kem_challenge("pq", request.transaction_id, ss, hashlib.sha256(request.csr.der).digest(),
                            policy.key_fingerprint(request.signer_certificate.public_key()),
                            now + datetime.timedelta(minutes=10), now, key_fingerprint=csr_key)
    clock["now"] = now + datetime.timedelta(minutes=1)
    reply = _answer(service, profile, f"kem-pop-challenge/{next(flow.glob('*-CertPoll.der')).name}")
    assert reply.outcome == "success", reply.outcome
    assert _rid(reply.body) == _rid(next(flow.glob("*-CertRep.der")).read_bytes())
    # The same CertPoll again: the transaction is issued now, so a retransmission gets the certificate.
    again = _answer(service, profile, f"kem-pop-challenge/{next(flow.glob('*-CertPoll.der')).name}")
    assert again.outcome == "success"
    # password-recipient: PasswordRecipientInfo both ways.
    flow = VECTORS / "password-recipient"
    reply = _answer(service, profile, f"password-recipient/{next(flow.glob('*-PKCSReq.der')).name}")
    assert reply.outcome == "success", reply.outcome
    assert _rid(reply.body)[0] == cms.PWRI_TAG
    # kem-pop-encrypted-cert and kem-pop-statement, each at a profile of that mode.
    for mode in (KemPopMode.ENCRYPTED_CERT, KemPopMode.STATEMENT):
        service, profile, store, clock, v = _service(tmp_path, mode, now)
        flow = VECTORS / f"kem-pop-{mode}"
        if mode == KemPopMode.STATEMENT:
            identity = x509.load_der_x509_certificate(next(flow.glob("*-identity-certificate.der")).read_bytes())
            store.record_certificate("pq", identity.serial_number, identity.public_bytes(serialization.Encoding.DER),
                                     identity.subject.rfc4514_string(), identity.not_valid_before_utc,
                                     identity.not_valid_after_utc, None, policy.key_fingerprint(identity.public_key()),
                                     identity.not_valid_before_utc)
        reply = _answer(service, profile, f"kem-pop-{mode}/{next(flow.glob('*-PKCSReq.der')).name}")
        assert reply.outcome == "success", (mode, reply.outcome)
        assert _rid(reply.body) == _rid(next(flow.glob("*-CertRep.der")).read_bytes())
        parsed = signed.parse_signed_data(reply.body)
        assert parsed.signer_infos[0].single(oids.SCEP_PKI_STATUS)[2:] == str(int(PkiStatus.SUCCESS)).encode()


# --- layering ---------------------------------------------------------------------------------


def test_no_production_module_imports_the_vectors_package():
    src = ROOT / "src" / "pqscep"
    offenders = []
    for path in src.rglob("*.py"):
        rel = path.relative_to(src)
        if rel.parts[0] in ("vectors", "cli"):
            continue
        if re.search(r"^\s*(from|import)\s+(pqscep\.vectors|\.+vectors)\b", path.read_text(), re.M):
            offenders.append(str(rel))
    assert not offenders, f"production modules importing pqscep.vectors: {offenders}"
    cli_users = [p.name for p in (src / "cli").glob("*.py") if "vectors" in p.read_text() and
                 re.search(r"(from|import)\s+\S*vectors", p.read_text())]
    assert cli_users == ["vectors_cmd.py"], cli_users
