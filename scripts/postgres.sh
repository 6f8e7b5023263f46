#!/usr/bin/env bash
# A throwaway PostgreSQL for the examples, their tests and the seed benchmark.
#
#   eval "$(scripts/postgres.sh)"        # start (or reuse) it; exports DATABASE_URL
#   scripts/postgres.sh stop             # stop it (the data directory stays for next time)
#   scripts/postgres.sh destroy          # stop it and delete its data directory
#
# It installs the server from Debian's packages when no initdb is found (apt-get; needs root),
# creates a cluster in $JUGGLER_PGDATA (default /tmp/juggler-pg-$JUGGLER_PGPORT) owned by the
# `postgres` user when run as root (PostgreSQL refuses to run as root), and starts it on
# 127.0.0.1:$JUGGLER_PGPORT (default 54329, not 5432, to stay clear of a system server) and on a
# unix socket in the data directory. Authentication is `trust` for the superuser `juggler`:
# the server only listens on loopback and holds nothing worth protecting.
#
# stdout carries only shell assignments (DATABASE_URL, JUGGLER_PG_STARTED=1 when this call
# started the server, 0 when one was already running); progress goes to stderr.
# Exit status 3: PostgreSQL is not installed and cannot be (not root, no apt-get).
set -euo pipefail

PORT="${JUGGLER_PGPORT:-54329}"
DATA="${JUGGLER_PGDATA:-${TMPDIR:-/tmp}/juggler-pg-$PORT}"
# Enough for the benchmark's pools (two workers x 200 asyncpg connections, 32 psycopg threads).
MAX_CONNECTIONS="${JUGGLER_PG_MAX_CONNECTIONS:-1000}"
DSN="postgresql://juggler@127.0.0.1:$PORT/juggler"

say() { echo "postgres.sh: $*" >&2; }

bindir() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then
    echo "$d"
  elif command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  fi
}

install_server() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "PostgreSQL's server is not installed, and installing it needs root and apt-get:"
    say "  sudo apt-get install -y postgresql"
    exit 3
  fi
  say "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq postgresql) >&2
}

# Runs a command as the user owning the cluster: `postgres` when we are root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    # From /, which `postgres` can enter whatever the checkout's permissions (/root is 700).
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

start() {
  local bin
  bin="$(bindir)"
  if [ -z "$bin" ]; then
    install_server
    bin="$(bindir)"
  fi
  if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; then
    say "already running on 127.0.0.1:$PORT"
    echo "export DATABASE_URL=$DSN"
    echo "JUGGLER_PG_STARTED=0"
    return
  fi
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    say "creating a cluster in $DATA"
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres: "$DATA"
    chmod 700 "$DATA"
    as_owner "$bin/initdb" -D "$DATA" -U juggler --auth=trust -E UTF8 --locale=C.UTF-8 \
      >/dev/null
    cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DATA'
max_connections = $MAX_CONNECTIONS
shared_buffers = 128MB
# A throwaway database: durability is not what is measured.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  as_owner "$bin/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start >/dev/null
  if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$PORT" -U juggler -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'juggler'" | grep -q 1; then
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U juggler juggler
  fi
  say "running on 127.0.0.1:$PORT (data in $DATA, log in $DATA/server.log)"
  echo "export DATABASE_URL=$DSN"
  echo "JUGGLER_PG_STARTED=1"
}

stop() {
  local bin
  bin="$(bindir)"
  if [ -n "$bin" ] && [ -f "$DATA/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    say "stopped"
  fi
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
destroy)
  stop
  rm -rf "$DATA"
  ;;
*)
  echo "usage: $0 [start|stop|destroy]" >&2
  exit 2
  ;;
esac
