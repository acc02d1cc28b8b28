"""Deterministic ML-KEM encapsulation and ML-DSA signing, FOR TEST VECTORS ONLY.

**Never use anything in this module for production keys or messages.** It exists so that
``pqscep vectors --out DIR`` regenerates the committed test vectors byte for byte:

* cryptography 50 makes ML-KEM / ML-DSA keys from seeds, but its ML-KEM encapsulation draws
  its own randomness and its ML-DSA signing is hedged (randomized), so the same inputs give
  different bytes on every run. Vectors need the same bytes every run.
* The code here is plain Python, *not constant time*, and takes the would-be random values
  (ML-KEM's m, ML-DSA's rnd fixed to zero) from the caller. Used for real traffic it would leak
  secrets through timing and, with a reused m, give away shared secrets. The names say
  "deterministic" / "for_vectors" so that no caller picks them up by mistake; production code
  uses cryptography.

What is here:

* `mlkem_encaps_deterministic`: FIPS 203 ML-KEM.Encaps_internal(ek, m) (Algorithm 17) with
  K-PKE.Encrypt (Algorithm 14), for ML-KEM-768 and ML-KEM-1024.
* `mldsa_sign_deterministic`: FIPS 204 ML-DSA.Sign (Algorithm 2), pure mode, deterministic
  variant (rnd = 32 zero bytes), with the key of ML-DSA.KeyGen_internal(seed) (Algorithm 6),
  then ML-DSA.Sign_internal (Algorithm 7).
* `mldsa_public_key_for_vectors`: the public key of that KeyGen (for checks).
* `DeterministicRandom`: a SHAKE-256 stream usable as the ``random_bytes`` parameter of the
  project's CMS and SCEP functions, so nonces, IVs, CEKs and serials in vectors are fixed too.

The lattice building blocks (NTTs, samplers, KeyGen, bit packing) are the ones of
`pqscep.crypto.fips203` and `pqscep.crypto.fips204`, written there for key validation and
checked against cryptography; only what signing and encapsulation add is written here.
tests/test_vectors_fips.py checks every output against cryptography (decapsulation,
verification).
"""

from __future__ import annotations

import hashlib

from ..crypto import fips203, fips204

__all__ = [
    "DeterministicRandom",
    "mldsa_public_key_for_vectors",
    "mldsa_sign_deterministic",
    "mlkem_encaps_deterministic",
]

_KQ = fips203.Q
_DQ = fips204.Q


# --------------------------------------------------------------------------------------------
# ML-KEM (FIPS 203): Encaps_internal
# --------------------------------------------------------------------------------------------

# parameter set -> (k, eta1, eta2, du, dv), FIPS 203 Table 2
_KEM_SETS = {
    "ML-KEM-768": (3, 2, 2, 10, 4),
    "ML-KEM-1024": (4, 2, 2, 11, 5),
}
assert all(fips203.PARAMETER_SETS[n].k == v[0] for n, v in _KEM_SETS.items())


