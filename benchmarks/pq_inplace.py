"""Why a post-quantum enrollment costs more CPU than its crypto floor, measured inside one
process so that the machine's drift (±20% between identical runs here) falls on both sides of
each comparison.

    python benchmarks/pq_inplace.py [--count 400] [--pause sleep|sweep] [--sleep-ms 3]
                                    [--sweep-mib 32] [--json]

The enrollments are those of benchmarks/pq_inprocess.py (an ML-DSA-65 device, ML-KEM-768 both
ways, AES-GCM, the client's `ScepSession` talking to `ScepService` with no HTTP). Two results:

* `signatures`: every ML-DSA signature of an enrollment timed where it runs (the client's and the
  CertRep's `signing.sign`, the certificate's `CertificateBuilder.sign`, which also builds the
  TBSCertificate), against the CA's key signing a message of the same size three times in a
  tight loop right after each enrollment: what crypto_floor.py counts.
* `cold`: enrollment by enrollment, the run alternates between the client's and the server's
  halves back to back (`plain`) and with a pause before and after the server's half (`paused`):
  a sleep, in which the core idles as it does while the other side of an HTTP round trip works,
  or a sweep over a buffer of N MiB, which evicts from the caches what the other processes on
  the core would evict meanwhile (the pauses' own CPU is taken out). The CPU
  of each half in each mode: the difference is what a cold start costs the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cryptography.x509.base as x509_base
from pq_inprocess import Rig  # this folder

from pqscep.crypto import signing


class SignTimer:
    """Wraps `signing.sign` and `CertificateBuilder.sign` to add up their CPU time."""

    def __init__(self):
        self.seconds = {"signing.sign": 0.0, "CertificateBuilder.sign": 0.0}
        self.calls = {"signing.sign": 0, "CertificateBuilder.sign": 0}
        self.last_message_size = 0  # of the last signing.sign: the tight loop signs as much
        sign, build = signing.sign, x509_base.CertificateBuilder.sign

        def timed_sign(key, data, digest):
            started = time.thread_time()
            try:
                return sign(key, data, digest)
            finally:
                self._add("signing.sign", started)
                self.last_message_size = len(data)

        def timed_build(builder, *args, **kwargs):
            started = time.thread_time()
            try:
                return build(builder, *args, **kwargs)
            finally:
                self._add("CertificateBuilder.sign", started)

        signing.sign = timed_sign
        x509_base.CertificateBuilder.sign = timed_build

    def _add(self, name: str, started: float) -> None:
        self.seconds[name] += time.thread_time() - started
        self.calls[name] += 1

    def mean_us(self, name: str) -> float:
        return round(1e6 * self.seconds[name] / max(1, self.calls[name]), 1)


class Pause:
    """What happens between the halves of a paused enrollment: a sleep or a cache sweep."""

    def __init__(self, kind: str, sleep_ms: float, sweep_mib: int):
        self.kind = kind
        self.sleep_s = sleep_ms / 1000
        self.buffer = bytearray(sweep_mib * 1024 * 1024) if kind == "sweep" else bytearray()
        self.zeros = bytes(len(self.buffer) // 64)

    def __call__(self) -> None:
        if self.kind == "sleep":
            time.sleep(self.sleep_s)
        else:
            self.buffer[::64] = self.zeros  # one write to each 64-byte cache line


def measure(count: int, pause: Pause) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp), count)
        timer = SignTimer()
        service_call = rig.service.pki_operation
        state = {"paused": False}
        # [CPU of the enrollment less its pauses, CPU of the server's half, enrollments] for
        # plain and paused
        cpu = {False: [0.0, 0.0, 0], True: [0.0, 0.0, 0]}

        def timed_pause() -> None:
            started = time.thread_time()
            pause()
            cpu[True][0] -= time.thread_time() - started

        def server_half(profile, body, client_address):
            paused = state["paused"]
            if paused:
                timed_pause()
            started = time.thread_time()
            reply = service_call(profile, body, client_address)
            cpu[paused][1] += time.thread_time() - started
            if paused:
                timed_pause()
            return reply

        rig.service.pki_operation = server_half  # type: ignore[method-assign]
        ca_key = rig.profile.responder.keys.signer_key
        tight_seconds, tight_calls = 0.0, 0
        for index, device in enumerate(rig.timed_devices):
            state["paused"] = paused = index % 2 == 1
            started = time.thread_time()
            rig.enroll(device)
            cpu[paused][0] += time.thread_time() - started
            cpu[paused][2] += 1
            message = os.urandom(timer.last_message_size)
            started = time.thread_time()
            for _ in range(3):
                ca_key.sign(message)
            tight_seconds += time.thread_time() - started
            tight_calls += 3
        rig.store.close()

    def halves(paused: bool) -> dict:
        total, server, n = cpu[paused]
        return {"client_cpu_ms": round(1000 * (total - server) / n, 3), "server_cpu_ms": round(1000 * server / n, 3),
                "cpu_ms": round(1000 * total / n, 3), "enrollments": n}

    return {
        "count": count,
        "signatures": {
            "in_place_sign_us": timer.mean_us("signing.sign"),
            "in_place_certificate_sign_us": timer.mean_us("CertificateBuilder.sign"),
            "tight_loop_sign_us": round(1e6 * tight_seconds / tight_calls, 1),
            "per_enrollment": {name: calls // count for name, calls in timer.calls.items()},
        },
        "cold": {"pause": pause.kind, "plain": halves(False), "paused": halves(True)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--pause", choices=["sleep", "sweep"], default="sleep")
    parser.add_argument("--sleep-ms", type=float, default=3.0)
    parser.add_argument("--sweep-mib", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.count < 2:
        parser.error("--count must be at least 2 (one enrollment of each mode)")
    result = measure(args.count, Pause(args.pause, args.sleep_ms, args.sweep_mib))
    if args.json:
        print(json.dumps(result))
        return
    s = result["signatures"]
    print(f"ML-DSA-65 sign in place {s['in_place_sign_us']} us, certificate {s['in_place_certificate_sign_us']} us, "
          f"tight loop {s['tight_loop_sign_us']} us")
    for mode in ("plain", "paused"):
        r = result["cold"][mode]
        print(f"{mode:7} client {r['client_cpu_ms']:.3f} ms  server {r['server_cpu_ms']:.3f} ms  "
              f"all {r['cpu_ms']:.3f} ms ({r['enrollments']} enrollments)")


if __name__ == "__main__":
    main()
