#!/usr/bin/env bash
# Starts Debian's PostgreSQL 15 cluster "main" (loopback only, as Debian configures it:
# listen_addresses = 'localhost'), makes sure role pqscep (password pqscep, CREATEDB so
# the tests can make a throwaway database per test) and database pqscep_test exist, and
# prints the SQLAlchemy URL on stdout -- nothing else goes to stdout, so callers can do
#   export PQSCEP_TEST_POSTGRES_URL=$(scripts/start-postgres.sh)
# Idempotent: fine when the cluster is already running and the role/database exist.
# Needs root (it runs the server and psql as user postgres). Progress goes to stderr.
set -euo pipefail
ver=15 cluster=main

cluster_line() { pg_lsclusters -h | awk -v v=$ver -v c=$cluster '$1==v && $2==c'; }

# A fresh install normally creates the cluster; create it if this machine has none.
if [[ -z $(cluster_line) ]]; then
  echo "start-postgres: creating cluster $ver/$cluster" >&2
  pg_createcluster $ver $cluster >&2
fi
if [[ $(cluster_line | awk '{print $4}') != online ]]; then
  echo "start-postgres: starting cluster $ver/$cluster" >&2
  pg_ctlcluster $ver $cluster start >&2
fi
port=$(cluster_line | awk '{print $3}')

# The server may still be recovering right after a start; wait up to 30 s.
for _ in $(seq 60); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$port" || { echo "start-postgres: server not ready" >&2; exit 1; }

psql_admin() { runuser -u postgres -- psql -p "$port" -X -q -v ON_ERROR_STOP=1 "$@"; }
# Role: create if missing, and always (re)set the password and CREATEDB.
psql_admin >&2 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pqscep') THEN
    CREATE ROLE pqscep LOGIN;
  END IF;
END $$;
ALTER ROLE pqscep LOGIN CREATEDB PASSWORD 'pqscep';
SQL
# CREATE DATABASE cannot run inside DO/transactions: \gexec runs it only when missing.
psql_admin >&2 <<'SQL'
SELECT 'CREATE DATABASE pqscep_test OWNER pqscep'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'pqscep_test') \gexec
SQL

echo "postgresql+psycopg://pqscep:pqscep@127.0.0.1:$port/pqscep_test"
