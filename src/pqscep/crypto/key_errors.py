"""The two ways a key can be refused: malformed (`InvalidPrivateKey`) or well-formed but not
usable by this build (`UnsupportedKeyForm`).

Both are ValueErrors, so callers that only tell "bad input" from the rest need nothing more.
They live apart from `pkcs8` because the FIPS 203 / FIPS 204 checks of an expanded key, the
PBES2 decryption and the SubjectPublicKeyInfo reader raise them too.
"""

from __future__ import annotations

__all__ = ["InvalidPrivateKey", "UnsupportedKeyForm"]


class InvalidPrivateKey(ValueError):
    """A private key that is malformed or internally inconsistent (one-line reason)."""


class UnsupportedKeyForm(ValueError):
    """A well-formed key this build cannot use (expanded-only private key form, ML-KEM-512)."""
