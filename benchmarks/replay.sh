#!/usr/bin/env bash
# Server capacity side by side, without the client's crypto in the way: micromdm's scepserver
# and `pqscep serve`, each sent the same kind of pre-built PKCSReqs by benchmarks/replay.py, with
# the server's own CPU per enrollment from /proc. RSA-2048 CAs, AES-256-CBC, SHA-256.
#   benchmarks/replay.sh [COUNT] [CONCURRENCY] [ROUNDS]      (defaults 1500, 8 and 1)
# Each round replays to both servers in alternating order, as run_rounds in servers.sh says;
# with more than one round, a last line gives the medians over the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1500}
concurrency=${2:-8}
rounds=${3:-1}
source benchmarks/servers.sh
start_micromdm
init_pqscep "$work/pq"
static_challenge_only "$work/pq"
start_pqscep "$work/pq"

replay_one() {  # NAME PORT PID
  .venv/bin/python benchmarks/replay.py "http://127.0.0.1:$2/scep" --count "$count" \
    --concurrency "$concurrency" --challenge secret --server-pid "$3" --json
}
run_rounds "$rounds" replay_one
