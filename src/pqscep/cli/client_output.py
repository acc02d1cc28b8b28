"""What the client commands (`cli.client_cmds`) print, and how the client's errors become exit
codes: the wording for a person at a terminal of what the client library returns as data.

Human messages go to stderr (rich); what a script wants (certificates, CRLs) goes to a file or
stdout (`write_output`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from rich.console import Console
from rich.markup import escape

from ..client.errors import (
    CaFailure,
    EncryptedKey,
    EnrollmentError,
    KeyMismatch,
    UnusableKey,
    UnusableReason,
    VerificationError,
)
from ..client.outcome import Outcome
from ..client.pending import resume
from ..client.requester import PrivateKey, load_private_key_file
from ..client.session import ScepSession
from ..client.signer import RequestSigner
from ..client.transport import CaCaps, ScepTransport, TransportError
from ..client.workflows import wait_for_certificate
from ..crypto.registry import ContentCipher, DigestAlgorithm
from ..protocol import client as proto
from ..protocol.messages import PkiStatus
from .exits import EXIT_FAILURE, EXIT_PENDING, EXIT_TRANSPORT, EXIT_USAGE, EXIT_VERIFY

__all__ = [
    "console",
    "describe_cert",
    "fail",
    "finish",
    "handle_errors",
    "load_key",
    "load_signer",
    "new_key_guard",
    "print_ca_certs",
    "print_caps_summary",
    "print_choice",
    "print_got_crl",
    "print_notes",
    "print_still_pending",
    "report_simple_failure",
    "serialize_cert",
    "unusable_key_text",
    "write_output",
]

console = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(code: int, message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise click.exceptions.Exit(code)


def unusable_key_text(exc: UnusableKey) -> str:
    """The library's reason, with what to do about it."""
    if exc.reason == UnusableReason.CANNOT_DECRYPT:
        return f"{exc}; use an RSA key, or a CA that lists ML-KEM (post-quantum SCEP: the reply is encrypted to a " \
               "responseKey)"
    return str(exc)


def handle_errors(func: F | None = None, *, signer_options: tuple[str, str] = ("--key", "--cert")) -> Any:
    """Map the client's exceptions to the documented exit codes, with a one-line message.
    `signer_options`: the options that gave the request signer's key and certificate, named
    when they do not belong together."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except TransportError as exc:
                fail(EXIT_TRANSPORT, f"transport: {exc}")
            except CaFailure as exc:
                fail(EXIT_FAILURE, f"the CA answered FAILURE: {exc}")
            except EnrollmentError as exc:
                fail(*_error_text(exc, signer_options))

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


def _error_text(exc: EnrollmentError, signer_options: tuple[str, str]) -> tuple[int, str]:
    if isinstance(exc, VerificationError):
        return EXIT_VERIFY, f"verification failed: {exc}"
    if isinstance(exc, UnusableKey):
        return EXIT_USAGE, unusable_key_text(exc)
    if isinstance(exc, KeyMismatch):
        return EXIT_FAILURE, f"{signer_options[0]} is not the private key of {signer_options[1]}"
    return EXIT_FAILURE, str(exc)


def load_key(path: Path) -> PrivateKey:
    """A private key the command line names (unencrypted only: the commands ask for no passphrase)."""
    try:
        return load_private_key_file(path)
    except EncryptedKey:
        fail(EXIT_FAILURE, f"key {path} is encrypted; give an unencrypted key")


def load_signer(cert_path: Path, key_path: Path) -> RequestSigner:
    """The request signer the command line names (certificate and unencrypted key files)."""
    try:
        return RequestSigner.from_files(cert_path, key_path)
    except EncryptedKey:
        fail(EXIT_FAILURE, f"key {key_path} is encrypted; give an unencrypted key")


def print_notes(session: ScepSession | None, outcome: Outcome) -> None:
    """What the session and the outcome report beyond the CA's answer, one note a line."""
    notes = []
    if session is not None:
        if session.caps_error is not None:
            notes.append(f"GetCACaps failed ({session.caps_error}); assuming no capabilities")
        notes += ["the CA sent a KEM proof-of-possession challenge; answered it"] * session.kem_challenges_answered
    if outcome.renewal_sent_as_pkcs_req:
        notes.append("the CA does not advertise Renewal: sent a PKCSReq signed with the existing certificate")
    if outcome.issuer_verified is False:
        notes.append("the issued certificate is not signed by a certificate from GetCACert (intermediate CA?)")
    if outcome.saved_signer_key is not None:
        notes.append(f"the transient request signer's key is in {outcome.saved_signer_key} (for pqscep poll)")
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}")


def print_choice(session: ScepSession) -> None:
    cipher, digest = session.algorithms()
    method = "POST" if session.caps().post else "GET"
    console.print(f"[dim]CA {escape(session.bundle().ca.subject.rfc4514_string())}; "
                  f"sending {cipher.name} + {digest.name} by {method}[/]")


def print_caps_summary(caps: CaCaps, cipher: ContentCipher, digest: DigestAlgorithm) -> None:
    """After the keywords of `pqscep caps`: what a request to this CA would use."""
    console.print(f"[dim]{len(caps.keywords)} keywords; pqscep would send {cipher.name} + {digest.name} "
                  f"by {'POST' if caps.post else 'GET'}"
                  f"{', RenewalReq for renewals' if caps.renewal else ', PKCSReq for renewals'}[/]")


