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
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 150); do curl -sf "$1?operation=GetCACaps" >/dev/null && return; sleep 0.2; done; echo "no answer from $1" >&2; exit 1; }

# micromdm scepserver 2.1.0 with an RSA-2048 CA.
mm_port=$(free_port)
(cd "$work" && scepserver ca -init -depot depot -keySize 2048 -organization bench >/dev/null 2>&1)
(cd "$work" && exec scepserver -depot depot -port "$mm_port" -challenge secret -allowrenew 0 >"$work/mm.log" 2>&1) &
pids+=($!)
wait_up "http://127.0.0.1:$mm_port/scep"

# pqscep serve with its default profile (RSA-2048 CA, SQLite), static challenge only.
pq_port=$(free_port)
.venv/bin/pqscep init --data "$work/pq" --challenge secret >/dev/null
sed -i 's/one_time_challenges = true/one_time_challenges = false/' "$work/pq/pqscep.toml"
.venv/bin/pqscep serve --data "$work/pq" --port "$pq_port" --workers "${PQSCEP_WORKERS:-2}" >"$work/pq.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$pq_port/scep"

for target in "micromdm:$mm_port" "pqscep:$pq_port"; do
  name=${target%%:*}; port=${target##*:}
  result=$(.venv/bin/pqscep bench "http://127.0.0.1:$port/scep" --count "$count" --concurrency "$concurrency" \
           --challenge secret --cipher aes256-cbc --digest sha256 --timed "${TIMED:-round-trip}" --json 2>/dev/null || true)
  echo "{\"server\": \"$name\", \"result\": $result}"
done
