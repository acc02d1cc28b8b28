#!/usr/bin/env bash
# Where the CPU of a post-quantum enrollment over HTTP goes: `pqscep bench --key-type KEY_TYPE
# --timed enrollment` against `pqscep serve` (/scep/pq, as benchmarks/pq.sh runs it), with
# benchmarks/cpu_by_process.py reading the cores of the server, the bench and the rest over a
# window inside the timed part; each group's cores divided by the enrollments/s is its CPU per
# enrollment, to set beside benchmarks/pq_inprocess.py (the same work with no HTTP) and the
# crypto floor.
#   benchmarks/pq_split.sh [COUNT] [CONCURRENCY] [DELAY] [WINDOW] [KEY_TYPE]
#   (defaults 8000 4 2 6 ml-dsa-65: the window starts DELAY seconds in and once the server is
#   busy, i.e. after the bench made its devices (~9 s for 8,000 ML-DSA ones on two cores),
#   and 8,000 enrollments outlast it even in a fast hour, 350/s; a window that the bench did
#   not fill is refused, not printed as a split)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-8000}
concurrency=${2:-4}
delay=${3:-2}
window=${4:-6}
key_type=${5:-ml-dsa-65}
source benchmarks/servers.sh
init_pqscep "$work/pq"
static_challenge_only "$work/pq"
start_pqscep "$work/pq"
.venv/bin/python benchmarks/cpu_by_process.py --server-pid "$pq_pid" --delay "$delay" --window "$window" --json \
  >"$work/split.json" &
sampler=$!
bench=$(.venv/bin/pqscep bench "http://127.0.0.1:$pq_port/scep/pq" --count "$count" --concurrency "$concurrency" \
        --challenge secret --key-type "$key_type" --timed enrollment --json 2>/dev/null || true)
wait "$sampler"
BENCH="$bench" .venv/bin/python - "$work/split.json" <<'EOF'
import json, os, sys
bench = json.loads(os.environ["BENCH"] or "null")
split = json.load(open(sys.argv[1]))
rate = bench and bench.get("enrollments_per_s")
if rate:
    split["cpu_ms_per_enrollment"] = {name: round(1000 * cores / rate, 3) for name, cores in split["cores"].items()}
print(json.dumps({"bench": bench, "split": split}))
# A bench that ended (or had not started) inside the window leaves its workers near zero there:
# the per-enrollment split would be wrong, so say so and fail.
if split["cores"].get("bench workers", 0) < 0.1:
    sys.exit("pq_split: the bench workers were idle in the window (the bench ended before it, or "
             "had not started): raise COUNT or lower DELAY")
EOF
