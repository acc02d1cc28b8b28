"""ML-KEM and ML-DSA private keys in every PKCS#8 form of RFC 9935 / RFC 9881, checked; and
`load_any_private_key`, which loads a private key of any type.

RFC 9935 (ML-KEM) and RFC 9881 (ML-DSA) put one of three CHOICEs in the privateKey OCTET STRING::

    seed         [0] IMPLICIT OCTET STRING  (64 bytes d||z for ML-KEM, 32 bytes xi for ML-DSA)
    expandedKey  OCTET STRING               (FIPS 203 dk / FIPS 204 sk)
    both         SEQUENCE { seed OCTET STRING, expandedKey OCTET STRING }

cryptography 50 imports only the seed form. The decisions taken here:

* seed: loaded by cryptography (``from_seed_bytes``).
* both: the key is loaded from the seed, and the expanded key is checked against it *completely*:
  the expanded key is regenerated from the seed (FIPS 203 ML-KEM.KeyGen_internal in `fips203`,
  FIPS 204 ML-DSA.KeyGen_internal in `fips204`, plain Python, public arithmetic on the key's own
  values) and compared byte for byte, as RFC 9935 section 6 / RFC 9881 section 6 ask. A mismatch
  is refused with what differs (ek, s, H(ek), z; rho, K, tr, s1, s2, t0). cryptography's own key
  from the seed is cross-checked too (its public key must be the regenerated one).
* expanded only: **refused** (`UnsupportedKeyForm`). cryptography 50 cannot import an expanded
  key and a seed cannot be recovered from one. The maintained alternatives on PyPI were weighed:
  kyber-py / dilithium-py are pure Python and by their authors' word not constant time (not for a
  CA's long-term keys); pqcrypto and liboqs-python bring a second C implementation (PQClean,
  liboqs) for a form that RFC 9935 and RFC 9881 themselves discourage; OpenSSL 3.5 and
  cryptography write keys with their seed. Before refusing, the expanded key is still validated
  (FIPS 203 7.3 hash check, ek modulus check, t - A*s small; FIPS 204: s1, s2 in range, t0 and
  tr recomputed from s1, s2), so a *damaged* key is reported as damaged, not as "unsupported".
* ML-KEM-512: not in cryptography, refused ("ML-KEM-512 is not supported") after the same
  validation. `inspect_private_key` still reports its form and public key (vectors, inspect).

`load_any_private_key` loads PEM or DER PKCS#8 (encrypted or not) of every key type, PKCS#1 and
SEC1 too (those and the classic key types go to cryptography). Encrypted ML-KEM / ML-DSA keys that
cryptography cannot parse are decrypted by `pbes2`. Errors: `key_errors`.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509 import ObjectIdentifier

from ..asn1 import ber, cms, oids
from . import fips203, fips204
from .key_errors import InvalidPrivateKey, UnsupportedKeyForm
from .pbes2 import decrypt_pkcs8

__all__ = [
    "PqKeyInfo",
    "PqPrivateKey",
    "inspect_private_key",
    "load_any_private_key",
    "load_pq_private_key",
    "pq_algorithm_name",
]

PqPrivateKey = (
    mlkem.MLKEM768PrivateKey
    | mlkem.MLKEM1024PrivateKey
    | mldsa.MLDSA44PrivateKey
    | mldsa.MLDSA65PrivateKey
    | mldsa.MLDSA87PrivateKey
)

# The AlgorithmIdentifier OIDs of RFC 9935 section 2 and RFC 9881 section 2 (parameters absent).
_KEM: dict[ObjectIdentifier, fips203.MlKemParams] = {
    oids.ML_KEM_512: fips203.ML_KEM_512,
    oids.ML_KEM_768: fips203.ML_KEM_768,
    oids.ML_KEM_1024: fips203.ML_KEM_1024,
}
_DSA: dict[ObjectIdentifier, fips204.MlDsaParams] = {
    oids.ML_DSA_44: fips204.ML_DSA_44,
    oids.ML_DSA_65: fips204.ML_DSA_65,
    oids.ML_DSA_87: fips204.ML_DSA_87,
}
# What cryptography 50 loads, from the seed only; ML-KEM-512 is missing.
_FROM_SEED: dict[ObjectIdentifier, Callable[[bytes], PqPrivateKey]] = {
    oids.ML_KEM_768: mlkem.MLKEM768PrivateKey.from_seed_bytes,
    oids.ML_KEM_1024: mlkem.MLKEM1024PrivateKey.from_seed_bytes,
    oids.ML_DSA_44: mldsa.MLDSA44PrivateKey.from_seed_bytes,
    oids.ML_DSA_65: mldsa.MLDSA65PrivateKey.from_seed_bytes,
    oids.ML_DSA_87: mldsa.MLDSA87PrivateKey.from_seed_bytes,
}


def pq_algorithm_name(oid: ObjectIdentifier) -> str | None:
    """"ML-KEM-768", "ML-DSA-65", ... for a key OID, None for other OIDs."""
    params = _KEM.get(oid) or _DSA.get(oid)
    return params.name if params else None


# --------------------------------------------------------------------------------------------
# PKCS#8 parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PqKeyInfo:
    """What a PKCS#8 ML-KEM / ML-DSA private key holds, after validation."""

    algorithm: str  # "ML-KEM-768", "ML-DSA-65", ...
    oid: ObjectIdentifier
    form: str  # "seed" | "expanded" | "both"
    public_bytes: bytes  # raw ek / pk
    seed: bytes | None
    expanded: bytes | None  # as stored, or regenerated from the seed


