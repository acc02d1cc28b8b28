#!/usr/bin/env bash
# Side-by-side enrollment throughput: micromdm's scepserver (Debian package `scep`) and
# `pqscep serve`, on this machine, in one run, with the same client (`pqscep bench`):
# RSA-2048 CAs, AES-256-CBC, SHA-256, fresh RSA-2048 device keys, POST.
#   benchmarks/compare.sh [COUNT] [CONCURRENCY] [ROUNDS]      (defaults 400, 8 and 1)
# Prints one JSON line per server and round. Each round benches both servers, micromdm first
# in odd rounds and pqscep first in even ones, so that the machine's drift falls on both
# alike; with more than one round a last line gives the medians (benchmarks/summarize_rounds.py).
# Needs scripts/install-test-deps.sh to have run.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-400}
concurrency=${2:-8}
rounds=${3:-1}
source benchmarks/servers.sh
start_micromdm
# pqscep serve with its default profile (RSA-2048 CA, SQLite), static challenge only.
init_pqscep "$work/pq"
static_challenge_only "$work/pq"
start_pqscep "$work/pq"

bench_one() {  # NAME PORT PID
  .venv/bin/pqscep bench "http://127.0.0.1:$2/scep" --count "$count" --concurrency "$concurrency" \
    --challenge secret --cipher aes256-cbc --digest sha256 --timed "${TIMED:-round-trip}" --json 2>/dev/null
}
run_rounds "$rounds" bench_one
