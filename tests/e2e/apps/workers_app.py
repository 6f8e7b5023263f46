"""Apps for the worker-process tests: who serves, handlers that hang, slow requests.

Importing this module prints ``imported workers_app in PID``, so that a test can tell which
processes imported the app (the supervisor must not, unless --preload).
"""

import asyncio
import os
import sys
import time
from urllib.parse import parse_qs

# One write: workers forked together import at once, and print() under PYTHONUNBUFFERED writes
# the text and its newline apart, so two workers' lines could run together.
os.write(2, f"imported workers_app in {os.getpid()}\n".encode())


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    query = parse_qs(scope["query_string"].decode())
    if path == "/spin":
        print(f"spinning in {os.getpid()}", file=sys.stderr, flush=True)
        while True:  # a handler that never yields: the event loop stops turning
            pass
    if path == "/sleep":
        print(f"sleeping in {os.getpid()}", file=sys.stderr, flush=True)
        await asyncio.sleep(float(query.get("s", ["1"])[0]))
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def wsgi(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        print(f"hanging in {os.getpid()}", file=sys.stderr, flush=True)
        while True:  # a call that never returns and sends nothing
            time.sleep(0.01)
    start_response("200 OK", [("content-type", "text/plain")])
    return [str(os.getpid()).encode()]
