"""The attacks of a hostile client, sent as the attacker would send them, over real HTTP to
`pqscep serve` (tests/server_proc.py), each of which must fail. docs/security.md is the threat
model these tests pin. Each section holds its own fixtures.

Sections: authorization (who may obtain which name), envelopes (padding and batch oracles,
PasswordRecipientInfo cost), the challenge webhook, bounded state and files, transaction IDs
and KEM challenges, CA rollover.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from scep_client import Device, Requester
from server_proc import ServerProcess, init_data
from test_kem_pop import KemClient, KemDevice, challenge_of, proof_for

from pqscep.protocol.messages import MessageType, PkiStatus

# == authorization ============================================================================

# == envelopes ================================================================================

# == webhook, bounded state, files and logs ===================================================

# == transaction IDs and KEM challenges =======================================================
# micromdm, strongSwan and others derive the transactionID from the device's public key, so it
# is known to anyone who knows the key. A transaction is named by (profile, transactionID, the
# CSR's key): another key under the same ID is another transaction. A live kemPopChallenge is
# sent again unchanged to a repeated request (RFC 8894 3.3.1), so a replay cannot cancel it.


@pytest.fixture(scope="module")
def txids_server(tmp_path_factory):
    """`pqscep serve` on `pqscep init`'s defaults: /scep (static challenge) and /scep/pq
    (ML-KEM, challenge-response proof of possession)."""
    data = init_data(tmp_path_factory.mktemp("txids") / "data")
    with ServerProcess(data) as proc:
        yield proc


def _txids_key_derived_id(key) -> str:
    """The transactionID strongSwan and micromdm send: a digest of the public key."""
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha1(spki).hexdigest().upper()


def test_txids_squatting_a_key_derived_id_does_not_lock_the_device_out(txids_server):
    scep = Requester(txids_server.url(), client=txids_server.http)
    victim = Device("victim-device")
    victim.transaction_id = _txids_key_derived_id(victim.key)
    # The attacker, who can enroll (it has the challenge), takes the victim's ID first.
    attacker = Device("attacker", transaction_id=victim.transaction_id)
    taken = scep.enroll(attacker, "secret")
    assert taken.status == PkiStatus.SUCCESS
    assert taken.certificates[0].public_key() == attacker.key.public_key()

    done = scep.enroll(victim, "secret")
    assert done.status == PkiStatus.SUCCESS, done.fail_info_text
    (cert,) = done.certificates
    assert cert.public_key() == victim.key.public_key() and cert.subject.rfc4514_string() == "CN=victim-device"
    # Its polls and retransmissions find its own transaction, not the attacker's.
    assert scep.poll(victim).certificates[0].serial_number == cert.serial_number
    assert scep.enroll(victim, "secret").certificates[0].serial_number == cert.serial_number
    # And the attacker's transaction is its own: a CSR of the victim's key re-signed by the
    # attacker's signer takes nothing over.
    resigned = scep.send(attacker, MessageType.PKCS_REQ, victim.csr.public_bytes(serialization.Encoding.DER))
    assert resigned.status == PkiStatus.FAILURE and not resigned.certificates


def test_txids_replayed_pkcsreq_does_not_cancel_the_kem_challenge(txids_server):
    recorded: list[bytes] = []
    http = httpx.Client(timeout=60, event_hooks={"request": [lambda r: recorded.append(r.read())]})
    client = KemClient(txids_server.url("/scep/pq"), http=http)
    victim = KemDevice("kem-victim")
    challenge = challenge_of(client.pkcs_req(victim).result)
    pkcs_req = recorded[-1]
    # The attacker saw the PKCSReq on the wire and replays it, byte for byte, again and again
    # before the device's proof arrives.
    for _ in range(3):
        replay = httpx.post(txids_server.url("/scep/pq"), params={"operation": "PKIOperation"}, content=pkcs_req,
                            headers={"Content-Type": "application/x-pki-message"}, timeout=60)
        assert replay.status_code == 200
    # The device's proof for the challenge it was sent still issues.
    done = client.poll(victim, proof_for(victim, challenge))
    assert done.result.status == PkiStatus.SUCCESS, done.result.fail_info_text
    assert done.result.certificates[0].public_key() == victim.kem_key.public_key()
    http.close()

# == rollover =================================================================================
