#!/usr/bin/env bash
# The PostgreSQL primary's first-start hook for deploy/compose.postgres.yaml, mounted into
# /docker-entrypoint-initdb.d/ of pgvector/pgvector:pg18. The image's entrypoint runs it once,
# when it has just created the data directory, as the postgres user, against a temporary server
# that listens on its Unix socket only. It
#   - creates the role the replica streams as (REPLICATION_USER, default `replicator`, with the
#     password REPLICATION_PASSWORD),
#   - lets that role connect for replication from anywhere with its password (pg_hba.conf),
#   - installs pgvector in Folio's database (Folio creates and migrates its own tables; the
#     extension is installed here too so that Folio's role need not be a superuser).
#
# The entrypoint sources a hook that is not executable: no `set -u` or `exit` on success here,
# so that it behaves the same either way.

if [ -z "${REPLICATION_PASSWORD:-}" ]; then
  echo "primary-init.sh: REPLICATION_PASSWORD is not set" >&2
  exit 1
fi
replication_user=${REPLICATION_USER:-replicator}

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=role="$replication_user" --set=password="$REPLICATION_PASSWORD" <<'SQL' || exit 1
CREATE ROLE :"role" WITH REPLICATION LOGIN PASSWORD :'password';
CREATE EXTENSION IF NOT EXISTS vector;
SQL

# Replication connections match only lines that name `replication` (the image's catch-all
# `host all all all scram-sha-256` does not cover them).
printf 'host replication %s all scram-sha-256\n' "$replication_user" >>"$PGDATA/pg_hba.conf" || exit 1
echo "primary-init.sh: replication role $replication_user created"
