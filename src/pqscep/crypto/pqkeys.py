"""ML-KEM and ML-DSA private keys in every PKCS#8 form of RFC 9935 / RFC 9881, checked.

RFC 9935 (ML-KEM) and RFC 9881 (ML-DSA) put one of three CHOICEs in the privateKey OCTET STRING::

    seed         [0] IMPLICIT OCTET STRING  (64 bytes d||z for ML-KEM, 32 bytes xi for ML-DSA)
    expandedKey  OCTET STRING               (FIPS 203 dk / FIPS 204 sk)
    both         SEQUENCE { seed OCTET STRING, expandedKey OCTET STRING }

cryptography 50 imports only the seed form. The decisions taken here:

* seed: loaded by cryptography (``from_seed_bytes``).
* both: the key is loaded from the seed, and the expanded key is checked against it *completely*:
  the expanded key is regenerated from the seed (FIPS 203 ML-KEM.KeyGen_internal, FIPS 204
  ML-DSA.KeyGen_internal, done here in plain Python, public arithmetic on the key's own values)
  and compared byte for byte, as RFC 9935 section 6 / RFC 9881 section 6 ask. A mismatch is
  refused with what differs (ek, s, H(ek), z; rho, K, tr, s1, s2, t0). cryptography's own key
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

The pure-Python lattice code below is for *validation only*: no key is ever used through it, and
it runs once when a key is loaded. It is checked against cryptography (ML-KEM-768/1024, ML-DSA)
and against the RFC example keys in tests/test_vectors.py.

`load_any_private_key` loads PEM or DER PKCS#8 (encrypted or not) of every key type, PKCS#1 and
SEC1 too (those and the classic key types go to cryptography).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.x509 import ObjectIdentifier

from ..asn1 import ber, cms, oids

__all__ = [
    "InvalidPrivateKey",
    "PqKeyInfo",
    "UnsupportedKeyForm",
    "inspect_private_key",
    "load_any_private_key",
    "load_pq_private_key",
    "public_key_from_spki",
    "pq_algorithm_name",
    "spki_raw_public_key",
]


class InvalidPrivateKey(ValueError):
    """A private key that is malformed or internally inconsistent (one-line reason)."""


class UnsupportedKeyForm(ValueError):
    """A well-formed private key this build cannot use (expanded-only form, ML-KEM-512)."""


# --------------------------------------------------------------------------------------------
# Parameter sets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _KemParams:
    name: str
    k: int
    eta1: int
    private_class: type | None  # None: not in cryptography 50
    public_class: type | None

    @property
    def ek_size(self) -> int:
        return 384 * self.k + 32

    @property
    def dk_size(self) -> int:
        return 768 * self.k + 96


@dataclass(frozen=True)
class _DsaParams:
    name: str
    k: int
    l: int  # noqa: E741 (FIPS 204's name)
    eta: int
    private_class: type
    public_class: type

    @property
    def eta_bits(self) -> int:
        return 3 if self.eta == 2 else 4

    @property
    def pk_size(self) -> int:
        return 32 + 320 * self.k

    @property
    def sk_size(self) -> int:
        return 128 + 32 * self.eta_bits * (self.k + self.l) + 416 * self.k


_KEM: dict[ObjectIdentifier, _KemParams] = {
    oids.ML_KEM_512: _KemParams("ML-KEM-512", 2, 3, None, None),
    oids.ML_KEM_768: _KemParams("ML-KEM-768", 3, 2, mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey),
    oids.ML_KEM_1024: _KemParams("ML-KEM-1024", 4, 2, mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey),
}
_DSA: dict[ObjectIdentifier, _DsaParams] = {
    oids.ML_DSA_44: _DsaParams("ML-DSA-44", 4, 4, 2, mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    oids.ML_DSA_65: _DsaParams("ML-DSA-65", 6, 5, 4, mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    oids.ML_DSA_87: _DsaParams("ML-DSA-87", 8, 7, 2, mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}


def pq_algorithm_name(oid: ObjectIdentifier) -> str | None:
    """"ML-KEM-768", "ML-DSA-65", ... for a key OID, None for other OIDs."""
    params = _KEM.get(oid) or _DSA.get(oid)
    return params.name if params else None


# --------------------------------------------------------------------------------------------
# FIPS 203 (ML-KEM) arithmetic, validation only
# --------------------------------------------------------------------------------------------

_KQ = 3329


def _bitrev(i: int, bits: int) -> int:
    return int(format(i, f"0{bits}b")[::-1], 2)


_KZETAS = [pow(17, _bitrev(i, 7), _KQ) for i in range(128)]
_KGAMMAS = [pow(17, 2 * _bitrev(i, 7) + 1, _KQ) for i in range(128)]


def _kem_ntt(f: list[int]) -> list[int]:  # FIPS 203 Algorithm 9
    f = list(f)
    i, length = 1, 128
    while length >= 2:
        for start in range(0, 256, 2 * length):
            zeta = _KZETAS[i]
            i += 1
            for j in range(start, start + length):
                t = zeta * f[j + length] % _KQ
                f[j + length] = (f[j] - t) % _KQ
                f[j] = (f[j] + t) % _KQ
        length //= 2
    return f


def _kem_ntt_inv(f: list[int]) -> list[int]:  # FIPS 203 Algorithm 10
    f = list(f)
    i, length = 127, 2
    while length <= 128:
        for start in range(0, 256, 2 * length):
            zeta = _KZETAS[i]
            i -= 1
            for j in range(start, start + length):
                t = f[j]
                f[j] = (t + f[j + length]) % _KQ
                f[j + length] = zeta * (f[j + length] - t) % _KQ
        length *= 2
    return [x * 3303 % _KQ for x in f]


def _kem_mul(f: list[int], g: list[int]) -> list[int]:  # FIPS 203 Algorithms 11 and 12
    h = [0] * 256
    for i in range(128):
        a0, a1, b0, b1 = f[2 * i], f[2 * i + 1], g[2 * i], g[2 * i + 1]
        h[2 * i] = (a0 * b0 + a1 * b1 % _KQ * _KGAMMAS[i]) % _KQ
        h[2 * i + 1] = (a0 * b1 + a1 * b0) % _KQ
    return h


def _kem_sample_ntt(seed: bytes) -> list[int]:  # FIPS 203 Algorithm 7
    out: list[int] = []
    size = 840
    while True:
        stream = hashlib.shake_128(seed).digest(size)
        out.clear()
        for pos in range(0, size - 2, 3):
            c0, c1, c2 = stream[pos], stream[pos + 1], stream[pos + 2]
            d1 = c0 + 256 * (c1 & 15)
            d2 = (c1 >> 4) + 16 * c2
            if d1 < _KQ:
                out.append(d1)
            if d2 < _KQ and len(out) < 256:
                out.append(d2)
            if len(out) == 256:
                return out
        size *= 2


def _kem_cbd(data: bytes, eta: int) -> list[int]:  # FIPS 203 Algorithm 8
    bits = int.from_bytes(data, "little")
    f = []
    mask = (1 << eta) - 1
    for i in range(256):
        chunk = bits >> (2 * eta * i)
        x = bin(chunk & mask).count("1")
        y = bin((chunk >> eta) & mask).count("1")
        f.append((x - y) % _KQ)
    return f


def _kem_encode12(polys: list[list[int]]) -> bytes:
    out = bytearray()
    for f in polys:
        for i in range(0, 256, 2):
            a, b = f[i], f[i + 1]
            out += bytes((a & 0xFF, (a >> 8) | ((b & 0xF) << 4), b >> 4))
    return bytes(out)


def _kem_decode12(data: bytes) -> list[list[int]]:
    polys = []
    for p in range(len(data) // 384):
        chunk = data[384 * p : 384 * (p + 1)]
        f = []
        for i in range(0, 384, 3):
            c0, c1, c2 = chunk[i], chunk[i + 1], chunk[i + 2]
            f.append(c0 | ((c1 & 0xF) << 8))
            f.append((c1 >> 4) | (c2 << 4))
        polys.append(f)
    return polys


def _kem_matrix(rho: bytes, k: int) -> list[list[list[int]]]:
    return [[_kem_sample_ntt(rho + bytes((j, i))) for j in range(k)] for i in range(k)]


def _kem_keygen(params: _KemParams, seed: bytes) -> bytes:
    """FIPS 203 ML-KEM.KeyGen_internal(d, z): the expanded decapsulation key dk."""
    d, z = seed[:32], seed[32:]
    k, eta = params.k, params.eta1
    g = hashlib.sha3_512(d + bytes((k,))).digest()
    rho, sigma = g[:32], g[32:]
    prf = [hashlib.shake_256(sigma + bytes((n,))).digest(64 * eta) for n in range(2 * k)]
    s_hat = [_kem_ntt(_kem_cbd(prf[i], eta)) for i in range(k)]
    e_hat = [_kem_ntt(_kem_cbd(prf[k + i], eta)) for i in range(k)]
    a_hat = _kem_matrix(rho, k)
    t_hat = []
    for i in range(k):
        acc = list(e_hat[i])
        for j in range(k):
            prod = _kem_mul(a_hat[i][j], s_hat[j])
            acc = [(x + y) % _KQ for x, y in zip(acc, prod)]
        t_hat.append(acc)
    ek = _kem_encode12(t_hat) + rho
    return _kem_encode12(s_hat) + ek + hashlib.sha3_256(ek).digest() + z


def _kem_check_expanded(params: _KemParams, dk: bytes) -> bytes:
    """Validate an expanded ML-KEM key as far as its own values allow; return ek."""
    k = params.k
    s_bytes, ek = dk[: 384 * k], dk[384 * k : 768 * k + 32]
    h, _z = dk[768 * k + 32 : 768 * k + 64], dk[768 * k + 64 :]
    if not hmac.compare_digest(hashlib.sha3_256(ek).digest(), h):
        raise InvalidPrivateKey(
            f"{params.name} expandedKey is damaged: the stored H(ek) is not the hash of its "
            "encapsulation key (FIPS 203 section 7.3 hash check)"
        )
    t_hat = _kem_decode12(ek[: 384 * k])
    if any(c >= _KQ for f in t_hat for c in f):
        raise InvalidPrivateKey(f"{params.name} expandedKey is damaged: its encapsulation key has a "
                                "coefficient >= q (FIPS 203 section 7.2 modulus check)")
    s_hat = _kem_decode12(s_bytes)
    if any(c >= _KQ for f in s_hat for c in f):
        raise InvalidPrivateKey(f"{params.name} expandedKey is damaged: its secret vector s has a coefficient >= q")
    # Pairwise consistency without encapsulating: keygen made t = A*s + e with s and e drawn
    # from CBD(eta1), so s and t - A*s must both be small. A changed s (or t) breaks that.
    a_hat = _kem_matrix(ek[384 * k :], k)
    bound = params.eta1
    for i in range(k):
        s = _kem_ntt_inv(s_hat[i])
        acc = list(t_hat[i])
        for j in range(k):
            prod = _kem_mul(a_hat[i][j], s_hat[j])
            acc = [(x - y) % _KQ for x, y in zip(acc, prod)]
        e = _kem_ntt_inv(acc)
        if any(bound < c < _KQ - bound for c in s) or any(bound < c < _KQ - bound for c in e):
            raise InvalidPrivateKey(
                f"{params.name} expandedKey is inconsistent: its secret vector s does not belong to its "
                "encapsulation key (t - A*s is not small: a pairwise consistency check would fail)"
            )
    return ek


# --------------------------------------------------------------------------------------------
# FIPS 204 (ML-DSA) arithmetic, validation only
# --------------------------------------------------------------------------------------------

_DQ = 8380417
_DZETAS = [pow(1753, _bitrev(i, 8), _DQ) for i in range(256)]
_D_INV256 = 8347681


def _dsa_ntt(w: list[int]) -> list[int]:  # FIPS 204 Algorithm 41
    w = list(w)
    m, length = 0, 128
    while length >= 1:
        for start in range(0, 256, 2 * length):
            m += 1
            z = _DZETAS[m]
            for j in range(start, start + length):
                t = z * w[j + length] % _DQ
                w[j + length] = (w[j] - t) % _DQ
                w[j] = (w[j] + t) % _DQ
        length //= 2
    return w


def _dsa_ntt_inv(w: list[int]) -> list[int]:  # FIPS 204 Algorithm 42
    w = list(w)
    m, length = 256, 1
    while length < 256:
        for start in range(0, 256, 2 * length):
            m -= 1
            z = _DQ - _DZETAS[m]
            for j in range(start, start + length):
                t = w[j]
                w[j] = (t + w[j + length]) % _DQ
                w[j + length] = z * (t - w[j + length]) % _DQ
        length *= 2
    return [x * _D_INV256 % _DQ for x in w]


def _dsa_rej_ntt(seed: bytes) -> list[int]:  # FIPS 204 Algorithm 30
    size = 840
    while True:
        stream = hashlib.shake_128(seed).digest(size)
        out = []
        for pos in range(0, size - 2, 3):
            z = stream[pos] | (stream[pos + 1] << 8) | ((stream[pos + 2] & 0x7F) << 16)
            if z < _DQ:
                out.append(z)
                if len(out) == 256:
                    return out
        size *= 2


def _dsa_rej_bounded(seed: bytes, eta: int) -> list[int]:  # FIPS 204 Algorithm 31
    size = 272
    while True:
        stream = hashlib.shake_256(seed).digest(size)
        out = []
        for byte in stream:
            for b in (byte & 15, byte >> 4):
                if eta == 2 and b < 15:
                    out.append((2 - b % 5) % _DQ)
                elif eta == 4 and b < 9:
                    out.append((4 - b) % _DQ)
                if len(out) == 256:
                    return out
        size *= 2


def _pack(values: list[int], bits: int) -> bytes:
    acc = 0
    for i, v in enumerate(values):
        acc |= v << (bits * i)
    return acc.to_bytes(bits * len(values) // 8, "little")


def _unpack(data: bytes, bits: int) -> list[int]:
    acc = int.from_bytes(data, "little")
    mask = (1 << bits) - 1
    return [(acc >> (bits * i)) & mask for i in range(len(data) * 8 // bits)]


def _dsa_matrix(rho: bytes, params: _DsaParams) -> list[list[list[int]]]:
    return [[_dsa_rej_ntt(rho + bytes((s, r))) for s in range(params.l)] for r in range(params.k)]


def _dsa_t(params: _DsaParams, rho: bytes, s1: list[list[int]], s2: list[list[int]]) -> tuple[list, list]:
    """(t1, t0) = Power2Round(A*s1 + s2)."""
    a_hat = _dsa_matrix(rho, params)
    s1_hat = [_dsa_ntt(p) for p in s1]
    t1, t0 = [], []
    for r in range(params.k):
        acc = [0] * 256
        for s in range(params.l):
            row, col = a_hat[r][s], s1_hat[s]
            acc = [(x + a * b) % _DQ for x, a, b in zip(acc, row, col)]
        t = [(x + y) % _DQ for x, y in zip(_dsa_ntt_inv(acc), s2[r])]
        high, low = [], []
        for c in t:
            r0 = c & 8191
            if r0 > 4096:
                r0 -= 8192
            high.append((c - r0) >> 13)
            low.append(r0)
        t1.append(high)
        t0.append(low)
    return t1, t0


def _dsa_pk(rho: bytes, t1: list[list[int]]) -> bytes:
    return rho + b"".join(_pack(p, 10) for p in t1)


def _dsa_keygen(params: _DsaParams, xi: bytes) -> tuple[bytes, bytes]:
    """FIPS 204 ML-DSA.KeyGen_internal(xi): (pk, sk)."""
    h = hashlib.shake_256(xi + bytes((params.k, params.l))).digest(128)
    rho, rho_prime, key = h[:32], h[32:96], h[96:]
    s1 = [_dsa_rej_bounded(rho_prime + r.to_bytes(2, "little"), params.eta) for r in range(params.l)]
    s2 = [_dsa_rej_bounded(rho_prime + (r + params.l).to_bytes(2, "little"), params.eta) for r in range(params.k)]
    t1, t0 = _dsa_t(params, rho, s1, s2)
    pk = _dsa_pk(rho, t1)
    tr = hashlib.shake_256(pk).digest(64)
    eta, bits = params.eta, params.eta_bits
    sk = rho + key + tr
    sk += b"".join(_pack([(eta - c) % _DQ for c in p], bits) for p in s1 + s2)
    sk += b"".join(_pack([4096 - c for c in p], 13) for p in t0)
    return pk, sk


def _dsa_check_expanded(params: _DsaParams, sk: bytes) -> bytes:
    """Validate an expanded ML-DSA key: s1, s2 in range, t0 and tr recomputed. Return pk."""
    eta, bits = params.eta, params.eta_bits
    rho, tr = sk[:32], sk[64:128]
    poly = 32 * bits
    pos = 128
    vectors = []
    for _ in range(params.l + params.k):
        raw = _unpack(sk[pos : pos + poly], bits)
        if any(v > 2 * eta for v in raw):
            raise InvalidPrivateKey(f"{params.name} expandedKey is damaged: a coefficient of s1 or s2 is "
                                    f"outside [-{eta}, {eta}]")
        vectors.append([(eta - v) % _DQ for v in raw])
        pos += poly
    s1, s2 = vectors[: params.l], vectors[params.l :]
    t0_stored = [[4096 - v for v in _unpack(sk[pos + 416 * r : pos + 416 * (r + 1)], 13)] for r in range(params.k)]
    t1, t0 = _dsa_t(params, rho, s1, s2)
    pk = _dsa_pk(rho, t1)
    if t0 != t0_stored:
        raise InvalidPrivateKey(f"{params.name} expandedKey is inconsistent: its t0 is not the low part of "
                                "t = A*s1 + s2 that its s1 and s2 give")
    if not hmac.compare_digest(hashlib.shake_256(pk).digest(64), tr):
        raise InvalidPrivateKey(f"{params.name} expandedKey is inconsistent: its tr is not H(pk) of the public "
                                "key that its s1 and s2 give")
    return pk


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


def _split_private_key(name: str, data: bytes, seed_size: int, expanded_size: int) -> tuple[str, bytes | None, bytes | None]:
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


def _kem_info(oid: ObjectIdentifier, params: _KemParams, private_key: bytes) -> PqKeyInfo:
    form, seed, expanded = _split_private_key(params.name, private_key, 64, params.dk_size)
    if expanded is not None:
        ek = _kem_check_expanded(params, expanded)
    if seed is not None:
        regenerated = _kem_keygen(params, seed)
        if expanded is not None and not hmac.compare_digest(regenerated, expanded):
            k = params.k
            layout = [("s (dk_PKE)", 384 * k), ("ek", 384 * k + 32), ("H(ek)", 32), ("z (implicit rejection secret)", 32)]
            part = _first_difference("expandedKey", layout, regenerated, expanded)
            raise InvalidPrivateKey(
                f"{params.name} 'both' key is inconsistent: the expandedKey is not the one its seed generates "
                f"({part} differs)"
            )
        expanded = regenerated if expanded is None else expanded
        ek = expanded[384 * params.k : 768 * params.k + 32]
    return PqKeyInfo(params.name, oid, form, ek, seed, expanded)


def _dsa_info(oid: ObjectIdentifier, params: _DsaParams, private_key: bytes) -> PqKeyInfo:
    form, seed, expanded = _split_private_key(params.name, private_key, 32, params.sk_size)
    if expanded is not None:
        pk = _dsa_check_expanded(params, expanded)
    if seed is not None:
        pk, regenerated = _dsa_keygen(params, seed)
        if expanded is not None and not hmac.compare_digest(regenerated, expanded):
            e = params.eta_bits * 32
            layout = [("rho", 32), ("K", 32), ("tr", 64), ("s1", e * params.l), ("s2", e * params.k), ("t0", 416 * params.k)]
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


def load_pq_private_key(der: bytes):
    """Load an unencrypted PKCS#8 DER ML-KEM-768/1024 or ML-DSA private key (any RFC form).

    InvalidPrivateKey: malformed or inconsistent. UnsupportedKeyForm: valid but not usable here
    (expanded-only, ML-KEM-512)."""
    oid, parameters, private_key, public = _one_asymmetric_key(der)
    params = _KEM.get(oid) or _DSA.get(oid)
    if params is not None and parameters is None and params.private_class is not None and private_key[:1] == b"\x80":
        # The seed form, the usual one: nothing to cross-check, cryptography expands it.
        seed_size = 64 if oid in _KEM else 32
        _, seed, _ = _split_private_key(params.name, private_key, seed_size, 0)
        key = params.private_class.from_seed_bytes(seed)
        if public is not None and not hmac.compare_digest(public, key.public_key().public_bytes_raw()):
            raise InvalidPrivateKey(f"{params.name} key's publicKey field is not the public key of its private key")
        return key
    info = inspect_private_key(der)
    params = _KEM.get(info.oid) or _DSA[info.oid]
    if params.private_class is None:
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
    key = params.private_class.from_seed_bytes(info.seed)
    ours = key.public_key().public_bytes_raw()
    if not hmac.compare_digest(ours, info.public_bytes):  # pragma: no cover - would be a bug here
        raise InvalidPrivateKey(f"{info.algorithm}: cryptography derives another public key from this seed")
    return key


# --------------------------------------------------------------------------------------------
# Public keys
# --------------------------------------------------------------------------------------------


def public_key_from_spki(der: bytes):
    """A public key object from a DER SubjectPublicKeyInfo (any type cryptography knows).

    ML-KEM-512 and other PQ keys outside cryptography 50 get a clear UnsupportedKeyForm."""
    try:
        return serialization.load_der_public_key(der)
    except UnsupportedAlgorithm:
        pass
    except ValueError as exc:
        raise ValueError(f"not a valid SubjectPublicKeyInfo: {_first_line(exc)}") from None
    try:
        spki = cms.decode_der(cms.SubjectPublicKeyInfo, der)
        oid = cms.parse_algorithm(spki.algorithm).oid
    except cms.Asn1Error as exc:
        raise ValueError(f"not a valid SubjectPublicKeyInfo: {exc}") from None
    name = pq_algorithm_name(oid)
    raise UnsupportedKeyForm(f"{name or oid.dotted_string} is not supported")


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160]


def spki_raw_public_key(der: bytes) -> tuple[ObjectIdentifier, bytes]:
    """(algorithm OID, subjectPublicKey bytes) of a DER SubjectPublicKeyInfo, any algorithm."""
    spki = cms.decode_der(cms.SubjectPublicKeyInfo, der)
    return cms.parse_algorithm(spki.algorithm).oid, spki.subject_public_key.as_bytes()


# --------------------------------------------------------------------------------------------
# Any private key, PEM or DER, encrypted or not
# --------------------------------------------------------------------------------------------


def _pem_blocks(data: bytes) -> tuple[str, bytes] | None:
    """(label, DER) of the first PEM block whose label is a private key's (a file may hold a
    certificate before its key), None when `data` is not PEM or holds no such block."""
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


_PBES2 = ObjectIdentifier("1.2.840.113549.1.5.13")
_PBKDF2_PRFS = {
    oids.HMAC_WITH_SHA1: hashes.SHA1,
    oids.HMAC_WITH_SHA256: hashes.SHA256,
    oids.HMAC_WITH_SHA384: hashes.SHA384,
    oids.HMAC_WITH_SHA512: hashes.SHA512,
}
_PBES2_CIPHERS = {oids.AES128_CBC: 16, oids.AES192_CBC: 24, oids.AES256_CBC: 32}
_MAX_PBKDF2_ITERATIONS = 10_000_000


def _decrypt_pkcs8(der: bytes, passphrase: bytes) -> bytes:
    """PrivateKeyInfo DER from an EncryptedPrivateKeyInfo with PBES2 (PBKDF2, AES-CBC): what
    OpenSSL 3.5 and cryptography write. Used for ML-KEM/ML-DSA keys that cryptography cannot load."""
    epki = cms.decode(cms.EncryptedPrivateKeyInfo, der)
    scheme = cms.parse_algorithm(epki.encryption_algorithm)
    if scheme.oid != _PBES2 or scheme.parameters is None:
        raise InvalidPrivateKey(f"encrypted key scheme {scheme.oid.dotted_string} is not supported (PBES2 is)")
    pbes2 = cms.decode_der(cms.PBES2Params, scheme.parameters)
    kdf = cms.parse_algorithm(pbes2.key_derivation_func)
    enc = cms.parse_algorithm(pbes2.encryption_scheme)
    if kdf.oid != oids.PBKDF2 or kdf.parameters is None:
        raise InvalidPrivateKey(f"PBES2 key derivation {kdf.oid.dotted_string} is not supported (PBKDF2 is)")
    if enc.oid not in _PBES2_CIPHERS or enc.parameters is None:
        raise InvalidPrivateKey(f"PBES2 cipher {enc.oid.dotted_string} is not supported (AES-CBC is)")
    params = cms.decode_der(cms.PBKDF2Params, kdf.parameters)
    prf = params.prf.algorithm if params.prf is not None else oids.HMAC_WITH_SHA1
    if prf not in _PBKDF2_PRFS:
        raise InvalidPrivateKey(f"PBKDF2 PRF {prf.dotted_string} is not supported")
    if not 1 <= params.iteration_count <= _MAX_PBKDF2_ITERATIONS:
        raise InvalidPrivateKey(f"PBKDF2 iteration count {params.iteration_count} is out of range")
    key_size = _PBES2_CIPHERS[enc.oid]
    if params.key_length is not None and params.key_length != key_size:
        raise InvalidPrivateKey("PBKDF2 keyLength does not fit the cipher")
    iv = cms.decode_der(bytes, enc.parameters)
    key = PBKDF2HMAC(_PBKDF2_PRFS[prf](), key_size, params.salt, params.iteration_count).derive(passphrase)
    if len(iv) != 16 or not epki.encrypted_data or len(epki.encrypted_data) % 16:
        raise InvalidPrivateKey("encrypted key has a bad IV or length")
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(epki.encrypted_data) + dec.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes((pad,)) * pad:
        raise ValueError("Bad decrypt. Incorrect password?")
    return padded[:-pad]


def load_any_private_key(data: bytes, passphrase: bytes | None = None):
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


def _encrypted_pq(der: bytes, passphrase: bytes, error: Exception):
    try:
        inner = _decrypt_pkcs8(der, passphrase)
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
