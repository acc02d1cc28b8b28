"""Client commands: caps, cacert, enroll, renew, poll, getcert, getcrl.

Human messages go to stderr (rich); what a script wants (certificates, CRLs, capability
keywords) goes to files or stdout. Exit codes are those of `cli.main`: 0 issued/done,
1 the CA answered FAILURE (or the operation could not be done), 3 PENDING (run `pqscep poll`),
4 transport (unreachable server, HTTP error), 5 a check failed (CA pin, reply signature, nonce,
decryption). The challenge password is never printed; pass it with PQSCEP_CHALLENGE rather than
on the command line, where other users can see it in the process list.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from rich.markup import escape

from ..client.pending import PendingState, resume
from ..client.session import Dumper, ScepSession, choose_algorithms
from ..client.signer import RequestSigner
from ..client.transport import DEFAULT_TIMEOUT, ScepTransport
from ..client.workflows import enroll, get_cert, get_crl, renew, wait_for_certificate
from ..crypto import keys as keymod
from ..protocol.messages import PkiStatus
from .client_output import (
    console,
    describe_cert,
    fail,
    finish,
    handle_errors,
    load_key,
    load_signer,
    new_key_guard,
    print_ca_certs,
    print_caps_summary,
    print_choice,
    print_got_crl,
    print_notes,
    print_still_pending,
    report_simple_failure,
    serialize_cert,
    write_output,
)
from .exits import EXIT_FAILURE, EXIT_PENDING

__all__ = ["COMMANDS"]

_CIPHERS = ["auto", "aes256-cbc", "aes192-cbc", "aes128-cbc", "des3-cbc"]
_DIGESTS = ["auto", "sha256", "sha384", "sha512", "sha1"]


# --- arguments ---


def _endpoint_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--timeout, --dump, --ca-fingerprint, --cipher, --digest."""
    options = [
        click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True,
                     help="HTTP timeout in seconds (connect and each read)."),
        click.option("--dump", "dump_dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Save every message on the wire as DIR/NN-Name.ext (01-GetCACaps.txt, 02-GetCACert.der...)."),
        click.option("--ca-fingerprint", "pin", metavar="HEX",
                     help="SHA-256 fingerprint of the CA certificate (hex, colons allowed); refuse any other CA."),
        click.option("--cipher", type=click.Choice(_CIPHERS), default="auto", show_default=True,
                     help="Envelope cipher; auto: AES-256-CBC if GetCACaps lists AES, else 3DES."),
        click.option("--digest", type=click.Choice(_DIGESTS), default="auto", show_default=True,
                     help="Signature digest; auto: SHA-256 if GetCACaps lists SHA-256, else SHA-1."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _session(url: str, transport: ScepTransport, *, dump_dir: Path | None = None, pin: str | None = None,
             cipher: str = "auto", digest: str = "auto") -> ScepSession:
    return ScepSession(url, transport, dumper=Dumper(dump_dir), pin=pin, cipher=cipher, digest=digest)


def _subject(cn: str | None, subject: str | None) -> x509.Name:
    if subject:
        try:
            return x509.Name.from_rfc4514_string(subject)
        except ValueError as exc:
            raise click.BadParameter(f"not an RFC 4514 name: {exc}", param_hint="--subject") from None
    if cn:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    raise click.UsageError("give --cn NAME or --subject DN")


def _new_key_path(key_out: Path | None, out: Path | None) -> Path:
    path = key_out or (out.with_suffix(".key") if out is not None else None)
    if path is None:
        raise click.UsageError("a new key is generated: give --key-out FILE (or --out FILE, the key then goes "
                               "next to it as FILE.key)")
    if path.exists():
        raise click.UsageError(f"{path} exists: not overwriting a key; remove it or choose another --key-out")
    return path


def _parse_serial(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        serial = int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number (decimal, or hex with 0x)",
                                 param_hint="--serial") from None
    if serial < 0:
        raise click.BadParameter("a serial number is positive", param_hint="--serial")
    return serial


# --- commands ---


@click.command("caps")
@click.argument("url")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True)
@handle_errors
def caps_cmd(url: str, timeout: float) -> None:
    """GetCACaps: print the CA's capability keywords, one per line, on stdout."""
    with ScepTransport(timeout=timeout) as transport:
        caps = transport.get_ca_caps(url)
    for keyword in caps.keywords:
        click.echo(keyword)
    print_caps_summary(caps, *choose_algorithms(caps))


@click.command("cacert")
@click.argument("url")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--pem/--der", "pem", default=True, show_default=True,
              help="PEM: every certificate; DER: the reply exactly as received (a certificate or a PKCS#7).")
