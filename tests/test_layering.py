"""The tree's layers hold: no module below `pqscep.cli` imports it (the inspector, in
particular, is a library the command only parses arguments for and prints), and no module in
src/ is over 500 lines (a file that long holds more than one idea)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pqscep"
MAX_LINES = 500


def _imports(path: Path, text: str | None = None) -> list[str]:
    """The absolute module names `path` (or `text` as if it were there) imports, relative imports
    resolved against its package; `from a import b` gives both a and a.b."""
    package = ["pqscep", *path.relative_to(SRC).parent.parts]
    names = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return names


def _is_cli(module: str) -> bool:
    return module == "pqscep.cli" or module.startswith("pqscep.cli.")


def test_no_module_below_the_cli_imports_it():
    offenders = {str(path.relative_to(SRC)): sorted({n for n in _imports(path) if _is_cli(n)})
                 for path in SRC.rglob("*.py") if path.relative_to(SRC).parts[0] != "cli"}
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, f"modules below pqscep.cli importing it: {offenders}"


def test_the_inspector_loads_without_the_cli():
    loaded = subprocess.run([sys.executable, "-c", "import sys, pqscep.inspect; "
                             "print(sorted(m for m in sys.modules if m.startswith('pqscep.cli')))"],
                            capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert loaded == "[]", loaded


def test_the_import_check_sees_relative_imports():
    """The check above can fail: a relative import of the CLI resolves to pqscep.cli, and the
    client package is not mistaken for it."""
    module = SRC / "inspect" / "render.py"
    assert any(_is_cli(n) for n in _imports(module, "from ..cli import exits\n"))
    assert not any(_is_cli(n) for n in _imports(module, "from ..client import errors\n"))


def test_no_module_in_src_is_over_500_lines():
    sizes = {str(path.relative_to(SRC)): len(path.read_text().splitlines()) for path in SRC.rglob("*.py")}
    too_long = {path: lines for path, lines in sizes.items() if lines > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
