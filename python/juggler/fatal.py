"""Errors that stop juggler before it serves: one line, ``juggler: error: MESSAGE``."""

from __future__ import annotations

import logging
import sys

from . import logging as jlogging

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


def install_fatal_formatter() -> None:
    # Only on the handlers juggler installed itself: an app's own logging setup formats fatal
    # errors its own way (the record still carries the FATAL attribute to tell them apart).
    for handler in jlogging.error_logger.handlers:
        formatter = handler.formatter
        if isinstance(formatter, jlogging.LevelFormatter):
            handler.setFormatter(FatalFormatter(formatter))


def fatal(message: str) -> None:
    # CRITICAL, so that --log-level critical still shows why juggler exits.
    if jlogging.error_logger.isEnabledFor(logging.CRITICAL):
        jlogging.error_logger.critical("%s", message, extra={FATAL: True})
    else:
        # The app's logging setup switched juggler's logger off (dictConfig disables existing
        # loggers unless told not to); the reason juggler exits must still be seen.
        print(f"juggler: error: {message}", file=sys.stderr)
