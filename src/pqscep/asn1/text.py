"""Printing text that came from the wire: subjects, SANs, transaction IDs and reasons are
chosen by requesters, and a newline, tab or terminal escape in one of them would forge a log
line or break a row of tab-separated admin output. `escape_text` is the one place that makes
such text safe to print; it lives in the lowest layer so that every layer can use it.
"""

from __future__ import annotations

__all__ = ["escape_text"]


def escape_text(text: object) -> str:
    """`text` (str() of it) with every non-printable character (controls, tab, newline, line and
    paragraph separators, bidi overrides and other format characters) written as a Python-style
    escape (\\n, \\t, \\x1b, \\u202e), so that it prints on one line and reads unambiguously."""
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch.isprintable():
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)
