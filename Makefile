# The same targets locally and in CI. Everything installs itself into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)
# `cargo test` links libpython (maturin builds use pyo3's extension-module feature instead).
export PYO3_PYTHON := $(abspath $(PY))
PYLIBDIR = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')

.PHONY: venv build wheel wheel-check serve test test-fast test-unit test-rust test-python lint fmt docs check-docs bench bench-protocols bench-seed bench-callgrind bench-overload bench-h2flood conformance mutants mutants-python fuzz fuzz-build fuzz-smoke fuzz-cmin clean

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

build: venv
	$(VENV)/bin/maturin develop --release --quiet

# An abi3 wheel for manylinux2014 (glibc 2.17, so it installs on older distributions too) and
# an sdist, into dist/. zig (from PyPI) links against the old glibc: no Docker image needed.
# Stripped: the release profile keeps debug info for profiling, five times the size.
wheel: venv
	$(PY) -m pip install -q "ziglang>=0.11,<0.14"
	rm -rf dist
	$(VENV)/bin/maturin build --release --zig --compatibility manylinux2014 --strip --out dist --sdist

# The wheel installed into a fresh venv with no Rust toolchain on PATH serves a request.
wheel-check: wheel
	bash scripts/check_wheel.sh $(PYTHON)

serve: build
	$(VENV)/bin/juggler examples.hello:app --host 127.0.0.1 --port 8000

test-rust: venv
	LD_LIBRARY_PATH=$(PYLIBDIR) cargo test --release --lib

# Unit tests: no server, no network (tests/unit); end to end over real sockets: tests/e2e.
test-unit: build
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

test-python: build
	$(PY) -m pytest -q -p no:cacheprovider tests

# The Rust units and the Python unit tests: seconds once built, for every change.
test-fast: test-rust test-unit

test: build test-rust test-python

lint: build check-docs
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches examples scripts fuzz/python
	$(VENV)/bin/ruff format --check python tests benches examples scripts fuzz/python
	$(PY) -m mypy
	$(PY) -m mypy.stubtest juggler._juggler

# The README's option tables are generated from python/juggler/config.py.
docs: build
	$(PY) scripts/options_doc.py README.md

check-docs: build
	$(PY) scripts/options_doc.py --check README.md

fmt: venv
	cargo fmt
	$(VENV)/bin/ruff format python tests benches examples scripts fuzz/python

bench: build
	$(PY) -m pip install -q -r requirements-bench.txt
	cargo build --release --quiet --manifest-path benches/hyperlimit/Cargo.toml
	bash benches/run.sh

# WebSockets, HTTP/2 and TLS against Uvicorn, Granian and Hypercorn (needs h2load and wrk).
bench-protocols: build
	$(PY) -m pip install -q -r requirements-bench.txt
	command -v h2load >/dev/null || (apt-get update -qq && apt-get install -y -qq nghttp2-client)
	cargo build --release --quiet --manifest-path benches/wsload/Cargo.toml
	cd benches && $(PY) protocols.py --output PROTOCOLS.md

# Async vs threads vs processes on PostgreSQL (issue 10): benches/seed/RESULTS.md and seed.png.
bench-seed: build
	$(PY) -m pip install -q -r requirements-bench.txt
	bash benches/run.sh benches/seed/run.py

# Admission by loop lag: an open-loop overload against juggler (with and without
# --max-loop-lag), Uvicorn and Granian; see benches/OVERLOAD.md.
bench-overload: build
	$(PY) -m pip install -q -r requirements-bench.txt
	$(PY) benches/overload.py --duration 10

# HTTP/2 floods from a client that never reads, against Granian and Hypercorn (issue 19):
# memory growth and a second client's latency; see benches/H2FLOOD.md.
bench-h2flood: build
	$(PY) -m pip install -q -r requirements-bench.txt
	$(PY) benches/h2flood.py --output benches/H2FLOOD.md

# Instructions per request through the Rust/Python crossing (stable on a noisy machine).
bench-callgrind: build
	bash benches/callgrind.sh

# WebSocket conformance: the Autobahn|Testsuite fuzzingclient (cases 1 to 13, with
# permessage-deflate) against juggler and an echo app, through the runner in
# ../shared/autobahn (AUTOBAHN_DIR). About 15 minutes, so not part of `make test` or CI; the
# fixed gaps have fast tests in tests/e2e/test_websockets.py. See docs/conformance.md.
conformance: build
	bash scripts/conformance.sh

