"""Instructions per PKIOperation, counted by valgrind's callgrind: a deterministic measure for
comparing two versions of the server code, where timings on this virtual machine drift by up
to 25% within an hour.

    python benchmarks/instructions.py [--src DIR ...] [--count 60] [--profile classic|pq]

For each `--src` (a checkout's `src` folder; default: this one) it runs the same PKCSReqs
(classic: RSA-2048 CA and devices, AES-256-CBC, SHA-256; pq: the `/scep/pq` requests of
benchmarks/pkioperation.py --profile pq, ML-DSA-65 devices with ML-KEM-768 envelopes and
AES-256-GCM; prepared once, outside valgrind) through
`ScepService.pki_operation` on a fresh copy of one SQLite data folder, under callgrind, once
with 0 and once with COUNT requests after 5 warm-up ones. The difference, divided by COUNT, is
the user-space instructions of one PKIOperation, split by where they run: OpenSSL (the
cryptography, statically linked into cryptography's Rust module), the Python interpreter,
SQLite, libc and the rest. Kernel work (the fsync) is not counted. Needs valgrind (Debian
package `valgrind`); about 90 s per `--src` (pq: about two minutes).

Instructions are not time: the RSA code retires several times more instructions per
nanosecond than the interpreter does. Compare the same column across versions, not columns.
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Run under valgrind: `run DATA BODIES N PROFILE`. Imports pqscep from PYTHONPATH (the --src folder).
_RUNNER = """
import os, pickle, shutil, sys
from pathlib import Path
from pqscep.service.config import load_config
from pqscep.service.scep import ScepService
from pqscep.service.setup import load_profiles
from pqscep.storage.db import open_store
data, bodies, n = Path(sys.argv[1]), pickle.loads(Path(sys.argv[2]).read_bytes()), int(sys.argv[3])
profile_name = sys.argv[4]
work = data.with_name("run")
shutil.rmtree(work, ignore_errors=True)
shutil.copytree(data, work)
store = open_store(load_config(work).database_url)
service = ScepService(load_profiles(load_config(work)), store)
profile = service.profiles[profile_name]
for body in bodies[: 5 + n]:
    assert service.pki_operation(profile, body, "127.0.0.1").outcome == "success"
store.close()
"""

_OPENSSL = re.compile(
    r"(^|[^a-z])(bn|BN|rsa|RSA|sha|SHA|aes|AES|EVP|evp|ossl|OSSL|OPENSSL|CRYPTO|ERR|OBJ|ASN1|asn1|EC|ec|"
    r"HMAC|hmac|BIO|bio|lh|sk|x86_64|keccak|gcm|ghash|mont|rsaz|ecp|provider|PROV|prov)_"
    r"|rsaz_|bn_mul|bn_sqr|sha256_block|sha512_block|bn2bin|bin2bn|_mod_exp"
    # ML-DSA and ML-KEM inside OpenSSL: SHA-3/SHAKE and the lattice arithmetic.
    r"|Keccak|KECCAK|SHA3_|ml_dsa|ml_kem|mlkem|scalar_|poly_|matrix_|vector_|encrypt_cpa|decrypt_cpa"
)


def _classify(entry: str) -> str:
    function = entry.split(":")[-1].split(" [")[0]
    obj = entry.rsplit("[", 1)[-1] if "[" in entry else ""
    if _OPENSSL.search(function):
        return "openssl"
    if "libpython" in obj or "/bin/python" in obj:
        return "python"
    if "sqlite" in obj:
        return "sqlite"
    if "libc.so" in obj:
        return "libc"
    return "other"


def _exclusive(out_file: Path) -> collections.Counter:
    listing = subprocess.run(["callgrind_annotate", "--threshold=100", str(out_file)],
                             capture_output=True, text=True, check=True).stdout
    counts: collections.Counter = collections.Counter()
    for line in listing.splitlines():
        match = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)", line)
        if match and "PROGRAM TOTALS" not in line:
            counts[match.group(2).strip()] += int(match.group(1).replace(",", ""))
    return counts


def measure(src: str, data: Path, bodies: Path, count: int, tmp: Path, profile: str) -> dict[str, float]:
    runner = tmp / "runner.py"
    runner.write_text(_RUNNER)
    env = dict(os.environ, PYTHONPATH=src)
    totals = []
    for n in (0, count):
        out = tmp / f"callgrind.{n}"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                        str(runner), str(data), str(bodies), str(n), profile],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        totals.append(_exclusive(out))
    by_class: collections.Counter = collections.Counter()
    for entry, value in totals[1].items():
        by_class[_classify(entry)] += value - totals[0].get(entry, 0)
    result = {name: by_class[name] / count / 1e6 for name in ("openssl", "python", "sqlite", "libc", "other")}
    result["not_openssl"] = sum(v for k, v in result.items() if k != "openssl")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", help="a pqscep src folder (repeat to compare)")
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--profile", choices=["classic", "pq"], default="classic")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        sys.exit("valgrind is not installed (Debian package valgrind)")
    sources = args.src or [str(HERE.parent / "src")]
    sys.path.insert(0, str(HERE))
    import pkioperation

    from pqscep.service.scep import ScepService
    from pqscep.service.setup import init_data_dir, load_profiles
    from pqscep.storage.db import open_store

    os.environ.setdefault("PQSCEP_CA_PASSPHRASE", "benchmark-passphrase")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        config = init_data_dir(tmp / "data", challenge="secret")
        store = open_store(config.database_url)
        service = ScepService(load_profiles(config), store)
        if args.profile == "pq":
            bodies = pkioperation.build_pq_requests(service, service.profiles["pq"], args.count + 5)
        else:
            bodies = pkioperation.build_requests(service.profiles["default"], args.count + 5)
        store.close()
        (tmp / "bodies").write_bytes(pickle.dumps(bodies))
        print(f"{'Mi instructions per PKIOperation':40} {'openssl':>8} {'python':>8} {'sqlite':>8} {'libc':>8} "
              f"{'other':>8} {'not openssl':>12}")
        profile = "pq" if args.profile == "pq" else "default"
        for src in sources:
            r = measure(src, tmp / "data", tmp / "bodies", args.count, tmp, profile)
            print(f"{src[-40:]:40} {r['openssl']:8.3f} {r['python']:8.3f} {r['sqlite']:8.3f} {r['libc']:8.3f} "
                  f"{r['other']:8.3f} {r['not_openssl']:12.3f}")


if __name__ == "__main__":
    main()
