"""The app of the systemd tests: answers with the worker's pid and the systemd variables
that leaked into its environment, and with JUGGLER_TEST_GATE set
its lifespan startup waits until the test says go (a byte on that UNIX socket), so that the
test can look at what systemd was told while a worker is still starting."""

import asyncio
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                gate = os.environ.get("JUGGLER_TEST_GATE")
                if gate:
                    reader, writer = await asyncio.open_unix_connection(gate)
                    await reader.read(1)
                    writer.close()
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    # What systemd passed must not reach the workers' environment (nor their subprocesses').
    leaked = [v for v in ("LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET") if v in os.environ]
    body = f"{os.getpid()} leaked={','.join(leaked)}"
    await send({"type": "http.response.body", "body": body.encode()})
