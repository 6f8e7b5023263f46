#!/usr/bin/env bash
# Runs the side-by-side comparison (or benches/seed/run.py); wrk comes from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)
# The script is benches/compare.py unless the first argument names another one.
script=benches/compare.py
case "${1:-}" in *.py)
  script="$1"
  shift
  ;;
esac
exec "${VIRTUAL_ENV:-.venv}/bin/python" "$script" "$@"