def _read(der: bytes, pos: int, what: str) -> tuple[int, int, int]:
    try:
        return ber.read_tlv(der, pos)
    except ber.BerError as exc:
        raise InvalidPrivateKey(f"{what}: {exc}") from None


def _split_private_key(
    name: str, data: bytes, seed_size: int, expanded_size: int
) -> tuple[str, bytes | None, bytes | None]:
    """The CHOICE inside privateKey: (form, seed, expanded)."""
    if not data:
        raise InvalidPrivateKey(f"{name} privateKey is empty")
    tag, start, stop = _read(data, 0, f"{name} privateKey is not a DER CHOICE")
    if stop != len(data):
        raise InvalidPrivateKey(f"{name} privateKey has trailing data after its CHOICE")
    if tag == 0x80:
        seed, expanded, form = data[start:stop], None, "seed"
    elif tag == 0x04:
        seed, expanded, form = None, data[start:stop], "expanded"
    elif tag == 0x30:
        t1, s1, e1 = _read(data, start, f"{name} both")
        t2, s2, e2 = (0, 0, e1) if e1 >= stop else _read(data, e1, f"{name} both")
        if t1 != 0x04 or t2 != 0x04 or e2 != stop:
            raise InvalidPrivateKey(f"{name} 'both' must be SEQUENCE {{ seed OCTET STRING, expandedKey OCTET STRING }}")
        seed, expanded, form = data[s1:e1], data[s2:e2], "both"
    else:
        raise InvalidPrivateKey(
            f"{name} privateKey is none of the RFC 9935/9881 forms (seed [0], expandedKey, both): tag 0x{tag:02x}"
            " (an old draft or provider format?)"
        )
    if seed is not None and len(seed) != seed_size:
        raise InvalidPrivateKey(f"{name} seed must be {seed_size} bytes, not {len(seed)}")
    if expanded is not None and len(expanded) != expanded_size:
        raise InvalidPrivateKey(f"{name} expandedKey must be {expanded_size} bytes, not {len(expanded)}")
    return form, seed, expanded


def _first_difference(kind: str, fields: list[tuple[str, int]], ours: bytes, theirs: bytes) -> str:
    pos = 0
    for label, size in fields:
        if ours[pos : pos + size] != theirs[pos : pos + size]:
            return label
        pos += size
    return kind


def _kem_info(oid: ObjectIdentifier, params: fips203.MlKemParams, private_key: bytes) -> PqKeyInfo:
    form, seed, expanded = _split_private_key(params.name, private_key, 64, params.dk_size)
    if expanded is not None:
        ek = fips203.check_expanded_key(params, expanded)
    if seed is not None:
        regenerated = fips203.expanded_key(params, seed)
        if expanded is not None and not hmac.compare_digest(regenerated, expanded):
            k = params.k
            layout = [("s (dk_PKE)", 384 * k), ("ek", 384 * k + 32), ("H(ek)", 32),
                      ("z (implicit rejection secret)", 32)]
            part = _first_difference("expandedKey", layout, regenerated, expanded)
            raise InvalidPrivateKey(
                f"{params.name} 'both' key is inconsistent: the expandedKey is not the one its seed generates "
                f"({part} differs)"
            )
        expanded = regenerated if expanded is None else expanded
        ek = expanded[384 * params.k : 768 * params.k + 32]
    return PqKeyInfo(params.name, oid, form, ek, seed, expanded)


