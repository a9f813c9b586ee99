#!/usr/bin/env bash
# Starts a local PostgreSQL (Debian's package) for the database tests and prints the URL to use.
set -euo pipefail
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
read -r version cluster _ < <(pg_lsclusters --no-header | head -n 1)
pg_ctlcluster "$version" "$cluster" start >/dev/null 2>&1 || true  # "already running" is fine
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='harvest'\" | grep -q 1 || psql -q -c \"CREATE ROLE harvest LOGIN PASSWORD 'harvest'\"" >/dev/null
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='harvest_test'\" | grep -q 1 || createdb -O harvest harvest_test" >/dev/null
port=$(su postgres -c "psql -qtAc 'SHOW port'")
echo "postgresql+psycopg://harvest:harvest@127.0.0.1:${port}/harvest_test"
