#!/usr/bin/env bash
# Where the time of a post-quantum enrollment over HTTP goes, by kind of code: `pqscep bench
# --key-type KEY_TYPE --timed enrollment` against `pqscep serve` (/scep/pq, as benchmarks/pq.sh
# runs it), sampled by benchmarks/cpu_by_code.py (perf record -a) over a window inside the timed
# part, next to the crypto floor measured right after (benchmarks/crypto_floor.py). Each
# (group, kind)'s cores divided by the enrollments/s is its time per enrollment; the crypto
# rows set beside the floor show what the crypto costs where it runs, the rest what it does
# not need. Needs perf and root (see cpu_by_code.py).
# `server_ms` against `server_floor_ms` is the server's own time against its own share of the
# floor, whichever process the client's work ran in.
#   benchmarks/pq_perf.sh [COUNT] [CONCURRENCY] [DELAY] [WINDOW] [KEY_TYPE] [TIMED]
#   (defaults 4000 4 2 6 ml-dsa-65 enrollment: the window starts DELAY seconds in and once the
#   server is busy, after the bench made its devices; 4,000 enrollments outlast it even at
#   350/s. TIMED round-trip builds the requests before the clock and checks the replies
#   after it, so the window holds the server and the bench's HTTP only.)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-4000}
concurrency=${2:-4}
delay=${3:-2}
window=${4:-6}
key_type=${5:-ml-dsa-65}
timed=${6:-enrollment}
source benchmarks/servers.sh
init_pqscep "$work/pq"
static_challenge_only "$work/pq"
start_pqscep "$work/pq"
.venv/bin/python benchmarks/cpu_by_code.py --server-pid "$pq_pid" --delay "$delay" --window "$window" --json \
  >"$work/split.json" &
sampler=$!
bench=$(.venv/bin/pqscep bench "http://127.0.0.1:$pq_port/scep/pq" --count "$count" --concurrency "$concurrency" \
        --challenge secret --key-type "$key_type" --timed "$timed" --json 2>/dev/null || true)
wait "$sampler"
.venv/bin/python benchmarks/crypto_floor.py --profile pq --json >"$work/floor.json"
BENCH="$bench" TIMED="$timed" .venv/bin/python - "$work/split.json" "$work/floor.json" <<'PY'
import json, os, sys
bench = json.loads(os.environ["BENCH"] or "null")
split, floor = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
timed_whole = os.environ["TIMED"] == "enrollment"
rate = bench and bench.get("enrollments_per_s")
if not rate:
    sys.exit(f"pq_perf: the bench failed: {bench}")
def cores(group):
    return sum(v for name, v in split["cores"].items() if name.startswith(group))
# A bench that ended (or had not started) inside the window leaves the server (and, timing
# whole enrollments, its own workers) near zero there: the per-enrollment split would be
# wrong, so say so and fail.
if cores("server") < 0.3 or (timed_whole and cores("bench workers") < 0.1):
    sys.exit("pq_perf: the bench was not running through the window (it ended before it, or had "
             "not started): raise COUNT or lower DELAY")
ms = {name: round(1000 * used / rate, 3) for name, used in split["cores"].items()}
crypto = sum(v for name, v in ms.items() if ": crypto: " in name)
server = sum(v for name, v in ms.items() if name.startswith("server: "))
print(json.dumps({
    "bench": bench,
    "floor_ms": floor["floor_ms_per_enrollment"],
    # the floor counts the client's operations too: a share only if the clock covered them
    "share_of_floor": round(rate / floor["floor_enrollments_per_s"], 3) if timed_whole else None,
    "ms_per_enrollment": round(sum(ms.values()), 3),
    "crypto_ms": round(crypto, 3),
    "not_crypto_ms": round(sum(ms.values()) - crypto, 3),
    "server_ms": round(server, 3),
    "server_floor_ms": floor["server_floor_ms_per_enrollment"],
    "server_share_of_its_floor": round(floor["server_floor_ms_per_enrollment"] / server, 3),
    "split_ms": ms,
    "samples": split["samples"],
}))
PY
