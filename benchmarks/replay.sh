#!/usr/bin/env bash
# Server capacity side by side, without the client's crypto in the way: micromdm's scepserver
# and `pqscep serve`, each sent the same kind of pre-built PKCSReqs by benchmarks/replay.py, with
# the server's own CPU per enrollment from /proc. RSA-2048 CAs, AES-256-CBC, SHA-256.
#   benchmarks/replay.sh [COUNT] [CONCURRENCY]      (defaults 1500 and 8)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1500}
concurrency=${2:-8}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 150); do curl -sf "$1?operation=GetCACaps" >/dev/null && return; sleep 0.2; done; echo "no answer from $1" >&2; exit 1; }

mm_port=$(free_port)
(cd "$work" && scepserver ca -init -depot depot -keySize 2048 -organization bench >/dev/null 2>&1)
(cd "$work" && exec scepserver -depot depot -port "$mm_port" -challenge secret -allowrenew 0 >"$work/mm.log" 2>&1) &
mm_pid=$!
pids+=($mm_pid)
wait_up "http://127.0.0.1:$mm_port/scep"

pq_port=$(free_port)
.venv/bin/pqscep init --data "$work/pq" --challenge secret >/dev/null
sed -i 's/one_time_challenges = true/one_time_challenges = false/' "$work/pq/pqscep.toml"
.venv/bin/pqscep serve --data "$work/pq" --port "$pq_port" --workers "${PQSCEP_WORKERS:-2}" >"$work/pq.log" 2>&1 &
pq_pid=$!
pids+=($pq_pid)
wait_up "http://127.0.0.1:$pq_port/scep"

for target in "micromdm:$mm_port:$mm_pid" "pqscep:$pq_port:$pq_pid"; do
  IFS=: read -r name port pid <<<"$target"
  result=$(.venv/bin/python benchmarks/replay.py "http://127.0.0.1:$port/scep" --count "$count" \
           --concurrency "$concurrency" --challenge secret --server-pid "$pid" --json || true)
  echo "{\"server\": \"$name\", \"result\": $result}"
done
