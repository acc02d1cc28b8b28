#!/usr/bin/env bash
# Side-by-side enrollment throughput: micromdm's scepserver (Debian package `scep`) and
# `pqscep serve`, on this machine, in one run, with the same client (`pqscep bench`):
# RSA-2048 CAs, AES-256-CBC, SHA-256, fresh RSA-2048 device keys, POST.
#   benchmarks/compare.sh [COUNT] [CONCURRENCY]      (defaults 400 and 8)
# Prints one JSON line per server. Needs scripts/install-test-deps.sh to have run.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-400}
concurrency=${2:-8}
source benchmarks/servers.sh
start_micromdm
# pqscep serve with its default profile (RSA-2048 CA, SQLite), static challenge only.
init_pqscep "$work/pq"
static_challenge_only "$work/pq"
start_pqscep "$work/pq"

for target in "micromdm:$mm_port" "pqscep:$pq_port"; do
  name=${target%%:*}; port=${target##*:}
  result=$(.venv/bin/pqscep bench "http://127.0.0.1:$port/scep" --count "$count" --concurrency "$concurrency" \
           --challenge secret --cipher aes256-cbc --digest sha256 --timed "${TIMED:-round-trip}" --json 2>/dev/null || true)
  echo "{\"server\": \"$name\", \"result\": $result}"
done
