"""One whole inspection: `inspect_der` decodes a DER input with the given keys, certificates
and passwords into an `InspectionReport`, which holds the tree of nodes, the problems found and
the innermost decrypted content, and gives the JSON document `pqscep inspect --json` prints."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from .inspector import Inspector
from .keys import KeyEntry

__all__ = ["InspectionReport", "inspect_der"]


@dataclass
class InspectionReport:
    """What an inspection found; `ok` when every signature verified and every envelope tried opened."""

    source: str  # what the input is called in the output (the file name as given)
    structure: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    innermost: bytes | None = None  # the last (deepest) decrypted content

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.source, "ok": self.ok, "problems": self.problems, "structure": self.structure}

    def to_json(self) -> str:
        """The JSON document, indented by 2, without a final newline."""
        return json.dumps(self.to_dict(), indent=2)


def inspect_der(data: bytes, *, keys: Iterable[KeyEntry] = (), certificates: Iterable[x509.Certificate] = (),
                passwords: Iterable[bytes] = (), show_secrets: bool = False, source: str = "-") -> InspectionReport:
    """Decode `data` (as `read_input` returns it): verify its signatures, open its envelopes with
    `keys` (then `passwords`, for PasswordRecipientInfos) and inspect what they hold. `certificates`
    are signer candidates besides those a SignedData includes. A challengePassword is shown only
    with `show_secrets`."""
    inspector = Inspector(keys=list(keys), certificates=list(certificates), show_secrets=show_secrets,
                          passwords=list(passwords))
    structure = inspector.payload(data)
    if structure.get("type") == "unknown":
        inspector.problem("the input is not a structure pqscep knows")
    return InspectionReport(source=source, structure=structure, problems=inspector.problems,
                            innermost=inspector.innermost)
