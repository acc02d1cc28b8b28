"""Test-vector generation (the draft's Appendix B): deterministic primitives FOR VECTORS ONLY.

See `pqscep.vectors.fips`: nothing here may be used for production keys or messages.
"""

from .fips import (
    DeterministicRandom,
    mldsa_public_key_for_vectors,
    mldsa_sign_deterministic,
    mlkem_encaps_deterministic,
)

__all__ = [
    "DeterministicRandom",
    "mldsa_public_key_for_vectors",
    "mldsa_sign_deterministic",
    "mlkem_encaps_deterministic",
]
