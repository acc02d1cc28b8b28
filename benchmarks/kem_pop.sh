#!/usr/bin/env bash
# ML-KEM enrollments/s per proof-of-possession mode: `pqscep serve` with three profiles
# on an ML-DSA-65 CA with an ML-KEM-768 recipient and AES-GCM, kem_pop = "challenge",
# "encrypted-cert" and "statement"; `pqscep bench --key-type ml-kem-768|1024` against each (the
# challenge mode's extra round trip, decapsulation and proof are inside the timed enrollment;
# for the statement mode each device first gets an ML-DSA-65 certificate, not timed: --identity).
#   benchmarks/kem_pop.sh [COUNT] [CONCURRENCY]      (defaults 300 and 8)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-300}
concurrency=${2:-8}
source benchmarks/servers.sh
init_pqscep "$work/d"
for mode in challenge encrypted-cert statement; do
  cat >> "$work/d/pqscep.toml" <<TOML

[profiles.kem-$mode]
ca_key_type = "ml-dsa-65"
ca_subject = "CN=bench kem $mode CA"
kem_recipient = "ml-kem-768"
aes_gcm = true
challenge_file = "secrets/challenge-default"
kem_pop = "$mode"
TOML
done
start_pqscep "$work/d"
for mode in challenge encrypted-cert statement; do
  identity=(); [[ $mode == statement ]] && identity=(--identity)
  for key_type in ml-kem-768 ml-kem-1024; do
    result=$(.venv/bin/pqscep bench "http://127.0.0.1:$pq_port/scep/kem-$mode" --count "$count" \
             --concurrency "$concurrency" --challenge secret --key-type "$key_type" "${identity[@]}" \
             --json 2>/dev/null || true)
    echo "{\"kem_pop\": \"$mode\", \"key_type\": \"$key_type\", \"result\": $result}"
  done
done
