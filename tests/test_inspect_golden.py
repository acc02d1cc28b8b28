"""Golden test of `pqscep inspect --json`: every test vector decodes to the same JSON, exit code
and --out content as when the manifest was made.

The cases: every regular file under ../shared/vectors and docs/vectors (README and text files
included: a refusal or an "unknown" is pinned like a decoding), inspected without keys; and
again with the keys that open them, where the layout of the vectors names them (`keyed_cases`),
with --out. The manifest tests/golden/inspect.json holds, per case, the exit code and the
SHA-256 of the canonical output: the --json text re-serialised with `json.dumps(indent=2)`
(key order kept, as the command prints it), or for an input refused before any JSON (exit 1)
the one line `error: <message>`. Paths appear as given, relative to the repository
(`../shared/vectors/...`, `docs/vectors/...`), so the digests do not depend on the checkout.
Nothing from ../shared is committed: only digests.

The test calls the library (`pqscep.inspect`) in-process, with the CLI's exit-code mapping;
`test_library_gives_what_the_cli_prints` checks on a few cases that `pqscep inspect` in a
subprocess gives the same records.

After an intended change of the inspector's output, review the new JSON the failure prints,
then regenerate the manifest from the repository root:

    PYTHONPATH=src python tests/test_inspect_golden.py --update

(`--cli` makes the records through the command instead of the library; `--dump DIR` writes
every canonical output to DIR for review.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "vectors"
DOCS = REPO / "docs" / "vectors"
MANIFEST = Path(__file__).resolve().parent / "golden" / "inspect.json"

# The vectors' CHALLENGE_PASSWORD (docs/vectors/README.md): it opens the PasswordRecipientInfos.
DOCS_PASSWORD = "pqscep-vectors-challenge"

# scep-captures/README.md: which key opens each capture's envelope (as in tests/test_client_cli.py).
CAPTURE_KEYS = {
    "micromdm-scepclient-PKCSReq.der": "ca.key",
    "strongswan-pki-PKCSReq.der": "ca.key",
    "micromdm-scepserver-CertRep-to-micromdm.der": "micromdm-client.key",
    "micromdm-scepserver-CertRep-to-strongswan.der": "strongswan-client.key",
}

EXIT_REFUSED = 1  # the input (or a key) could not be read: no JSON is printed


@dataclass(frozen=True)
class Case:
    """One `pqscep inspect FILE --json` run; paths relative to the repository."""

    file: str
    keys: tuple[str, ...] = ()
    certs: tuple[str, ...] = ()
    password: str | None = None
    keys_shown: str | None = None  # a glob naming `keys` in the case's name, for long lists

    @property
    def writes_out(self) -> bool:
        return bool(self.keys or self.password)

    @property
    def name(self) -> str:
        keys = (self.keys_shown,) if self.keys_shown is not None else self.keys
        parts = [self.file, *(f"--key {k}" for k in keys), *(f"--cert {c}" for c in self.certs)]
        if self.password is not None:
            parts.append("--password")  # the value is not part of the name
        return " ".join(parts)

    def cli_args(self, out: Path | None) -> list[str]:
        args = [self.file, "--json"]
        for key in self.keys:
            args += ["--key", key]
        for cert in self.certs:
            args += ["--cert", cert]
        if self.password is not None:
            args += ["--password", self.password]
        if out is not None:
            args += ["--out", str(out)]
        return args


def _rel(path: Path) -> str:
    return os.path.relpath(path, REPO)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def keyed_cases() -> list[Case]:
    """The runs with keys, each where the vectors' layout says which key opens which file."""
    cases = []
    captures = SHARED / "scep-captures"
    for name, key in sorted(CAPTURE_KEYS.items()):
        cases.append(Case(_rel(captures / name), keys=(_rel(captures / key),)))
    # hackathon-cms/README: <alg>_kemri_*.der opens with <alg>_expandedkey_priv.der (the seed form).
    cryptonext = SHARED / "hackathon-cms" / "cryptonext"
    for path in sorted(cryptonext.glob("*_kemri_*.der")):
        key = cryptonext / (path.name.split("_kemri_")[0] + "_expandedkey_priv.der")
        cases.append(Case(_rel(path), keys=(_rel(key),)))
    # RFC 9936's example envelope and its key (ML-KEM-512: this build refuses the key).
    example = SHARED / "rfc9936-example"
    cases.append(Case(_rel(example / "ML-KEM-512.cms"), keys=(_rel(example / "ML-KEM-512-seed.priv"),)))
    # RFC 9882's SignedData do not include their signer's certificate: it is in rfc9881-keys/.
    for level in ("44", "65", "87"):
        cases.append(Case(_rel(SHARED / "rfc9882-examples" / f"mldsa{level}-signed-attrs.pem"),
                          certs=(_rel(SHARED / "rfc9881-keys" / f"ML-DSA-{level}.crt"),)))
    # docs/vectors: every ContentInfo with every key of keys/ and the challenge password (what
    # tests/test_vectors_cmd.py opens them with); the inspector picks the one that opens it.
    index = json.loads((DOCS / "index.json").read_text())
    keys = tuple(_rel(p) for p in sorted((DOCS / "keys").glob("*.key.der")))
    for entry in index["files"]:
        if entry["asn1_type"] == "ContentInfo":
            cases.append(Case(_rel(DOCS / entry["path"]), keys=keys, password=DOCS_PASSWORD,
                              keys_shown=_rel(DOCS / "keys") + "/*.key.der"))
    return cases