def _dsa_info(oid: ObjectIdentifier, params: fips204.MlDsaParams, private_key: bytes) -> PqKeyInfo:
    form, seed, expanded = _split_private_key(params.name, private_key, 32, params.sk_size)
    if expanded is not None:
        pk = fips204.check_expanded_key(params, expanded)
    if seed is not None:
        pk, regenerated = fips204.keygen_internal(params, seed)
        if expanded is not None and not hmac.compare_digest(regenerated, expanded):
            e = params.eta_bits * 32
            layout = [("rho", 32), ("K", 32), ("tr", 64), ("s1", e * params.l), ("s2", e * params.k),
                      ("t0", 416 * params.k)]
            part = _first_difference("expandedKey", layout, regenerated, expanded)
            raise InvalidPrivateKey(
                f"{params.name} 'both' key is inconsistent: the expandedKey is not the one its seed generates "
                f"({part} differs)"
            )
        expanded = regenerated if expanded is None else expanded
    return PqKeyInfo(params.name, oid, form, pk, seed, expanded)


def _one_asymmetric_key(der: bytes) -> tuple[ObjectIdentifier, bytes | None, bytes, bytes | None]:
    """(algorithm OID, its parameters, privateKey content, publicKey or None) of a PKCS#8 key."""
    try:
        info = cms.decode(cms.OneAsymmetricKey, der)
    except cms.Asn1Error as exc:
        raise InvalidPrivateKey(f"not a PKCS#8 PrivateKeyInfo: {exc}") from None
    if info.version not in (0, 1):
        raise InvalidPrivateKey(f"PKCS#8 version {info.version} is not 0 or 1")
    algorithm = cms.parse_algorithm(info.private_key_algorithm)
    public = None
    if info.public_key is not None:
        if info.version != 1:
            raise InvalidPrivateKey("a PKCS#8 v1 key (version 0) may not carry a publicKey")
        public = info.public_key.as_bytes()
    return algorithm.oid, algorithm.parameters, info.private_key, public


def inspect_private_key(der: bytes) -> PqKeyInfo:
    """Decode and validate an unencrypted PKCS#8 DER ML-KEM / ML-DSA key, without loading it.

    Raises InvalidPrivateKey for a malformed or inconsistent key (ML-KEM-512 included)."""
    oid, parameters, private_key, public = _one_asymmetric_key(der)
    name = pq_algorithm_name(oid)
    if name is None:
        raise InvalidPrivateKey(f"{oid.dotted_string} is not an ML-KEM or ML-DSA key")
    if parameters is not None:
        raise InvalidPrivateKey(f"{name} AlgorithmIdentifier parameters must be absent (RFC 9935/9881)")
    info = _kem_info(oid, _KEM[oid], private_key) if oid in _KEM else _dsa_info(oid, _DSA[oid], private_key)
    if public is not None and not hmac.compare_digest(public, info.public_bytes):
        raise InvalidPrivateKey(f"{name} key's publicKey field is not the public key of its private key")
    return info


def load_pq_private_key(der: bytes) -> PqPrivateKey:
    """Load an unencrypted PKCS#8 DER ML-KEM-768/1024 or ML-DSA private key (any RFC form).

    InvalidPrivateKey: malformed or inconsistent. UnsupportedKeyForm: valid but not usable here
    (expanded-only, ML-KEM-512)."""
    oid, parameters, private_key, public = _one_asymmetric_key(der)
    params = _KEM.get(oid) or _DSA.get(oid)
    from_seed = _FROM_SEED.get(oid)
    if params is not None and parameters is None and from_seed is not None and private_key[:1] == b"\x80":
        # The seed form, the usual one: nothing to cross-check, cryptography expands it.
        seed_size = 64 if oid in _KEM else 32
        _, seed, _ = _split_private_key(params.name, private_key, seed_size, 0)
        assert seed is not None  # the [0] tag was checked above
        key = from_seed(seed)
        if public is not None and not hmac.compare_digest(public, key.public_key().public_bytes_raw()):
            raise InvalidPrivateKey(f"{params.name} key's publicKey field is not the public key of its private key")
        return key
    info = inspect_private_key(der)
    from_seed = _FROM_SEED.get(info.oid)
    if from_seed is None:
        raise UnsupportedKeyForm(f"{info.algorithm} is not supported (cryptography 50 implements "
                                 "ML-KEM-768 and ML-KEM-1024 only)")
    if info.seed is None:
        family = "ML-KEM" if info.oid in _KEM else "ML-DSA"
        raise UnsupportedKeyForm(
            f"expanded-only {family} keys cannot be loaded: cryptography 50 imports the seed form; "
            "convert with the tool that generated the key by exporting it with its seed (RFC 9935/9881 "
            f"'seed' or 'both' form; OpenSSL 3.5 keeps the seed of keys it generates). An expanded "
            "key cannot be turned back into its seed: if the seed is lost, generate a new key"
        )
    key = from_seed(info.seed)
    ours = key.public_key().public_bytes_raw()
    if not hmac.compare_digest(ours, info.public_bytes):  # pragma: no cover - would be a bug here
        raise InvalidPrivateKey(f"{info.algorithm}: cryptography derives another public key from this seed")
    return key


