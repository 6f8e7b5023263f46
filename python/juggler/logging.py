"""Logging through Python's ``logging``: ``juggler.error`` and ``juggler.access``."""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

error_logger = logging.getLogger("juggler.error")
access_logger = logging.getLogger("juggler.access")


class LevelFormatter(logging.Formatter):
    """``INFO:     message``, the padded level prefix Uvicorn users read every day."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelprefix = (record.levelname + ":").ljust(10)
        return super().format(record)


def configure(level: str) -> None:
    """Installs juggler's handlers unless the application already configured these loggers."""
    numeric = LEVELS[level]
    for logger, stream in ((error_logger, sys.stderr), (access_logger, sys.stdout)):
        logger.setLevel(numeric)
        if not logger.handlers:
            handler = logging.StreamHandler(stream)
            handler.setFormatter(LevelFormatter("%(levelprefix)s%(message)s"))
            logger.addHandler(handler)
            logger.propagate = False
