"""A raw ASGI app with one route per behaviour the tests look at."""

import asyncio
import json
from urllib.parse import unquote

EVENTS: dict[str, list[str]] = {}


async def read_body(receive):
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RuntimeError("client disconnected while sending the body")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def respond(send, status=200, body=b"", headers=(), content_type=b"text/plain"):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def query(scope):
    out = {}
    for part in scope["query_string"].decode().split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["started"] = "yes"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            print("LIFESPAN-SHUTDOWN-RAN", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    # As in Starlette: with --root-path, scope["path"] carries the prefix; routes do not.
    path = scope["path"].removeprefix(scope["root_path"])
    q = query(scope)
    if path == "/scope":
        body = await read_body(receive)
        out = {
            k: v
            for k, v in scope.items()
            if k not in ("headers", "raw_path", "query_string", "state")
        }
        out["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        out["raw_path"] = scope["raw_path"].decode("latin-1")
        out["query_string"] = scope["query_string"].decode("latin-1")
        out["state"] = dict(scope.get("state", {}))
        out["body_length"] = len(body)
        return await respond(send, body=json.dumps(out).encode(), content_type=b"application/json")
    if path == "/echo":
        body = await read_body(receive)
        return await respond(send, body=body, content_type=b"application/octet-stream")
    if path == "/count":
        # Streams the upload and reports its size and the largest chunk seen, without keeping it.
        total, largest, chunks = 0, 0, 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            total += len(chunk)
            largest = max(largest, len(chunk))
            chunks += 1
            if not message.get("more_body", False):
                break
        out = json.dumps({"total": total, "largest": largest, "chunks": chunks}).encode()
        return await respond(send, body=out, content_type=b"application/json")
    if path == "/stream":
        n, size = int(q.get("n", "3")), int(q.get("size", "5"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        for i in range(n):
            await send(
                {
                    "type": "http.response.body",
                    "body": str(i % 10).encode() * size,
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return None
    if path == "/download":
        mib = int(q.get("mib", "1"))
        chunk = b"x" * (1 << 20)
        headers = [(b"content-length", str(mib << 20).encode())] if q.get("cl") else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for _ in range(mib):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return None
    if path == "/raise-before":
        raise ValueError("boom before the response")
    if path == "/raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom after the response started")
    if path == "/no-response":
        return None
    if path == "/half-response":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        return None
    if path == "/bad-send":
        await send({"type": "http.response.body", "body": b"no start first"})
        return None
    if path == "/wait-disconnect":
        # Like an SSE handler: stream, and stop when receive() says the client went away.
        key = q["key"]
        EVENTS[key] = ["started"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
        message = await receive()
        while message["type"] == "http.request":
            message = await receive()
        EVENTS[key].append(message["type"])
        print(f"EVENT {key} {message['type']}", flush=True)
        return None
    if path == "/wait-disconnect-no-response":
        key = q["key"]
        EVENTS[key] = ["started"]
        print(f"EVENT {key} started", flush=True)
        await read_body(receive)
        message = await receive()
        EVENTS[key].append(message["type"])
        print(f"EVENT {key} {message['type']}", flush=True)
        return None
    if path == "/produce":
        # Streams without pausing itself: only send() backpressure can slow it down.
        mib = int(q.get("mib", "1"))
        chunk = b"p" * (64 * 1024)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(mib * 16):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if i % 16 == 15:
                print(f"PRODUCED {q['key']} {(i + 1) // 16}", flush=True)
        await send({"type": "http.response.body", "body": b""})
        return None
    if path == "/send-after-disconnect":
        key = q["key"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
                await asyncio.sleep(0.005)
        except Exception as exc:
            print(f"SEND-RAISED {key} {type(exc).__name__} {isinstance(exc, OSError)}", flush=True)
            raise
    if path == "/task":
        task = asyncio.current_task()
        return await respond(send, body=(task.get_name() if task else "no task").encode())
    if path == "/receive-after-response":
        # ASGI: once the response is complete, receive() says the request is over.
        await respond(send, body=b"done")
        message = await receive()
        while message["type"] == "http.request":
            message = await receive()
        print(f"AFTER-RESPONSE {q['key']} {message['type']}", flush=True)
        return None
    if path == "/loop":
        return await respond(send, body=type(asyncio.get_running_loop()).__module__.encode())
    if path == "/events":
        return await respond(send, body=json.dumps(EVENTS.get(q["key"], [])).encode())
    if path == "/sleep":
        if "key" in q:
            print(f"SLEEP-STARTED {q['key']}", flush=True)
        await asyncio.sleep(float(q.get("s", "0.1")))
        return await respond(send, body=b"slept" + q.get("tag", "").encode())
    if path == "/headers":
        headers = [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"x-custom", b"yes")]
        return await respond(send, body=b"ok", headers=headers)
    if path == "/shapes":
        # Shapes the spec allows that real apps send: headers as lists or from a generator,
        # no 'headers' key at all, bytearray and memoryview bodies.
        shape = q.get("h", "list")
        start = {"type": "http.response.start", "status": 200}
        if shape == "list":
            start["headers"] = [[b"content-type", b"text/css"], [b"x-a", bytearray(b"1")]]
        elif shape == "generator":
            start["headers"] = ((k, v) for k, v in [(b"content-type", b"text/css")])
        elif shape == "tuple":
            start["headers"] = ((b"content-type", memoryview(b"text/css")),)
        await send(start)
        await send({"type": "http.response.body", "more_body": True})
        await send({"type": "http.response.body", "body": bytearray(b"ab"), "more_body": True})
        await send({"type": "http.response.body", "body": memoryview(b"cd")})
        return None
    if path == "/raise-through-throw":
        # A future that is not exactly asyncio's: the task delivers its exception with
        # throw(), as it does for anyio's worker-thread results (FastAPI's sync endpoints).
        class Future(asyncio.Future):
            pass

        fut = Future()
        asyncio.get_running_loop().call_soon(fut.set_exception, RuntimeError("thrown in"))
        await fut
    if path == "/pathsend":
        # The file at ?path= through the path-send extension; ?cl= declares a Content-Length.
        assert "http.response.pathsend" in scope["extensions"]
        headers = [(b"content-type", b"application/octet-stream")]
        if "cl" in q:
            headers.append((b"content-length", q["cl"].encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": unquote(q["path"])})
        return None
    if path == "/no-status":
        await send({"type": "http.response.start", "headers": []})
        return None
    if path == "/body-str":
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": "text"})
        return None
    if path == "/minimal-messages":
        # Every optional key left out: no headers, no body, no more_body, then trailers.
        await send({"type": "http.response.start", "status": 204, "trailers": False})
        await send({"type": "http.response.body"})
        return None
    if path == "/wrong-length":
        headers = [(b"content-length", b"20")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})
        return None
    if path == "/bad-header-str":
        await send({"type": "http.response.start", "status": 200, "headers": [("a", "b")]})
        await send({"type": "http.response.body", "body": b"never"})
        return None
    if path == "/server-header":
        return await respond(send, body=b"ok", headers=[(b"server", b"mine")])
    if path == "/status":
        return await respond(send, status=int(q["code"]), body=b"")
    return await respond(send, status=404, body=b"not found")
