#!/usr/bin/env bash
# A throwaway MariaDB for the aiomysql example, its tests and the seed benchmark.
#
#   eval "$(scripts/mariadb.sh)"         # start (or reuse) it; exports MYSQL_URL
#   scripts/mariadb.sh stop              # stop it (the data directory stays for next time)
#   scripts/mariadb.sh destroy           # stop it and delete its data directory
#
# It installs the server from Debian's packages when no mariadbd is found (apt-get; needs
# root), creates a data directory with mariadb-install-db in $JUGGLER_MYDATA (default
# /tmp/juggler-mariadb-$JUGGLER_MYPORT), owned by the `mysql` user when run as root (mariadbd
# refuses to run as root unless told to), and starts mariadbd on 127.0.0.1:$JUGGLER_MYPORT
# (default 33069, not 3306, to stay clear of a system server) and on a unix socket in the data
# directory. Authentication: a password over TCP, user `juggler`, password `juggler`, with
# every privilege (the tests create and drop a database of their own); `root` has no password
# and is meant for the socket. The server only listens on loopback and holds nothing worth
# protecting.
#
# stdout carries only shell assignments (MYSQL_URL, JUGGLER_MY_STARTED=1 when this call
# started the server, 0 when one was already running); progress goes to stderr.
# Exit status 3: MariaDB is not installed and cannot be (not root, no apt-get).
set -euo pipefail

PORT="${JUGGLER_MYPORT:-33069}"
DATA="${JUGGLER_MYDATA:-${TMPDIR:-/tmp}/juggler-mariadb-$PORT}"
# Enough for the benchmark's pools (two workers x 200 aiomysql connections) and the tests'.
MAX_CONNECTIONS="${JUGGLER_MY_MAX_CONNECTIONS:-1000}"
USER_NAME=juggler
PASSWORD=juggler
DSN="mysql://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/juggler"
SOCKET="$DATA/mysqld.sock"
PIDFILE="$DATA/mariadbd.pid"
LOG="$DATA/server.log"

say() { echo "mariadb.sh: $*" >&2; }

server_bin() {
  local b
  for b in mariadbd mysqld /usr/sbin/mariadbd /usr/sbin/mysqld; do
    if command -v "$b" >/dev/null 2>&1; then
      command -v "$b"
      return
    fi
  done
}

install_server() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "MariaDB's server is not installed, and installing it needs root and apt-get:"
    say "  sudo apt-get install -y mariadb-server"
    exit 3
  fi
  say "installing MariaDB from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq mariadb-server) >&2
}

# The server runs as `mysql` when we are root; otherwise as whoever runs this.
RUN_AS=()
if [ "$(id -u)" = 0 ]; then
  RUN_AS=(--user=mysql)
fi

client() { mariadb --no-defaults --socket="$SOCKET" -uroot "$@"; }

# True when a server answers on the port with the juggler user's password.
answers() {
  mariadb-admin --no-defaults --protocol=tcp -h 127.0.0.1 -P "$PORT" -u"$USER_NAME" \
    -p"$PASSWORD" --connect-timeout=2 ping >/dev/null 2>&1
}

start() {
  local bin
  bin="$(server_bin)"
  if [ -z "$bin" ]; then
    install_server
    bin="$(server_bin)"
  fi
  if answers; then
    say "already running on 127.0.0.1:$PORT"
    echo "export MYSQL_URL=$DSN"
    echo "JUGGLER_MY_STARTED=0"
    return
  fi
  if [ "$(id -u)" = 0 ] && ! id mysql >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --shell /bin/false mysql
  fi
  if [ ! -d "$DATA/data/mysql" ]; then
    say "creating a data directory in $DATA"
    rm -rf "$DATA"
    mkdir -p "$DATA/data"
    [ "$(id -u)" = 0 ] && chown -R mysql: "$DATA"
    chmod 700 "$DATA"
    # From /, which `mysql` can enter whatever the checkout's permissions (/root is 700).
    (cd / && mariadb-install-db --no-defaults --datadir="$DATA/data" "${RUN_AS[@]}" \
      --auth-root-authentication-method=normal --skip-test-db >"$DATA/install.log" 2>&1) || {
      say "mariadb-install-db failed; see $DATA/install.log"
      exit 1
    }
  fi
  # The log outlives runs: only what this start writes says whether it failed.
  local logged=0
  [ -f "$LOG" ] && logged="$(wc -l <"$LOG")"
  # setsid, and no process of ours left holding the caller's stdout: "$(scripts/mariadb.sh)"
  # returns only when every writer of its pipe has gone, so the redirections belong to the
  # background subshell itself, not only to the server it starts (that waited forever in CI).
  (cd / && exec setsid "$bin" --no-defaults --datadir="$DATA/data" "${RUN_AS[@]}" \
    --bind-address=127.0.0.1 --port="$PORT" --socket="$SOCKET" --pid-file="$PIDFILE" \
    --log-error="$LOG" --max-connections="$MAX_CONNECTIONS" --skip-name-resolve \
    --skip-log-bin --innodb-flush-log-at-trx-commit=0 --innodb-buffer-pool-size=128M) \
    </dev/null >/dev/null 2>&1 &
  # mariadbd has no "start and wait" of its own (pg_ctl -w's counterpart): ask until it answers.
  local i
  for i in $(seq 1 120); do
    if client -e "SELECT 1" >/dev/null 2>&1; then
      break
    fi
    if tail -n +"$((logged + 1))" "$LOG" 2>/dev/null | grep -q "\[ERROR\] Aborting"; then
      say "mariadbd did not start (port $PORT taken?):"
      tail -n +"$((logged + 1))" "$LOG" | grep "\[ERROR\]" >&2
      exit 1
    fi
    if [ "$i" = 120 ]; then
      say "mariadbd did not answer within 60 s; see $LOG"
      exit 1
    fi
    sleep 0.5
  done
  client <<EOF
CREATE DATABASE IF NOT EXISTS juggler;
CREATE USER IF NOT EXISTS '$USER_NAME'@'127.0.0.1' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS '$USER_NAME'@'localhost' IDENTIFIED BY '$PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$USER_NAME'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO '$USER_NAME'@'localhost';
EOF
  say "running on 127.0.0.1:$PORT (data in $DATA, log in $LOG)"
  echo "export MYSQL_URL=$DSN"
  echo "JUGGLER_MY_STARTED=1"
}

stop() {
  if [ -f "$PIDFILE" ] && [ -S "$SOCKET" ]; then
    # Returns once the server has removed its pid file, i.e. has stopped.
    mariadb-admin --no-defaults --socket="$SOCKET" -uroot shutdown
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
