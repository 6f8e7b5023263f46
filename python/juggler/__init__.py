"""juggler: a Python web application server with a Rust core."""

from __future__ import annotations

import sys
from typing import Any

from ._juggler import ClientDisconnected, ConfigError, ProtocolError
from ._juggler import __version__ as __version__

__all__ = ["ClientDisconnected", "ConfigError", "ProtocolError", "__version__", "run"]


class RunOptionError(ConfigError, TypeError):
    """A keyword of ``juggler.run()`` that is unknown or has a bad value: a ConfigError like
    any other, and a TypeError, as a bad keyword argument is."""


def run(app: Any, **options: Any) -> None:
    """Serves ``app`` (an ASGI or WSGI callable or a "module:attribute" string) until stopped.

    Takes the same options as the command line, by their Python names
    (``port=8001``, ``interface="wsgi"``, ``threads=64``, ``header=[("x-a", "1")]``, ...);
    hooks (``worker_start``, ``worker_exit``, ``on_starting``, ``on_reload``, ``on_exit``)
    take a function as well as its "module:function" string.
    Exits the process with a non-zero status if the app cannot be loaded or started.
    """
    from .config import Config
    from .supervisor import run as supervise

    try:
        config = Config.resolve(app, options, source="juggler.run()")
    except ConfigError as exc:
        raise RunOptionError(f"juggler.run(): {exc}") from None
    code = supervise(config)
    if code:
        sys.exit(code)
