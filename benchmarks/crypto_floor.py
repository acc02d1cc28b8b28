"""The crypto floor of one enrollment: the summed cost of the primitive operations that one
PKCSReq round trip needs, client and server together, each timed alone on this machine.

    python benchmarks/crypto_floor.py [--profile pq|classic] [--json]

pq: an ML-DSA-65 device at an ML-DSA-65 CA with an ML-KEM-768 recipient, a fresh ML-KEM-768
responseKey, AES-256-GCM (what `pqscep bench --key-type ml-dsa-65` against /scep/pq does).
classic: an RSA-2048 device at an RSA-2048 CA, AES-256-CBC, SHA-256.
The bench prepares each device's key, CSR and self-signed certificate before its clock starts,
so those are left out here too. `floor_enrollments_per_s` is what the machine's cores could do
if they did nothing but these operations; `server_floor_ms_per_enrollment` is the server's part.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap


def timed(function, repeat: int) -> float:
    """Seconds per call, best of three runs of `repeat` calls."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            function()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


# ML-DSA signing repeats its rejection loop a random number of times (FIPS 204 section 6.2; about
# five rounds on average for ML-DSA-65), so one signature costs anywhere from a third to twice the
# mean (measured over 3,000: p10 321 us, p90 1,808 us, mean 932 us). The mean of a run of 200
# then varies by ~5% from run to run, and the best of three such runs leans towards a lucky
# draw (by ~4% if nothing else varied). Five times the calls per run halve that spread; four
# alternating pairs measured 887-952 us with 200 calls and 917-948 us with 1,000
# (docs/benchmarks.md, section 3, Round 8). Every other operation here costs the same each time.
SIGN_RUNS_LONGER = 5


def pq_operations(repeat: int) -> dict[str, tuple[int, float]]:
    """{operation: (how many per enrollment, seconds each)}."""
    signer = mldsa.MLDSA65PrivateKey.generate()
    public = signer.public_key()
    message = os.urandom(400)  # DER of signed attributes
    signature = signer.sign(message)
    kem = mlkem.MLKEM768PrivateKey.generate()
    shared, ciphertext = kem.public_key().encapsulate()
    cek, nonce, content = os.urandom(32), os.urandom(12), os.urandom(4000)
    sealed = AESGCM(cek).encrypt(nonce, content, None)
    kek = os.urandom(32)
    wrapped = aes_key_wrap(kek, cek)

    def hkdf():
        HKDF(hashes.SHA256(), 32, None, b"x" * 40).derive(shared)

    def digest():
        h = hashes.Hash(hashes.SHA512())
        h.update(content)
        h.finalize()

    return {
        # client: responseKey, envelope to the CA, signature; reply: verify, decapsulate, open
        # server: verify request and CSR, decapsulate, open; sign certificate, envelope to the
        # responseKey, sign the CertRep
        "ML-KEM-768 keygen": (1, timed(mlkem.MLKEM768PrivateKey.generate, repeat)),
        "ML-KEM-768 encapsulate": (2, timed(kem.public_key().encapsulate, repeat)),
        "ML-KEM-768 decapsulate": (2, timed(lambda: kem.decapsulate(ciphertext), repeat)),
        "ML-DSA-65 sign": (3, timed(lambda: signer.sign(message), repeat * SIGN_RUNS_LONGER)),
        "ML-DSA-65 verify": (3, timed(lambda: public.verify(signature, message), repeat)),
        "HKDF-SHA256": (4, timed(hkdf, repeat)),
        "AES key wrap/unwrap": (4, timed(lambda: aes_key_unwrap(kek, wrapped), repeat)),
        "AES-256-GCM 4 KB": (4, timed(lambda: AESGCM(cek).decrypt(nonce, sealed, None), repeat)),
        "SHA-512 4 KB": (4, timed(digest, repeat)),
    }


def classic_operations(repeat: int) -> dict[str, tuple[int, float]]:
    ca = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = ca.public_key()
    message = os.urandom(400)
    signature = ca.sign(message, padding.PKCS1v15(), hashes.SHA256())
    cek = os.urandom(32)
    encrypted = public.encrypt(cek, padding.PKCS1v15())
    content = os.urandom(4000)
    iv = os.urandom(16)

    def aes_cbc():
        enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        enc.update(content)
        enc.finalize()

    return {
        # client: sign the request, encrypt the CEK; reply: verify, decrypt the CEK
        # server: verify request and CSR, decrypt the CEK; sign certificate and CertRep, encrypt
        "RSA-2048 sign": (3, timed(lambda: ca.sign(message, padding.PKCS1v15(), hashes.SHA256()), repeat)),
        "RSA-2048 decrypt": (2, timed(lambda: ca.decrypt(encrypted, padding.PKCS1v15()), repeat)),
        "RSA-2048 verify": (3, timed(lambda: public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256()),
                                     repeat)),
        "RSA-2048 encrypt": (2, timed(lambda: public.encrypt(cek, padding.PKCS1v15()), repeat)),
        "AES-256-CBC 4 KB": (4, timed(aes_cbc, repeat)),
    }


# How many of each operation the server does (the rest is the client's), from the comments
# above: the server's own floor, to set beside its time alone (`pqscep bench --timed round-trip`
# leaves the client's crypto outside the clock; benchmarks/pq_perf.sh).
SERVER_COUNTS = {
    "ML-KEM-768 keygen": 0, "ML-KEM-768 encapsulate": 1, "ML-KEM-768 decapsulate": 1, "ML-DSA-65 sign": 2,
    "ML-DSA-65 verify": 2, "HKDF-SHA256": 2, "AES key wrap/unwrap": 2, "AES-256-GCM 4 KB": 2, "SHA-512 4 KB": 2,
    "RSA-2048 sign": 2, "RSA-2048 decrypt": 1, "RSA-2048 verify": 2, "RSA-2048 encrypt": 1, "AES-256-CBC 4 KB": 2,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["pq", "classic"], default="pq")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    operations = (pq_operations if args.profile == "pq" else classic_operations)(args.repeat)
    floor = sum(count * seconds for count, seconds in operations.values())
    server_floor = sum(SERVER_COUNTS[name] * seconds for name, (_, seconds) in operations.items())
    cores = os.cpu_count() or 1
    result = {
        "profile": args.profile,
        "floor_ms_per_enrollment": round(floor * 1000, 3),
        "cores": cores,
        "floor_enrollments_per_s": round(cores / floor, 1),
        "server_floor_ms_per_enrollment": round(server_floor * 1000, 3),
        "operations_us": {name: [count, round(seconds * 1e6, 1)] for name, (count, seconds) in operations.items()},
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, (count, seconds) in operations.items():
            print(f"{count} x {name:26} {seconds * 1e6:9.1f} us")
        print(f"floor: {floor * 1000:.3f} ms per enrollment -> {cores / floor:.0f} enrollments/s on {cores} cores")
        print(f"of which the server's: {server_floor * 1000:.3f} ms")


if __name__ == "__main__":
    main()
