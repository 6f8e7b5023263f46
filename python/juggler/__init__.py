"""juggler: a Python web application server with a Rust core."""

from __future__ import annotations

import sys
from typing import Any

from ._juggler import ClientDisconnected, ProtocolError
from ._juggler import __version__ as __version__

__all__ = ["ClientDisconnected", "ProtocolError", "__version__", "run"]


def run(app: Any, **options: Any) -> None:
    """Serves ``app`` (an ASGI or WSGI callable or a "module:attribute" string) until stopped.

    Takes the same options as the command line, by their Python names
    (``port=8001``, ``interface="wsgi"``, ``threads=64``, ``header=[("x-a", "1")]``, ...).
    Exits the process with a non-zero status if the app cannot be loaded or started.
    """
    from .config import Config, ConfigError
    from .supervisor import run as supervise

    try:
        config = Config.resolve(app, options, source="juggler.run()")
    except ConfigError as exc:
        raise TypeError(f"juggler.run(): {exc}") from None
    code = supervise(config)
    if code:
        sys.exit(code)
