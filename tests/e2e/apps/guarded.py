"""Apps for the proxy-header, limit, timeout and health tests: an ASGI app and a WSGI app
that show what they were given and say (as ``EVENT <what> <key>`` lines) what happened."""

import asyncio
import json
import time
from urllib.parse import parse_qsl


def event(what: str, key: str) -> None:
    print(f"EVENT {what} {key}", flush=True)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return
    q = dict(parse_qsl(scope["query_string"].decode()))
    key = q.get("key", "-")
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(view(scope))})
        await send({"type": "websocket.close"})
        return
    path = scope["path"]
    event("CALLED", key)
    if path == "/read":
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                event("DISCONNECT", key)
                return
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        return await answer(send, str(total).encode())
    if path == "/sleep":
        try:
            await asyncio.sleep(float(q.get("s", "30")))
        except asyncio.CancelledError:
            event("CANCELLED", key)
            raise
        return await answer(send, b"slept")
    if path == "/slow-stream":
        # The head and a first chunk go out at once, the rest after a while.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"stream", "more_body": True})
        await asyncio.sleep(float(q.get("s", "1")))
        await send({"type": "http.response.body", "body": b"ed"})
        return
    return await answer(send, json.dumps(view(scope)).encode())


def view(scope) -> dict:
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    return {
        "client": scope["client"],
        "server": scope["server"],
        "scheme": scope["scheme"],
        "host": [v for k, v in headers if k == "host"],
    }


async def answer(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def wsgi(environ, start_response):
    q = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    key = q.get("key", "-")
    path = environ["PATH_INFO"]
    event("CALLED", key)
    if path == "/read":
        try:
            body = environ["wsgi.input"].read()
        except OSError as exc:
            event("INPUT-ERROR", f"{key} {type(exc).__name__}")
            raise
        out = str(len(body)).encode()
    elif path == "/sleep":
        time.sleep(float(q.get("s", "2")))
        event("SLEPT", key)
        out = b"slept"
    else:
        keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME")
        out = json.dumps({k: environ.get(k) for k in (*keys, "SERVER_PORT")}).encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]
