"""What code the cores run during a benchmark: `perf record -a` over a window, each sample put
in a process group (the server's process tree, the `pqscep bench` workers, idle, other) and a
kind of code (the crypto of the floor, the Python interpreter, the Rust and OpenSSL glue
around the crypto, libc, SQLite, the kernel).

    python benchmarks/cpu_by_code.py --server-pid PID [--delay 2] [--window 6] [--json]

Waits `--delay` seconds and then until the server is busy (the bench has made its devices and
its clock runs: cpu_by_process.wait_until_busy), samples every core at `--frequency` Hz for
`--window` seconds, and prints the cores each (group, kind) used on average; divided by the
enrollments/s the bench reports for the same run, that is its time per enrollment
(benchmarks/pq_perf.sh does the division). benchmarks/cpu_by_process.py says which processes
use the cores; this says what they do with them, in time rather than in instructions
(benchmarks/instructions.py), while client and server share the machine.
Needs `perf` (Debian: linux-perf) and the right to sample every CPU (root, or
kernel.perf_event_paranoid <= 0). Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from cpu_by_process import processes, tree, wait_until_busy  # this folder

# The crypto that benchmarks/crypto_floor.py counts, by the symbols that do it in OpenSSL
# (linked into cryptography's _rust.abi3.so, or the system libcrypto).
CRYPTO_KINDS = (
    ("ML-DSA and SHA-3", re.compile(r"ml_dsa|Keccak|SHA3|sha3|shake|rej_|coeff_from|poly_|sample_in_ball")),
    ("ML-KEM", re.compile(r"ml_kem|mlkem|scalar_|encrypt_cpa|decrypt_cpa|^decap|^encap|matrix_expand|"
                          r"encode_pubkey|gencand|cbd")),
    ("AES and SHA-2", re.compile(r"aes|gcm|sha256|sha512|sha1_|hmac|hkdf", re.IGNORECASE)),
)
GLUE_KINDS = (
    # OpenSSL 3's bookkeeping around each operation: fetching algorithms by name, contexts,
    # parameters, the error queue, the DRBG
    ("OpenSSL bookkeeping", re.compile(r"^ossl_|^OSSL_|^EVP_|^evp_|^CRYPTO_|^OPENSSL_|^OBJ_|^ERR_|^BIO|getrn|"
                                       r"strcasecmp|_cmp_BSEARCH|WPACKET|PACKET|drbg|PARAM|param|lh_|LH_")),
    ("ASN.1 and X.509 (Rust)", re.compile(r"asn1|x509|declarative|Asn1|Tlv|ObjectIdentifier|der::")),
    ("Rust-Python calls (pyo3)", re.compile(r"pyo3|Py[A-Z_]")),
)


def kind_of(symbol: str, dso: str) -> str:
    """The kind of code a sample ran: by its shared object, and inside the one that holds the
    crypto (cryptography's Rust module, which links OpenSSL in), by its symbol."""
    name = dso.rsplit("/", 1)[-1]
    if name.startswith("[kernel"):
        return "kernel"
    if name.startswith("libpython") or re.fullmatch(r"python3?(\.\d+)?", name):  # shared or static builds
        return "Python interpreter"
    if name.startswith(("libc.so", "libm.so", "ld-linux")) or name == "[vdso]":  # vdso: clock reads
        return "libc"
    if "sqlite" in name:
        return "SQLite"
    if name.startswith("_rust") or name.startswith("libcrypto") or name.startswith("libssl"):
        for kind, pattern in CRYPTO_KINDS:
            if pattern.search(symbol):
                return f"crypto: {kind}"
        for kind, pattern in GLUE_KINDS:
            if pattern.search(symbol):
                return kind
        return "other Rust and OpenSSL"
    if name.endswith(".so") and ".cpython-" in name:  # uvloop, httptools, _sqlite3, _socket...
        return "other Python extensions"
    return "other"


# perf script -F pid,tid,ip,sym,dso lines: "  1234/1240     7f3544f64178 symbol name (/path/to/object.so)"
SAMPLE = re.compile(r"^\s*(\d+)/\s*(\d+)\s+[0-9a-f]+\s+(.*?)\s*\(([^()]*)\)\s*$")


def tally(lines, server: set[int], bench_workers: set[int]) -> tuple[Counter, int]:
    """Samples per (group, kind) and their total, from `perf script` lines."""
    counts: Counter = Counter()
    total = 0
    for line in lines:
        match = SAMPLE.match(line)
        if not match:
            continue
        pid, symbol, dso = int(match.group(1)), match.group(3), match.group(4)
        total += 1
        if pid == 0:
            counts["idle", ""] += 1
        elif pid in server:
            counts["server", kind_of(symbol, dso)] += 1
        elif pid in bench_workers:
            counts["bench workers", kind_of(symbol, dso)] += 1
        else:
            counts["other", ""] += 1
    return counts, total


def record(window: float, frequency: int, output: Path) -> None:
    """`perf record -a` for `window` seconds into `output`."""
    perf = subprocess.Popen(["perf", "record", "-a", "-F", str(frequency), "-o", str(output), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(window)
    perf.send_signal(signal.SIGINT)
    _, errors = perf.communicate(timeout=60)
    # perf stops on SIGINT by raising it again once perf.data is complete
    if perf.returncode not in (0, -signal.SIGINT) or not output.exists():
        raise SystemExit(f"cpu_by_code: perf record failed: {errors.decode(errors='replace').strip()[-400:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument("--frequency", type=int, default=1999, help="samples per second and core")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    time.sleep(args.delay)
    wait_until_busy(args.server_pid)
    time.sleep(1.0)  # past the first enrollments' imports and first connections
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        record(args.window, args.frequency, data)
        # The groups are read once the window is over: the server's and the bench's processes
        # live through the whole run, and perf names each sample's process by its pid.
        now = processes()
        server = tree(now, {args.server_pid})
        bench = tree(now, {pid for pid, (_, command, _) in now.items() if "pqscep bench" in command})
        bench_workers = bench - {pid for pid in bench if "pqscep bench" in now[pid][1]}
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "pid,tid,ip,sym,dso"],
                                capture_output=True, text=True, errors="replace", check=True)
    counts, total = tally(script.stdout.splitlines(), server, bench_workers)
    if not total:
        raise SystemExit("cpu_by_code: perf recorded no samples")
    cores = os.cpu_count() or 1
    shares = {f"{group}: {kind}" if kind else group: round(cores * n / total, 4)
              for (group, kind), n in sorted(counts.items(), key=lambda item: (item[0][0], -item[1]))}
    result = {"samples": total, "cores": shares}
    if args.json:
        print(json.dumps(result))
    else:
        for name, used in shares.items():
            print(f"{name:48} {used:6.3f} cores")


if __name__ == "__main__":
    main()
