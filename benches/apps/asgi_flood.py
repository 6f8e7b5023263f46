"""Hello on every path, except /hold: a request whose app never reads its body nor answers
(the target of an empty DATA flood)."""

from __future__ import annotations

import asyncio
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            phase = "startup" if message["type"] == "lifespan.startup" else "shutdown"
            await send({"type": f"lifespan.{phase}.complete"})
            if phase == "shutdown":
                return
    if scope["path"] == "/hold":
        await asyncio.Event().wait()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"Hello, world!"})