def print_ca_certs(bundle: proto.CaBundle, *, pinned: bool) -> None:
    """Each certificate of a GetCACert reply with its role and SHA-256 fingerprint."""
    for cert in bundle.all:
        if cert is bundle.ca:
            roles = ["CA"]
        else:
            roles = [role for role, c in (("RA signer", bundle.signer), ("RA encipherer", bundle.encipherer))
                     if c is cert]
        console.print(f"{escape(cert.subject.rfc4514_string())} [dim]({', '.join(roles) or 'chain'}) "
                      f"SHA-256 {cert.fingerprint(hashes.SHA256()).hex()}[/]")
    if pinned:
        console.print("[green]CA fingerprint matches the pin[/]")


def print_got_crl(crl: x509.CertificateRevocationList) -> None:
    console.print(f"[green]got CRL[/] of {escape(crl.issuer.rfc4514_string())}, "
                  f"{len(list(crl))} revoked, next update {crl.next_update_utc}")


def serialize_cert(cert: x509.Certificate, fmt: str) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER if fmt == "der" else serialization.Encoding.PEM)


def write_output(data: bytes, out: Path | None, what: str) -> None:
    if out is None:
        # click 8.5 serves get_binary_stream through a deprecated module __getattr__ (typed object).
        stream = click.get_binary_stream("stdout")  # type: ignore[operator]
        stream.write(data)
        stream.flush()
        return
    try:
        out.write_bytes(data)
    except OSError as exc:
        fail(EXIT_FAILURE, f"cannot write {what} to {out}: {exc.strerror or exc}")
    console.print(f"{what} written to {escape(str(out))}")


def describe_cert(cert: x509.Certificate) -> str:
    return (f"{cert.subject.rfc4514_string()} (serial {cert.serial_number:#x}, "
            f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z, issuer {cert.issuer.rfc4514_string()})")


def _state_path(state: Path | None, outcome: Outcome) -> Path:
    return state or Path(f"pqscep-{outcome.transaction_id[:16].lower()}.state.json")


def print_still_pending(outcome: Outcome, left: float) -> None:
    """`wait_for_certificate`'s on_pending: one line per PENDING answer."""
    console.print(f"[dim]still PENDING, {left:.0f}s left[/]")


def finish(outcome: Outcome, *, out: Path | None, fmt: str, state_file: Path | None,
           session: ScepSession | None = None, wait: float = 0.0, interval: float = 10.0,
           transport: ScepTransport | None = None) -> None:
    """Handle SUCCESS / FAILURE / PENDING of an enrollment-like request (enroll, renew, poll):
    write the certificate; on PENDING save the state, poll for up to `wait` seconds, and exit
    with EXIT_PENDING if the CA has not decided."""
    print_notes(session, outcome)
    if outcome.status == PkiStatus.PENDING and outcome.state is not None:
        path = _state_path(state_file, outcome)
        outcome.state.save(path)
        console.print(f"[yellow]PENDING[/]: transaction {outcome.transaction_id}; state saved to {escape(str(path))}")
        if wait > 0:
            console.print(f"polling every {interval:g}s for up to {wait:g}s")
            assert transport is not None
            poll_session = resume(outcome.state, transport, dumper=session.dumper if session else None)
            try:
                final = wait_for_certificate(poll_session, outcome.state, wait=wait, interval=interval,
                                             poll_first=False, on_pending=print_still_pending)
            except (TransportError, VerificationError):
                console.print(f"polling failed; the request is still open: pqscep poll --state {escape(str(path))}")
                raise
            if final is not None and final.status != PkiStatus.PENDING:
                try:
                    finish(final, out=out, fmt=fmt, state_file=path)
                finally:
                    path.unlink(missing_ok=True)  # the transaction is over, whatever its end
                return
        console.print(f"run: pqscep poll --state {escape(str(path))}")
        raise click.exceptions.Exit(EXIT_PENDING)
    if outcome.status == PkiStatus.FAILURE:
        raise CaFailure(outcome)
    cert = outcome.certificate
    assert cert is not None
    console.print(f"[green]issued[/]: {escape(describe_cert(cert))}")
    write_output(serialize_cert(cert, fmt), out, "certificate")


def report_simple_failure(outcome: Outcome) -> None:
    """FAILURE or PENDING of a GetCert or GetCRL: raise or exit."""
    if outcome.status == PkiStatus.FAILURE:
        raise CaFailure(outcome)
    if outcome.status == PkiStatus.PENDING:
        console.print("[yellow]the CA answered PENDING[/] (unexpected for this request)")
        raise click.exceptions.Exit(EXIT_PENDING)


@contextlib.contextmanager
def new_key_guard(key_path: Path | None, option: str = "--key") -> Iterator[None]:
    """Around a request made with a key generated for it: when the CA refuses (FAILURE), the key
    is useless and removed; on any other error it is kept, and the message says how to retry."""
    try:
        yield
    except (CaFailure, UnusableKey):
        if key_path is not None:
            key_path.unlink(missing_ok=True)
        raise
    except (TransportError, EnrollmentError):
        if key_path is not None:
            console.print(f"[dim]the new key stays in {escape(str(key_path))}: retry with {option} "
                          f"{escape(str(key_path))}[/]")
        raise
