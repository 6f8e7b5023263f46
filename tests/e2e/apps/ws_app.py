"""Raw ASGI WebSocket apps, in the message shapes the spec allows."""

from __future__ import annotations

import asyncio
from typing import Any

EVENTS: list[Any] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await http(scope, receive, send)
        return
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    handler = ROUTES.get(scope["path"], echo)
    await handler(scope, receive, send)


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = f"http {scope['path']} {scope.get('extensions')}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def scope_info(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": scope["subprotocols"][-1] if scope["subprotocols"] else None,
            "headers": [[b"x-extra", b"yes"]],
        }
    )
    info = {k: v for k, v in scope.items() if k not in ("headers", "state")}
    await send({"type": "websocket.send", "text": repr(info)})
    await send({"type": "websocket.close", "code": 4000, "reason": "done"})
    message = await receive()
    await send_event("scope_info closed", message)


async def send_event(name: str, message: Any) -> None:
    EVENTS.append((name, message))


async def close_before_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "websocket.close"})


async def deny(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"6")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"denied"})


async def raise_before_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise RuntimeError("boom before accept")


async def raise_after_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "websocket.accept"})
    await receive()
    raise RuntimeError("boom after accept")


async def return_after_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "websocket.accept"})


async def disconnect_report(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Waits for the client to go, then reports what it got through a second socket's
    shared state (the module-level log, read by /ws/events)."""
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            EVENTS.append(("disconnect", message))
            try:
                await send({"type": "websocket.send", "text": "too late"})
            except OSError as exc:
                EVENTS.append(("send after disconnect", type(exc).__name__))
            return


async def events(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "websocket.accept"})
    # Let a report from a connection closed just before reach the log.
    for _ in range(100):
        if EVENTS:
            break
        await asyncio.sleep(0.01)
    await send({"type": "websocket.send", "text": repr(EVENTS)})
    EVENTS.clear()
    await send({"type": "websocket.close"})


async def bad_send(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "websocket.accept"})
    try:
        await send({"type": "websocket.send", "text": "a", "bytes": b"b"})
    except Exception as exc:
        await send({"type": "websocket.send", "text": f"{type(exc).__name__}: {exc}"})
    await send({"type": "websocket.send", "bytes": bytearray(b"ba"), "text": None})
    await send({"type": "websocket.send", "bytes": memoryview(b"mv")})
    await send({"type": "websocket.close", "code": 1000, "reason": None})


async def flood(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Sends until the client stops it, to fill every buffer on the way."""
    await send({"type": "websocket.accept"})
    chunk = b"x" * 65536
    try:
        for _ in range(100_000):
            await send({"type": "websocket.send", "bytes": chunk})
    except OSError as exc:
        EVENTS.append(("flood stopped", type(exc).__name__))


async def wait_forever(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "websocket.accept"})
    message = await receive()
    EVENTS.append(("wait_forever", message))


async def broadcast(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Two tasks send on one socket at once, each far past the outgoing buffer."""
    await send({"type": "websocket.accept"})
    big = b"b" * (1200 * 1024)

    async def sender(tag: bytes) -> None:
        for i in range(3):
            await send({"type": "websocket.send", "bytes": tag + bytes([i]) + big})

    await asyncio.wait_for(asyncio.gather(sender(b"A"), sender(b"B")), 30)
    await send({"type": "websocket.close", "code": 4100})


async def slow_reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Falls behind its client for a while, then echoes everything."""
    await send({"type": "websocket.accept"})
    await asyncio.sleep(2)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message["text"]})


ROUTES = {
    "/broadcast": broadcast,
    "/slow-reader": slow_reader,
    "/scope": scope_info,
    "/close-before-accept": close_before_accept,
    "/deny": deny,
    "/raise-before-accept": raise_before_accept,
    "/raise-after-accept": raise_after_accept,
    "/return-after-accept": return_after_accept,
    "/disconnect": disconnect_report,
    "/events": events,
    "/bad-send": bad_send,
    "/flood": flood,
    "/wait": wait_forever,
}
