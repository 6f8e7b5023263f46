"""A blocking WSGI handler: every request sleeps 10 ms (like a database call), which releases
the GIL, so T threads can serve at most T / 0.01 requests per second."""

import time

BODY = b"Hello, world!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    time.sleep(0.01)
    start_response("200 OK", HEADERS)
    return [BODY]
