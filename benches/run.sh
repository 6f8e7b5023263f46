#!/usr/bin/env bash
# Runs the side-by-side comparison; wrk comes from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)
exec "${VIRTUAL_ENV:-.venv}/bin/python" benches/compare.py "$@"
