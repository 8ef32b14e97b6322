#!/usr/bin/env bash
# Makes sure a PostgreSQL 15 server runs on 127.0.0.1:5432 with a `jobtask` role and a
# `jobtask_test` database, which the test suite uses. Installs it from Debian's packages
# when it is missing. Needs root (CI and the developer machines run as root).
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /usr/lib/postgresql/15 ]; then
  echo "installing PostgreSQL 15 from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi
if ! pg_lsclusters -h | grep -q '^15 \+main'; then
  pg_createcluster 15 main >/dev/null
fi
if ! pg_lsclusters -h | awk '$1==15 && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster 15 main start
fi
for _ in $(seq 1 30); do
  if su postgres -c "pg_isready -q -h 127.0.0.1 -p 5432"; then break; fi
  sleep 1
done
su postgres -c "psql -q -v ON_ERROR_STOP=1" <<'SQL' >/dev/null
SELECT 'CREATE ROLE jobtask LOGIN SUPERUSER PASSWORD ''jobtask'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'jobtask')\gexec
SELECT 'CREATE DATABASE jobtask_test OWNER jobtask'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'jobtask_test')\gexec
SQL
