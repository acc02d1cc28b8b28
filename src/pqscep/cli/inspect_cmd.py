"""`pqscep inspect`: decode a SCEP/CMS message (or a CSR, certificate, CRL) into a tree, verify
its signatures, and with private keys decrypt its envelopes and recurse into what they hold.
The inspection itself is `pqscep.inspect`; this module parses the command line and prints.

Keys: `--key` files load through `pkcs8.load_any_private_key` (PEM or DER; PKCS#8 in every
RFC 9881/9935 ML-DSA/ML-KEM form, PKCS#1, SEC1); an encrypted one needs
`--key-passphrase-env VAR`, the name of an environment variable holding the passphrase (a
passphrase is never taken on the command line). `--password PW` opens PasswordRecipientInfos
(RFC 3211, the SCEP challenge password); it is never printed.

Exit 0 when everything decoded and every signature verified (and every envelope tried with a
key opened); EXIT_VERIFY (5) when a signature did not verify or a decryption failed; 1 when the
input cannot be read at all, or when --out was asked for and nothing was decrypted.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import click
from rich.console import Console
from rich.markup import escape

from ..inspect import InputError, InspectionReport, inspect_der, load_key_entries, passphrase_from_env, read_input
from ..inspect import render as render_tree
from .exits import EXIT_FAILURE, EXIT_OK, EXIT_VERIFY

__all__ = ["COMMANDS", "exit_code", "inspect_cmd"]


def exit_code(report: InspectionReport, *, out_requested: bool) -> int:
    """EXIT_VERIFY when the inspection found a problem; else EXIT_FAILURE when --out was given
    and nothing was decrypted; else EXIT_OK."""
    if report.problems:
        return EXIT_VERIFY
    if out_requested and report.innermost is None:
        return EXIT_FAILURE
    return EXIT_OK


def _read_file(file: Path) -> bytes:
    """FILE's bytes; `-` is standard input."""
    if str(file) == "-":
        # click 8.5 serves get_binary_stream through a module __getattr__ (it is deprecated
        # there), which type checkers see as `object`.
        stdin: BinaryIO = click.get_binary_stream("stdin")  # type: ignore[operator]
        return stdin.read()
    return file.read_bytes()


@click.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--key", "key_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key (PEM/DER; RSA, EC, ML-KEM and ML-DSA in every RFC 9881/9935 form) to decrypt "
                   "envelopes with; repeatable.")
@click.option("--key-passphrase-env", "passphrase_env", metavar="VAR",
              help="Name of an environment variable holding the passphrase of encrypted --key files "
                   "(the passphrase itself is never taken on the command line).")
@click.option("--password", "password", metavar="PW",
              help="Password (e.g. the SCEP challenge) to open PasswordRecipientInfo envelopes with; never printed.")
@click.option("--cert", "cert_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Certificate of a --key (to pick its RecipientInfo), or of a signer that is not included.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a tree.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the innermost decrypted content (e.g. the CSR DER of a PKCSReq) here.")
@click.option("--show-secrets", is_flag=True, help="Show the challengePassword of a CSR.")
def inspect_cmd(file: Path, key_files: tuple[Path, ...], passphrase_env: str | None, password: str | None,
                cert_files: tuple[Path, ...], as_json: bool, out: Path | None, show_secrets: bool) -> None:
    """Decode a SCEP message or any CMS ContentInfo (SignedData, EnvelopedData,
    AuthEnvelopedData), a CSR, certificate or CRL: DER, PEM or base64. Verifies signatures;
    with --key (or --password for a PasswordRecipientInfo) decrypts envelopes and shows what they hold."""
    err = Console(stderr=True, highlight=False)
    try:
        data = read_input(_read_file(file))
        entries, certs = load_key_entries(key_files, cert_files, passphrase_from_env(passphrase_env))
    except (InputError, OSError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise click.exceptions.Exit(EXIT_FAILURE) from None
    passwords = [password.encode("utf-8")] if password is not None else []
    report = inspect_der(data, keys=entries, certificates=certs, passwords=passwords, show_secrets=show_secrets,
                         source=str(file))
    if as_json:
        click.echo(report.to_json())
    else:
        Console(highlight=False, soft_wrap=False).print(render_tree(report.structure, str(file)))
    if out is not None:
        if report.innermost is None:
            err.print("[yellow]nothing was decrypted: --out not written[/]")
        else:
            out.write_bytes(report.innermost)
            err.print(f"innermost decrypted content ({len(report.innermost)} bytes) written to {escape(str(out))}")
    code = exit_code(report, out_requested=out is not None)
    for text in report.problems:
        err.print(f"[bold red]problem:[/] {escape(text)}")
    if code == EXIT_OK and not as_json:
        err.print("[green]decoded; every signature verified, every envelope tried opened[/]")
    raise click.exceptions.Exit(code)


COMMANDS = [inspect_cmd]
