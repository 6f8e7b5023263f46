"""Apps for the metrics tests: answers of every kind, and requests that hold until the test
lets them go.

``/hold?port=P`` connects to the test's listener on 127.0.0.1:P and answers only once the
test closes that connection, so a test knows a request is in progress (it accepted the
connection) and ends it when it chooses, without sleeping.
"""

import asyncio
import socket
import time
from urllib.parse import parse_qs


def _port(query: bytes | str) -> int:
    text = query.decode() if isinstance(query, bytes) else query
    return int(parse_qs(text)["port"][0])


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/error":
        raise RuntimeError("the metrics test's app error")
    if path == "/hold":
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(scope["query_string"]))
        await reader.read()
        writer.close()
    if path == "/block":
        time.sleep(float(parse_qs(scope["query_string"].decode())["s"][0]))  # blocks the loop
    status = 404 if path == "/missing" else 200
    body = b"hello, metrics"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi(environ, start_response):
    if environ["PATH_INFO"] == "/hold":
        with socket.create_connection(("127.0.0.1", _port(environ["QUERY_STRING"]))) as s:
            s.recv(1)
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"hello, metrics"]
