"""`pqscep bench`: enrollment throughput and latency of a SCEP server (any RFC 8894 server:
pqscep's own, micromdm's scepserver...).

What is prepared before the clock starts, as a device fleet has it before it talks to the CA:
each device's new key, its CSR and transient self-signed certificate, and the CA's
GetCACaps/GetCACert answers. What is timed per enrollment (`--timed`):

* `round-trip` (the default): the PKCSReq's HTTP exchange. The signed, enveloped pkiMessage
  is built before the clock starts and the CertRep is verified and decrypted after it stops;
  an enrollment counts only if that check passes. This measures the server: on a machine that
  also runs the client, the client's own RSA and HTTP work (more CPU per enrollment than a
  lean server's, measured) would otherwise take cores from the server and shrink every
  difference between servers.
* `enrollment`: everything the device does, as `pqscep enroll` does it: sign and envelope,
  HTTP, verify and decrypt. ML-KEM devices are always timed this way, because the reply may
  be a KEM challenge that must be answered within the enrollment.

In both modes the exchanges go over `client.keepalive.KeepAliveSender` (http.client) rather
than httpx, for the same reason: measured, it costs the client about 30% of httpx's CPU.

Workers are processes, not threads: the client's own RSA work holds Python's GIL, and a
thread pool would measure the client's single core instead of the server.

While the clock runs, a worker tells the parent nothing but its count of finished
enrollments, in shared memory (one slot per worker) that the parent reads ten times a second
for the progress bar; outcomes and latencies go to the parent in one message per worker at
the end. A queue message per enrollment cost a pickling thread's wake-up in the worker and a
wake-up of the parent, on the cores the server under test needs (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import math
import os
import queue
import time
from dataclasses import dataclass, field
from typing import Any

import click
from cryptography import x509
from cryptography.x509.oid import NameOID
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..client.errors import EnrollmentError, UnusableKey, VerificationError, describe_failure
from ..client.keepalive import KeepAliveSender
from ..client.kem import answer_kem_challenge
from ..client.requester import reply_kem_recipient
from ..client.session import ScepSession, utc_now
from ..client.signer import RequestSigner
from ..client.transport import DEFAULT_TIMEOUT, CaCaps, ScepTransport, TransportError
from ..client.workflows import enroll
from ..crypto import keys as keymod
from ..protocol.messages import PkiStatus
from .client_output import unusable_key_text
from .exits import EXIT_FAILURE, EXIT_OK, EXIT_TRANSPORT, EXIT_VERIFY

__all__ = ["COMMANDS", "BenchResult", "percentile", "run_bench"]


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None for an empty one)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class BenchResult:
    count: int
    concurrency: int
    wall_seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful enrollments
    errors: int = 0
    error_samples: dict[str, int] = field(default_factory=dict)

    @property
    def successes(self) -> int:
        return len(self.latencies)

    def summary(self) -> dict:
        ordered = sorted(self.latencies)
        p50, p99 = percentile(ordered, 0.50), percentile(ordered, 0.99)
        return {
            "enrollments_per_s": round(self.successes / self.wall_seconds, 3) if self.wall_seconds > 0 else None,
            "p50_ms": round(p50 * 1000, 3) if p50 is not None else None,
            "p99_ms": round(p99 * 1000, 3) if p99 is not None else None,
            "errors": self.errors,
            "count": self.count,
            "concurrency": self.concurrency,
        }


@dataclass
class _Plan:
    url: str
    caps: CaCaps  # the CA's GetCACaps
    ca_reply: tuple[str, bytes]  # GetCACert (content type, body), parsed again in each worker
    use_post: bool
    cipher: str
    digest: str
    challenge: str | None
    key_type: str
    timeout: float
    run_id: str
    identity: bool = False  # ML-KEM devices sign their CSR with a certificate of this CA
    timed: str = "round-trip"  # or "enrollment" (module docstring)


def _worker(plan: _Plan, slot: int, indices: list[int], ready, start, stopped, progress, results) -> None:
    """One worker process: prepare its devices, wait for the start, enroll them one by one.

    Each round trip goes through `ScepSession` (prepare, send, read), the same code as
    `pqscep enroll`: so a CA that lists ML-KEM gets ML-KEM envelopes both ways (responseKey),
    AES-GCM if listed.

    `progress[slot]` counts this worker's enrollments whose timed part is over; at the end the
    worker puts ("done", outcomes, last) on `results`: its ("ok", latency) or ("error", reason)
    per enrollment and the `time.monotonic()` at which its last timed part ended (a clock
    that all processes of the machine share)."""
    from cryptography.hazmat.primitives import serialization

    from ..cms import enveloped
    from ..csr.pkcs10 import build_kem_csr
    from ..protocol import client as proto
    from ..protocol.messages import MessageType

    bundle = proto.parse_ca_certs(*plan.ca_reply)
    now = utc_now()
    kem = keymod.KEY_TYPES[plan.key_type].family == keymod.KeyFamily.ML_KEM
    round_trip = plan.timed == "round-trip" and not kem
    # Every exchange of the worker goes over http.client (client/keepalive.py: about 30%
    # of httpx's CPU per request, which the server under test would otherwise lose). The
    # session asks its transport for nothing but PKIOperations: the CA's capabilities and
    # certificates are given.
    with KeepAliveSender(plan.url, timeout=plan.timeout) as sender:
        session = ScepSession(plan.url, sender, caps=plan.caps, bundle=bundle,  # type: ignore[arg-type]
                              cipher=plan.cipher, digest=plan.digest)
        devices = []
        for index in indices:
            key = keymod.generate_key(plan.key_type)
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{plan.run_id}-{index}")])
            serial = int.from_bytes(os.urandom(8), "big") | 1
            if kem:
                # Draft Section 7.1: an ML-DSA-65 signer signs the CSR of the ML-KEM key: a transient
                # self-signed one, or (--identity, what the statement mode needs) a device
                # certificate this CA issues first, outside the measurement.
                signer = keymod.generate_key("ml-dsa-65")
                cert = proto.self_signed_certificate(signer, subject, now=now, serial=serial)
                if plan.identity:
                    cert = _identity_certificate(plan, bundle, signer, subject)
                csr = build_kem_csr(key.public_key(), subject, signer, cert, challenge_password=plan.challenge)
                recipients: list[enveloped.Recipient] = [reply_kem_recipient(key)]
            else:
                signer = key
                csr = proto.build_csr(key, subject, challenge=plan.challenge).public_bytes(serialization.Encoding.DER)
                cert = proto.self_signed_certificate(key, subject, now=now, serial=serial)
                recipients = [enveloped.KeyTransRecipient(cert, key)]
            device: Any = (key, signer, csr, cert, subject, recipients)  # or its PreparedRequest
            if round_trip:  # the pkiMessage itself is built before the clock too
                device = session.prepare(MessageType.PKCS_REQ, csr, transaction_id=os.urandom(16).hex(),
                                         signer=RequestSigner(cert, signer), recipients=recipients,
                                         use_post=plan.use_post)
            devices.append(device)
            ready.put(1)
        start.wait()
        if round_trip:
            _round_trips(session, devices, slot, stopped, progress, results)
            return
        outcomes: list[tuple[str, float | str]] = []
        last = time.monotonic()
        for key, signer, csr, cert, subject, recipients in devices:
            started = time.perf_counter()
            try:
                transaction_id = os.urandom(16).hex()
                result = session.transact(
                    MessageType.PKCS_REQ, csr, transaction_id=transaction_id, signer=RequestSigner(cert, signer),
                    recipients=recipients, use_post=plan.use_post)
                if kem:  # a KEM challenge is answered within the timed enrollment (one more round trip)
                    result, _ = answer_kem_challenge(
                        session, result, MessageType.PKCS_REQ, key=key, csr_der=csr, transaction_id=transaction_id,
                        subject=subject, signer=RequestSigner(cert, signer), recipients=recipients, cipher=None,
                        use_post=plan.use_post)
                _check_issued(result)
                outcome: tuple[str, float | str] = ("ok", time.perf_counter() - started)
            except Exception as exc:  # every failure counts as an error, none stops the run
                outcome = ("error", f"{type(exc).__name__}: {str(exc)[:160]}")
            last = time.monotonic()
            outcomes.append(outcome)
            progress[slot] += 1
        results.put(("done", outcomes, last))


def _round_trips(session, prepared, slot, stopped, progress, results) -> None:
    """`--timed round-trip`: time only the HTTP exchanges of the prepared pkiMessages, then,
    once the clock has stopped for every worker (`stopped`), check every CertRep (an enrollment
    counts only if its CertRep verifies and holds a certificate for the device). Checking
    right away would put the RSA work of a worker that finished first inside the others'
    timed window, on the cores the server under test needs."""
    exchanged, last = [], time.monotonic()
    for request in prepared:
        started = time.perf_counter()
        try:
            exchanged.append((request, session.send(request), time.perf_counter() - started))
        except Exception as exc:  # every failure counts as an error, none stops the run
            exchanged.append((request, exc, 0.0))
        last = time.monotonic()
        progress[slot] += 1
    stopped.wait()
    outcomes: list[tuple[str, float | str]] = []
    for request, reply, latency in exchanged:
        try:
            if isinstance(reply, Exception):
                raise reply
            _check_issued(session.read(request, reply))
            outcomes.append(("ok", latency))
        except Exception as exc:
            outcomes.append(("error", f"{type(exc).__name__}: {str(exc)[:160]}"))
    results.put(("done", outcomes, last))


def _check_issued(result) -> None:
    if result.status != PkiStatus.SUCCESS or not result.certificates:
        detail = describe_failure(result.fail_info, result.fail_info_text) \
            if result.status == PkiStatus.FAILURE else result.status.name
        raise EnrollmentError(f"CA answered {detail}")


def _identity_certificate(plan: _Plan, bundle, signer, subject: x509.Name) -> x509.Certificate:
    """A device certificate for `signer` from the CA under test (PKCSReq, not timed)."""
    with ScepTransport(timeout=plan.timeout) as transport:
        session = ScepSession(plan.url, transport, caps=plan.caps, bundle=bundle)
        outcome = enroll(session, key=signer, subject=subject, challenge=plan.challenge)
    if outcome.status != PkiStatus.SUCCESS or not outcome.certificates:
        raise EnrollmentError(f"the identity certificate was not issued: {outcome.status.name}")
    return outcome.certificates[0]


def run_bench(url: str, *, count: int, concurrency: int, challenge: str | None, key_type: str = "rsa-2048",
              timeout: float = DEFAULT_TIMEOUT, cipher: str = "auto", digest: str = "auto",
              console: Console | None = None, progress: bool = True, identity: bool = False,
              timed: str = "round-trip") -> BenchResult:
    import multiprocessing

    console = console or Console(stderr=True, highlight=False)
    # One-time discovery (not timed): what a provisioned device already knows.
    with ScepTransport(timeout=timeout) as setup:
        probe = ScepSession(url, setup, cipher=cipher, digest=digest)
        caps, bundle = probe.caps(), probe.bundle()
        chosen_cipher, chosen_digest = probe.algorithms()
        ca_reply = probe.ca_cert_raw()
    console.print(f"[dim]{escape(url)}: {chosen_cipher.name} + {chosen_digest.name} by "
                  f"{'POST' if caps.post else 'GET'}; CA {escape(bundle.ca.subject.rfc4514_string())}[/]")
    plan = _Plan(url, caps, ca_reply, caps.post, chosen_cipher.name, chosen_digest.name, challenge, key_type, timeout,
                 os.urandom(4).hex(), identity, timed)
    context = multiprocessing.get_context("spawn")  # no inherited locks or connections
    ready, results, start, stopped = context.Queue(), context.Queue(), context.Event(), context.Event()
    shares = [list(range(n, count, concurrency)) for n in range(min(concurrency, count))]
    # One counter per worker, written by that worker only: no lock is needed (module docstring).
    progress_counts = context.RawArray("q", len(shares))
    workers = [
        context.Process(target=_worker, args=(plan, slot, share, ready, start, stopped, progress_counts, results),
                        daemon=True)
        for slot, share in enumerate(shares)
    ]
    result = BenchResult(count=count, concurrency=concurrency, wall_seconds=0.0)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
            for worker in workers:
                worker.start()
            prepare = bar.add_task(f"preparing {count} devices: {key_type} key, CSR, certificate (not timed)",
                                   total=count)
            for _ in range(count):
                _get(ready, workers)
                bar.advance(prepare)
            task = bar.add_task(f"enrolling ({len(workers)} worker processes)", total=count)
            started = time.monotonic()
            start.set()
            _watch(progress_counts, shares, workers, lambda done: bar.update(task, completed=done))
            stopped.set()  # --timed round-trip: the workers check their CertReps now
            last = started
            for _ in workers:
                _, outcomes, worker_last = _get(results, workers)
                last = max(last, worker_last)
                for kind, value in outcomes:
                    if kind == "ok":
                        result.latencies.append(value)
                    else:
                        result.errors += 1
                        result.error_samples[value] = result.error_samples.get(value, 0) + 1
            # The clock stops when the last timed part ended, in whichever worker.
            result.wall_seconds = last - started
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    return result


def _watch(progress_counts, shares, workers, show, interval: float = 0.1) -> None:
    """Until every worker's timed part is over: show the enrollments done so far. A worker
    that exits before its share is done ends the run with a clear error."""
    while True:
        done = sum(progress_counts)
        show(done)
        if all(progress_counts[slot] >= len(share) for slot, share in enumerate(shares)):
            return
        for slot, worker in enumerate(workers):
            if not worker.is_alive() and progress_counts[slot] < len(shares[slot]):
                raise EnrollmentError(f"bench worker {slot} exited early (exit code {worker.exitcode})")
        time.sleep(interval)


def _get(channel, workers):
    """The next message from the workers; a clear error if they all exited without it."""
    while True:
        try:
            return channel.get(timeout=1)
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers):
                raise EnrollmentError("the bench worker processes exited early") from None


@click.command("bench")
@click.argument("url")
@click.option("--count", type=click.IntRange(min=1), default=100, show_default=True,
              help="Number of enrollments, each by a fresh device (a new key).")
@click.option("--concurrency", type=click.IntRange(min=1, max=256), default=4, show_default=True,
              help="Worker processes, each a device fleet with its own HTTP connection.")
@click.option("--challenge", envvar="PQSCEP_CHALLENGE", show_envvar=True, help="challengePassword (never printed).")
@click.option("--key-type", type=click.Choice(list(keymod.KEY_TYPES)), default="rsa-2048", show_default=True,
              help="Device key type; EC and ML-DSA need a CA that lists ML-KEM (the reply goes to a responseKey); "
                   "ML-KEM a CA that lists KEMPoP (a KEM challenge is answered within the timed enrollment).")
@click.option("--cipher", type=click.Choice(["auto", "aes256-gcm", "aes256-cbc", "aes128-cbc", "des3-cbc"]),
              default="auto", show_default=True)
@click.option("--digest", type=click.Choice(["auto", "sha512", "sha256", "sha1"]), default="auto", show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True)
@click.option("--identity", is_flag=True,
              help="ML-KEM key types: sign each device's CSR with an ML-DSA-65 certificate the CA issues it first "
                   "(not timed), as the statement proof-of-possession mode needs.")
@click.option("--timed", type=click.Choice(["round-trip", "enrollment"]), default="round-trip", show_default=True,
              help="round-trip: time the HTTP exchange (requests built before, replies checked after the clock); "
                   "enrollment: time all the device's work too (always so for ML-KEM devices).")
@click.option("--json", "as_json", is_flag=True,
              help='Print exactly one JSON object on stdout: {"enrollments_per_s", "p50_ms", "p99_ms", "errors", '
                   '"count", "concurrency"}.')
def bench_cmd(url, count, concurrency, challenge, key_type, cipher, digest, timeout, identity, timed,
              as_json) -> None:
    """Measure PKCSReq enrollments against a SCEP server: throughput and latency.

    Each of COUNT enrollments is a fresh device with its own new key. Each device's key, CSR and
    transient self-signed certificate are made BEFORE the clock starts (NOT counted), as a fleet
    has them before it talks to the CA. With --timed round-trip (the default) the clock covers
    the HTTP exchanges only: every PKCSReq is signed and encrypted before it starts and every
    CertRep verified and decrypted after it stops; an enrollment counts only if that check
    passes. With --timed enrollment it covers all of the device's work. GetCACaps and GetCACert
    are asked once, before timing. Exit 1 if any enrollment failed.
    """
    console = Console(stderr=True, highlight=False)
    try:
        result = run_bench(url, count=count, concurrency=concurrency, challenge=challenge, key_type=key_type,
                           timeout=timeout, cipher=cipher, digest=digest, console=console, identity=identity,
                           timed=timed)
    except TransportError as exc:
        console.print(f"[bold red]error:[/] transport: {escape(str(exc))}")
        raise click.exceptions.Exit(EXIT_TRANSPORT) from None
    except VerificationError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise click.exceptions.Exit(EXIT_VERIFY) from None
    except EnrollmentError as exc:
        text = unusable_key_text(exc) if isinstance(exc, UnusableKey) else str(exc)
        console.print(f"[bold red]error:[/] {escape(text)}")
        raise click.exceptions.Exit(EXIT_FAILURE) from None
    summary = result.summary()
    for reason, times in sorted(result.error_samples.items(), key=lambda kv: -kv[1])[:5]:
        console.print(f"[red]{times} x[/] {escape(reason)}")
    if as_json:
        click.echo(json.dumps(summary))
    else:
        def ms(value):
            return "n/a" if value is None else f"{value:.1f} ms"

        console.print(
            f"{result.successes}/{count} enrolled in {result.wall_seconds:.2f}s with {concurrency} workers: "
            f"[bold]{summary['enrollments_per_s']}[/] enrollments/s, p50 {ms(summary['p50_ms'])}, "
            f"p99 {ms(summary['p99_ms'])}, errors {result.errors}"
        )
    raise click.exceptions.Exit(EXIT_OK if result.errors == 0 else EXIT_FAILURE)


COMMANDS = [bench_cmd]
