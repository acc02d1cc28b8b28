"""The `pqscep` command: a Click group whose subcommands live in sibling modules
(server_cmds: init, serve, admin; client_cmds: caps, cacert, enroll, renew, poll, getcert,
getcrl; inspect_cmd: inspect; bench_cmd: bench; vectors_cmd: vectors)."""

from __future__ import annotations

import importlib

import click

from .. import __version__
from .exits import EXIT_FAILURE


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pqscep")
def cli() -> None:
    """pqscep: SCEP (RFC 8894) CA server, client and tools, with post-quantum SCEP."""


_SUBCOMMAND_MODULES = ("server_cmds", "client_cmds", "inspect_cmd", "bench_cmd", "vectors_cmd")


def _register() -> None:
    for name in _SUBCOMMAND_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        for command in module.COMMANDS:
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