def all_cases() -> list[Case]:
    plain = [Case(_rel(p)) for root in (SHARED, DOCS) for p in _files(root)]
    return plain + keyed_cases()


# --- records ---


def _record(exit_code: int, output: str, out: bytes | None, case: Case) -> dict:
    record: dict = {"exit_code": exit_code, "output": output}
    if case.writes_out:
        record["out_sha256"] = hashlib.sha256(out).hexdigest() if out is not None else None
    return record


def _canonical_json(text: str) -> str:
    return json.dumps(json.loads(text), indent=2) + "\n"


def _refusal(message: str) -> str:
    return "error: " + " ".join(message.split())


def library_record(case: Case) -> dict:
    """What `pqscep inspect` prints, made through the library (the cwd must be the repository)."""
    from pqscep.cli.inspect_cmd import exit_code
    from pqscep.inspect import InputError, inspect_der, load_key_entries, read_input

    try:
        data = read_input(Path(case.file).read_bytes())
        entries, certs = load_key_entries([Path(k) for k in case.keys], [Path(c) for c in case.certs])
    except (InputError, OSError) as exc:
        return _record(EXIT_REFUSED, _refusal(str(exc)), None, case)
    passwords = [case.password.encode()] if case.password is not None else []
    report = inspect_der(data, keys=entries, certificates=certs, passwords=passwords, source=case.file)
    code = exit_code(report, out_requested=case.writes_out)
    return _record(code, _canonical_json(report.to_json()), report.innermost, case)


def _from_cli_output(case: Case, code: int, stdout: str, stderr: str, out: Path) -> dict:
    if stdout.strip():
        output = _canonical_json(stdout)
    else:
        output = " ".join(stderr.split())  # `error: <message>`, whatever Rich's line wrapping
        assert output.startswith("error: "), stderr
    return _record(code, output, out.read_bytes() if out.exists() else None, case)


def cli_record(case: Case, workdir: Path) -> dict:
    """The same through the click command, in-process (the cwd must be the repository)."""
    from click.testing import CliRunner

    from pqscep.cli.main import cli

    out = workdir / "out.bin"
    out.unlink(missing_ok=True)
    result = CliRunner().invoke(cli, ["inspect", *case.cli_args(out if case.writes_out else None)],
                                env={"COLUMNS": "400"}, catch_exceptions=False)
    return _from_cli_output(case, result.exit_code, result.stdout, result.stderr, out)


def subprocess_record(case: Case, workdir: Path) -> dict:
    """The same through `python -m pqscep.cli.main inspect` in a subprocess."""
    out = workdir / "out.bin"
    out.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pqscep.cli.main", "inspect",
                           *case.cli_args(out if case.writes_out else None)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(os.environ, COLUMNS="400"))
    return _from_cli_output(case, proc.returncode, proc.stdout, proc.stderr, out)


def manifest_entry(record: dict) -> dict:
    entry = {"exit_code": record["exit_code"], "sha256": hashlib.sha256(record["output"].encode()).hexdigest()}
    if "out_sha256" in record:
        entry["out_sha256"] = record["out_sha256"]
    return entry


