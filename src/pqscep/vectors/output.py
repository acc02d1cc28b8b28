"""Collecting the vector files in memory and writing them out: numbered DER files with their
annotated listings, per-flow values.txt, the keys, index.json and README.md.

index.json is {"files": [{"path", "asn1_type", "description"}, ...]} for every file but itself;
asn1_type is one of `ASN1_TYPES` or "text" (a contract with the draft's ASN.1 module test).
"""

from __future__ import annotations

import json
from pathlib import Path

from .annotate import annotate

__all__ = ["ASN1_TYPES", "Output", "Values", "write_tree"]

ASN1_TYPES = (
    "ContentInfo",
    "Certificate",
    "CertificationRequest",
    "SubjectPublicKeyInfo",
    "KemCiphertextInfo",
    "KemOtherInfo",
    "KemPopProof",
    "CMSORIforKEMOtherInfo",
    "OneAsymmetricKey",
    "text",
)



class Values:
    """The intermediate values of one flow, as text: headed sections of `name: hex` entries."""

    def __init__(self, title: str):
        self.lines = [f"# {title}", "# Every value is hex unless it is marked (text) or (decimal).", ""]

    def section(self, title: str) -> None:
        if self.lines[-1] != "":
            self.lines.append("")
        self.lines.append(f"## {title}")

    def hex(self, name: str, data: bytes) -> None:
        self.lines.append(f"{name} ({len(data)} octets):")
        self.lines.extend("  " + data[i:i + 32].hex() for i in range(0, len(data), 32))

    def text(self, name: str, value: object, kind: str = "text") -> None:
        self.lines.append(f"{name} ({kind}): {value}")

    def render(self) -> str:
        return "\n".join(self.lines).rstrip("\n") + "\n"


class Output:
    """Files by relative path, in the order they were added, and their index entries."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.index: list[dict[str, str]] = []
        self._counters: dict[str, int] = {}

    def _add(self, path: str, data: bytes, asn1_type: str, description: str) -> str:
        if path in self.files:
            raise ValueError(f"{path} written twice")
        if asn1_type not in ASN1_TYPES:
            raise ValueError(f"{asn1_type} is not an index.json asn1_type")
        self.files[path] = data
        self.index.append({"path": path, "asn1_type": asn1_type, "description": description})
        return path

    def _number(self, folder: str) -> int:
        self._counters[folder] = self._counters.get(folder, 0) + 1
        return self._counters[folder]

    def _path(self, folder: str, name: str, numbered: bool) -> str:
        if numbered:
            name = f"{self._number(folder):02d}-{name}"
        return f"{folder}/{name}" if folder else name

    def der(self, folder: str, name: str, data: bytes, asn1_type: str, description: str, *,
            numbered: bool = True) -> str:
        """Add `NN-name.der` and its annotated `NN-name.txt`; return the DER file's path."""
        stem = self._path(folder, name, numbered)
        path = self._add(f"{stem}.der", data, asn1_type, description)
        listing = annotate(data, asn1_type, f"{stem}.der: {description}")
        self._add(f"{stem}.txt", listing.encode(), "text", f"annotated listing of {stem}.der")
        return path

    def text(self, folder: str, name: str, content: str, description: str, *, numbered: bool = True) -> str:
        path = self._path(folder, name, numbered)
        return self._add(path, content.encode(), "text", description)

    def index_json(self) -> bytes:
        return (json.dumps({"files": self.index}, indent=2) + "\n").encode()


def write_tree(output: Output, out_dir: Path) -> list[str]:
    """Write every file under `out_dir`, and index.json. Files a previous run listed in its
    index.json but this one does not make are removed; nothing else there is touched."""
    out_dir = Path(out_dir)
    old_index = out_dir / "index.json"
    if old_index.exists():
        try:
            previous = [entry["path"] for entry in json.loads(old_index.read_text())["files"]]
        except (ValueError, KeyError, TypeError):
            previous = []
        for rel in previous:
            target = (out_dir / rel).resolve()
            if rel not in output.files and out_dir.resolve() in target.parents and target.is_file():
                target.unlink()
    for rel, data in output.files.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    old_index.write_bytes(output.index_json())
    return list(output.files)
