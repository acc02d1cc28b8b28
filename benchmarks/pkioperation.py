"""The server's own time per PKIOperation, split into crypto and everything else.

Runs `ScepService.pki_operation` in-process (no HTTP) on a real store for N fresh PKCSReqs
(RSA-2048 CA and devices, AES-256-CBC, SHA-256; with `--profile pq`, the `/scep/pq` profile's
ML-DSA-65 CA and ML-KEM-768 recipient, ML-DSA-65 devices, each request built by the bench's own
client code: a fresh ML-KEM-768 responseKey, AES-256-GCM) and times every call into a cryptographic
primitive by wrapping the project's crypto call sites: what is left is ASN.1, policy, storage
and Python, of which the database calls are timed on their own. Usage:

    python benchmarks/pkioperation.py [--count 300] [--profile classic|pq] [--database sqlite:///...]
                                      [--phases] [--json]

`--phases` also splits the CPU by protocol step (reading the request, issuing the
certificate, the durable write, building the CertRep, the rest), each into crypto, storage
and other: where the non-crypto time is. Its extra wrappers cost a few microseconds per
PKIOperation, so the totals of a `--phases` run are not compared with those of a plain one.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pqscep.client.session import ScepSession
from pqscep.client.signer import RequestSigner
from pqscep.client.transport import CaCaps
from pqscep.cms import enveloped, kem
from pqscep.crypto import registry, signing
from pqscep.crypto.keys import generate_key
from pqscep.protocol import client as scep
from pqscep.protocol import server as server_module
from pqscep.protocol.messages import MessageType
from pqscep.service.scep import ScepService
from pqscep.service.setup import init_data_dir, load_profiles
from pqscep.storage.db import open_store

# Each bucket: [wall seconds, CPU seconds of this thread].
CRYPTO_SECONDS = [0.0, 0.0]
STORAGE_SECONDS = [0.0, 0.0]
# --phases: {step: [CPU, crypto CPU, storage CPU]} in seconds of this thread.
PHASE_SECONDS: dict[str, list[float]] = {}


def timed(function, bucket=CRYPTO_SECONDS):
    def wrapper(*args, **kwargs):
        start, start_cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            bucket[0] += time.perf_counter() - start
            bucket[1] += time.thread_time() - start_cpu

    return wrapper


def instrument() -> None:
    """Wrap every place the server calls a cryptographic primitive."""
    signing.sign = timed(signing.sign)
    signing.verify = timed(signing.verify)
    for name in ("encrypt_cbc", "decrypt_cbc", "encrypt_gcm", "decrypt_gcm"):
        setattr(registry.ContentCipher, name, timed(getattr(registry.ContentCipher, name)))
    enveloped.KeyTransRecipient.unwrap = timed(enveloped.KeyTransRecipient.unwrap)
    enveloped.KeyTransOriginator.recipient_info = timed(enveloped.KeyTransOriginator.recipient_info)
    # KEMRecipientInfo both ways: decapsulation, HKDF and unwrap; encapsulation, HKDF and wrap.
    kem.KemRecipient.unwrap = timed(kem.KemRecipient.unwrap)
    kem.KemOriginator.recipient_info = timed(kem.KemOriginator.recipient_info)
    server_module._csr_signature_ok = timed(server_module._csr_signature_ok)
    # Certificate signing by the CA (CertificateBuilder.sign inside Authority.issue).
    original = x509.CertificateBuilder.sign
    x509.CertificateBuilder.sign = timed(original)
    # Digests of content and attributes.
    registry.DigestAlgorithm.digest = timed(registry.DigestAlgorithm.digest)
    # Every call into the database.
    from pqscep.storage.repository import Store

    for name in ("get_transaction", "get_certificate", "count_failures", "settle_transaction",
                 "consume_challenge", "record_failure"):
        setattr(Store, name, timed(getattr(Store, name), STORAGE_SECONDS))


def instrument_phases() -> None:
    """Wrap the protocol steps of a PKCSReq (after `instrument`, so the crypto and storage
    buckets fill while a step runs; the steps do not nest)."""
    from pqscep.ca.authority import Authority

    def phase(name: str, function):
        PHASE_SECONDS[name] = [0.0, 0.0, 0.0]

        def wrapper(*args, **kwargs):
            cpu, crypto, storage = time.thread_time(), CRYPTO_SECONDS[1], STORAGE_SECONDS[1]
            try:
                return function(*args, **kwargs)
            finally:
                bucket = PHASE_SECONDS[name]
                bucket[0] += time.thread_time() - cpu
                bucket[1] += CRYPTO_SECONDS[1] - crypto
                bucket[2] += STORAGE_SECONDS[1] - storage

        return wrapper

    server_module.Responder.receive = phase("read request", server_module.Responder.receive)
    Authority.issue = phase("issue certificate", Authority.issue)
    ScepService._settle = phase("durable write", ScepService._settle)
    server_module.Responder.success = phase("build CertRep", server_module.Responder.success)


def phase_split(count: int, total_cpu: float) -> dict[str, dict[str, float]]:
    """Per step, ms per PKIOperation of CPU, crypto, storage and other; "rest" is what ran
    outside the four steps (policy, transaction lookup, dispatch)."""
    steps = dict(PHASE_SECONDS)
    inside = [sum(bucket[i] for bucket in steps.values()) for i in range(3)]
    steps["rest"] = [total_cpu - inside[0], CRYPTO_SECONDS[1] - inside[1], STORAGE_SECONDS[1] - inside[2]]
    return {
        name: {
            "cpu_ms": round(1000 * cpu / count, 3),
            "crypto_cpu_ms": round(1000 * crypto / count, 3),
            "storage_cpu_ms": round(1000 * storage / count, 3),
            "other_cpu_ms": round(1000 * (cpu - crypto - storage) / count, 3),
        }
        for name, (cpu, crypto, storage) in steps.items()
    }


def devices(key_type: str, count: int):
    """(key, CSR DER, self-signed certificate) for `count` devices; the keys (20 at most) are
    reused round robin, as making one is not what is measured."""
    now = datetime.datetime.now(datetime.UTC)
    keys = [generate_key(key_type) for _ in range(min(count, 20))]
    for i in range(count):
        key = keys[i % len(keys)]
        subject = x509.Name.from_rfc4514_string(f"CN=bench-{i}")
        csr = scep.build_csr(key, subject, challenge="secret").public_bytes(serialization.Encoding.DER)
        yield key, csr, scep.self_signed_certificate(key, subject, now=now, serial=i + 1)


def build_requests(profile, count: int):
    ca_bundle = scep.CaBundle(ca=profile.authority.certificate, signer=profile.authority.certificate,
                              encipherer=profile.authority.certificate, all=[profile.authority.certificate])
    return [
        scep.build_pki_message(
            message_type=MessageType.PKCS_REQ, transaction_id=os.urandom(16).hex(), sender_nonce=os.urandom(16),
            content=csr, originator=enveloped.KeyTransOriginator(ca_bundle.encipherer),
            cipher=registry.CIPHERS.by_name("aes256-cbc"), signer_key=key, signer_cert=cert,
            digest=registry.DIGESTS.by_name("sha256"), random_bytes=os.urandom)
        for key, csr, cert in devices("rsa-2048", count)
    ]


class ServiceTransport:
    """The two GET requests `ScepSession.prepare` needs, answered by the service in-process
    (benchmarks/pq_inprocess.py adds the PKIOperation)."""

    def __init__(self, service: ScepService, profile):
        self.service, self.profile = service, profile

    def get_ca_caps(self, url: str) -> CaCaps:
        return CaCaps.parse(self.service.get_ca_caps(self.profile).body)

    def get_ca_cert(self, url: str, ca_ident: str | None = None) -> tuple[str, bytes]:
        reply = self.service.get_ca_cert(self.profile)
        return reply.content_type, reply.body


def build_pq_requests(service: ScepService, profile, count: int):
    """PKCSReqs as `pqscep bench --key-type ml-dsa-65` sends them to /scep/pq: the session
    adds the fresh ML-KEM-768 responseKey and picks AES-GCM from the CA's capabilities."""
    session = ScepSession("http://in-process/scep/pq", ServiceTransport(service, profile))
    return [
        session.prepare(MessageType.PKCS_REQ, csr, transaction_id=os.urandom(16).hex(),
                        signer=RequestSigner(cert, key), recipients=[], use_post=True).message
        for key, csr, cert in devices("ml-dsa-65", count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--profile", choices=["classic", "pq"], default="classic")
    parser.add_argument("--database", help="SQLAlchemy URL (default: SQLite in a temp dir)")
    parser.add_argument("--phases", action="store_true", help="split the CPU by protocol step too")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("PQSCEP_CA_PASSPHRASE", "benchmark-passphrase")
        config = init_data_dir(Path(tmp) / "data", challenge="secret")
        url = args.database or config.database_url
        store = open_store(url)
        service = ScepService(load_profiles(config), store)
        if args.profile == "pq":
            profile = service.profiles["pq"]
            bodies = build_pq_requests(service, profile, args.count + 5)
        else:
            profile = service.profiles["default"]
            bodies = build_requests(profile, args.count + 5)
        # Warm up (imports, first connections) outside the measurement.
        warm_up, bodies = bodies[:5], bodies[5:]
        for body in warm_up:
            service.pki_operation(profile, body, "127.0.0.1")
        instrument()
        if args.phases:
            instrument_phases()
        CRYPTO_SECONDS[:] = STORAGE_SECONDS[:] = [0.0, 0.0]
        per_op = []
        start, start_cpu = time.perf_counter(), time.thread_time()
        for body in bodies:
            t = time.perf_counter()
            reply = service.pki_operation(profile, body, "127.0.0.1")
            per_op.append(time.perf_counter() - t)
            assert reply.outcome == "success", reply.outcome
        total, total_cpu = time.perf_counter() - start, time.thread_time() - start_cpu
        store.close()
    result = {
        "count": args.count,
        "profile": args.profile,
        "database": url.split(":")[0],
        "ms_per_pkioperation": 1000 * total / args.count,
        "p50_ms": 1000 * statistics.median(per_op),
        "crypto_ms_per_pkioperation": 1000 * CRYPTO_SECONDS[0] / args.count,
        "non_crypto_ms_per_pkioperation": 1000 * (total - CRYPTO_SECONDS[0]) / args.count,
        "storage_ms_per_pkioperation": 1000 * STORAGE_SECONDS[0] / args.count,
        "rest_ms_per_pkioperation": 1000 * (total - CRYPTO_SECONDS[0] - STORAGE_SECONDS[0]) / args.count,
        # The same split in CPU time of the serving thread: what the server spends, without
        # the time it waits (chiefly the fsync of each durable commit) or is preempted.
        "cpu_ms_per_pkioperation": 1000 * total_cpu / args.count,
        "crypto_cpu_ms_per_pkioperation": 1000 * CRYPTO_SECONDS[1] / args.count,
        "non_crypto_cpu_ms_per_pkioperation": 1000 * (total_cpu - CRYPTO_SECONDS[1]) / args.count,
        "storage_cpu_ms_per_pkioperation": 1000 * STORAGE_SECONDS[1] / args.count,
        "storage_wait_ms_per_pkioperation": 1000 * (STORAGE_SECONDS[0] - STORAGE_SECONDS[1]) / args.count,
    }
    if args.phases:
        result["phases"] = phase_split(args.count, total_cpu)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        if key == "phases":
            print(f"{'CPU ms per PKIOperation by step':32} {'all':>7} {'crypto':>7} {'storage':>7} {'other':>7}")
            for step, split in value.items():
                print(f"  {step:30} " + " ".join(f"{split[k]:7.3f}" for k in ("cpu_ms", "crypto_cpu_ms",
                                                                               "storage_cpu_ms", "other_cpu_ms")))
        else:
            print(f"{key:32} {value:.3f}" if isinstance(value, float) else f"{key:32} {value}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