@click.option("--ca-ident", help="CA identifier sent as message= (for servers hosting several CAs).")
@click.option("--ca-fingerprint", "pin", metavar="HEX", help="SHA-256 fingerprint the CA must have (exit 5 if not).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True)
@handle_errors
def cacert_cmd(url: str, out: Path | None, pem: bool, ca_ident: str | None, pin: str | None, timeout: float) -> None:
    """GetCACert: fetch the CA (and RA) certificates."""
    with ScepTransport(timeout=timeout) as transport:
        session = ScepSession(url, transport, pin=pin, ca_ident=ca_ident)
        _, body = session.ca_cert_raw()
    bundle = session.bundle()
    print_ca_certs(bundle, pinned=bool(pin))
    data = b"".join(serialize_cert(c, "pem") for c in bundle.all) if pem else body
    write_output(data, out, "CA certificates" if pem else "GetCACert reply")


@click.command("enroll")
@click.argument("url")
@click.option("--challenge", envvar="PQSCEP_CHALLENGE", show_envvar=True,
              help="challengePassword for the CSR (never printed). Prefer the environment variable.")
@click.option("--cn", help="Subject common name.")
@click.option("--subject", help="Full subject as an RFC 4514 DN (instead of --cn), e.g. 'CN=dev1,O=Example'.")
@click.option("--key-type", type=click.Choice(list(keymod.KEY_TYPES)), default="rsa-2048", show_default=True,
              help="Type of the new key. EC and ML-DSA need a CA that lists ML-KEM; ML-KEM keys a CA that "
                   "lists KEMPoP (the request is then signed by --signer-cert, or a transient ML-DSA-65 "
                   "certificate, and possession of the KEM key is proven as the CA asks).")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this existing private key (PEM/DER) instead of generating one.")
@click.option("--dns", multiple=True, metavar="NAME", help="DNS subjectAltName (repeatable).")
@click.option("--signer-cert", "signer_cert_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="ML-KEM keys only: sign the request with this existing device certificate (e.g. one this "
                   "CA issued, for a CA that takes the RFC 9883 statement as the proof).")
@click.option("--signer-key", "signer_key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The private key of --signer-cert.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Certificate file (default: stdout).")
@click.option("--key-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where the new key goes (mode 0600; default: the --out file with suffix .key).")
@click.option("--format", "fmt", type=click.Choice(["pem", "der"]), default="pem", show_default=True)
@click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=Path),
              help="State file written on PENDING (default: ./pqscep-<transaction>.state.json).")
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True,
              help="On PENDING, poll for up to this many seconds before giving up with exit 3.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=10, show_default=True,
              help="Seconds between polls.")
@_endpoint_options
@handle_errors(signer_options=("--signer-key", "--signer-cert"))
def enroll_cmd(url: str, challenge: str | None, cn: str | None, subject: str | None, key_type: str,
               key_file: Path | None, dns: tuple[str, ...], signer_cert_file: Path | None,
               signer_key_file: Path | None, out: Path | None, key_out: Path | None, fmt: str,
               state_file: Path | None, wait: float, interval: float, timeout: float, dump_dir: Path | None,
               pin: str | None, cipher: str, digest: str) -> None:
    """Enroll: PKCSReq with a new (or given) key; write the issued certificate."""
    name = _subject(cn, subject)
    if (signer_cert_file is None) != (signer_key_file is None):
        raise click.UsageError("--signer-cert and --signer-key go together")
    signer = load_signer(signer_cert_file, signer_key_file) if signer_cert_file and signer_key_file else None
    if key_file is not None:
        key = load_key(key_file)
        key_path = key_file
    if signer is not None and (keymod.key_family(key) if key_file is not None
                                   else keymod.KEY_TYPES[key_type].family) != keymod.KeyFamily.ML_KEM:
        raise click.UsageError("--signer-cert/--signer-key are for ML-KEM keys, which cannot sign their own request")
    if key_file is None:
        key_path = _new_key_path(key_out, out)
        key = keymod.generate_key(key_type)
        # Saved before the request goes out: a PENDING answer must be resumable with this key.
        keymod.write_private_key(key_path, key, None)
        console.print(f"new {key_type} key written to {escape(str(key_path))}")
    with new_key_guard(key_path if key_file is None else None), ScepTransport(timeout=timeout) as transport:
        session = _session(url, transport, dump_dir=dump_dir, pin=pin, cipher=cipher, digest=digest)
        print_choice(session)
        outcome = enroll(session, key=key, subject=name, challenge=challenge, dns_names=list(dns), key_path=key_path,
                         cert_out=str(out) if out else None, cert_format=fmt, signer=signer)
        finish(outcome, out=out, fmt=fmt, state_file=state_file, session=session, wait=wait, interval=interval,
                transport=transport)


