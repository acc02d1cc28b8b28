#!/usr/bin/env bash
# Post-quantum enrollments/s next to the crypto floor, measured in the same run:
# `pqscep serve` (default config: /scep/pq is an ML-DSA-65 CA with an ML-KEM-768 recipient and
# AES-GCM), `pqscep bench --key-type ml-dsa-65 --timed enrollment` against it (all of the
# device's work is timed, as the floor counts the client's operations too), and
# benchmarks/crypto_floor.py.
#   benchmarks/pq.sh [COUNT] [CONCURRENCY]      (defaults 400 and 8)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-400}
concurrency=${2:-8}
work=$(mktemp -d)
server=
cleanup() { [[ -n $server ]] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/pqscep init --data "$work/pq" --challenge secret >/dev/null
sed -i 's/one_time_challenges = true/one_time_challenges = false/' "$work/pq/pqscep.toml"
.venv/bin/pqscep serve --data "$work/pq" --port "$port" --workers "${PQSCEP_WORKERS:-2}" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 150); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
for key_type in ml-dsa-65 ml-dsa-44 ec-p256 rsa-2048; do
  result=$(.venv/bin/pqscep bench "http://127.0.0.1:$port/scep/pq" --count "$count" --concurrency "$concurrency" \
           --challenge secret --key-type "$key_type" --timed enrollment --json 2>/dev/null || true)
  echo "{\"profile\": \"pq\", \"key_type\": \"$key_type\", \"result\": $result}"
done
echo "{\"crypto_floor\": $(.venv/bin/python benchmarks/crypto_floor.py --profile pq --json)}"
