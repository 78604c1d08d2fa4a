#!/usr/bin/env bash
# The streaming replica's entrypoint for deploy/compose.postgres.yaml (image
# pgvector/pgvector:pg18, started as root). On the first start, while its data directory is
# empty, it waits for the primary and clones it with pg_basebackup: `-X stream` copies the WAL
# written during the copy, `-R` writes standby.signal and primary_conninfo, so the server
# starts as a hot standby that follows the primary. Every start then runs `postgres "$@"` as
# the postgres user on that copy.
#
# Environment:
#   PRIMARY_HOST, PRIMARY_PORT   the primary (default primary:5432)
#   REPLICATION_USER             the role with REPLICATION (default replicator)
#   PGPASSWORD                   its password (libpq reads it; it also ends up in
#                                primary_conninfo inside the data directory)
#   PGDATA                       the image's, /var/lib/postgresql/18/docker
set -euo pipefail

: "${PGDATA:?PGDATA is not set}"
: "${PGPASSWORD:?set PGPASSWORD to the password of the replication role}"
host=${PRIMARY_HOST:-primary}
port=${PRIMARY_PORT:-5432}
user=${REPLICATION_USER:-replicator}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -d "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
    echo "replica: $PGDATA is neither empty nor a data directory; refusing to touch it" >&2
    exit 1
  fi
  parent=$(dirname "$PGDATA")
  mkdir -p "$parent"
  chown postgres:postgres "$parent"
  until pg_isready -q -h "$host" -p "$port"; do
    echo "replica: waiting for the primary at $host:$port" >&2
    sleep 2
  done
  # Clone next to the data directory and rename it into place once complete, so that an
  # interrupted copy is started over rather than run.
  partial="$PGDATA.partial"
  rm -rf "$partial"
  echo "replica: cloning $host:$port into $PGDATA" >&2
  gosu postgres pg_basebackup --host="$host" --port="$port" --username="$user" --no-password \
    --pgdata="$partial" --wal-method=stream --write-recovery-conf --checkpoint=fast
  rm -rf "$PGDATA"
  mv "$partial" "$PGDATA"
  chown -R postgres:postgres "$PGDATA"
fi
# PostgreSQL refuses a data directory that others can read.
chmod 700 "$PGDATA"
exec gosu postgres postgres "$@"
