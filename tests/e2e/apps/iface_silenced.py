"""An app whose logging setup switches juggler's loggers off, as a bare dictConfig does.

Its own app cannot be told ASGI from WSGI, so juggler exits with a fatal error at once.
"""

import logging.config

logging.config.dictConfig({"version": 1})


def app(*args):
    raise RuntimeError("never called")
