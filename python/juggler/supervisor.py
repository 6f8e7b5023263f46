"""The master process: binds the socket, loads the app, runs the worker.

Today one worker runs in this process; the supervisor that forks several, restarts and
recycles them builds on this module (DESIGN.md, "Processes and threads").
"""

from __future__ import annotations

import sys

from . import logging as jlogging
from .config import Config
from .importer import ImportFromStringError, load_app
from .sockets import BindError, bind
from .worker import EXIT_APP_LOAD, Worker

EXIT_BIND_FAILED = 1


def run(config: Config) -> int:
    jlogging.configure(config.log_level)
    try:
        app = load_app(config.app, factory=config.factory, app_dir=config.app_dir)
    except ImportFromStringError as exc:
        _fatal(str(exc))
        return EXIT_APP_LOAD
    try:
        sock = bind(config)
    except BindError as exc:
        _fatal(str(exc))
        return EXIT_BIND_FAILED
    try:
        return Worker(config, sock, app).run()
    except RuntimeError as exc:
        _fatal(str(exc))
        return 1
    finally:
        sock.close()


def _fatal(message: str) -> None:
    print(f"juggler: error: {message}", file=sys.stderr)
