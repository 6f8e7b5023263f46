"""Apps whose lifespan misbehaves in the ways the tests check."""

import asyncio
import os


async def _http(scope, receive, send):
    body = repr(sorted(scope.get("state", {}).items())).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def startup_failed(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database is unreachable"})
        return
    await _http(scope, receive, send)


async def startup_raises(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("config file missing")
    await _http(scope, receive, send)


async def no_lifespan(scope, receive, send):
    # Apps that only know HTTP raise on other scopes: 'auto' must carry on without lifespan.
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope {scope['type']}")
    await _http(scope, receive, send)


async def with_state(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["db"] = "connected"
                await send({"type": "lifespan.startup.complete"})
            else:
                print("SHUTDOWN-HOOK", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    await _http(scope, receive, send)


async def slow_shutdown(scope, receive, send):
    """A shutdown that takes a while (closing a pool, flushing a queue), and says when it is
    done."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        print(f"SHUTDOWN-BEGAN {os.getpid()}", flush=True)
        await asyncio.sleep(1.5)
        print(f"SHUTDOWN-DONE {os.getpid()}", flush=True)
        await send({"type": "lifespan.shutdown.complete"})
        return
    await _http(scope, receive, send)


async def shutdown_failed(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "could not flush the queue"})
        return
    await _http(scope, receive, send)


def factory():
    return with_state


class Holder:
    app = with_state