@click.command("renew")
@click.argument("url")
@click.option("--cert", "cert_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The current certificate (signs the RenewalReq).")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The current certificate's private key.")
@click.option("--reuse-key", is_flag=True, help="Ask for the new certificate on the current key (default: a new key).")
@click.option("--new-key", "new_key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this existing key as the new key instead of generating one.")
@click.option("--key-type", type=click.Choice(list(keymod.KEY_TYPES)), default="rsa-2048", show_default=True)
@click.option("--challenge", envvar="PQSCEP_CHALLENGE", show_envvar=True,
              help="challengePassword, if the CA wants one for renewals too (micromdm does).")
@click.option("--cn", help="New subject common name (default: the current certificate's subject).")
@click.option("--subject", help="New subject as an RFC 4514 DN.")
@click.option("--dns", multiple=True, metavar="NAME", help="DNS subjectAltNames (default: the current ones).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Certificate file (default: stdout).")
@click.option("--key-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where the new key goes (mode 0600; default: the --out file with suffix .key).")
@click.option("--format", "fmt", type=click.Choice(["pem", "der"]), default="pem", show_default=True)
@click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True)
@click.option("--interval", type=click.FloatRange(min=0.1), default=10, show_default=True)
@_endpoint_options
@handle_errors
def renew_cmd(url: str, cert_file: Path, key_file: Path, reuse_key: bool, new_key_file: Path | None, key_type: str,
              challenge: str | None, cn: str | None, subject: str | None, dns: tuple[str, ...], out: Path | None,
              key_out: Path | None, fmt: str, state_file: Path | None, wait: float, interval: float,
              timeout: float, dump_dir: Path | None, pin: str | None, cipher: str, digest: str) -> None:
    """Renew: RenewalReq signed with the current certificate and key."""
    current = load_signer(cert_file, key_file)
    name = _subject(cn, subject) if (cn or subject) else None
    if reuse_key and new_key_file:
        raise click.UsageError("--reuse-key and --new-key exclude each other")
    if reuse_key:
        new_key, key_path = None, key_file
    elif new_key_file:
        new_key, key_path = load_key(new_key_file), new_key_file
    else:
        key_path = _new_key_path(key_out, out)
        new_key = keymod.generate_key(key_type)
        keymod.write_private_key(key_path, new_key, None)
        console.print(f"new {key_type} key written to {escape(str(key_path))}")
    fresh_key = key_path if not (reuse_key or new_key_file) else None
    with new_key_guard(fresh_key, "--new-key"), ScepTransport(timeout=timeout) as transport:
        session = _session(url, transport, dump_dir=dump_dir, pin=pin, cipher=cipher, digest=digest)
        print_choice(session)
        outcome = renew(session, current=current, new_key=new_key, challenge=challenge, subject=name,
                        dns_names=list(dns) or None, key_path=key_path, cert_out=str(out) if out else None,
                        cert_format=fmt)
        finish(outcome, out=out, fmt=fmt, state_file=state_file, session=session, wait=wait, interval=interval,
                transport=transport)


@click.command("poll")
@click.option("--state", "state_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The state file a PENDING enroll/renew wrote.")
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Keep polling for up to this many seconds while the CA says PENDING.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=10, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Certificate file (default: the --out of the enrollment, else stdout).")
@click.option("--format", "fmt", type=click.Choice(["pem", "der"]), help="Default: that of the enrollment.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True)
@click.option("--dump", "dump_dir", type=click.Path(file_okay=False, path_type=Path))
@handle_errors
def poll_cmd(state_file: Path, wait: float, interval: float, out: Path | None, fmt: str | None, timeout: float,
             dump_dir: Path | None) -> None:
    """Poll: CertPoll for a PENDING request until it is issued, refused, or --wait runs out."""
    state = PendingState.load(state_file)
    out = out or (Path(state.cert_out) if state.cert_out else None)
    fmt = fmt or state.cert_format
    console.print(f"polling {escape(state.url)} for transaction {state.transaction_id} ({escape(state.subject)})")
    with ScepTransport(timeout=timeout) as transport:
        session = resume(state, transport, dumper=Dumper(dump_dir))
        outcome = wait_for_certificate(session, state, wait=wait, interval=interval, on_pending=print_still_pending)
    assert outcome is not None
    if outcome.status == PkiStatus.PENDING:
        console.print(f"[yellow]still PENDING[/]: run pqscep poll --state {escape(str(state_file))} again later")
        raise click.exceptions.Exit(EXIT_PENDING)
    try:
        finish(outcome, out=out, fmt=fmt, state_file=state_file)
    finally:
        state_file.unlink(missing_ok=True)  # the transaction is over, whatever its end


def _signer(cert_file: Path | None, key_file: Path | None) -> RequestSigner | None:
    if (cert_file is None) != (key_file is None):
        raise click.UsageError("--cert and --key go together")
    if cert_file is None or key_file is None:
        return None
    return load_signer(cert_file, key_file)


_SIGNER_OPTIONS = [
    click.option("--cert", "cert_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="Certificate to sign the request with (default: a transient self-signed RSA one)."),
    click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="Private key of --cert."),
]


def _signer_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_SIGNER_OPTIONS):
        func = option(func)
    return func


