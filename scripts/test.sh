#!/usr/bin/env bash
# Installs what the tests need and runs them. This is the command README cites, and
# .ci/run execs it, so a developer and CI run exactly the same thing.
# Extra arguments go to pytest, e.g.  scripts/test.sh -k interop -x
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
# start-postgres.sh prints only the URL on stdout (progress goes to stderr).
PQSCEP_TEST_POSTGRES_URL=$(scripts/start-postgres.sh)
export PQSCEP_TEST_POSTGRES_URL
# The post-quantum OpenSSL (3.6, built once, 4-8 min, then cached) for the interop tests:
if [[ -z ${PQSCEP_OPENSSL:-} && -e ../shared/tools/openssl-pq.sh ]]; then PQSCEP_OPENSSL=$(../shared/tools/openssl-pq.sh); export PQSCEP_OPENSSL; fi

# Lint and types first (config in pyproject.toml): a failure here fails the run.
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy

rc=0
.venv/bin/python -m pytest -q -ra "$@" || rc=$?
# pytest exits 5 when it collected no tests: that must not pass as green.
if ((rc == 5)); then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
