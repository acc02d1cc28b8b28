"""`pqscep.asn1.oid_names` is the one table of OID names: every OID of `asn1.oids` has a row,
every algorithm the registries hold is named there, no OID value is written twice in src/, and
asn1 stays the lowest layer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cryptography.x509 import ObjectIdentifier

from pqscep.asn1 import oid_names, oids
from pqscep.crypto import registry, signing

SRC = Path(__file__).resolve().parents[1] / "src" / "pqscep"
REGISTRIES = (registry.DIGESTS, registry.CIPHERS, registry.KEY_WRAPS, registry.KDFS, registry.KEMS,
              registry.PBKDF2_PRFS, signing.VERIFIERS)


def _oid_constants() -> dict[str, ObjectIdentifier]:
    return {name: value for name, value in vars(oids).items() if isinstance(value, ObjectIdentifier)}


def test_every_oid_constant_has_a_row():
    missing = [name for name, oid in _oid_constants().items() if oid not in oid_names.OID_NAMES]
    assert not missing


def test_every_registry_entry_is_named_in_the_table():
    for table in REGISTRIES:
        for entry in table:
            assert entry.name == oid_names.OID_NAMES[entry.oid].name, entry.oid
            assert table.by_name(entry.name) is entry


def test_names_are_unique_per_column():
    rows = oid_names.OID_NAMES.values()
    for column in ("name", "asn1", "attribute"):
        names = [getattr(row, column) for row in rows if getattr(row, column) is not None]
        assert len(names) == len(set(names)), column


def test_lookups():
    assert oid_names.oid_name(oids.AES256_CBC) == "aes256-cbc"
    assert oid_names.oid_name(oids.PBES2) == oids.PBES2.dotted_string  # no project name: dotted
    assert oid_names.oid_name(ObjectIdentifier("1.2.3.4")) == "1.2.3.4"
    assert oid_names.asn1_name(oids.AES256_CBC) == "id-aes256-CBC"
    assert oid_names.asn1_name(ObjectIdentifier("1.2.3.4")) is None
    assert oid_names.attribute_name(oids.SCEP_KEM_POP_CHALLENGE) == "kemPopChallenge"


def test_no_oid_value_is_written_outside_asn1_oids():
    literal = re.compile(r"""(?:ObjectIdentifier|OID)\(\s*["']([0-9.]+)["']""")
    dotted = {oid.dotted_string for oid in _oid_constants().values()}
    quoted = re.compile(r"""["']([0-9]+\.[0-9]+\.[0-9.]+)["']""")
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "asn1" / "oids.py":
            continue
        text = path.read_text()
        offenders += [f"{path.relative_to(SRC)}: {m}" for m in literal.findall(text)]
        offenders += [f"{path.relative_to(SRC)}: {m}" for m in quoted.findall(text) if m in dotted]
    assert not offenders


def test_asn1_imports_nothing_above_it():
    pattern = re.compile(r"^\s*(?:from|import)\s+(?:pqscep\.(?!asn1\b)|\.\.)", re.M)
    offenders = [path.name for path in sorted((SRC / "asn1").glob("*.py")) if pattern.search(path.read_text())]
    assert not offenders
    loaded = subprocess.run([sys.executable, "-c", "import sys, pqscep.asn1.oid_names, pqscep.asn1.cms; "
                             "print(sorted(m for m in sys.modules if m.startswith('pqscep.') "
                             "and not m.startswith('pqscep.asn1')))"],
                            capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert loaded == "[]", loaded
