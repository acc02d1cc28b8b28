"""`pqscep bench`: enrollment throughput and latency of a SCEP server (any RFC 8894 server:
pqscep's own, micromdm's scepserver...).

What is measured, per enrollment: the full PKCSReq round trip as a device does it with a key it
already has: transient self-signed certificate, CSR, signed and enveloped pkiMessage, HTTP
request, and the CertRep's verification and decryption. What is not: key generation (all keys
are made before the clock starts, in a thread pool, since an RSA key costs far more than the
rest) and the one-time GetCACaps/GetCACert, which a device fleet would cache.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import click
from cryptography import x509
from cryptography.x509.oid import NameOID
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..client import enrollment as E
from ..client.transport import DEFAULT_TIMEOUT, ScepTransport, TransportError
from ..crypto import keys as keymod
from ..protocol.messages import PkiStatus
from .main import EXIT_FAILURE, EXIT_OK, EXIT_TRANSPORT, EXIT_VERIFY

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


def _one_enrollment(url, transports: "queue.Queue[ScepTransport]", caps, bundle, key, index, run_id, challenge,
                    cipher, digest) -> float:
    """One timed PKCSReq round trip; returns its latency in seconds, raises on any failure."""
    transport = transports.get()
    try:
        started = time.perf_counter()
        session = E.ScepSession(url, transport, caps=caps, bundle=bundle, cipher=cipher, digest=digest)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{run_id}-{index}")])
        outcome = E.enroll(session, key=key, subject=subject, challenge=challenge)
        elapsed = time.perf_counter() - started
    finally:
        transports.put(transport)
    if outcome.status == PkiStatus.FAILURE:
        raise E.CaFailure(outcome)
    if outcome.status != PkiStatus.SUCCESS:
        raise E.EnrollmentError(f"CA answered {outcome.status.name}")
    return elapsed


def run_bench(url: str, *, count: int, concurrency: int, challenge: str | None, key_type: str = "rsa-2048",
              timeout: float = DEFAULT_TIMEOUT, cipher: str = "auto", digest: str = "auto",
              console: Console | None = None, progress: bool = True) -> BenchResult:
    console = console or Console(stderr=True, highlight=False)
    # One-time discovery (not timed): what a provisioned device already knows.
    with ScepTransport(timeout=timeout) as setup:
        probe = E.ScepSession(url, setup, cipher=cipher, digest=digest)
        caps, bundle = probe.caps(), probe.bundle()
        chosen_cipher, chosen_digest = probe.algorithms()
    console.print(f"[dim]{escape(url)}: {chosen_cipher.name} + {chosen_digest.name} by "
                  f"{'POST' if caps.post else 'GET'}; CA {escape(bundle.ca.subject.rfc4514_string())}[/]")

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
        # Keys first, outside the measurement.
        keygen = bar.add_task(f"generating {count} {key_type} keys (not timed)", total=count)
        keys = []
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            for future in as_completed(pool.submit(keymod.generate_key, key_type) for _ in range(count)):
                keys.append(future.result())
                bar.advance(keygen)

        transports: queue.Queue[ScepTransport] = queue.Queue()
        made = [ScepTransport(timeout=timeout) for _ in range(concurrency)]
        for transport in made:
            transports.put(transport)
        run_id = os.urandom(4).hex()
        result = BenchResult(count=count, concurrency=concurrency, wall_seconds=0.0)
        lock = threading.Lock()
        task = bar.add_task(f"enrolling ({concurrency} workers)", total=count)
        try:
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench") as pool:
                futures = [
                    pool.submit(_one_enrollment, url, transports, caps, bundle, key, i, run_id, challenge, cipher,
                                digest)
                    for i, key in enumerate(keys)
                ]
                for future in as_completed(futures):
                    try:
                        latency = future.result()
                    except Exception as exc:  # every failure counts as an error, none stops the run
                        reason = f"{type(exc).__name__}: {str(exc)[:160]}"
                        with lock:
                            result.errors += 1
                            result.error_samples[reason] = result.error_samples.get(reason, 0) + 1
                    else:
                        result.latencies.append(latency)
                    bar.advance(task)
            result.wall_seconds = time.perf_counter() - started
        finally:
            for transport in made:
                transport.close()
    return result


@click.command("bench")
@click.argument("url")
@click.option("--count", type=click.IntRange(min=1), default=100, show_default=True,
              help="Number of enrollments, each by a fresh device (a new key).")
@click.option("--concurrency", type=click.IntRange(min=1, max=512), default=4, show_default=True,
              help="Worker threads, each with its own HTTP connection (httpx.Client).")
@click.option("--challenge", envvar="PQSCEP_CHALLENGE", show_envvar=True, help="challengePassword (never printed).")
@click.option("--key-type", type=click.Choice([n for n, t in keymod.KEY_TYPES.items() if t.family == "rsa"]),
              default="rsa-2048", show_default=True)
@click.option("--cipher", type=click.Choice(["auto", "aes256-cbc", "aes128-cbc", "des3-cbc"]), default="auto",
              show_default=True)
@click.option("--digest", type=click.Choice(["auto", "sha256", "sha1"]), default="auto", show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help='Print exactly one JSON object on stdout: {"enrollments_per_s", "p50_ms", "p99_ms", "errors", '
                   '"count", "concurrency"}.')
def bench_cmd(url, count, concurrency, challenge, key_type, cipher, digest, timeout, as_json) -> None:
    """Measure PKCSReq enrollments against a SCEP server: throughput and latency.

    Each of COUNT enrollments is a fresh device with its own new key. The keys are generated
    BEFORE the clock starts (in a thread pool), so key generation is NOT counted; what is timed
    per enrollment is the full round trip: self-signed certificate, CSR, signed and encrypted
    PKCSReq, HTTP, and verifying and decrypting the CertRep. GetCACaps and GetCACert are asked
    once, before timing. Exit 1 if any enrollment failed.
    """
    console = Console(stderr=True, highlight=False)
    try:
        result = run_bench(url, count=count, concurrency=concurrency, challenge=challenge, key_type=key_type,
                           timeout=timeout, cipher=cipher, digest=digest, console=console)
    except TransportError as exc:
        console.print(f"[bold red]error:[/] transport: {escape(str(exc))}")
        raise click.exceptions.Exit(EXIT_TRANSPORT)
    except E.VerificationError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise click.exceptions.Exit(EXIT_VERIFY)
    except E.EnrollmentError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise click.exceptions.Exit(EXIT_FAILURE)
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
