"""FIPS 204 (ML-DSA): key generation from a seed and the check of an expanded private key.

Why this is written here rather than taken from cryptography: cryptography 50 makes an ML-DSA key
from its 32-byte seed xi, but it can neither export nor import the expanded private key sk
(FIPS 204 section 7.2, skEncode). Checking the expanded half of an RFC 9881 'both' key against
its seed, or validating an expanded-only key, therefore needs ML-DSA.KeyGen_internal and the
arithmetic below, in plain Python.

For *validation only*: no key is ever used through this code (it is not constant time), and it
runs once when a key is loaded (`pkcs8`). tests/test_pq_cms.py checks it against cryptography,
tests/test_vectors.py against the RFC 9881 example keys. `pqscep.vectors.fips` builds its
deterministic signing on the same building blocks.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from .key_errors import InvalidPrivateKey

__all__ = [
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
    "PARAMETER_SETS",
    "Q",
    "MlDsaParams",
    "bit_pack",
    "bit_unpack",
    "check_expanded_key",
    "keygen_internal",
    "matrix_a",
    "ntt",
    "ntt_inv",
]

Q = 8380417


@dataclass(frozen=True)
class MlDsaParams:
    """An ML-DSA parameter set (FIPS 204 Table 1), as far as key generation needs it."""

    name: str
    k: int
    l: int  # noqa: E741 (FIPS 204's name)
    eta: int

    @property
    def eta_bits(self) -> int:
        return 3 if self.eta == 2 else 4

    @property
    def pk_size(self) -> int:
        return 32 + 320 * self.k

    @property
    def sk_size(self) -> int:
        return 128 + 32 * self.eta_bits * (self.k + self.l) + 416 * self.k


ML_DSA_44 = MlDsaParams("ML-DSA-44", 4, 4, 2)
ML_DSA_65 = MlDsaParams("ML-DSA-65", 6, 5, 4)
ML_DSA_87 = MlDsaParams("ML-DSA-87", 8, 7, 2)
PARAMETER_SETS: dict[str, MlDsaParams] = {p.name: p for p in (ML_DSA_44, ML_DSA_65, ML_DSA_87)}


def _bitrev(i: int, bits: int) -> int:
    return int(format(i, f"0{bits}b")[::-1], 2)


_ZETAS = [pow(1753, _bitrev(i, 8), Q) for i in range(256)]
_INV256 = 8347681


def ntt(w: list[int]) -> list[int]:  # FIPS 204 Algorithm 41
    w = list(w)
    m, length = 0, 128
    while length >= 1:
        for start in range(0, 256, 2 * length):
            m += 1
            z = _ZETAS[m]
            for j in range(start, start + length):
                t = z * w[j + length] % Q
                w[j + length] = (w[j] - t) % Q
                w[j] = (w[j] + t) % Q
        length //= 2
    return w


def ntt_inv(w: list[int]) -> list[int]:  # FIPS 204 Algorithm 42
    w = list(w)
    m, length = 256, 1
    while length < 256:
        for start in range(0, 256, 2 * length):
            m -= 1
            z = Q - _ZETAS[m]
            for j in range(start, start + length):
                t = w[j]
                w[j] = (t + w[j + length]) % Q
                w[j + length] = z * (t - w[j + length]) % Q
        length *= 2
    return [x * _INV256 % Q for x in w]


def _rej_ntt_poly(seed: bytes) -> list[int]:  # FIPS 204 Algorithm 30
    size = 840
    while True:
        stream = hashlib.shake_128(seed).digest(size)
        out = []
        for pos in range(0, size - 2, 3):
            z = stream[pos] | (stream[pos + 1] << 8) | ((stream[pos + 2] & 0x7F) << 16)
            if z < Q:
                out.append(z)
                if len(out) == 256:
                    return out
        size *= 2


def _rej_bounded_poly(seed: bytes, eta: int) -> list[int]:  # FIPS 204 Algorithm 31
    size = 272
    while True:
        stream = hashlib.shake_256(seed).digest(size)
        out = []
        for byte in stream:
            for b in (byte & 15, byte >> 4):
                if eta == 2 and b < 15:
                    out.append((2 - b % 5) % Q)
                elif eta == 4 and b < 9:
                    out.append((4 - b) % Q)
                if len(out) == 256:
                    return out
        size *= 2


def bit_pack(values: list[int], bits: int) -> bytes:
    """SimpleBitPack (FIPS 204 Algorithm 16) of values already mapped to [0, 2^bits)."""
    acc = 0
    for i, v in enumerate(values):
        acc |= v << (bits * i)
    return acc.to_bytes(bits * len(values) // 8, "little")


def bit_unpack(data: bytes, bits: int) -> list[int]:
    """SimpleBitUnpack (FIPS 204 Algorithm 18): the values in [0, 2^bits), unmapped."""
    acc = int.from_bytes(data, "little")
    mask = (1 << bits) - 1
    return [(acc >> (bits * i)) & mask for i in range(len(data) * 8 // bits)]


def matrix_a(rho: bytes, params: MlDsaParams) -> list[list[list[int]]]:
    """ExpandA (FIPS 204 Algorithm 32): a_hat[r][s] = RejNTTPoly(rho || s || r)."""
    return [[_rej_ntt_poly(rho + bytes((s, r))) for s in range(params.l)] for r in range(params.k)]


def _power2round_t(params: MlDsaParams, rho: bytes, s1: list[list[int]],
                   s2: list[list[int]]) -> tuple[list, list]:
    """(t1, t0) = Power2Round(A*s1 + s2)."""
    a_hat = matrix_a(rho, params)
    s1_hat = [ntt(p) for p in s1]
    t1, t0 = [], []
    for r in range(params.k):
        acc = [0] * 256
        for s in range(params.l):
            row, col = a_hat[r][s], s1_hat[s]
            acc = [(x + a * b) % Q for x, a, b in zip(acc, row, col, strict=True)]
        t = [(x + y) % Q for x, y in zip(ntt_inv(acc), s2[r], strict=True)]
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


def _pk_encode(rho: bytes, t1: list[list[int]]) -> bytes:  # FIPS 204 Algorithm 22
    return rho + b"".join(bit_pack(p, 10) for p in t1)


def keygen_internal(params: MlDsaParams, xi: bytes) -> tuple[bytes, bytes]:
    """FIPS 204 ML-DSA.KeyGen_internal(xi): (pk, sk)."""
    h = hashlib.shake_256(xi + bytes((params.k, params.l))).digest(128)
    rho, rho_prime, key = h[:32], h[32:96], h[96:]
    s1 = [_rej_bounded_poly(rho_prime + r.to_bytes(2, "little"), params.eta) for r in range(params.l)]
    s2 = [_rej_bounded_poly(rho_prime + (r + params.l).to_bytes(2, "little"), params.eta) for r in range(params.k)]
    t1, t0 = _power2round_t(params, rho, s1, s2)
    pk = _pk_encode(rho, t1)
    tr = hashlib.shake_256(pk).digest(64)
    eta, bits = params.eta, params.eta_bits
    sk = rho + key + tr
    sk += b"".join(bit_pack([(eta - c) % Q for c in p], bits) for p in s1 + s2)
    sk += b"".join(bit_pack([4096 - c for c in p], 13) for p in t0)
    return pk, sk


def check_expanded_key(params: MlDsaParams, sk: bytes) -> bytes:
    """Validate an expanded ML-DSA key: s1, s2 in range, t0 and tr recomputed. Return pk.

    InvalidPrivateKey names the check that fails (the RFC 9881 field is called expandedKey)."""
    eta, bits = params.eta, params.eta_bits
    rho, tr = sk[:32], sk[64:128]
    poly = 32 * bits
    pos = 128
    vectors = []
    for _ in range(params.l + params.k):
        raw = bit_unpack(sk[pos : pos + poly], bits)
        if any(v > 2 * eta for v in raw):
            raise InvalidPrivateKey(f"{params.name} expandedKey is damaged: a coefficient of s1 or s2 is "
                                    f"outside [-{eta}, {eta}]")
        vectors.append([(eta - v) % Q for v in raw])
        pos += poly
    s1, s2 = vectors[: params.l], vectors[params.l :]
    t0_stored = [[4096 - v for v in bit_unpack(sk[pos + 416 * r : pos + 416 * (r + 1)], 13)] for r in range(params.k)]
    t1, t0 = _power2round_t(params, rho, s1, s2)
    pk = _pk_encode(rho, t1)
    if t0 != t0_stored:
        raise InvalidPrivateKey(f"{params.name} expandedKey is inconsistent: its t0 is not the low part of "
                                "t = A*s1 + s2 that its s1 and s2 give")
    if not hmac.compare_digest(hashlib.shake_256(pk).digest(64), tr):
        raise InvalidPrivateKey(f"{params.name} expandedKey is inconsistent: its tr is not H(pk) of the public "
                                "key that its s1 and s2 give")
    return pk
