"""FIPS 203 (ML-KEM): key generation from a seed and the check of an expanded decapsulation key.

Why this is written here rather than taken from cryptography: cryptography 50 makes an ML-KEM key
from its 64-byte seed d||z, but it can neither export nor import the expanded decapsulation key
dk (FIPS 203 section 7.1), and it has no ML-KEM-512. Checking the expanded half of an RFC 9935
'both' key against its seed, or validating an expanded-only key, therefore needs
ML-KEM.KeyGen_internal and the K-PKE arithmetic below, in plain Python.

For *validation only*: no key is ever used through this code (it is not constant time), and it
runs once when a key is loaded (`pkcs8`). tests/test_pq_cms.py checks it against cryptography
(ML-KEM-768/1024), tests/test_vectors.py against the RFC 9935 example keys (ML-KEM-512 too).
`pqscep.vectors.fips` builds its deterministic encapsulation on the same building blocks.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from .key_errors import InvalidPrivateKey

__all__ = [
    "ML_KEM_512",
    "ML_KEM_768",
    "ML_KEM_1024",
    "PARAMETER_SETS",
    "Q",
    "MlKemParams",
    "byte_decode",
    "byte_encode",
    "check_expanded_key",
    "decode12",
    "expanded_key",
    "matrix_a",
    "multiply_ntts",
    "ntt",
    "ntt_inv",
    "sample_poly_cbd",
]

Q = 3329


@dataclass(frozen=True)
class MlKemParams:
    """An ML-KEM parameter set (FIPS 203 Table 2), as far as key generation needs it."""

    name: str
    k: int
    eta1: int

    @property
    def ek_size(self) -> int:
        return 384 * self.k + 32

    @property
    def dk_size(self) -> int:
        return 768 * self.k + 96


ML_KEM_512 = MlKemParams("ML-KEM-512", 2, 3)
ML_KEM_768 = MlKemParams("ML-KEM-768", 3, 2)
ML_KEM_1024 = MlKemParams("ML-KEM-1024", 4, 2)
PARAMETER_SETS: dict[str, MlKemParams] = {p.name: p for p in (ML_KEM_512, ML_KEM_768, ML_KEM_1024)}


def _bitrev(i: int, bits: int) -> int:
    return int(format(i, f"0{bits}b")[::-1], 2)


_ZETAS = [pow(17, _bitrev(i, 7), Q) for i in range(128)]
_GAMMAS = [pow(17, 2 * _bitrev(i, 7) + 1, Q) for i in range(128)]


def ntt(f: list[int]) -> list[int]:  # FIPS 203 Algorithm 9
    f = list(f)
    i, length = 1, 128
    while length >= 2:
        for start in range(0, 256, 2 * length):
            zeta = _ZETAS[i]
            i += 1
            for j in range(start, start + length):
                t = zeta * f[j + length] % Q
                f[j + length] = (f[j] - t) % Q
                f[j] = (f[j] + t) % Q
        length //= 2
    return f


def ntt_inv(f: list[int]) -> list[int]:  # FIPS 203 Algorithm 10
    f = list(f)
    i, length = 127, 2
    while length <= 128:
        for start in range(0, 256, 2 * length):
            zeta = _ZETAS[i]
            i -= 1
            for j in range(start, start + length):
                t = f[j]
                f[j] = (t + f[j + length]) % Q
                f[j + length] = zeta * (f[j + length] - t) % Q
        length *= 2
    return [x * 3303 % Q for x in f]


def multiply_ntts(f: list[int], g: list[int]) -> list[int]:  # FIPS 203 Algorithms 11 and 12
    h = [0] * 256
    for i in range(128):
        a0, a1, b0, b1 = f[2 * i], f[2 * i + 1], g[2 * i], g[2 * i + 1]
        h[2 * i] = (a0 * b0 + a1 * b1 % Q * _GAMMAS[i]) % Q
        h[2 * i + 1] = (a0 * b1 + a1 * b0) % Q
    return h


def _sample_ntt(seed: bytes) -> list[int]:  # FIPS 203 Algorithm 7
    out: list[int] = []
    size = 840
    while True:
        stream = hashlib.shake_128(seed).digest(size)
        out.clear()
        for pos in range(0, size - 2, 3):
            c0, c1, c2 = stream[pos], stream[pos + 1], stream[pos + 2]
            d1 = c0 + 256 * (c1 & 15)
            d2 = (c1 >> 4) + 16 * c2
            if d1 < Q:
                out.append(d1)
            if d2 < Q and len(out) < 256:
                out.append(d2)
            if len(out) == 256:
                return out
        size *= 2


def sample_poly_cbd(data: bytes, eta: int) -> list[int]:  # FIPS 203 Algorithm 8
    bits = int.from_bytes(data, "little")
    f = []
    mask = (1 << eta) - 1
    for i in range(256):
        chunk = bits >> (2 * eta * i)
        x = bin(chunk & mask).count("1")
        y = bin((chunk >> eta) & mask).count("1")
        f.append((x - y) % Q)
    return f


def byte_encode(values: list[int], d: int) -> bytes:  # FIPS 203 Algorithm 5, d < 12
    acc = 0
    for i, v in enumerate(values):
        acc |= v << (d * i)
    return acc.to_bytes(d * len(values) // 8, "little")


def byte_decode(data: bytes, d: int) -> list[int]:  # FIPS 203 Algorithm 6, d < 12
    acc = int.from_bytes(data, "little")
    mask = (1 << d) - 1
    return [(acc >> (d * i)) & mask for i in range(len(data) * 8 // d)]


def _encode12(polys: list[list[int]]) -> bytes:  # ByteEncode_12 of each polynomial, concatenated
    out = bytearray()
    for f in polys:
        for i in range(0, 256, 2):
            a, b = f[i], f[i + 1]
            out += bytes((a & 0xFF, (a >> 8) | ((b & 0xF) << 4), b >> 4))
    return bytes(out)


def decode12(data: bytes) -> list[list[int]]:
    """ByteDecode_12 of each 384-byte polynomial, *without* the reduction mod q (so that the
    modulus check of FIPS 203 section 7.2 can see a coefficient >= q)."""
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


def matrix_a(rho: bytes, k: int) -> list[list[list[int]]]:
    """A-hat of K-PKE.KeyGen (FIPS 203 Algorithm 13): a_hat[i][j] = SampleNTT(rho || j || i)."""
    return [[_sample_ntt(rho + bytes((j, i))) for j in range(k)] for i in range(k)]


def expanded_key(params: MlKemParams, seed: bytes) -> bytes:
    """FIPS 203 ML-KEM.KeyGen_internal(d, z) for the 64-byte seed d||z: the expanded decapsulation
    key dk (which holds ek at bytes 384k..768k+32)."""
    d, z = seed[:32], seed[32:]
    k, eta = params.k, params.eta1
    g = hashlib.sha3_512(d + bytes((k,))).digest()
    rho, sigma = g[:32], g[32:]
    prf = [hashlib.shake_256(sigma + bytes((n,))).digest(64 * eta) for n in range(2 * k)]
    s_hat = [ntt(sample_poly_cbd(prf[i], eta)) for i in range(k)]
    e_hat = [ntt(sample_poly_cbd(prf[k + i], eta)) for i in range(k)]
    a_hat = matrix_a(rho, k)
    t_hat = []
    for i in range(k):
        acc = list(e_hat[i])
        for j in range(k):
            prod = multiply_ntts(a_hat[i][j], s_hat[j])
            acc = [(x + y) % Q for x, y in zip(acc, prod, strict=True)]
        t_hat.append(acc)
    ek = _encode12(t_hat) + rho
    return _encode12(s_hat) + ek + hashlib.sha3_256(ek).digest() + z


def check_expanded_key(params: MlKemParams, dk: bytes) -> bytes:
    """Validate an expanded ML-KEM key as far as its own values allow; return ek.

    InvalidPrivateKey names the check that fails (the RFC 9935 field is called expandedKey)."""
    k = params.k
    s_bytes, ek = dk[: 384 * k], dk[384 * k : 768 * k + 32]
    h, _z = dk[768 * k + 32 : 768 * k + 64], dk[768 * k + 64 :]
    if not hmac.compare_digest(hashlib.sha3_256(ek).digest(), h):
        raise InvalidPrivateKey(
            f"{params.name} expandedKey is damaged: the stored H(ek) is not the hash of its "
            "encapsulation key (FIPS 203 section 7.3 hash check)"
        )
    t_hat = decode12(ek[: 384 * k])
    if any(c >= Q for f in t_hat for c in f):
        raise InvalidPrivateKey(f"{params.name} expandedKey is damaged: its encapsulation key has a "
                                "coefficient >= q (FIPS 203 section 7.2 modulus check)")
    s_hat = decode12(s_bytes)
    if any(c >= Q for f in s_hat for c in f):
        raise InvalidPrivateKey(f"{params.name} expandedKey is damaged: its secret vector s has a coefficient >= q")
    # Pairwise consistency without encapsulating: keygen made t = A*s + e with s and e drawn
    # from CBD(eta1), so s and t - A*s must both be small. A changed s (or t) breaks that.
    a_hat = matrix_a(ek[384 * k :], k)
    bound = params.eta1
    for i in range(k):
        s = ntt_inv(s_hat[i])
        acc = list(t_hat[i])
        for j in range(k):
            prod = multiply_ntts(a_hat[i][j], s_hat[j])
            acc = [(x - y) % Q for x, y in zip(acc, prod, strict=True)]
        e = ntt_inv(acc)
        if any(bound < c < Q - bound for c in s) or any(bound < c < Q - bound for c in e):
            raise InvalidPrivateKey(
                f"{params.name} expandedKey is inconsistent: its secret vector s does not belong to its "
                "encapsulation key (t - A*s is not small: a pairwise consistency check would fail)"
            )
    return ek
