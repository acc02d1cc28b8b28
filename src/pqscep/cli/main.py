"""The `pqscep` command: a Click group whose subcommands live in sibling modules
(server_cmds: init, serve, admin; client_cmds: caps, cacert, enroll, renew, poll, getcert,
getcrl; inspect_cmd: inspect; bench_cmd: bench)."""

from __future__ import annotations

import importlib

import click

from .. import __version__

# Exit codes scripts can rely on (also documented in the README).
EXIT_OK = 0
EXIT_FAILURE = 1  # the CA answered FAILURE, or the operation failed
EXIT_USAGE = 2  # bad command line (Click's own code)
EXIT_PENDING = 3  # the CA answered PENDING: run `pqscep poll` later
EXIT_TRANSPORT = 4  # could not reach the server, or it answered with an HTTP error
EXIT_VERIFY = 5  # a signature, pin or decryption check failed


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pqscep")
def cli() -> None:
    """pqscep: SCEP (RFC 8894) CA server, client and tools, with post-quantum SCEP."""


_SUBCOMMAND_MODULES = ("server_cmds", "client_cmds", "inspect_cmd", "bench_cmd")


def _register() -> None:
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{name}":
                continue  # a part not installed in this build
            raise
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)


_register()


def main() -> None:
    from ..service.config import ConfigError

    try:
        cli(prog_name="pqscep")
    except ConfigError as exc:  # a configuration or key problem: one line, no traceback
        click.echo(f"pqscep: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None


if __name__ == "__main__":
    main()