# --------------------------------------------------------------------------------------------
# Any private key, PEM or DER, encrypted or not
# --------------------------------------------------------------------------------------------


def _pem_blocks(data: bytes) -> tuple[str, bytes] | None:
    """(label, DER) of the first PEM block whose label is a private key's (a file may hold a
    certificate before its key), None when `data` is not PEM or holds no such block."""
    # By hand: cryptography has no public PEM decoder, only loaders that parse the key too, and an
    # ML-KEM / ML-DSA key has to be recognised (and sent to load_pq_private_key) before that.
    text = data.decode("ascii", "replace")
    pos = 0
    while True:
        begin = text.find("-----BEGIN ", pos)
        if begin < 0:
            return None
        label_end = text.find("-----", begin + 11)
        if label_end < 0:
            return None
        label = text[begin + 11 : label_end]
        end = text.find(f"-----END {label}-----", label_end)
        if end < 0:
            raise InvalidPrivateKey(f"PEM block '{label}' has no END line")
        pos = end
        if label.endswith("PRIVATE KEY"):
            break
    body = text[label_end + 5 : end]
    if ":" in body:  # RFC 1421 headers (legacy OpenSSL encryption): left to cryptography
        return label, b""
    try:
        return label, base64.b64decode("".join(body.split()), validate=True)
    except ValueError:
        raise InvalidPrivateKey(f"PEM block '{label}' is not valid base64") from None


def _is_pq(der: bytes) -> bool:
    try:
        oid, _, _, _ = _one_asymmetric_key(der)
    except (InvalidPrivateKey, cms.Asn1Error):
        return False
    return pq_algorithm_name(oid) is not None


def load_any_private_key(data: bytes, passphrase: bytes | None = None) -> PrivateKeyTypes:
    """Load a private key of any supported type: PEM or DER; PKCS#8 (encrypted or not), PKCS#1,
    SEC1. ML-KEM / ML-DSA keys in every RFC 9935 / 9881 form go through `load_pq_private_key`
    (checked, see the module docstring); everything else through cryptography, whose errors
    (ValueError, TypeError for a missing passphrase) pass through unchanged."""
    pem = _pem_blocks(data)
    if pem is not None:
        label, der = pem
        if label == "PRIVATE KEY" and _is_pq(der):
            return load_pq_private_key(der)
        try:
            return serialization.load_pem_private_key(data, password=passphrase)
        except (ValueError, UnsupportedAlgorithm) as exc:
            if label != "ENCRYPTED PRIVATE KEY" or passphrase is None:
                raise _unsupported(exc) from None
            error = exc
        return _encrypted_pq(der, passphrase, error)
    if _is_pq(data):
        return load_pq_private_key(data)
    try:
        return serialization.load_der_private_key(data, password=passphrase)
    except (ValueError, UnsupportedAlgorithm) as exc:
        if passphrase is None:
            raise _unsupported(exc) from None
        return _encrypted_pq(data, passphrase, exc)


def _encrypted_pq(der: bytes, passphrase: bytes, error: Exception) -> PqPrivateKey:
    try:
        inner = decrypt_pkcs8(der, passphrase)
    except cms.Asn1Error:
        raise _unsupported(error) from None
    if not _is_pq(inner):
        raise _unsupported(error)
    return load_pq_private_key(inner)


def _unsupported(exc: Exception) -> Exception:
    """cryptography's error, as a ValueError (its UnsupportedAlgorithm is not one)."""
    if isinstance(exc, UnsupportedAlgorithm):
        return UnsupportedKeyForm(str(exc))
    return exc
