"""Apps that report what the protocol layer gave them (scheme, HTTP version, connection)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

EVENTS: list[str] = []
#: Requests of /slow running now, and the most at once since the last /peak.
RUNNING = {"now": 0, "peak": 0}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            phase = "startup" if message["type"] == "lifespan.startup" else "shutdown"
            await send({"type": f"lifespan.{phase}.complete"})
            if phase == "shutdown":
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": scope["scheme"]})
        await send({"type": "websocket.close"})
        return
    path = scope["path"]
    if path == "/upload":
        digest, size, more = hashlib.sha256(), 0, True
        while more:
            message = await receive()
            digest.update(message.get("body", b""))
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await reply(send, {"size": size, "sha256": digest.hexdigest()})
    elif path == "/download":
        size = int(scope["query_string"] or b"0")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"d" * 65536
        for _ in range(size // len(chunk)):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/wait-disconnect":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"started", "more_body": True})
        message = await receive()
        while message["type"] == "http.request":  # the (empty) request body first
            message = await receive()
        EVENTS.append(f"{path} {message['type']}")
    elif path == "/events":
        await reply(send, list(EVENTS))
        EVENTS.clear()
    elif path == "/peak":
        await reply(send, RUNNING["peak"])
        RUNNING["peak"] = 0
    else:
        if path == "/slow":
            RUNNING["now"] += 1
            RUNNING["peak"] = max(RUNNING["peak"], RUNNING["now"])
            await asyncio.sleep(0.05)
            RUNNING["now"] -= 1
        client = scope["client"]
        await reply(
            send,
            {
                "scheme": scope["scheme"],
                "http_version": scope["http_version"],
                "client_port": client[1] if client else None,
            },
        )


async def reply(send: Any, data: Any) -> None:
    body = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = json.dumps(
        {
            "url_scheme": environ["wsgi.url_scheme"],
            "protocol": environ["SERVER_PROTOCOL"],
            "length": len(environ["wsgi.input"].read()),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
