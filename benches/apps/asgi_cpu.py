"""Raw ASGI app doing about 5 ms of pure-Python work per request (on the benchmark machine):
CPU-bound, so only more processes make it faster."""

WORK = 160_000


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    total = sum(i * i for i in range(WORK))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": str(total).encode()})
