"""A 50 ms handler, ASGI (``app``) and WSGI (``wsgi_app``), for ``benches/drain.py``: long enough
that a restart always finds requests in flight and connections waiting in the backlog."""

import asyncio
import time

BODY = b"ok"
DELAY = 0.05


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await asyncio.sleep(DELAY)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def wsgi_app(environ, start_response):
    time.sleep(DELAY)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [BODY]
