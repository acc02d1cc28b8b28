#!/usr/bin/env bash
# Quick start on a fresh Debian/Ubuntu machine: set up pqscep, run the SCEP server on its
# embedded defaults (SQLite, an RSA-2048 CA, challenge "secret"), show one enrollment, and keep
# the server running until Ctrl-C.
#   scripts/quickstart.sh            data in ./pqscep-data, server on http://127.0.0.1:8080/scep
# PQSCEP_DATA and PQSCEP_PORT change those; a second run reuses the data directory.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${PQSCEP_DATA:-$PWD/pqscep-data}
port=${PQSCEP_PORT:-8080}
url="http://127.0.0.1:$port/scep"

if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
  # Debian ships venv separately; only then do we need apt (and root).
  DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
fi
[[ -x .venv/bin/pqscep ]] || { python3 -m venv .venv && .venv/bin/python -m pip install -q -e .; }
pqscep=.venv/bin/pqscep

[[ -f $data/pqscep.toml ]] || "$pqscep" init --data "$data" --challenge secret --port "$port"

"$pqscep" serve --data "$data" --port "$port" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health')" 2>/dev/null && break
  sleep 0.2
done

demo=$(mktemp -d)
echo "== enrolling a demo device against $url (challenge: secret)"
"$pqscep" caps "$url"
"$pqscep" enroll "$url" --challenge secret --cn "demo-device-$(date +%s)" --dns demo.example \
  --out "$demo/device.pem" --key-out "$demo/device.key"
"$pqscep" inspect "$demo/device.pem" 2>/dev/null | head -n 20 || openssl x509 -in "$demo/device.pem" -noout -subject -issuer
command -v openssl >/dev/null && openssl verify -CAfile "$data/profiles/default/ca.pem" "$demo/device.pem"
echo "== and a post-quantum one: ML-DSA-65 device key, ML-KEM-768 envelopes both ways, AES-GCM ($url/pq)"
"$pqscep" enroll "$url/pq" --challenge secret --cn "pq-device-$(date +%s)" --key-type ml-dsa-65 \
  --out "$demo/pq-device.pem" --key-out "$demo/pq-device.key"
echo "== the certificate and its key are in $demo"
echo "== pqscep is serving $url (also /cgi-bin/pkiclient.exe) and $url/pq; Ctrl-C stops it"
wait $server