@click.command("getcert")
@click.argument("url")
@click.option("--serial", required=True, help="Serial number of the wanted certificate (decimal, or 0x hex).")
@click.option("--issuer", help="Issuer DN (RFC 4514; default: the CA's subject).")
@_signer_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout.")
@click.option("--format", "fmt", type=click.Choice(["pem", "der"]), default="pem", show_default=True)
@_endpoint_options
@handle_errors
def getcert_cmd(url: str, serial: str, issuer: str | None, cert_file: Path | None, key_file: Path | None,
                out: Path | None, fmt: str, timeout: float, dump_dir: Path | None, pin: str | None, cipher: str,
                digest: str) -> None:
    """GetCert: fetch a certificate the CA issued, by serial number."""
    number = _parse_serial(serial)
    assert number is not None  # --serial is required
    signer = _signer(cert_file, key_file)
    issuer_name = x509.Name.from_rfc4514_string(issuer) if issuer else None
    with ScepTransport(timeout=timeout) as transport:
        session = _session(url, transport, dump_dir=dump_dir, pin=pin, cipher=cipher, digest=digest)
        outcome = get_cert(session, serial=number, issuer=issuer_name, signer=signer)
    print_notes(session, outcome)
    report_simple_failure(outcome)
    wanted = [c for c in outcome.certificates if c.serial_number == number] or outcome.certificates
    if not wanted:
        fail(EXIT_FAILURE, "the CA answered SUCCESS without a certificate")
    for cert in wanted:
        console.print(f"[green]got[/]: {escape(describe_cert(cert))}")
    # DER holds one certificate; PEM can hold them all.
    data = serialize_cert(wanted[0], "der") if fmt == "der" else b"".join(serialize_cert(c, "pem") for c in wanted)
    write_output(data, out, "certificate")


@click.command("getcrl")
@click.argument("url")
@_signer_options
@click.option("--serial", help="Serial of the certificate whose CRL is wanted (default: that of --cert).")
@click.option("--issuer", help="Its issuer DN (RFC 4514; default: --cert's issuer, else the CA's subject).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout.")
@click.option("--format", "fmt", type=click.Choice(["pem", "der"]), default="pem", show_default=True)
@_endpoint_options
@handle_errors
def getcrl_cmd(url: str, cert_file: Path | None, key_file: Path | None, serial: str | None, issuer: str | None,
               out: Path | None, fmt: str, timeout: float, dump_dir: Path | None, pin: str | None, cipher: str,
               digest: str) -> None:
    """GetCRL: fetch the CRL covering a certificate."""
    signer = _signer(cert_file, key_file)
    number = _parse_serial(serial)
    if number is None and signer is None:
        raise click.UsageError("give --cert/--key (the certificate to check) or --serial")
    issuer_name = x509.Name.from_rfc4514_string(issuer) if issuer else None
    with ScepTransport(timeout=timeout) as transport:
        session = _session(url, transport, dump_dir=dump_dir, pin=pin, cipher=cipher, digest=digest)
        if number is not None and issuer_name is None and signer is not None:
            issuer_name = signer.certificate.issuer
        outcome = get_crl(session, issuer=issuer_name, serial=number, signer=signer)
    print_notes(session, outcome)
    report_simple_failure(outcome)
    if not outcome.crls:
        fail(EXIT_FAILURE, "the CA answered SUCCESS without a CRL")
    crl = outcome.crls[0]
    print_got_crl(crl)
    encoding = serialization.Encoding.DER if fmt == "der" else serialization.Encoding.PEM
    write_output(crl.public_bytes(encoding), out, "CRL")


COMMANDS = [caps_cmd, cacert_cmd, enroll_cmd, renew_cmd, poll_cmd, getcert_cmd, getcrl_cmd]

