"""Client CPU per PKIOperation send: httpx (`ScepTransport`) against http.client
(`KeepAliveSender`, what `pqscep bench` times its exchanges with), to the same server.

    python benchmarks/client_send.py URL [--count 300] [--challenge secret] [--json]

Builds 2 x COUNT PKCSReqs (one RSA-2048 key, fresh CSRs) before any clock starts, then sends
COUNT of them through each transport, one at a time on one keep-alive connection, and reports
the CPU time of this thread (`time.thread_time()`) and the wall time per send. Every reply must
be an HTTP 200 CertRep. benchmarks/client_send.sh starts a `pqscep serve` to run it against.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from pqscep.client.keepalive import KeepAliveSender
from pqscep.client.session import ScepSession, utc_now
from pqscep.client.signer import RequestSigner
from pqscep.client.transport import ScepTransport
from pqscep.cms import enveloped
from pqscep.crypto.keys import generate_key
from pqscep.protocol import client as proto
from pqscep.protocol.messages import MessageType


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--challenge", default="secret")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    key = generate_key("rsa-2048")
    now = utc_now()
    with ScepTransport() as transport:
        session = ScepSession(args.url, transport, cipher="aes256-cbc", digest="sha256")
        caps = session.caps()
        session.bundle()  # GetCACert before timing
        requests = []
        for i in range(2 * args.count):
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"send-{os.getpid()}-{i}")])
            csr = proto.build_csr(key, subject, challenge=args.challenge).public_bytes(serialization.Encoding.DER)
            cert = proto.self_signed_certificate(key, subject, now=now, serial=i + 1)
            requests.append(session.prepare(MessageType.PKCS_REQ, csr, transaction_id=os.urandom(16).hex(),
                                            signer=RequestSigner(cert, key),
                                            recipients=[enveloped.KeyTransRecipient(cert, key)], use_post=caps.post))
        result = {"count": args.count}
        with KeepAliveSender(args.url) as sender:
            for name, send_with, batch in (("httpx", transport, requests[:args.count]),
                                           ("http_client", sender, requests[args.count:])):
                cpu, wall = time.thread_time(), time.perf_counter()
                for request in batch:
                    send_with.pki_operation(args.url, request.message, request.use_post)
                result[f"{name}_cpu_ms_per_send"] = round(1000 * (time.thread_time() - cpu) / args.count, 3)
                result[f"{name}_wall_ms_per_send"] = round(1000 * (time.perf_counter() - wall) / args.count, 3)
    print(json.dumps(result) if args.json else "\n".join(f"{k:28} {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
