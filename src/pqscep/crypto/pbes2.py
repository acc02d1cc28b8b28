"""PBES2 decryption of an EncryptedPrivateKeyInfo (RFC 5958 section 3, RFC 8018 section 6.2):
PBKDF2 with an HMAC-SHA PRF, then AES-CBC, what OpenSSL 3.5 and cryptography write.

Why by hand: cryptography decrypts an encrypted PKCS#8 key and parses it in one step, and its
parser refuses ML-KEM / ML-DSA keys that are not in the seed form (RFC 9935 / RFC 9881 'both' or
'expanded'). `pkcs8.load_any_private_key` therefore decrypts such keys here and parses the
result itself. The pieces are cryptography's: PBKDF2HMAC, AES-CBC and the PKCS#7 unpadder (through
`registry.ContentCipher.decrypt_cbc`); only the ASN.1 around them is read here.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from ..asn1 import cms, oids
from .key_errors import InvalidPrivateKey
from .registry import CIPHERS, PBKDF2_PRFS, DecryptionError

__all__ = ["decrypt_pkcs8"]

_CIPHERS = frozenset({oids.AES128_CBC, oids.AES192_CBC, oids.AES256_CBC})
_MAX_ITERATIONS = 10_000_000  # a key file must not make a load take minutes


def decrypt_pkcs8(der: bytes, passphrase: bytes) -> bytes:
    """PrivateKeyInfo DER from a DER EncryptedPrivateKeyInfo with PBES2 (PBKDF2, AES-CBC).

    InvalidPrivateKey: a scheme, PRF or cipher other than those, or out-of-range parameters.
    cms.Asn1Error: not an EncryptedPrivateKeyInfo. ValueError("Bad decrypt. Incorrect password?"):
    the PKCS#7 padding of the plaintext is wrong, which is what a wrong passphrase gives."""
    epki = cms.decode(cms.EncryptedPrivateKeyInfo, der)
    scheme = cms.parse_algorithm(epki.encryption_algorithm)
    if scheme.oid != oids.PBES2 or scheme.parameters is None:
        raise InvalidPrivateKey(f"encrypted key scheme {scheme.oid.dotted_string} is not supported (PBES2 is)")
    pbes2 = cms.decode_der(cms.PBES2Params, scheme.parameters)
    kdf = cms.parse_algorithm(pbes2.key_derivation_func)
    enc = cms.parse_algorithm(pbes2.encryption_scheme)
    if kdf.oid != oids.PBKDF2 or kdf.parameters is None:
        raise InvalidPrivateKey(f"PBES2 key derivation {kdf.oid.dotted_string} is not supported (PBKDF2 is)")
    if enc.oid not in _CIPHERS or enc.parameters is None:
        raise InvalidPrivateKey(f"PBES2 cipher {enc.oid.dotted_string} is not supported (AES-CBC is)")
    params = cms.decode_der(cms.PBKDF2Params, kdf.parameters)
    prf_oid = params.prf.algorithm if params.prf is not None else oids.HMAC_WITH_SHA1  # RFC 8018 A.2 DEFAULT
    prf = PBKDF2_PRFS.get(prf_oid)
    if prf is None:
        raise InvalidPrivateKey(f"PBKDF2 PRF {prf_oid.dotted_string} is not supported")
    if not 1 <= params.iteration_count <= _MAX_ITERATIONS:
        raise InvalidPrivateKey(f"PBKDF2 iteration count {params.iteration_count} is out of range")
    cipher = CIPHERS.by_oid(enc.oid)
    if params.key_length is not None and params.key_length != cipher.key_size:
        raise InvalidPrivateKey("PBKDF2 keyLength does not fit the cipher")
    iv = cms.decode_der(bytes, enc.parameters)
    key = PBKDF2HMAC(prf.hash_factory(), cipher.key_size, params.salt, params.iteration_count).derive(passphrase)
    if len(iv) != 16 or not epki.encrypted_data or len(epki.encrypted_data) % 16:
        raise InvalidPrivateKey("encrypted key has a bad IV or length")
    try:
        return cipher.decrypt_cbc(key, iv, epki.encrypted_data)
    except DecryptionError:
        # With the IV and the length checked above, only the PKCS#7 padding is left to fail.
        raise ValueError("Bad decrypt. Incorrect password?") from None
