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
source benchmarks/servers.sh
init_pqscep "$work/pq"
static_challenge_only "$work/pq"
start_pqscep "$work/pq"
for key_type in ml-dsa-65 ml-dsa-44 ec-p256 rsa-2048; do
  result=$(.venv/bin/pqscep bench "http://127.0.0.1:$pq_port/scep/pq" --count "$count" --concurrency "$concurrency" \
           --challenge secret --key-type "$key_type" --timed enrollment --json 2>/dev/null || true)
  echo "{\"profile\": \"pq\", \"key_type\": \"$key_type\", \"result\": $result}"
done
echo "{\"crypto_floor\": $(.venv/bin/python benchmarks/crypto_floor.py --profile pq --json)}"
