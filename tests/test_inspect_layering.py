"""`pqscep.inspect` is a library below the CLI: it never imports `pqscep.cli`, and the command
module stays a thin layer over it (argument parsing and printing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pqscep"


def test_the_inspector_package_does_not_import_the_cli():
    offenders = [path.name for path in sorted((SRC / "inspect").glob("*.py"))
                 if re.search(r"^\s*(from|import)\s+(pqscep\.cli|\.\.cli)\b", path.read_text(), re.M)]
    assert not offenders, f"pqscep.inspect modules importing pqscep.cli: {offenders}"
    loaded = subprocess.run([sys.executable, "-c", "import sys, pqscep.inspect; "
                             "print(sorted(m for m in sys.modules if m.startswith('pqscep.cli')))"],
                            capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert loaded == "[]", loaded


def test_every_inspector_module_is_under_500_lines():
    sizes = {path.name: len(path.read_text().splitlines()) for path in (SRC / "inspect").glob("*.py")}
    sizes["cli/inspect_cmd.py"] = len((SRC / "cli" / "inspect_cmd.py").read_text().splitlines())
    assert all(lines < 500 for lines in sizes.values()), sizes
