"""Server capacity without client crypto: fire pre-built PKCSReqs at a SCEP server, check the replies after.

    python benchmarks/replay.py URL [--count 1500] [--concurrency 8] [--challenge secret]
                                    [--server-pid PID] [--json]

`pqscep bench` runs one worker process per connection, each with its own Python and httpx;
on a 2-core machine those still take CPU from the server. Here one process builds every
PKCSReq first (RSA-2048 devices, AES-256-CBC, SHA-256; 20 device keys, a fresh CSR, transient
certificate and transactionID per request), then sends them over `--concurrency` keep-alive
HTTP/1.1 connections from a single asyncio loop (the stdlib's streams: the client's share of
the CPU is then ~0.3 ms per request), and only after the clock stops verifies and decrypts
every CertRep (`ScepSession.read`, the code of `pqscep enroll`). A request counts only if its
CertRep holds a certificate.

With `--server-pid`, the CPU time (user + system, from /proc) of that process and its children
over the timed part is divided by the number of requests: the server's own CPU per enrollment.
Works against any RFC 8894 server that takes POST (micromdm's scepserver as well as pqscep).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from pqscep.client.session import ScepSession, utc_now
from pqscep.client.signer import RequestSigner
from pqscep.client.transport import ScepTransport
from pqscep.cms import enveloped
from pqscep.crypto.keys import generate_key
from pqscep.protocol import client as proto
from pqscep.protocol.messages import MessageType, PkiStatus

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of `pid` and its live children (Linux /proc)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    return total


def prepare(url: str, count: int, challenge: str | None):
    transport = ScepTransport()
    session = ScepSession(url, transport, cipher="aes256-cbc", digest="sha256")
    keys = [generate_key("rsa-2048") for _ in range(min(20, count))]
    now = utc_now()
    requests = []
    for i in range(count):
        key = keys[i % len(keys)]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"replay-{os.getpid()}-{i}")])
        csr = proto.build_csr(key, subject, challenge=challenge).public_bytes(serialization.Encoding.DER)
        cert = proto.self_signed_certificate(key, subject, now=now, serial=i + 1)
        requests.append(session.prepare(MessageType.PKCS_REQ, csr, transaction_id=os.urandom(16).hex(),
                                        signer=RequestSigner(cert, key),
                                        recipients=[enveloped.KeyTransRecipient(cert, key)], use_post=True))
    return session, requests


async def fire(url: str, requests, concurrency: int):
    """[(request, status, body, seconds)] in the order of `requests`."""
    parts = urlsplit(url)
    head = (f"POST {parts.path or '/'}?operation=PKIOperation HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/x-pki-message\r\nContent-Length: %d\r\n\r\n")
    results: list = [None] * len(requests)
    queue: asyncio.Queue = asyncio.Queue()
    for index in range(len(requests)):
        queue.put_nowait(index)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            while not queue.empty():
                index = queue.get_nowait()
                message = requests[index].message
                started = time.perf_counter()
                writer.write((head % len(message)).encode("ascii") + message)
                status_line = await reader.readline()
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                if headers.get(b"transfer-encoding", b"").lower() == b"chunked":  # Go's net/http, for one
                    chunks = []
                    while (size := int((await reader.readline()).split(b";")[0], 16)) > 0:
                        chunks.append(await reader.readexactly(size))
                        await reader.readline()
                    await reader.readline()  # the empty trailer
                    body = b"".join(chunks)
                else:
                    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                status = int(status_line.split()[1])
                results[index] = (requests[index], status, body, time.perf_counter() - started)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--challenge", default=os.environ.get("PQSCEP_CHALLENGE"))
    parser.add_argument("--server-pid", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    session, requests = prepare(args.url, args.count, args.challenge)
    cpu_before = tree_cpu_seconds(args.server_pid) if args.server_pid else None
    client_before = time.process_time()
    started = time.perf_counter()
    results = asyncio.run(fire(args.url, requests, args.concurrency))
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    server_cpu = tree_cpu_seconds(args.server_pid) - cpu_before if args.server_pid else None

    latencies, errors = [], 0
    for request, status, body, seconds in results:
        try:
            if status != 200:
                raise ValueError(f"HTTP {status}")
            result = session.read(request, body)
            if result.status != PkiStatus.SUCCESS or not result.certificates:
                raise ValueError(result.status.name)
            latencies.append(seconds)
        except Exception:  # every failure is counted, none stops the run
            errors += 1
    latencies.sort()
    summary = {
        "enrollments_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(1000 * latencies[max(0, int(0.99 * len(latencies)) - 1)], 1) if latencies else None,
        "errors": errors,
        "count": args.count,
        "concurrency": args.concurrency,
        "client_cpu_ms_per_request": round(1000 * client_cpu / args.count, 2),
        "server_cpu_ms_per_request": round(1000 * server_cpu / args.count, 2) if server_cpu is not None else None,
    }
    print(json.dumps(summary) if args.json else "\n".join(f"{k:28} {v}" for k, v in summary.items()))
    sys.exit(0 if errors == 0 else 1)


if __name__ == "__main__":
    main()
