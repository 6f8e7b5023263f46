#!/usr/bin/env bash
# Installs the wheel in dist/ into a fresh virtual environment whose PATH has no Rust
# toolchain, and serves a request with it: what a user of the wheel gets, with nothing of
# this checkout on the import path.
#
#   scripts/check_wheel.sh [PYTHON]      # PYTHON defaults to python3
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-python3}"
wheels=(dist/juggler-*.whl)
[ -f "${wheels[0]}" ] || { echo "check_wheel.sh: no wheel in dist/ (make wheel)" >&2; exit 1; }
wheel="$(realpath "${wheels[0]}")"
case "$wheel" in
  *-abi3-manylinux2014_x86_64*.whl) ;;
  *) echo "check_wheel.sh: $wheel is not a manylinux2014 wheel" >&2; exit 1 ;;
esac

work="$(mktemp -d)"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# PATH without any directory that holds cargo or rustc.
clean_path=""
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  if [ -x "$d/cargo" ] || [ -x "$d/rustc" ]; then continue; fi
  clean_path="${clean_path:+$clean_path:}$d"
done
if PATH="$clean_path" command -v cargo >/dev/null 2>&1; then
  echo "check_wheel.sh: cargo is still on the cleaned PATH" >&2
  exit 1
fi

"$PYTHON" -m venv "$work/venv"
PATH="$clean_path" "$work/venv/bin/python" -m pip install -q "$wheel"
cat >"$work/hello.py" <<'PY'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"Hello from the wheel"})
PY
cd "$work"
PATH="$clean_path" "$work/venv/bin/juggler" hello:app --host 127.0.0.1 --port 0 >"$work/log" 2>&1 &
server=$!
url=""
for _ in $(seq 1 200); do
  url="$(grep -o 'http://127.0.0.1:[0-9]*' "$work/log" | head -n 1 || true)"
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
  sleep 0.05
done
[ -n "$url" ] || { echo "check_wheel.sh: the server did not start" >&2; cat "$work/log" >&2; exit 1; }
body="$(curl -fsS "$url/")"
[ "$body" = "Hello from the wheel" ] || { echo "check_wheel.sh: got $body" >&2; exit 1; }
where="$("$work/venv/bin/python" -c 'import juggler, os; print(os.path.dirname(juggler.__file__))')"
echo "check_wheel.sh: $(basename "$wheel") served a request from $where"
