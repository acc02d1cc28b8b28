"""Seeded random damage to PKIOperations against a real `pqscep serve`: whatever the bytes,
the answer is a CertRep or a one-line 4xx, never a 5xx or a traceback (the bad-input table
pins chosen cases; this looks for the ones nobody chose).

Three kinds, on the classic and the post-quantum profile: the whole pkiMessage damaged; the
CSR damaged inside a correctly signed and encrypted message; the envelope damaged inside a
correctly signed message. The damage is seeded (the same edits at the same places on every
run); keys, nonces and IDs are fresh, so a failure names the message by its number. Among what
it reaches are signer certificates whose issuer cryptography fails to parse only when it is
read: parse_signed_data reads those fields at once, so that such a message is refused as bad
input rather than answered with a 500.
"""

from __future__ import annotations

import os
import random

import httpx
import pytest
from scep_messages import Identity, csr_der, envelope, kem_envelope, pki_message
from server_proc import ServerProcess, init_data

from pqscep.protocol import client

COUNTS = {"message": 300, "csr": 100, "envelope": 100}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = init_data(tmp_path_factory.mktemp("fuzz") / "data", challenge="secret")
    process = ServerProcess(data).start()
    try:
        yield process
    finally:
        process.stop()


def _damage(rnd: random.Random, data: bytes) -> bytes:
    """1 to 8 random edits: bit flips, bytes set to tag or length octets, cuts, insertions."""
    out = bytearray(data)
    for _ in range(rnd.choice([1, 1, 2, 3, 8])):
        pos = rnd.randrange(len(out)) if out else 0
        op = rnd.random()
        if not out or op >= 0.85:
            out[pos:pos] = rnd.randbytes(rnd.randrange(1, 30))
        elif op < 0.5:
            out[pos] ^= 1 << rnd.randrange(8)
        elif op < 0.7:
            out[pos] = rnd.choice([0x00, 0x80, 0x81, 0x82, 0xFF, 0x30, 0x31, 0xA0, 0x04, 0x24, 0x0C, 0x13])
        else:
            del out[pos:pos + rnd.randrange(1, 40)]
    return bytes(out)


@pytest.mark.parametrize("profile", ["default", "pq"])
@pytest.mark.parametrize("kind", sorted(COUNTS))
def test_damaged_pkioperations_never_get_a_server_error(server, profile, kind):
    path = "/scep" if profile == "default" else f"/scep/{profile}"
    rnd = random.Random(f"{profile}-{kind}")
    with httpx.Client(base_url=server.base, timeout=60) as http:
        reply = http.get(path, params={"operation": "GetCACert"})
        bundle = client.parse_ca_certs(reply.headers["content-type"], reply.content)
        recipient = bundle.kem_recipient_cert or bundle.encipherer

        def seal(content: bytes) -> bytes:
            return kem_envelope(content, recipient) if bundle.kem_recipient_cert else envelope(content, recipient)

        identities = [Identity.new(f"fuzz-{profile}-{kind}-{i}") for i in range(3)]
        answers: dict[int, int] = {}
        for n in range(COUNTS[kind]):
            identity = identities[n % len(identities)]
            csr = csr_der(identity.key, f"fuzz-{profile}-{kind}-{n % 3}", challenge="secret")
            if kind == "csr":
                csr = _damage(rnd, csr)
            sealed = seal(csr)
            if kind == "envelope":
                sealed = _damage(rnd, sealed)
            body = pki_message(signer=identity, content=csr, recipient=recipient, pki_envelope=sealed,
                               transaction_id=f"fuzz-{kind}-{n}-{os.urandom(4).hex()}", sender_nonce=os.urandom(16))
            if kind == "message":
                body = _damage(rnd, body)
            reply = http.post(path + "?operation=PKIOperation", content=body)
            answers[reply.status_code] = answers.get(reply.status_code, 0) + 1
            assert reply.status_code < 500, f"message {n}: HTTP {reply.status_code} {reply.text[:200]}"
            assert b"Traceback" not in reply.content
            if reply.status_code == 200:
                assert reply.headers["content-type"] == "application/x-pki-message"
            else:
                assert reply.status_code in (400, 413), reply.status_code
                assert len(reply.text.strip().splitlines()) == 1, reply.text
        # The damage must reach both kinds of answer, or the test exercises nothing.
        assert answers.get(200) and (kind != "message" or answers.get(400)), answers
