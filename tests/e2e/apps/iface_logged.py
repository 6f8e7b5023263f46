"""An app that watches juggler's error logger, to see fatal errors pass through logging.

Its own app cannot be told ASGI from WSGI, so juggler exits with a fatal error at once.
"""

import logging


class Capture(logging.Handler):
    def emit(self, record):
        fatal = getattr(record, "juggler_fatal", False)
        print(f"CAPTURED {record.levelname} fatal={fatal} {record.getMessage()}", flush=True)


logging.getLogger("juggler.error").addHandler(Capture())


def app(*args):
    raise RuntimeError("never called")
