"""The benchmark scripts of docs/benchmarks.md still run and report sane numbers (tiny
counts, so no timing is judged here: that is what the benchmarks themselves are for).

The shell drivers (compare.sh, replay.sh, pq.sh, pq_split.sh, pq_perf.sh, kem_pop.sh,
client_send.sh) only start servers around these scripts and `pqscep bench`;
benchmarks/instructions.py needs valgrind and about 90 s, and is not run here. cpu_by_code.py
needs perf (Debian: linux-perf, which scripts/install-test-deps.sh installs) and root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from peers import unavailable
from server_proc import ServerProcess, init_data

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_json(script: str, *args: str) -> dict:
    env = dict(os.environ, PQSCEP_CA_PASSPHRASE="benchmark-test-passphrase")
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args, "--json"], capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pkioperation_splits_crypto_from_the_rest(db_url):
    result = run_json("pkioperation.py", "--count", "5", "--database", db_url)
    assert result["count"] == 5
    assert result["crypto_cpu_ms_per_pkioperation"] > 0
    assert result["non_crypto_cpu_ms_per_pkioperation"] > 0
    assert result["storage_cpu_ms_per_pkioperation"] > 0
    assert result["ms_per_pkioperation"] >= result["crypto_ms_per_pkioperation"]


@pytest.mark.parametrize("profile", ["classic", "pq"])
def test_pkioperation_phases_add_up_to_the_whole(profile):
    result = run_json("pkioperation.py", "--count", "5", "--phases", "--profile", profile)
    assert result["profile"] == profile
    phases = result["phases"]
    assert list(phases) == ["read request", "issue certificate", "durable write", "build CertRep", "rest"]
    for split in phases.values():
        parts = split["crypto_cpu_ms"] + split["storage_cpu_ms"] + split["other_cpu_ms"]
        assert split["cpu_ms"] == pytest.approx(parts, abs=0.002)
    # Every step of a PKCSReq ran: the crypto sits where the RSA (or ML-DSA and ML-KEM) work
    # is, the storage in the write.
    assert phases["read request"]["crypto_cpu_ms"] > 0 and phases["build CertRep"]["crypto_cpu_ms"] > 0
    assert phases["issue certificate"]["crypto_cpu_ms"] > 0
    assert phases["durable write"]["storage_cpu_ms"] > 0 and phases["durable write"]["crypto_cpu_ms"] == 0
    total = sum(split["cpu_ms"] for split in phases.values())
    assert total == pytest.approx(result["cpu_ms_per_pkioperation"], abs=0.01)
    assert sum(split["crypto_cpu_ms"] for split in phases.values()) == pytest.approx(
        result["crypto_cpu_ms_per_pkioperation"], abs=0.01)


@pytest.mark.parametrize("profile", ["classic", "pq"])
def test_sqlite_floor_writes_both_ways(profile):
    result = run_json("sqlite_floor.py", "--profile", profile, "--count", "5", "--interleave", "0")
    assert result["profile"] == profile and result["count"] == 5
    for side in ("sqlite", "hotpath", "pqscep"):
        assert result[f"{side}_cpu_us_per_write"] > 0
        assert result[f"{side}_wall_us_per_write"] > 0
    assert result["pqscep_over_sqlite_cpu_us"] == pytest.approx(
        result["pqscep_cpu_us_per_write"] - result["sqlite_cpu_us_per_write"], abs=0.2)
    assert result["hotpath_over_sqlite_cpu_us"] == pytest.approx(
        result["hotpath_cpu_us_per_write"] - result["sqlite_cpu_us_per_write"], abs=0.2)


def test_cpu_by_process_finds_the_busy_server():
    # A stand-in "server" that keeps one core busy for the whole window, and a child of it
    # that does too: both count for the server's process tree.
    burn = "import time\nend = time.time() + 3\nwhile time.time() < end: pass\n"
    spawn_child = f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {burn!r}])\n"
    parent = subprocess.Popen([sys.executable, "-c", spawn_child + burn])
    try:
        result = run_json("cpu_by_process.py", "--server-pid", str(parent.pid), "--delay", "0.5", "--window", "1")
    finally:
        parent.wait(timeout=10)
    # Two busy processes: most of two cores (of one, on a one-core machine).
    assert result["cores"]["server"] > 0.6 * min(2, os.cpu_count() or 1), result
    assert result["cores"]["bench parent"] == 0 and result["cores"]["bench workers"] == 0
    assert sum(result["machine_cores"].values()) == pytest.approx(os.cpu_count(), rel=0.2)


def test_cpu_by_code_sorts_symbols_into_kinds(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import each other by name
    from cpu_by_code import kind_of, tally
    rust = "/venv/site-packages/cryptography/hazmat/bindings/_rust.abi3.so"
    assert kind_of("ossl_ml_dsa_poly_ntt_inverse", rust) == "crypto: ML-DSA and SHA-3"
    assert kind_of("__KeccakF1600", rust) == "crypto: ML-DSA and SHA-3"
    assert kind_of("scalar_inverse_ntt", rust) == "crypto: ML-KEM"
    assert kind_of("ossl_aes_gcm_encrypt_avx512", rust) == "crypto: AES and SHA-2"
    assert kind_of("ossl_method_store_cache_get", rust) == "OpenSSL bookkeeping"
    assert kind_of("cryptography_rust::declarative_asn1::decode::decode_annotated_type", rust) == \
        "ASN.1 and X.509 (Rust)"
    assert kind_of("_PyEval_EvalFrameDefault", "/usr/lib/libpython3.11.so.1.0") == "Python interpreter"
    assert kind_of("_PyEval_EvalFrameDefault", "/usr/bin/python3.11") == "Python interpreter"
    assert kind_of("tcp_rcv_established", "[kernel.kallsyms]") == "kernel"
    assert kind_of("__vdso_clock_gettime", "[vdso]") == "libc"
    assert kind_of("sqlite3VdbeExec", "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6") == "SQLite"
    lines = [
        "   700/700      7f3544f64178 _PyEval_EvalFrameDefault (/usr/lib/libpython3.11.so.1.0)",
        "   700/711      7f3543b6e10e ossl_ml_dsa_poly_ntt (/venv/_rust.abi3.so)",
        "   800/800  ffffffff82077ad4 tcp_rcv_established ([kernel.kallsyms])",
        "     0/0    ffffffff8207aaaa pv_native_safe_halt ([kernel.kallsyms])",
        "   900/900      7f3544f64178 main (/usr/bin/other)",
        "not a sample line",
    ]
    counts, total = tally(lines, server={700}, bench_workers={800})
    assert total == 5
    assert counts == {("server", "Python interpreter"): 1, ("server", "crypto: ML-DSA and SHA-3"): 1,
                      ("bench workers", "kernel"): 1, ("idle", ""): 1, ("other", ""): 1}


def test_cpu_by_code_samples_a_busy_server():
    if shutil.which("perf") is None:
        unavailable("perf is not installed (Debian: linux-perf; run scripts/install-test-deps.sh)")
    # A stand-in "server" whose Python loop keeps one core busy through the window.
    burn = "import time\nend = time.time() + 6\nwhile time.time() < end: pass\n"
    server = subprocess.Popen([sys.executable, "-c", burn])
    try:
        result = run_json("cpu_by_code.py", "--server-pid", str(server.pid), "--delay", "0.2", "--window", "1")
    finally:
        server.wait(timeout=20)
    # every core is sampled, idle or not (1,999 Hz over about a second)
    assert result["samples"] > 0.5 * 1999 * (os.cpu_count() or 1), result
    # the loop is the interpreter's own work: most of a core, whatever else the machine does
    assert result["cores"].get("server: Python interpreter", 0) > 0.5, result


def test_pq_inprocess_splits_client_from_server():
    result = run_json("pq_inprocess.py", "--count", "3")
    assert result["count"] == 3 and result["key_type"] == "ml-dsa-65"
    assert result["server_cpu_ms"] > 0 and result["client_cpu_ms"] > 0
    assert result["cpu_ms_per_enrollment"] == pytest.approx(result["server_cpu_ms"] + result["client_cpu_ms"], abs=0.01)


@pytest.mark.parametrize("pause", ["sleep", "sweep"])
def test_pq_inplace_times_signatures_and_both_modes(pause):
    result = run_json("pq_inplace.py", "--count", "4", "--pause", pause, "--sleep-ms", "1", "--sweep-mib", "2")
    signatures = result["signatures"]
    # Per enrollment: the device's pkiMessage and the CertRep; the CA's certificate.
    assert signatures["per_enrollment"] == {"signing.sign": 2, "CertificateBuilder.sign": 1}
    for name in ("in_place_sign_us", "in_place_certificate_sign_us", "tight_loop_sign_us"):
        assert signatures[name] > 0
    cold = result["cold"]
    assert cold["pause"] == pause
    for mode in ("plain", "paused"):
        assert cold[mode]["enrollments"] == 2
        assert cold[mode]["server_cpu_ms"] > 0 and cold[mode]["client_cpu_ms"] > 0
        assert cold[mode]["cpu_ms"] == pytest.approx(cold[mode]["server_cpu_ms"] + cold[mode]["client_cpu_ms"],
                                                     abs=0.01)


@pytest.mark.parametrize("profile", ["pq", "classic"])
def test_crypto_floor(profile):
    result = run_json("crypto_floor.py", "--profile", profile, "--repeat", "3")
    assert result["floor_ms_per_enrollment"] > 0
    summed = sum(count * us for count, us in result["operations_us"].values()) / 1000
    assert result["floor_ms_per_enrollment"] == pytest.approx(summed, rel=0.01)
    # the server does more than half of each enrollment's crypto, but not all of it
    assert summed / 2 < result["server_floor_ms_per_enrollment"] < summed


def static_challenge_server(tmp_path) -> ServerProcess:
    """A started `pqscep serve` as benchmarks/servers.sh runs it: the static challenge only,
    no one-time challenges."""
    data = init_data(tmp_path / "data", challenge="secret")
    config = data / "pqscep.toml"
    config.write_text(config.read_text().replace("one_time_challenges = true", "one_time_challenges = false"))
    return ServerProcess(data).start()


def test_replay_against_a_real_server(tmp_path):
    server = static_challenge_server(tmp_path)
    try:
        result = run_json("replay.py", server.url("/scep"), "--count", "12", "--concurrency", "3",
                          "--challenge", "secret", "--server-pid", str(server.proc.pid))
    finally:
        server.stop()
    assert result["errors"] == 0, result
    assert result["enrollments_per_s"] > 0
    assert result["server_cpu_ms_per_request"] > 0


def test_summarize_rounds_takes_medians_and_per_round_ratios():
    lines = [
        {"server": "micromdm", "round": 1, "result": {"enrollments_per_s": 100.0, "errors": 4, "count": 9}},
        {"server": "pqscep", "round": 1, "result": {"enrollments_per_s": 150.0, "errors": 0, "count": 9}},
        {"server": "pqscep", "round": 2, "result": {"enrollments_per_s": 300.0, "errors": 0, "count": 9}},
        {"server": "micromdm", "round": 2, "result": {"enrollments_per_s": 120.0, "errors": 2, "count": 9}},
        {"server": "micromdm", "round": 3, "result": {"enrollments_per_s": 200.0, "errors": 6, "count": 9}},
        {"server": "pqscep", "round": 3, "result": None},  # a failed run: no ratio for its round
    ]
    done = subprocess.run([sys.executable, str(BENCHMARKS / "summarize_rounds.py")], capture_output=True, text=True,
                          input="\n".join(json.dumps(line) for line in lines) + "\n", timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["summary"]
    assert summary["rounds"] == 3 and summary["ratios"] == [1.5, 2.5] and summary["median_ratio"] == 2.0
    assert summary["micromdm_median_enrollments_per_s"] == 120.0 and summary["micromdm_median_errors"] == 4
    assert summary["pqscep_median_enrollments_per_s"] == 225.0
    assert "micromdm_median_count" not in summary


def test_client_send_compares_both_transports_on_a_real_server(tmp_path):
    server = static_challenge_server(tmp_path)
    try:
        result = run_json("client_send.py", server.url("/scep"), "--count", "4", "--challenge", "secret")
    finally:
        server.stop()
    assert result["count"] == 4
    for name in ("httpx", "http_client"):
        assert 0 < result[f"{name}_cpu_ms_per_send"] <= result[f"{name}_wall_ms_per_send"] * 1.5
