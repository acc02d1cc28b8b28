"""`pqscep vectors --out DIR`: write the draft's example messages (Appendix B) with fixed keys,
nonces, IVs, CEKs, serials and times, so that every run writes the same bytes. The generation is
in `pqscep.vectors` (the only production-side module allowed to import it is this one)."""

from __future__ import annotations

import time
from pathlib import Path

import click

__all__ = ["COMMANDS", "vectors_cmd"]


@click.command("vectors")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into (docs/vectors in the repository).")
def vectors_cmd(out_dir: Path) -> None:
    """Regenerate the test vectors of the post-quantum SCEP draft, deterministically.

    Writes one folder per flow (pq-enrollment, kem-pop-challenge, kem-pop-encrypted-cert,
    kem-pop-statement, password-recipient) with every message as DER and as annotated text,
    values.txt with the intermediate values, keys/, index.json and README.md. Files that an
    earlier run listed in DIR/index.json and this run does not write are removed.
    """
    from ..vectors.generate import generate
    from ..vectors.output import write_tree

    started = time.monotonic()
    written = write_tree(generate(), out_dir)
    click.echo(f"wrote {len(written)} files and index.json to {out_dir} in {time.monotonic() - started:.1f}s")


COMMANDS = [vectors_cmd]
