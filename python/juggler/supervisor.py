"""The master process: binds the socket, loads the app, runs the worker.

Today one worker runs in this process; the supervisor that forks several, restarts and
recycles them builds on this module (DESIGN.md, "Processes and threads").
"""

from __future__ import annotations

import logging
import sys

from . import logging as jlogging
from .config import Config
from .exit_codes import EXIT_APP_LOAD, EXIT_BIND_FAILED
from .importer import ImportFromStringError, load_app
from .interfaces import resolve_interface
from .sockets import BindError, bind
from .worker import Worker


def run(config: Config) -> int:
    jlogging.configure(config.log_level)
    _install_fatal_formatter()
    try:
        app = load_app(config.app, factory=config.factory, app_dir=config.app_dir)
        interface, how = resolve_interface(
            app, config.interface, name=config.app if isinstance(config.app, str) else None
        )
    except ImportFromStringError as exc:
        _fatal(str(exc))
        return EXIT_APP_LOAD
    try:
        sock = bind(config)
    except BindError as exc:
        _fatal(str(exc))
        return EXIT_BIND_FAILED
    try:
        jlogging.error_logger.info("%s", describe_interface(config, interface, how))
        return Worker(config, sock, app, interface).run()
    except RuntimeError as exc:
        _fatal(str(exc))
        return EXIT_BIND_FAILED
    finally:
        sock.close()


def describe_interface(config: Config, interface: str, how: str) -> str:
    """The startup line naming the interface, e.g. ``Using the ASGI interface (detected)``."""
    if interface == "wsgi":
        return f"Using the WSGI interface with up to {config.threads} threads ({how})"
    return f"Using the {interface.upper()} interface ({how})"


#: Set on the log records of errors that stop juggler before it serves.
FATAL = "juggler_fatal"


class FatalFormatter(logging.Formatter):
    """Writes fatal errors as the one line ``juggler: error: MESSAGE`` the command line uses
    for bad options too, and every other record as the formatter it wraps would."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, FATAL, False):
            return f"juggler: error: {record.getMessage()}"
        return self.inner.format(record)


def _install_fatal_formatter() -> None:
    # Only on the handlers juggler installed itself: an app's own logging setup formats fatal
    # errors its own way (the record still carries the FATAL attribute to tell them apart).
    for handler in jlogging.error_logger.handlers:
        formatter = handler.formatter
        if isinstance(formatter, jlogging.LevelFormatter):
            handler.setFormatter(FatalFormatter(formatter))


def _fatal(message: str) -> None:
    # CRITICAL, so that --log-level critical still shows why juggler exits.
    if jlogging.error_logger.isEnabledFor(logging.CRITICAL):
        jlogging.error_logger.critical("%s", message, extra={FATAL: True})
    else:
        # The app's logging setup switched juggler's logger off (dictConfig disables existing
        # loggers unless told not to); the reason juggler exits must still be seen.
        print(f"juggler: error: {message}", file=sys.stderr)
