#!/usr/bin/env bash
# Server capacity side by side, without the client's crypto in the way: micromdm's scepserver
# and `pqscep serve`, each sent the same kind of pre-built PKCSReqs by benchmarks/replay.py, with
# the server's own CPU per enrollment from /proc. RSA-2048 CAs, AES-256-CBC, SHA-256.
#   benchmarks/replay.sh [COUNT] [CONCURRENCY] [ROUNDS]      (defaults 1500, 8 and 1)
# Each round replays to both servers, micromdm first in odd rounds and pqscep first in even
# ones, so that the machine's drift (up to 25% within an hour here) falls on both alike. With
# more than one round, a last line gives the medians over the rounds.
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

targets=("micromdm:$mm_port:$mm_pid" "pqscep:$pq_port:$pq_pid")
lines=()
for round in $(seq "$rounds"); do
  order=("${targets[@]}")
  if (( round % 2 == 0 )); then order=("${targets[1]}" "${targets[0]}"); fi
  for target in "${order[@]}"; do
    IFS=: read -r name port pid <<<"$target"
    result=$(.venv/bin/python benchmarks/replay.py "http://127.0.0.1:$port/scep" --count "$count" \
             --concurrency "$concurrency" --challenge secret --server-pid "$pid" --json || true)
    line="{\"server\": \"$name\", \"round\": $round, \"result\": ${result:-null}}"
    echo "$line"
    lines+=("$line")
  done
done
if (( rounds > 1 )); then
  printf '%s\n' "${lines[@]}" | .venv/bin/python benchmarks/summarize_rounds.py
fi
