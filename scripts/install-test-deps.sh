#!/usr/bin/env bash
# Installs everything the test suite needs, on a Debian 12 machine, as root:
#   - the real SCEP peers we test interoperability against (micromdm scepclient/scepserver,
#     strongSwan pki, certmonger + dbus for its session mode), openssl and PostgreSQL;
#   - the project's virtualenv .venv with `pip install -e '.[test]'`.
# Idempotent and non-interactive: a second run skips apt entirely when all packages are
# already installed, and skips pip unless pyproject.toml changed (a second run takes ~0.1 s).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

packages=(
  scep                            # micromdm scepclient + scepserver 2.1.0
  strongswan-pki                  # `pki --scep` / `pki --scepca`
  libstrongswan-standard-plugins  # crypto plugins pki needs for CMS/PKCS#7 work
  libstrongswan-extra-plugins     # (more crypto plugins; pki loads them if present)
  certmonger                      # `getcert add-scep-ca` / `getcert request`
  dbus                            # dbus-run-session: certmonger on a private session bus
  openssl                         # `openssl verify`, key/cert conversion in tests
  postgresql                      # real PostgreSQL for the storage tests
  python3-venv                    # `python3 -m venv` with Debian's python3
  ruby-kramdown-rfc2629           # kramdown-rfc: builds the Internet-Draft in docs/draft (tests/test_draft.py)
  linux-perf                      # perf: benchmarks/cpu_by_code.py (tests/test_benchmark_scripts.py)
)

# dpkg-query prints "install ok installed" for each installed package; anything else
# (or an unknown package, which makes dpkg-query fail) means we must run apt.
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-test-deps: installing ${missing[*]}" >&2
  apt-get update -q >&2
  # Only the missing ones (no surprise upgrades of the rest); --no-install-recommends keeps
  # this fast and avoids pulling in unrelated daemons.
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
else
  echo "install-test-deps: all Debian packages already installed" >&2
fi

# The project's own virtualenv (the tests and .ci/run use .venv/bin/python). The editable
# install follows src/ by itself, so pip only has to run again when pyproject.toml changes:
# a stamp holding its hash saves the ~5 s "requirement already satisfied" pass.
[[ -x .venv/bin/python ]] || python3 -m venv .venv
stamp=.venv/.test-deps.sha256
want=$(sha256sum pyproject.toml)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' >&2
  echo "$want" > "$stamp"
else
  echo "install-test-deps: .venv already matches pyproject.toml" >&2
fi
