"""`pqscep vectors`: the example messages of docs/draft (section "Examples"), made by the
project's own code with fixed keys, times and random streams, so every run gives the same bytes.

What runs is what pqscep runs: `protocol.client` builds the requests, `protocol.server.Responder`
opens and checks them and builds the CertReps, `service.scep.ScepService` answers GetCACaps and
GetCACert and chooses the reply's recipient, `ca.authority` makes every certificate, and
`protocol.kem_pop` makes and checks the KEM proof of possession. The only differences from a
server run are the deterministic keys of `vectors.keys` (signatures and encapsulations) and the
`DeterministicRandom` streams of `vectors.material` where os.urandom would be.

The CA and shared steps are in `vectors.context`, the flows in `vectors.flows`, the keys'
inputs in `vectors.material`; this module writes the keys and puts it all together.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization

from ..ca.profile import KemPopMode
from . import material as mat
from .context import Vectors, spki_der
from .flows import kem_pop_flow, password_recipient, pq_enrollment
from .output import Output

__all__ = ["generate", "write_keys"]

_DER = serialization.Encoding.DER


def write_keys(v: Vectors) -> None:
    for name, kind, role in mat.KEY_NAMES:
        key = v.m.real(name)
        pkcs8 = key.private_bytes(_DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        v.out.der("keys", f"{name}.key", pkcs8, "OneAsymmetricKey",
                  f"{kind} private key ({role}); PKCS #8, seed form for ML-DSA/ML-KEM", numbered=False)
        v.out.der("keys", f"{name}.pub", spki_der(key.public_key()), "SubjectPublicKeyInfo",
                  f"{kind} public key ({role})", numbered=False)


def generate() -> Output:
    """Every vector file, in memory."""
    from .readme import readme

    v = Vectors()
    write_keys(v)
    pq_enrollment(v)
    for mode in KemPopMode:
        kem_pop_flow(v, mode)
    password_recipient(v)
    v.out.text("", "README.md", readme(v), "how the vectors are made, laid out and regenerated", numbered=False)
    return v.out
