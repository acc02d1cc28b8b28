"""A post-quantum enrollment with no HTTP and no other process: where its CPU goes.

The same client code as `pqscep bench --key-type ml-dsa-65` (`ScepSession`: ML-KEM-768 envelope
to the CA's recipient certificate, a fresh ML-KEM-768 responseKey, AES-GCM when the CA lists it)
talks to `ScepService` of the default `/scep/pq` profile through an in-process stand-in for
the HTTP transport. Devices (key, CSR, self-signed certificate) are made before the clock, as
the bench does. Prints the CPU per enrollment of the client and of the server, next to the
crypto floor of benchmarks/crypto_floor.py, so the share lost to HTTP and to processes
competing for the cores in `benchmarks/pq.sh` is the difference:

    python benchmarks/pq_inprocess.py [--count 200] [--key-type ml-dsa-65] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from pkioperation import ServiceTransport  # this folder: the GET half of the in-process transport

from pqscep.client.session import ScepSession, utc_now
from pqscep.client.signer import RequestSigner
from pqscep.crypto import keys
from pqscep.protocol import client as proto
from pqscep.protocol.messages import MessageType, PkiStatus
from pqscep.service.scep import ScepService
from pqscep.service.setup import init_data_dir, load_profiles
from pqscep.storage.db import open_store


class InProcessTransport(ServiceTransport):
    """What `ScepSession` needs of `ScepTransport`, answered by the service directly; it
    counts the server's CPU time."""

    def __init__(self, service: ScepService, profile):
        super().__init__(service, profile)
        self.server_cpu = 0.0

    def pki_operation(self, url: str, body: bytes, use_post: bool) -> bytes:
        started = time.thread_time()
        reply = self.service.pki_operation(self.profile, body, "127.0.0.1")
        self.server_cpu += time.thread_time() - started
        return reply.body


class Rig:
    """A `/scep/pq` service in a fresh data folder, a `ScepSession` that talks to it in-process, and
    `count + 5` devices (key, CSR, self-signed certificate) made before any clock starts; the
    first five are for warming up. Shared with benchmarks/pq_inplace.py."""

    def __init__(self, tmp: Path, count: int, key_type: str = "ml-dsa-65"):
        os.environ.setdefault("PQSCEP_CA_PASSPHRASE", "benchmark-passphrase")
        config = init_data_dir(tmp / "data", challenge="secret")
        self.store = open_store(config.database_url)
        self.service = ScepService(load_profiles(config), self.store)
        self.profile = self.service.profiles["pq"]
        self.transport = InProcessTransport(self.service, self.profile)
        self.session = ScepSession("http://in-process/scep/pq", self.transport)
        now = utc_now()
        self.devices = []
        for i in range(count + 5):
            key = keys.generate_key(key_type)
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{i}")])
            csr = proto.build_csr(key, subject, challenge="secret").public_bytes(serialization.Encoding.DER)
            self.devices.append((key, csr, proto.self_signed_certificate(key, subject, now=now, serial=i + 1)))
        for device in self.devices[:5]:  # warm up: imports, first connections, caches
            self.enroll(device)
        self.transport.server_cpu = 0.0

    def enroll(self, device) -> None:
        key, csr, cert = device
        result = self.session.transact(MessageType.PKCS_REQ, csr, transaction_id=os.urandom(16).hex(),
                                       signer=RequestSigner(cert, key), recipients=[], use_post=True)
        if result.status != PkiStatus.SUCCESS:
            raise SystemExit(f"enrollment failed: {result}")

    @property
    def timed_devices(self):
        return self.devices[5:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--key-type", default="ml-dsa-65")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp), args.count, args.key_type)
        started = time.thread_time()
        for device in rig.timed_devices:
            rig.enroll(device)
        total = time.thread_time() - started
        rig.store.close()
    server_cpu = rig.transport.server_cpu
    result = {
        "count": args.count,
        "key_type": args.key_type,
        "cpu_ms_per_enrollment": round(1000 * total / args.count, 3),
        "server_cpu_ms": round(1000 * server_cpu / args.count, 3),
        "client_cpu_ms": round(1000 * (total - server_cpu) / args.count, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name:24} {value}")


if __name__ == "__main__":
    main()
