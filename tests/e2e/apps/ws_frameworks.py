"""WebSocket endpoints written the way FastAPI and Starlette users write them."""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.routing import WebSocketRoute

fastapi_app = FastAPI()


@fastapi_app.websocket("/rooms/{room}")
async def room(websocket: WebSocket, room: str, name: str = "anon") -> None:
    await websocket.accept()
    await websocket.send_json({"room": room, "name": name})
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"echo": data, "room": room})
    except WebSocketDisconnect as exc:
        # Nothing to send to; the code is what a chat app would log.
        print(f"fastapi disconnect {exc.code}", flush=True)


@fastapi_app.websocket("/private")
async def private(websocket: WebSocket) -> None:
    if websocket.headers.get("authorization") != "secret":
        await websocket.close(code=1008)
        return
    await websocket.accept()
    await websocket.send_text("welcome")
    await websocket.close()


class Echo(WebSocketEndpoint):
    encoding = "bytes"

    async def on_receive(self, websocket, data: bytes) -> None:  # type: ignore[no-untyped-def]
        await websocket.send_bytes(data[::-1])

    async def on_disconnect(self, websocket, close_code: int) -> None:  # type: ignore[no-untyped-def]
        print(f"starlette disconnect {close_code}", flush=True)


starlette_app = Starlette(routes=[WebSocketRoute("/reverse", Echo)])