def _kem_compress(f: list[int], d: int) -> list[int]:  # FIPS 203 (4.7): round(2^d / q * x) mod 2^d
    mask = (1 << d) - 1
    return [(((x << d) + _KQ // 2) // _KQ) & mask for x in f]


def _kem_add(*polys: list[int]) -> list[int]:
    return [sum(cs) % _KQ for cs in zip(*polys, strict=True)]


def _kem_prf(s: bytes, b: int, eta: int) -> bytes:  # FIPS 203 (4.3)
    return hashlib.shake_256(s + bytes((b,))).digest(64 * eta)


def _kpke_encrypt(ek: bytes, m: bytes, r: bytes, k: int, eta1: int, eta2: int, du: int, dv: int) -> bytes:
    """FIPS 203 Algorithm 14, K-PKE.Encrypt(ek, m, r)."""
    t_hat = fips203.decode12(ek[: 384 * k])
    rho = ek[384 * k :]
    a_hat = fips203.matrix_a(rho, k)  # a_hat[i][j] = SampleNTT(rho || j || i)
    n = 0
    y = []
    for _ in range(k):
        y.append(fips203.sample_poly_cbd(_kem_prf(r, n, eta1), eta1))
        n += 1
    e1 = []
    for _ in range(k):
        e1.append(fips203.sample_poly_cbd(_kem_prf(r, n, eta2), eta2))
        n += 1
    e2 = fips203.sample_poly_cbd(_kem_prf(r, n, eta2), eta2)
    y_hat = [fips203.ntt(p) for p in y]
    u = []
    for i in range(k):  # u = NTT^-1(A_hat^T o y_hat) + e1
        acc = [0] * 256
        for j in range(k):
            acc = _kem_add(acc, fips203.multiply_ntts(a_hat[j][i], y_hat[j]))
        u.append(_kem_add(fips203.ntt_inv(acc), e1[i]))
    mu = [1665 * bit for bit in fips203.byte_decode(m, 1)]  # Decompress_1(ByteDecode_1(m))
    acc = [0] * 256
    for j in range(k):
        acc = _kem_add(acc, fips203.multiply_ntts(t_hat[j], y_hat[j]))
    v = _kem_add(fips203.ntt_inv(acc), e2, mu)
    c1 = b"".join(fips203.byte_encode(_kem_compress(p, du), du) for p in u)
    c2 = fips203.byte_encode(_kem_compress(v, dv), dv)
    return c1 + c2


def mlkem_encaps_deterministic(public_key_bytes: bytes, m: bytes, parameter_set: str) -> tuple[bytes, bytes]:
    """FIPS 203 ML-KEM.Encaps_internal(ek, m): (shared_secret, ciphertext). FOR VECTORS ONLY.

    `m` is the 32 bytes that ML-KEM.Encaps would draw at random; the same (ek, m) always give
    the same output. The FIPS 203 section 7.2 input checks (length, modulus) are made first."""
    if parameter_set not in _KEM_SETS:
        raise ValueError(f"parameter set {parameter_set!r} is not one of {sorted(_KEM_SETS)}")
    k, eta1, eta2, du, dv = _KEM_SETS[parameter_set]
    ek = bytes(public_key_bytes)
    if len(ek) != 384 * k + 32:
        raise ValueError(f"{parameter_set} encapsulation key must be {384 * k + 32} bytes, not {len(ek)}")
    if any(c >= _KQ for p in fips203.decode12(ek[: 384 * k]) for c in p):
        raise ValueError(f"{parameter_set} encapsulation key fails the modulus check (coefficient >= q)")
    if len(m) != 32:
        raise ValueError(f"m must be 32 bytes, not {len(m)}")
    g = hashlib.sha3_512(bytes(m) + hashlib.sha3_256(ek).digest()).digest()  # (K, r) = G(m || H(ek))
    shared, r = g[:32], g[32:]
    return shared, _kpke_encrypt(ek, bytes(m), r, k, eta1, eta2, du, dv)


# --------------------------------------------------------------------------------------------
# ML-DSA (FIPS 204): Sign, deterministic variant
# --------------------------------------------------------------------------------------------

# parameter set -> (tau, lambda, gamma1, gamma2, beta, omega), FIPS 204 Table 1
_DSA_SETS = {
    "ML-DSA-44": (39, 128, 1 << 17, (_DQ - 1) // 88, 78, 80),
    "ML-DSA-65": (49, 192, 1 << 19, (_DQ - 1) // 32, 196, 55),
    "ML-DSA-87": (60, 256, 1 << 19, (_DQ - 1) // 32, 120, 75),
}


def _dsa_params(parameter_set: str) -> fips204.MlDsaParams:
    if parameter_set not in _DSA_SETS:
        raise ValueError(f"parameter set {parameter_set!r} is not one of {sorted(_DSA_SETS)}")
    return fips204.PARAMETER_SETS[parameter_set]


def _centered(x: int) -> int:  # x mod+- q
    x %= _DQ
    return x - _DQ if x > _DQ // 2 else x


def _decompose(r: int, gamma2: int) -> tuple[int, int]:  # FIPS 204 Algorithm 36: (r1, r0)
    r %= _DQ
    r0 = r % (2 * gamma2)
    if r0 > gamma2:
        r0 -= 2 * gamma2
    if r - r0 == _DQ - 1:
        return 0, r0 - 1
    return (r - r0) // (2 * gamma2), r0


def _sk_decode(params: fips204.MlDsaParams, sk: bytes):  # FIPS 204 Algorithm 25
    eta, bits = params.eta, params.eta_bits
    rho, key, tr = sk[:32], sk[32:64], sk[64:128]
    pos, size = 128, 32 * bits
    vectors = []
    for _ in range(params.l + params.k):
        vectors.append([(eta - v) % _DQ for v in fips204.bit_unpack(sk[pos : pos + size], bits)])
        pos += size
    t0 = [[(4096 - v) % _DQ for v in fips204.bit_unpack(sk[pos + 416 * i : pos + 416 * (i + 1)], 13)]
          for i in range(params.k)]
    return rho, key, tr, vectors[: params.l], vectors[params.l :], t0


def _expand_mask(rho: bytes, kappa: int, l: int, gamma1: int) -> list[list[int]]:  # noqa: E741  Algorithm 34
    bits = 18 if gamma1 == 1 << 17 else 20
    out = []
    for r in range(l):
        v = hashlib.shake_256(rho + (kappa + r).to_bytes(2, "little")).digest(32 * bits)
        out.append([(gamma1 - x) % _DQ for x in fips204.bit_unpack(v, bits)])
    return out


def _sample_in_ball(seed: bytes, tau: int) -> list[int]:  # FIPS 204 Algorithm 29
    size = 8 + 4 * tau
    while True:
        stream = hashlib.shake_256(seed).digest(size)
        signs = int.from_bytes(stream[:8], "little")
        c = [0] * 256
        pos = 8
        try:
            for i in range(256 - tau, 256):
                j = stream[pos]
                pos += 1
                while j > i:
                    j = stream[pos]
                    pos += 1
                c[i] = c[j]
                c[j] = _DQ - 1 if (signs >> (i + tau - 256)) & 1 else 1
            return c
        except IndexError:  # the stream ran out: the same stream, longer
            size *= 2


def _mul_ntt(a: list[int], b: list[int]) -> list[int]:
    return [x * y % _DQ for x, y in zip(a, b, strict=True)]


def _sig_encode(c_tilde: bytes, z: list[list[int]], h: list[list[int]], gamma1: int, omega: int) -> bytes:
    bits = 18 if gamma1 == 1 << 17 else 20  # Algorithm 26 with BitPack(z, gamma1 - 1, gamma1)
    out = bytearray(c_tilde)
    for p in z:
        out += fips204.bit_pack([gamma1 - _centered(x) for x in p], bits)
    hints = bytearray(omega + len(h))  # HintBitPack, Algorithm 20
    index = 0
    for i, p in enumerate(h):
        for j, bit in enumerate(p):
            if bit:
                hints[index] = j
                index += 1
        hints[omega + i] = index
    return bytes(out + hints)


def mldsa_public_key_for_vectors(seed: bytes, parameter_set: str) -> bytes:
    """The public key of FIPS 204 ML-DSA.KeyGen_internal(seed) (Algorithm 6). FOR VECTORS ONLY."""
    params = _dsa_params(parameter_set)
    if len(seed) != 32:
        raise ValueError(f"ML-DSA seed must be 32 bytes, not {len(seed)}")
    return fips204.keygen_internal(params, bytes(seed))[0]


def mldsa_sign_deterministic(seed: bytes, message: bytes, parameter_set: str, context: bytes = b"") -> bytes:
    """FIPS 204 ML-DSA.Sign(sk, M, ctx) with rnd = 32 zero bytes (deterministic variant), pure
    mode, sk from ML-DSA.KeyGen_internal(seed). FOR VECTORS ONLY: the same inputs always give the
    same signature; production signing is hedged and done by cryptography."""
    params = _dsa_params(parameter_set)
    if len(seed) != 32:
        raise ValueError(f"ML-DSA seed must be 32 bytes, not {len(seed)}")
    if len(context) > 255:
        raise ValueError("ML-DSA context must be at most 255 bytes")
    _pk, sk = fips204.keygen_internal(params, bytes(seed))
    m_prime = bytes((0, len(context))) + bytes(context) + bytes(message)  # Algorithm 2, pure mode
    return _sign_internal(params, sk, m_prime, bytes(32))


def _sign_internal(params: fips204.MlDsaParams, sk: bytes, m_prime: bytes, rnd: bytes) -> bytes:
    """FIPS 204 Algorithm 7, ML-DSA.Sign_internal(sk, M', rnd)."""
    tau, lam, gamma1, gamma2, beta, omega = _DSA_SETS[params.name]
    k, l = params.k, params.l  # noqa: E741
    rho, key, tr, s1, s2, t0 = _sk_decode(params, sk)
    s1_hat = [fips204.ntt(p) for p in s1]
    s2_hat = [fips204.ntt(p) for p in s2]
    t0_hat = [fips204.ntt(p) for p in t0]
    a_hat = fips204.matrix_a(rho, params)
    mu = hashlib.shake_256(tr + m_prime).digest(64)
    rho2 = hashlib.shake_256(key + rnd + mu).digest(64)
    w1_bits = 6 if gamma2 == (_DQ - 1) // 88 else 4
    kappa = 0
    while True:
        y = _expand_mask(rho2, kappa, l, gamma1)
        kappa += l
        y_hat = [fips204.ntt(p) for p in y]
        w = []
        for i in range(k):
            acc = [0] * 256
            for j in range(l):
                acc = [(s + a * b) % _DQ for s, a, b in zip(acc, a_hat[i][j], y_hat[j], strict=True)]
            w.append(fips204.ntt_inv(acc))
        w1 = [[_decompose(x, gamma2)[0] for x in p] for p in w]
        c_tilde = hashlib.shake_256(mu + b"".join(fips204.bit_pack(p, w1_bits) for p in w1)).digest(lam // 4)
        c_hat = fips204.ntt(_sample_in_ball(c_tilde, tau))
        cs1 = [fips204.ntt_inv(_mul_ntt(c_hat, p)) for p in s1_hat]
        cs2 = [fips204.ntt_inv(_mul_ntt(c_hat, p)) for p in s2_hat]
        z = [[(a + b) % _DQ for a, b in zip(yp, cp, strict=True)] for yp, cp in zip(y, cs1, strict=True)]
        if max(abs(_centered(x)) for p in z for x in p) >= gamma1 - beta:
            continue
        w_cs2 = [[(a - b) % _DQ for a, b in zip(wp, cp, strict=True)] for wp, cp in zip(w, cs2, strict=True)]
        if max(abs(_decompose(x, gamma2)[1]) for p in w_cs2 for x in p) >= gamma2 - beta:
            continue
        ct0 = [fips204.ntt_inv(_mul_ntt(c_hat, p)) for p in t0_hat]
        if max(abs(_centered(x)) for p in ct0 for x in p) >= gamma2:
            continue
        # MakeHint(-ct0, w - cs2 + ct0): does adding -ct0 to w - cs2 + ct0 change its high bits?
        h = [
            [int(_decompose((a + b) % _DQ, gamma2)[0] != _decompose(a, gamma2)[0]) for a, b in zip(wp, cp, strict=True)]
            for wp, cp in zip(w_cs2, ct0, strict=True)
        ]
        if sum(map(sum, h)) > omega:
            continue
        return _sig_encode(c_tilde, z, h, gamma1, omega)


# --------------------------------------------------------------------------------------------
# Deterministic random source
# --------------------------------------------------------------------------------------------


class DeterministicRandom:
    """A fixed byte stream for test vectors: call n -> SHAKE-256(label || counter)[:n].

    Usable wherever the project takes ``random_bytes`` (``Callable[[int], bytes]``): CMS IVs and
    CEKs, SCEP nonces and transaction ids, certificate serials. Call i (from 0) returns
    SHAKE-256(len(label) as 4 bytes big-endian || label || i as 8 bytes big-endian), n bytes, so
    the output depends only on the label and the order of calls. FOR VECTORS ONLY: a label is
    no secret, and everything drawn from it is predictable by design."""

    def __init__(self, label: bytes) -> None:
        if not isinstance(label, (bytes, bytearray)):
            raise TypeError("label must be bytes")
        self._prefix = len(label).to_bytes(4, "big") + bytes(label)
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("n must not be negative")
        out = hashlib.shake_256(self._prefix + self._counter.to_bytes(8, "big")).digest(n)
        self._counter += 1
        return out