# Mutation testing of the Rust core with its unit tests (slow: not part of `make test` or CI).
# MUTANTS_FILES picks the files (globs); results land in mutants.out/. See docs/testing.md.
# MUTANTS_ARGS adds cargo-mutants flags, e.g. a sample: --shard 0/8 --sharding round-robin,
# or --iterate to re-run only what the last run did not catch.
MUTANTS_FILES ?= src/http/*.rs src/transport/*.rs src/bridge/*.rs
MUTANTS_ARGS ?=
mutants: venv
	command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
	LD_LIBRARY_PATH=$(PYLIBDIR) cargo mutants --no-shuffle --timeout 120 -j 1 $(MUTANTS_ARGS) \
		$(foreach f,$(MUTANTS_FILES),--file '$(f)') -- --lib

# Mutation testing of the Python package (MUTMUT_TESTS: the fast unit tests by default; the
# end-to-end ones work too, slowly). mutmut 2 mutates the files in place, so the juggler
# processes the tests start run the mutant. mutmut 2 counts only exit code 1 as a kill, and
# pytest exits 2 when a mutant breaks the module's import: the runner turns every failure into
# 1. No bytecode is read or written: a mutant the same size as the one before, written within
# the same second, could run from the stale .pyc.
MUTMUT_PATHS ?= python/juggler/channel.py
MUTMUT_TESTS ?= tests/unit/test_channel.py
mutants-python: build
	$(PY) -m pip install -q "mutmut>=2.4,<3"
	find python -name __pycache__ -type d -prune -exec rm -rf {} +
	-PYTHONDONTWRITEBYTECODE=1 $(VENV)/bin/mutmut run --paths-to-mutate "$(MUTMUT_PATHS)" \
		--runner "sh -c '$(PY) -m pytest -x -q -p no:cacheprovider $(MUTMUT_TESTS) || exit 1'"
	$(VENV)/bin/mutmut results

# Fuzzing (issue 19; docs/testing.md, "Fuzzing"): cargo-fuzz targets in fuzz/ for the parsers
# juggler wrote itself, and an atheris target for the TOML options (that conversion is Python).
# The targets link the library without `extension-module`; they call no Python, so the
# linker drops libpython (PYO3_PYTHON above still tells pyo3's build which Python it is).
# The code fuzzed is safe Rust, so no sanitizer by default: twice the executions, and stable
# Rust is enough (FUZZ_TOOLCHAIN=+nightly FUZZ_SANITIZER=address for ASan).
FUZZ_TARGETS := forwarded static_path access_log_format ws_reassembly h2_sniff proxy_header
FUZZ_SECONDS ?= 600
FUZZ_TOOLCHAIN ?=
FUZZ_SANITIZER ?= none
FUZZ_CARGO = cargo $(FUZZ_TOOLCHAIN) fuzz
FUZZ_BIN = fuzz/target/$(shell rustc -vV | sed -n 's/^host: //p')/release
FUZZ_PY_TARGET := fuzz/python/toml_options.py

$(VENV)/.fuzz-installed: requirements-fuzz.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-fuzz.txt
	touch $@

fuzz-build: build $(VENV)/.fuzz-installed
	command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	$(FUZZ_CARGO) build --debug-assertions -s $(FUZZ_SANITIZER)

# Long: FUZZ_SECONDS per target, one at a time, new inputs kept in fuzz/corpus/TARGET.
fuzz: fuzz-build
	mkdir -p fuzz/artifacts
	set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t; \
		nice -n 19 $(FUZZ_BIN)/$$t fuzz/corpus/$$t fuzz/seeds/$$t \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=fuzz/artifacts/$$t-; \
	done
	mkdir -p fuzz/corpus/toml_options
	nice -n 19 $(PY) $(FUZZ_PY_TARGET) -dict=fuzz/python/toml_options.dict \
		fuzz/corpus/toml_options fuzz/seeds/toml_options \
		-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=fuzz/artifacts/toml_options-

# The corpora minimised before they are committed. libFuzzer's merge runs the target again as
# argv[0]: the atheris script is executable, and finds the venv's python3 first on PATH.
fuzz-cmin: fuzz-build
	set -e; for t in $(FUZZ_TARGETS) toml_options; do \
		rm -rf fuzz/corpus/$$t.min; mkdir -p fuzz/corpus/$$t.min; \
		if [ $$t = toml_options ]; then run="$(PY) $(FUZZ_PY_TARGET)"; else run=$(FUZZ_BIN)/$$t; fi; \
		$$run -merge=1 fuzz/corpus/$$t.min fuzz/corpus/$$t fuzz/seeds/$$t; \
		rm -rf fuzz/corpus/$$t; mv fuzz/corpus/$$t.min fuzz/corpus/$$t; \
	done

# CI: every committed input once through its target (-runs=0: the corpus only, no mutation).
fuzz-smoke: fuzz-build
	set -e; for t in $(FUZZ_TARGETS); do \
		$(FUZZ_BIN)/$$t fuzz/corpus/$$t fuzz/seeds/$$t -runs=0; \
	done
	$(PY) $(FUZZ_PY_TARGET) fuzz/corpus/toml_options fuzz/seeds/toml_options -runs=0

clean:
	rm -rf target $(VENV)
