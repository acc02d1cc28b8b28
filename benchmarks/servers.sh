# Shared by the benchmark scripts (source it from the repository root): a scratch folder that
# is removed on exit, and the servers they start, which are stopped on exit.
#   init_pqscep DIR          pqscep init with the static challenge "secret"
#   static_challenge_only DIR  turn the default profile's one-time challenges off
#   start_pqscep DIR         pqscep serve --workers ${PQSCEP_WORKERS:-2}; sets pq_port, pq_pid
#   start_micromdm           micromdm scepserver 2.1.0, RSA-2048 CA; sets mm_port, mm_pid
#   run_rounds ROUNDS FN     FN NAME PORT PID for each server in each round (see below)
work=$(mktemp -d)
_server_pids=()
_stop_servers() {
  for p in "${_server_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap _stop_servers EXIT

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() {  # URL of a SCEP endpoint
  for _ in $(seq 150); do curl -sf "$1?operation=GetCACaps" >/dev/null && return; sleep 0.2; done
  echo "no answer from $1" >&2
  exit 1
}

init_pqscep() { .venv/bin/pqscep init --data "$1" --challenge secret >/dev/null; }
static_challenge_only() { sed -i 's/one_time_challenges = true/one_time_challenges = false/' "$1/pqscep.toml"; }

start_pqscep() {
  pq_port=$(free_port)
  .venv/bin/pqscep serve --data "$1" --port "$pq_port" --workers "${PQSCEP_WORKERS:-2}" >"$1.log" 2>&1 &
  pq_pid=$!
  _server_pids+=("$pq_pid")
  wait_up "http://127.0.0.1:$pq_port/scep"
}

start_micromdm() {
  mm_port=$(free_port)
  (cd "$work" && scepserver ca -init -depot depot -keySize 2048 -organization bench >/dev/null 2>&1)
  (cd "$work" && exec scepserver -depot depot -port "$mm_port" -challenge secret -allowrenew 0 >"$work/mm.log" 2>&1) &
  mm_pid=$!
  _server_pids+=("$mm_pid")
  wait_up "http://127.0.0.1:$mm_port/scep"
}

# Each round measures both servers, micromdm first in odd rounds and pqscep first in even ones,
# so that the machine's drift (up to 40% within an hour here) falls on both alike. FN prints
# one JSON result; each becomes a line {"server", "round", "result"}, and with more than one
# round a last line gives the medians over the rounds (benchmarks/summarize_rounds.py).
run_rounds() {  # ROUNDS FN; needs start_micromdm and start_pqscep first
  local rounds=$1 measure=$2 round target name port pid result line
  local targets=("micromdm:$mm_port:$mm_pid" "pqscep:$pq_port:$pq_pid") lines=() order
  for round in $(seq "$rounds"); do
    order=("${targets[@]}")
    if (( round % 2 == 0 )); then order=("${targets[1]}" "${targets[0]}"); fi
    for target in "${order[@]}"; do
      IFS=: read -r name port pid <<<"$target"
      result=$("$measure" "$name" "$port" "$pid" || true)
      line="{\"server\": \"$name\", \"round\": $round, \"result\": ${result:-null}}"
      echo "$line"
      lines+=("$line")
    done
  done
  if (( rounds > 1 )); then
    printf '%s\n' "${lines[@]}" | .venv/bin/python benchmarks/summarize_rounds.py
  fi
}
