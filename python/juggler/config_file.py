"""``--config FILE``: options from a TOML file, by the same names as the flags.

Keys are option names with ``-`` or ``_`` (``timeout-keep-alive = 10`` or
``timeout_keep_alive = 10``), plus ``app``. A file's values come after flags and environment
variables and before defaults. An unknown key, or a value of the wrong type, is one error
naming the key and the file.
"""

from __future__ import annotations

import tomllib
from typing import Any

from .config import BY_NAME, ConfigError


def read(path: str) -> dict[str, Any]:
    """The options in the file at ``path``, by their Python names (``app`` included)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path!r}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse the config file {path!r}: {exc}") from None
    except UnicodeDecodeError as exc:
        # tomllib decodes the bytes itself, and this is not a TOMLDecodeError.
        raise ConfigError(
            f"cannot parse the config file {path!r}: not UTF-8 (byte {exc.start})"
        ) from None
    options: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name != "app" and (name not in BY_NAME or name == "config"):
            raise ConfigError(f"unknown option {key!r} in the config file {path!r}")
        if isinstance(value, dict):
            raise ConfigError(f"option {key!r} in {path!r} must be a value, not a table")
        options[name] = value
    return options
