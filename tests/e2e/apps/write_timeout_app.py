"""Apps that send more than a client takes, for --timeout-write: each prints what its
send() raised and what receive() gave afterwards, as EVENT lines the tests wait for."""

from __future__ import annotations

from urllib.parse import parse_qs

import juggler

CHUNK = b"x" * 65536
#: Bounds every send loop: far more than any socket and queue hold.
MAX_CHUNKS = 4096


def query(scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    q = query(scope)
    key = q["key"]
    if scope["type"] == "websocket":
        return await websocket(key, receive, send)
    # /stream?key=K&chunks=N: N chunks of 64 KiB (MAX_CHUNKS by default), then the end.
    chunks = min(int(q.get("chunks", MAX_CHUNKS)), MAX_CHUNKS)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        for _ in range(chunks):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except juggler.ClientDisconnected:
        print(f"EVENT {key} send raised ClientDisconnected", flush=True)
        message = await receive()
        print(f"EVENT {key} receive gave {message['type']}", flush=True)
        return
    print(f"EVENT {key} complete", flush=True)


async def websocket(key, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    try:
        for _ in range(MAX_CHUNKS):
            await send({"type": "websocket.send", "bytes": CHUNK})
    except juggler.ClientDisconnected:
        print(f"EVENT {key} send raised ClientDisconnected", flush=True)
        message = await receive()
        print(f"EVENT {key} receive gave {message['type']} {message.get('code')}", flush=True)
        return
    print(f"EVENT {key} complete", flush=True)
