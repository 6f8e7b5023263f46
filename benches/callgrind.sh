#!/usr/bin/env bash
# Instruction count per request for the Rust/Python crossing, from callgrind: stable on a noisy
# machine, so a regression shows as a number. Runs juggler (asyncio loop, hello app, one
# worker) under valgrind twice, sending N1 keep-alive requests in the first run and N2 in the
# second, and reports (worker instructions of run 2 - of run 1) / (N2 - N1), so that start-up
# and shutdown cancel out. Only the worker process counts: valgrind follows the supervisor's
# fork and writes a file per process, and the supervisor does no work per request.
# usage: benches/callgrind.sh [N1] [N2]
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${1:-200}
N2=${2:-1200}
PY=${VIRTUAL_ENV:-$PWD/.venv}/bin/python
PORT=18090
OUT=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$OUT"' EXIT
command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind >/dev/null)

# Prints the instructions the worker executed in a whole run that served $1 requests.
run() {
  local dir="$OUT/run$1"
  mkdir -p "$dir"
  PYTHONMALLOC=malloc valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
    --dump-instr=no --collect-atstart=yes \
    "$PY" -m juggler asgi_hello:app --app-dir benches/apps --port $PORT --loop asyncio \
    --no-access-log --log-level warning ${CALLGRIND_EXTRA:-} >"$dir/server.log" 2>&1 &
  SERVER=$!
  "$PY" - "$PORT" "$1" <<'PYEOF'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 300
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("juggler did not start under valgrind")
        time.sleep(0.5)
with s:
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    for _ in range(n):
        s.sendall(req)
        data = b""
        while not data.endswith(b"Hello, world!"):
            data += s.recv(4096)
PYEOF
  kill -TERM "$SERVER"
  wait "$SERVER" || true
  # The supervisor's file carries its pid; the worker's is the other one.
  find "$dir" -name 'cg.*' ! -name "cg.$SERVER" -exec awk '/^summary:/ {s += $2} END {print s}' {} +
  SERVER=
}

A=$(run "$N1")
B=$(run "$N2")
echo "instructions per request: $(( (B - A) / (N2 - N1) ))  ($N1..$N2 requests, asyncio loop, hello app, worker process)"
