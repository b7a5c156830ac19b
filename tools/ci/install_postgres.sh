#!/usr/bin/env bash
# Install Debian's PostgreSQL, start a cluster on localhost:5432 and create the role the
# leaderboard tests use. Idempotent; run as root on Debian 12:
#
#     bash tools/ci/install_postgres.sh
#
# Prints the admin URL the tests read from MIXBENCH_TEST_PG_URL (its default is the same
# URL, so `.ci/run` can call this script and then run pytest). The tests create and drop a
# throwaway database per test on this server.
set -euo pipefail

PG_USER="${MIXBENCH_PG_USER:-mixbench}"
PG_PASSWORD="${MIXBENCH_PG_PASSWORD:-mixbench}"
PG_PORT="${MIXBENCH_PG_PORT:-5432}"

if [ "$(id -u)" != 0 ]; then
    echo "install_postgres.sh: run me as root (apt-get and pg_ctlcluster need it)" >&2
    exit 1
fi

if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

# The newest installed major version, and its cluster "main" (created by the package; make
# it if a previous cleanup removed it).
PG_VERSION="$(ls /usr/lib/postgresql | sort -n | tail -1)"
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main"' | grep -q .; then
    pg_createcluster "$PG_VERSION" main --port "$PG_PORT" >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" && $4=="online"' | grep -q .; then
    pg_ctlcluster "$PG_VERSION" main start
fi

PORT="$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $3}')"
for _ in $(seq 1 30); do
    if su postgres -c "psql -p $PORT -tAc 'SELECT 1'" >/dev/null 2>&1; then break; fi
    sleep 1
done

su postgres -c "psql -p $PORT -v ON_ERROR_STOP=1 -q" <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${PG_USER}') THEN
    CREATE ROLE ${PG_USER} LOGIN CREATEDB PASSWORD '${PG_PASSWORD}';
  ELSE
    ALTER ROLE ${PG_USER} LOGIN CREATEDB PASSWORD '${PG_PASSWORD}';
  END IF;
END
\$\$;
SQL

URL="postgresql://${PG_USER}:${PG_PASSWORD}@127.0.0.1:${PORT}/postgres"
echo "PostgreSQL ${PG_VERSION} is running on 127.0.0.1:${PORT}."
echo "export MIXBENCH_TEST_PG_URL=${URL}"
