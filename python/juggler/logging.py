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


class DefaultHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler juggler installs; while it is the access logger's only one, the Rust core
    writes access lines to stdout itself, formatted as this handler would."""


def configure(level: str) -> None:
    """Installs juggler's handlers unless the application already configured these loggers."""
    numeric = LEVELS[level]
    for logger, stream in ((error_logger, sys.stderr), (access_logger, sys.stdout)):
        logger.setLevel(numeric)
        if not logger.handlers:
            handler = DefaultHandler(stream)
            handler.setFormatter(LevelFormatter("%(levelprefix)s%(message)s"))
            logger.addHandler(handler)
            logger.propagate = False


def access_is_direct() -> bool:
    """Whether access lines may skip Python's logging: juggler's own handler, writing to the
    process's stdout, is all there is on ``juggler.access``."""
    handlers = access_logger.handlers
    if not handlers or access_logger.filters or access_logger.propagate:
        return False
    for h in handlers:
        if type(h) is not DefaultHandler or h.filters:
            return False
        try:
            if h.stream.fileno() != 1:
                return False
        except (AttributeError, OSError, ValueError):
            return False
    return True


class LogConfigError(Exception):
    """``--log-config`` names a file logging cannot be configured from."""


def load_config(path: str) -> None:
    """Configures logging from ``path``: dictConfig JSON or YAML, else the ini format."""
    import logging.config

    try:
        if path.endswith(".json"):
            import json

            with open(path) as f:
                logging.config.dictConfig(json.load(f))
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise LogConfigError(
                    f"--log-config {path}: YAML needs the PyYAML package (pip install pyyaml)"
                ) from None
            with open(path) as f:
                logging.config.dictConfig(yaml.safe_load(f))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except LogConfigError:
        raise
    except Exception as exc:
        raise LogConfigError(f"--log-config {path}: {type(exc).__name__}: {exc}") from None
