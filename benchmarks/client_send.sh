#!/usr/bin/env bash
# Client CPU per PKIOperation send, httpx against http.client, to one `pqscep serve`
# (default profile, static challenge): benchmarks/client_send.py, RUNS times.
#   benchmarks/client_send.sh [COUNT] [RUNS]      (defaults 300 and 2)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-300}
runs=${2:-2}
source benchmarks/servers.sh
init_pqscep "$work/pq"
static_challenge_only "$work/pq"
start_pqscep "$work/pq"
for _ in $(seq "$runs"); do
  .venv/bin/python benchmarks/client_send.py "http://127.0.0.1:$pq_port/scep" --count "$count" --json
done
