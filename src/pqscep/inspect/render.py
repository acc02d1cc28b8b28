"""The text form of an inspection: a Rich tree of the nodes, with the verification and
decryption outcomes in green (True) or red (otherwise)."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.tree import Tree

__all__ = ["render"]

_GOOD = {"verified": True, "decrypted": True, "signature_valid": True}


def _label(key: str, value: object) -> str:
    text = f"[bold]{escape(key)}[/]: {escape(str(value))}"
    if key in _GOOD:
        colour = "green" if value is True else "red"
        text = f"[bold]{escape(key)}[/]: [{colour}]{escape(str(value))}[/]"
    return text


def _add(tree: Tree, key: str | None, value: Any) -> None:
    if isinstance(value, dict):
        title = value.get("type") or value.get("name")
        heading = f"[bold]{escape(key)}[/]" if key else ""
        if title:
            heading = f"{heading}: [cyan]{escape(str(title))}[/]" if heading else f"[cyan]{escape(str(title))}[/]"
        if "value" in value and "name" in value and set(value) <= {"name", "oid", "value"}:
            # An attribute or extension: one line, "name (oid): value".
            shown = value["value"]
            oid = value["oid"] if value["name"] != value["oid"] else ""
            tree.add(f"[bold]{escape(value['name'])}[/]{' [dim](' + oid + ')[/]' if oid else ''}: "
                     f"{escape(json.dumps(shown) if isinstance(shown, list) else str(shown))}")
            return
        branch = tree.add(heading or "-")
        for k, v in value.items():
            if k in ("type",) or (k == "name" and title == v):
                continue
            _add(branch, k, v)
    elif isinstance(value, list):
        if not value:
            tree.add(f"[bold]{escape(key or '')}[/]: (none)")
            return
        if all(not isinstance(v, (dict, list)) for v in value):
            tree.add(f"[bold]{escape(key or '')}[/]: {escape(', '.join(str(v) for v in value))}")
            return
        branch = tree.add(f"[bold]{escape(key or '')}[/] ({len(value)})")
        for item in value:
            _add(branch, None, item)
    else:
        tree.add(_label(key or "", value))


def render(tree_data: dict[str, Any], title: str) -> Tree:
    """The tree of an inspection's structure under `title` (the input's name)."""
    root = Tree(f"[bold]{escape(title)}[/]")
    _add(root, None, tree_data)
    return root
