#!/usr/bin/env python3
"""Atheris target: ``--config FILE``, a TOML file turned into juggler's options.

The conversion is Python (``juggler/config_file.py`` reads the file, each option's
validator in ``juggler/validators.py`` converts its value, ``Config.resolve`` checks them
together), so it is fuzzed with atheris rather than cargo-fuzz. Any input must give a
``Config`` or a ``ConfigError`` naming the problem; any other exception (or a Rust panic,
which PyO3 raises as ``PanicException``) is a finding.

Run from the repository root with the project's venv:
``.venv/bin/python fuzz/python/toml_options.py -dict=fuzz/python/toml_options.dict
fuzz/corpus/toml_options -max_total_time=600`` (``make fuzz`` does). The dictionary, the
option names as TOML keys and a few values, is made by ``--dict``.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import tomllib  # noqa: F401

    from juggler import _juggler, config_file, tls, validators  # noqa: F401
    from juggler.config import Config, ConfigError

# One file rewritten per input; tmpfs when there is one, so that the disk stays out of it.
_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_PATH = os.path.join(_DIR, f"juggler-fuzz-{os.getpid()}.toml")


def test_one_input(data: bytes) -> None:
    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        # An app is given, so the file's own `app` and every cross-option check are reached.
        config = Config.resolve("app:app", {"config": _PATH}, env={})
        # What the supervisor checks before forking (`_check_environment`): the TLS files and
        # the Rust core's own reading of the options (`src/options.rs`, `src/config.rs`).
        tls.settings(config)
        _juggler.CoreConfig(config)
    except ConfigError as exc:
        if not str(exc):
            raise AssertionError("a ConfigError without a message") from exc


def write_dict(path: str) -> None:
    """libFuzzer's dictionary: each option's name (both spellings) as a key, and values."""
    from juggler.config import BY_NAME

    words = [f"{n} = " for n in BY_NAME] + [f"{n.replace('_', '-')} = " for n in BY_NAME]
    words += ["app = ", "true", "false", "inf", "nan", "-1", "0", "1e309", '""', "[]", "\n"]
    with open(path, "w") as f:
        for w in words:
            escaped = w.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\x0A")
            f.write(f'"{escaped}"\n')


def main() -> None:
    if sys.argv[1:2] == ["--dict"]:
        write_dict(sys.argv[2])
        return
    atheris.Setup(sys.argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:
        if os.path.exists(_PATH):
            os.unlink(_PATH)


if __name__ == "__main__":
    main()