@contextlib.contextmanager
def _in_repo() -> Iterator[None]:
    with contextlib.chdir(REPO):
        yield


def make_records(cases: list[Case], *, via_cli: bool = False) -> dict[str, dict]:
    with _in_repo(), tempfile.TemporaryDirectory() as tmp:
        return {case.name: cli_record(case, Path(tmp)) if via_cli else library_record(case) for case in cases}


def _need_shared() -> None:
    if not SHARED.is_dir():
        from peers import unavailable

        unavailable(f"test vectors not found: {SHARED} (../shared/vectors beside the repository)")


# --- tests ---


def test_every_vector_inspects_as_in_the_manifest():
    _need_shared()
    expected = json.loads(MANIFEST.read_text())["cases"]
    records = make_records(all_cases())
    got = {name: manifest_entry(record) for name, record in records.items()}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = sorted(name for name in set(got) & set(expected) if got[name] != expected[name])
    if missing or extra or differ:
        lines = ["pqscep inspect --json no longer gives what tests/golden/inspect.json pins."]
        lines += [f"  no longer a case: {name}" for name in missing]
        lines += [f"  new case: {name}" for name in extra]
        lines += [f"  differs: {name}: {expected[name]} -> {got[name]}" for name in differ]
        lines.append("If the change is intended, review the output below and regenerate the manifest: "
                     "PYTHONPATH=src python tests/test_inspect_golden.py --update")
        for name in [*differ, *extra]:
            lines.append(f"--- {name} (exit {records[name]['exit_code']})\n{records[name]['output']}")
        raise AssertionError("\n".join(lines))


def _sample_cases() -> list[Case]:
    captures, docs = "../shared/vectors/scep-captures", "docs/vectors"
    chosen = {
        f"{captures}/micromdm-scepclient-PKCSReq.der",  # RSA, DES: verified, not opened
        f"{captures}/micromdm-scepclient-PKCSReq.der --key {captures}/ca.key",  # opened with a key, --out
        f"{captures}/README.md",  # not a structure: exit 5
        "../shared/vectors/rfc9936-example/ML-KEM-512.cms --key ../shared/vectors/rfc9936-example/ML-KEM-512-seed.priv",
        "../shared/vectors/rfc9882-examples/mldsa65-signed-attrs.pem"
        " --cert ../shared/vectors/rfc9881-keys/ML-DSA-65.crt",
        f"{docs}/index.json",  # refused: not DER, PEM or base64
        f"{docs}/kem-pop-challenge/07-CertRep-PENDING.der",
    }
    cases = [c for c in all_cases() if c.name in chosen or (c.keys and c.file.startswith(f"{docs}/password-"))]
    assert len(cases) >= len(chosen), "a sample case is gone"
    return cases


def test_library_gives_what_the_cli_prints(tmp_path):
    """The manifest is made through the library: on a few cases (a refusal, a key refused, an
    unknown input, --key and --out, --cert, --password), `pqscep inspect` gives the same."""
    _need_shared()
    with _in_repo():
        for case in _sample_cases():
            assert subprocess_record(case, tmp_path) == library_record(case), case.name


# --- regeneration ---


def _main(argv: list[str]) -> int:
    if "--update" not in argv and "--dump" not in argv:
        print(__doc__)
        return 2
    if not SHARED.is_dir():
        print(f"{SHARED} is missing: the manifest covers it", file=sys.stderr)
        return 1
    records = make_records(all_cases(), via_cli="--cli" in argv)
    if "--dump" in argv:
        folder = Path(argv[argv.index("--dump") + 1])
        folder.mkdir(parents=True, exist_ok=True)
        for number, (name, record) in enumerate(records.items()):
            (folder / f"{number:04d}.txt").write_text(f"{name}\nexit {record['exit_code']} "
                                                      f"out {record.get('out_sha256')}\n{record['output']}")
    if "--update" in argv:
        MANIFEST.parent.mkdir(exist_ok=True)
        cases = {name: manifest_entry(record) for name, record in records.items()}
        document = {"about": "tests/test_inspect_golden.py: per case, the exit code and SHA-256 of the canonical "
                             "`pqscep inspect --json` output", "cases": cases}
        MANIFEST.write_text(json.dumps(document, indent=1) + "\n")
        print(f"{MANIFEST}: {len(cases)} cases")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(_main(sys.argv[1:]))
