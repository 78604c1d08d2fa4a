#!/usr/bin/env bash
# A local Citus cluster for Folio's Citus tests: a coordinator and two workers on loopback,
# PostgreSQL with the citus and pgvector extensions, no system service.
#
#   citus.sh available          exit 0 when PostgreSQL at $PG_BIN has citus and vector,
#                               else print why and exit 1
#   citus.sh start DIR [PORT]   coordinator on PORT (default 57432), workers on PORT+1 and
#                               PORT+2, data under DIR; prints coordinator=<url>
#   citus.sh stop DIR           stops the three
#   citus.sh build CITUS_SRC PGVECTOR_SRC
#                               builds and installs both extensions into $PG_BIN's PostgreSQL
#                               (root; Debian packages via apt)
#
# Citus is on no package registry this project can reach (not in Debian bookworm, not on
# PyPI), so `build` takes source trees fetched by other means: Citus v13.2.2 (the newest that
# supports PostgreSQL 15) and pgvector v0.8.x, built against Debian's postgresql-15. Where the
# extensions are missing the Citus tests skip and say so; CI runs them only on a machine set
# up this way.
#
# PG_BIN defaults to Debian's /usr/lib/postgresql/15/bin. PostgreSQL refuses to run as root:
# as root, the servers run as $FOLIO_PG_USER (default folio-pg, created when missing), as
# scripts/pg/cluster.sh does. Authentication is `trust` on loopback only.
set -euo pipefail
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
user=${FOLIO_PG_USER:-folio-pg}
nodes=(coordinator worker1 worker2)

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
}

available() {
  [ -x "$bin/pg_ctl" ] || { echo "no PostgreSQL at $bin (set PG_BIN)"; return 1; }
  local lib
  lib=$("$bin/pg_config" --pkglibdir 2>/dev/null) ||
    { echo "no pg_config at $bin (install postgresql-server-dev-NN)"; return 1; }
  local ext
  for ext in citus vector; do
    [ -f "$lib/$ext.so" ] ||
      { echo "the $ext extension is not installed in $lib (see scripts/pg/citus.sh build)"; return 1; }
  done
}

psql_at() { # PORT SQL
  as_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"
}

start() {
  local dir=${1:?usage: citus.sh start DIR [PORT]} port=${2:-57432}
  local reason
  reason=$(available) || { echo "$reason" >&2; exit 1; }
  ensure_user
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$(id -u)" -ne 0 ] || chown "$user" "$dir"
  local i fresh=0
  for i in 0 1 2; do
    local node="$dir/${nodes[$i]}" p=$((port + i))
    if [ ! -f "$node/PG_VERSION" ]; then
      fresh=1
      as_pg "$bin/initdb" -D "$node" -U postgres --auth=trust --encoding=UTF8 --locale=C >/dev/null
      cat >> "$node/postgresql.conf" <<CONF
shared_preload_libraries = 'citus'
listen_addresses = '127.0.0.1'
port = $p
unix_socket_directories = '$dir'
max_connections = 200
max_prepared_transactions = 200
CONF
    fi
    [ -f "$node/postmaster.pid" ] ||
      as_pg "$bin/pg_ctl" -D "$node" -l "$node.log" -w -t 60 start >/dev/null
  done
  if [ "$fresh" = 1 ]; then
    for i in 0 1 2; do
      psql_at $((port + i)) "CREATE EXTENSION IF NOT EXISTS citus; CREATE EXTENSION IF NOT EXISTS vector;" >/dev/null
    done
    psql_at "$port" "SELECT citus_set_coordinator_host('127.0.0.1', $port);
                     SELECT citus_add_node('127.0.0.1', $((port + 1)));
                     SELECT citus_add_node('127.0.0.1', $((port + 2)));" >/dev/null
  fi
  echo "coordinator=postgres://postgres@127.0.0.1:$port/postgres"
}

stop() {
  local dir=${1:?usage: citus.sh stop DIR} n
  for n in worker2 worker1 coordinator; do
    if [ -f "$dir/$n/postmaster.pid" ]; then
      as_pg "$bin/pg_ctl" -D "$dir/$n" -m fast -w stop >/dev/null || true
    fi
  done
}

build() {
  local citus=${1:?usage: citus.sh build CITUS_SRC PGVECTOR_SRC} pgvector=${2:?usage: citus.sh build CITUS_SRC PGVECTOR_SRC}
  local major
  major=$(basename "$(dirname "$bin")")
  apt-get install -y "postgresql-$major" "postgresql-server-dev-$major" liblz4-dev libzstd-dev \
    libcurl4-openssl-dev libkrb5-dev
  (cd "$pgvector" && make -j"$(nproc)" PG_CONFIG="$bin/pg_config" && make install PG_CONFIG="$bin/pg_config")
  # PostgreSQL 15.18 and later export have_createdb_privilege(), which Citus 13.2 also defines
  # as a static helper: give Citus's copy its own name.
  perl -0pi -e 's/static inline bool\nhave_createdb_privilege\(void\)/#define have_createdb_privilege() citus_compat_have_createdb_privilege()\nstatic inline bool\ncitus_compat_have_createdb_privilege(void)/' \
    "$citus/src/include/pg_version_compat.h"
  (cd "$citus" && ./configure PG_CONFIG="$bin/pg_config" && make -j"$(nproc)" && make install)
  available
}

case ${1:-} in
  available) available ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  build) shift; build "$@" ;;
  *) sed -n '2,22p' "$0" >&2; exit 2 ;;
esac
