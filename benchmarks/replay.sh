#!/usr/bin/env bash
# Server capacity side by side, without the client's crypto in the way: micromdm's scepserver
# and `pqscep serve`, each sent the same kind of pre-built PKCSReqs by benchmarks/replay.py, with
# the server's own CPU per enrollment from /proc. RSA-2048 CAs, AES-256-CBC, SHA-256.
#   benchmarks/replay.sh [COUNT] [CONCURRENCY]      (defaults 1500 and 8)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1500}
concurrency=${2:-8}
source benchmarks/servers.sh
start_micromdm
init_pqscep "$work/pq"
static_challenge_only "$work/pq"
start_pqscep "$work/pq"

for target in "micromdm:$mm_port:$mm_pid" "pqscep:$pq_port:$pq_pid"; do
  IFS=: read -r name port pid <<<"$target"
  result=$(.venv/bin/python benchmarks/replay.py "http://127.0.0.1:$port/scep" --count "$count" \
           --concurrency "$concurrency" --challenge secret --server-pid "$pid" --json || true)
  echo "{\"server\": \"$name\", \"result\": $result}"
done
