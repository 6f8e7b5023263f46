"""Apps that keep what each request to /leak allocates, so their worker only grows (for
--max-worker-memory). Every answer is the worker's pid."""

import os
from urllib.parse import parse_qs

MIB = 1024 * 1024
#: Never freed: the leak.
LEAKED: list[bytes] = []


def _serve(path: str, query: str) -> bytes:
    if path == "/leak":
        mib = int(parse_qs(query).get("mib", ["8"])[0])
        # Written to, so that every page is resident (a zeroed buffer may not be).
        LEAKED.append(b"\x01" * (mib * MIB))
    return str(os.getpid()).encode()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = _serve(scope["path"], scope["query_string"].decode())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def wsgi(environ, start_response):
    body = _serve(environ["PATH_INFO"], environ.get("QUERY_STRING", ""))
    start_response("200 OK", [("content-type", "text/plain")])
    return [body]
