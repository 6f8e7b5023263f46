#!/usr/bin/env bash
# Autobahn|Testsuite fuzzingclient (RFC 6455 + RFC 7692, cases 1.* to 13.*) against juggler
# serving the runner's own echo app: starts juggler on a free loopback port, runs the runner
# (AUTOBAHN_DIR, default ../shared/autobahn; see its README), prints its summary and exits
# with its status. The reports land in CONFORMANCE_OUT (default /tmp/juggler-autobahn).
# AB_CASES / AB_EXCLUDE pick cases, e.g. AB_EXCLUDE='12.*,13.*' for a run of seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AUTOBAHN_DIR="$(cd "${AUTOBAHN_DIR:-$ROOT/../shared/autobahn}" && pwd)"
OUT="${CONFORMANCE_OUT:-/tmp/juggler-autobahn}"
JUGGLER="${JUGGLER:-$ROOT/.venv/bin/juggler}"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# Pings off: the fuzzingclient checks every frame it gets, and a ping it did not expect
# would make a case fail.
"$JUGGLER" echo_app:app --app-dir "$AUTOBAHN_DIR" --host 127.0.0.1 --port "$PORT" \
    --ws-ping-interval 0 --no-access-log >"$OUT.server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT

for _ in $(seq 100); do
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$PORT" 2>/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || { echo "juggler did not start:"; cat "$OUT.server.log"; exit 2; }
    sleep 0.1
done

AB_AGENT="${AB_AGENT:-juggler}" bash "$AUTOBAHN_DIR/run.sh" "ws://127.0.0.1:$PORT" "$OUT"
