#!/usr/bin/env bash
# Instruction count per request for the Rust/Python crossing, from callgrind: stable on a noisy
# machine, so a regression shows as a number. Runs juggler (asyncio loop, hello app) under
# valgrind, sends N1 and then N2 keep-alive requests, and reports
# (instructions after N2 - instructions after N1) / (N2 - N1).
# usage: benches/callgrind.sh [N1] [N2]
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${1:-200}
N2=${2:-1200}
PY=${VIRTUAL_ENV:-$PWD/.venv}/bin/python
PORT=18090
OUT=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$OUT"' EXIT
command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind >/dev/null)

PYTHONMALLOC=malloc valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" \
  --dump-instr=no --collect-atstart=yes \
  "$PY" -m juggler asgi_hello:app --app-dir benches/apps --port $PORT --loop asyncio \
  --no-access-log --log-level warning >"$OUT/server.log" 2>&1 &
SERVER=$!

# Counts so far, without stopping the run: callgrind_control dumps on request.
total() {
  callgrind_control -d "$SERVER" >/dev/null 2>&1
  sleep 1
  # The newest dump holds the counts since the previous one; sum every dump's totals.
  awk '/^summary:/ {s += $2} END {print s}' "$OUT"/cg.*
}

"$PY" - "$PORT" "$N1" "$N2" <<'PYEOF'
import socket, sys, time
port = int(sys.argv[1])
deadline = time.monotonic() + 300
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("juggler did not start under valgrind")
        time.sleep(0.5)
PYEOF

send() {
  "$PY" - "$PORT" "$1" <<'PYEOF'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    for _ in range(n):
        s.sendall(req)
        data = b""
        while not data.endswith(b"Hello, world!"):
            data += s.recv(4096)
PYEOF
}

send "$N1"
A=$(total)
send "$((N2 - N1))"
B=$(total)
echo "instructions per request: $(( (B - A) / (N2 - N1) ))  ($N1..$N2 requests, asyncio loop, hello app)"
