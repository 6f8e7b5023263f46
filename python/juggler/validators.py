"""What each option accepts, as functions that take either text or an already typed value.

Text comes from the command line, ``JUGGLER_*`` variables and TOML strings; typed values come
from ``juggler.run(**options)`` and TOML numbers, booleans and lists. A validator returns the
option's value or raises ``ValueError``/``TypeError`` saying what is wrong; ``config.py``
turns that into a ``ConfigError`` naming the flag.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Validator = Callable[[Any], Any]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _kind(value: object) -> str:
    return type(value).__name__


def text(value: object) -> str:
    # A TOML number for a text option (http = 2) is that number's text; a bool is not.
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"must be text, not {_kind(value)}")


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("must be true or false")
    raise TypeError(f"must be true or false, not {_kind(value)}")


def integer(minimum: int | None = None, maximum: int | None = None) -> Validator:
    """Whole numbers from ``minimum`` to ``maximum``. A float is refused even when integral:
    ``limit_request_body=1e6`` is more likely a slip than a byte count."""

    def validate(value: object) -> int:
        if isinstance(value, str):
            number = int(value.strip())
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise TypeError(f"must be an integer, not {_kind(value)}")
        if minimum is not None and number < minimum:
            if maximum is not None:
                raise ValueError(f"must be between {minimum} and {maximum}")
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return number

    return validate


def seconds(value: object) -> float:
    """A non-negative number (of seconds or milliseconds), as a float."""
    if isinstance(value, str):
        number = float(value.strip())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise TypeError(f"must be a number, not {_kind(value)}")
    if math.isnan(number) or number < 0:
        raise ValueError("must be a non-negative number")
    return number


def one_of(*choices: str) -> Validator:
    def validate(value: object) -> str:
        word = text(value)
        if word not in choices:
            raise ValueError("choose from " + ", ".join(choices))
        return word

    return validate


def url_path(value: object) -> str:
    path = text(value)
    if not path.startswith("/"):
        raise ValueError("must start with '/'")
    return path


def hook(value: object) -> Any:
    """A callable (from ``juggler.run()``), or its import string ``module:function``; the
    import itself happens when juggler starts (``hooks.py``)."""
    if callable(value):
        return value
    if not isinstance(value, str):
        raise TypeError(f"must be 'module:function' or a callable, not {_kind(value)}")
    module, sep, name = value.partition(":")
    if not sep or not module.strip() or not name.strip():
        raise ValueError("must look like 'module:function'")
    return value


def split_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT`` (every IPv4 interface) as (host, port);
    ValueError says what is wrong."""
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ValueError("must look like HOST:PORT")
    number = integer(0, 65535)(port)
    if not host:
        return "0.0.0.0", number
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address must be in brackets: [ADDRESS]:PORT")
    return host, number


def host_port(value: object) -> str:
    # Only text: a bare number (metrics_bind=9000) is a port without its host.
    if not isinstance(value, str):
        raise TypeError(f"must be text like HOST:PORT, not {_kind(value)}")
    split_host_port(value)
    return value


def header(value: object) -> tuple[str, str]:
    """``NAME:VALUE`` text or a (name, value) pair of texts."""
    if isinstance(value, str):
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise ValueError("must look like NAME:VALUE")
        return name.strip(), rest.strip()
    if isinstance(value, (tuple, list)) and len(value) == 2:
        name, rest = value
        if isinstance(name, str) and isinstance(rest, str):
            return name, rest
    raise TypeError(f"must be NAME:VALUE or a (name, value) pair of texts, not {value!r}")


def many(item: Validator) -> Validator:
    """A repeatable option: comma-separated text, or a list or tuple of items."""

    def validate(value: object) -> tuple[Any, ...]:
        if isinstance(value, str):
            items: list[object] = [v for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise TypeError(f"must be a list, not {_kind(value)}")
        return tuple(item(v) for v in items)

    return validate
