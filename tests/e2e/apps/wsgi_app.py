"""A raw PEP 3333 app with one route per behaviour the WSGI tests look at.

Events the tests wait for are printed as ``EVENT <key> <what>`` lines (the server's stdout) and
kept in ``EVENTS`` (one process, many threads), which ``/events?key=...`` returns as JSON.
"""

import io
import json
import os
import socket
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qsl

EVENTS: dict[str, list[str]] = {}
_lock = threading.Lock()


def event(key: str, what: str) -> None:
    with _lock:
        EVENTS.setdefault(key, []).append(what)
    print(f"EVENT {key} {what}", flush=True)


def query(environ) -> dict[str, str]:
    return dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))


def respond(start_response, body: bytes, status="200 OK", content_type="text/plain", headers=()):
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *headers,
        ],
    )
    return [body]


def as_json(start_response, obj, status="200 OK"):
    return respond(start_response, json.dumps(obj).encode(), status, "application/json")


def jsonable(value):
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    return repr(value)


# --- wsgi.input -----------------------------------------------------------------------------


def read_pieces(stream, how: str) -> list[bytes]:
    """Reads the whole body with one method of wsgi.input; returns what each call gave."""
    pieces: list[bytes] = []
    if how == "read":
        pieces.append(stream.read())
    elif how == "read-none":
        pieces.append(stream.read(None))
    elif how == "read-minus1":
        pieces.append(stream.read(-1))
    elif how.startswith("read-"):  # read-N: read(N) until b""
        n = int(how.split("-", 1)[1])
        while chunk := stream.read(n):
            pieces.append(chunk)
    elif how == "readline":
        while line := stream.readline():
            pieces.append(line)
    elif how.startswith("readline-"):  # readline-N: readline(N) until b""
        n = int(how.split("-", 1)[1])
        while line := stream.readline(n):
            pieces.append(line)
    elif how == "readlines":
        pieces.extend(stream.readlines())
    elif how == "iter":
        pieces.extend(stream)
    else:
        raise ValueError(f"unknown input method {how!r}")
    return pieces


def input_route(environ, start_response):
    """Echoes the pieces one wsgi.input method returned, and what a read at the end gives."""
    q = query(environ)
    stream = environ["wsgi.input"]
    pieces = read_pieces(stream, q.get("how", "read"))
    after = [stream.read(), stream.read(10), stream.readline()]
    return as_json(
        start_response,
        {
            "pieces": [p.decode("latin-1") for p in pieces],
            "types": sorted({type(p).__name__ for p in pieces}),
            "after": [a.decode("latin-1") for a in after],
        },
    )


def echo_route(environ, start_response):
    q = query(environ)
    body = b"".join(read_pieces(environ["wsgi.input"], q.get("how", "read")))
    return respond(start_response, body, content_type="application/octet-stream")


def count_route(environ, start_response):
    """Reads the body with read(65536) in a loop without keeping it; reports its size."""
    stream = environ["wsgi.input"]
    total = largest = chunks = 0
    while chunk := stream.read(65536):
        total += len(chunk)
        largest = max(largest, len(chunk))
        chunks += 1
    return as_json(start_response, {"total": total, "largest": largest, "chunks": chunks})


# --- response iterables ---------------------------------------------------------------------


def stream_route(environ, start_response):
    q = query(environ)
    n, size = int(q.get("n", "3")), int(q.get("size", "1"))
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        for i in range(n):
            yield str(i % 10).encode() * size

    return gen()


def download_route(environ, start_response):
    q = query(environ)
    mib = int(q.get("mib", "1"))
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl"):
        headers.append(("Content-Length", str(mib << 20)))
    start_response("200 OK", headers)
    block = b"d" * (1 << 20)
    key = q.get("key", "")

    def gen():
        try:
            for _ in range(mib):
                yield block
        finally:
            if key:
                event(key, "closed")

    return gen()


class Closing:
    """A response iterable (not a generator) with close(), which records every call.

    ``mode``: ``finite`` yields ``n`` chunks; ``forever`` yields until the server stops
    iterating; ``raise`` raises after ``n`` chunks.
    """

    def __init__(self, key: str, mode: str, n: int, delay: float) -> None:
        self.key, self.mode, self.n, self.delay = key, mode, n, delay
        self.i = 0

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        if self.mode != "forever" and self.i >= self.n:
            if self.mode == "raise":
                event(self.key, "raising")
                raise RuntimeError(f"iterable failed midway {self.key}")
            raise StopIteration
        if self.i and self.delay:
            time.sleep(self.delay)
        self.i += 1
        if self.i == 1:
            event(self.key, "first-chunk")
        return f"chunk{self.i};".encode()

    def close(self) -> None:
        event(self.key, "closed")


def closing_route(environ, start_response):
    q = query(environ)
    key = q["key"]
    it = Closing(key, q.get("mode", "finite"), int(q.get("n", "3")), float(q.get("delay", "0")))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return it


def closing_list_route(environ, start_response):
    """A list subclass with close(): the server must call close() on any iterable."""
    key = query(environ)["key"]

    class ClosingList(list):
        def close(self):
            event(key, "closed")

    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return ClosingList([b"ab", b"cd"])


def sse_route(environ, start_response):
    """Server-sent events every 50 ms for as long as the client stays."""
    key = query(environ).get("key", "sse")
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])

    def gen():
        event(key, "started")
        i = 0
        try:
            while True:
                yield f"data: tick {i}\n\n".encode()
                i += 1
                time.sleep(0.05)
        finally:
            event(key, "closed")

    return gen()


def write_route(environ, start_response):
    """The legacy write() callable, then an iterable for the rest."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written-1;")
    write(b"")
    write(b"written-2;")
    return [b"returned-1;", b"", b"returned-2"]


# --- files ----------------------------------------------------------------------------------

FILE_PATTERN = bytes(range(256))


class RecordingFile(io.FileIO):
    """A real file that records any attempt of Python code to read it, and its closing."""

    key = ""

    def read(self, size=-1):
        event(self.key, "read")
        return super().read(size)

    def readinto(self, buffer):
        event(self.key, "readinto")
        return super().readinto(buffer)

    def readall(self):
        event(self.key, "readall")
        return super().readall()

    def close(self):
        if not self.closed:
            event(self.key, "file-closed")
        super().close()


def file_route(environ, start_response):
    q = query(environ)
    key, size = q["key"], int(q.get("size", "100000"))
    fd, path = tempfile.mkstemp(prefix="juggler-wsgi-")
    with os.fdopen(fd, "wb") as f:
        f.write((FILE_PATTERN * (size // 256 + 1))[:size])
    f = RecordingFile(path, "rb")
    f.key = key
    os.unlink(path)  # the open file stays readable
    headers = [("Content-Type", "application/octet-stream")]
    cl = q.get("cl", "1")
    if cl == "1":
        headers.append(("Content-Length", str(size)))
    elif cl != "0":
        headers.append(("Content-Length", cl))  # a length of the app's own
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 8192)


def file_bytesio_route(environ, start_response):
    """file_wrapper over a file-like object without a file descriptor."""
    size = int(query(environ).get("size", "20000"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    data = (FILE_PATTERN * (size // 256 + 1))[:size]
    return environ["wsgi.file_wrapper"](io.BytesIO(data), 1000)


# --- errors ---------------------------------------------------------------------------------


def exc_info_route(environ, start_response):
    when = query(environ)["when"]
    if when == "before":
        # Headers not sent yet: start_response with exc_info replaces them.
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            raise ValueError("replace me")
        except ValueError:
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain"), ("X-Second", "1")],
                sys.exc_info(),
            )
        return [b"replaced"]
    if when == "in-generator":
        # Still no body byte sent when the generator calls start_response again.
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])

        def gen():
            try:
                raise ValueError("replace me later")
            except ValueError:
                start_response("503 Service Unavailable", [("X-Second", "1")], sys.exc_info())
            yield b"replaced in generator"

        return gen()
    if when == "after":
        # Headers sent: start_response with exc_info re-raises, and the response is cut.
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"first;"
            try:
                raise ValueError("exc-info after headers were sent")
            except ValueError:
                start_response("500 Internal Server Error", [], sys.exc_info())
            yield b"never"

        return gen()
    if when == "twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"should not be sent"]
    raise ValueError(when)


def raise_route(environ, start_response):
    q = query(environ)
    where, key = q["where"], q.get("key", "")
    if where == "before-start":
        raise RuntimeError(f"boom before start {key}")
    if where == "after-start":
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError(f"boom after start {key}")
    if where == "first-chunk":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            raise RuntimeError(f"boom in the first chunk {key}")
            yield b"never"

        return gen()
    if where == "midway":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"part-1;"
            yield b"part-2;"
            raise RuntimeError(f"boom midway {key}")

        return gen()
    raise ValueError(where)


def bad_status_route(environ, start_response):
    status = query(environ)["status"]
    start_response(status, [("Content-Type", "text/plain")])
    return [b"bad status"]


def bad_header_route(environ, start_response):
    kind = query(environ)["kind"]
    headers = {
        "bytes-name": [(b"X-Bytes", "1")],
        "int-value": [("X-Int", 1)],
        "newline": [("X-Split", "a\r\nX-Injected: 1")],
        "lf": [("X-Split", "a\nX-Injected: 1")],
        "colon-name": [("X-Bad:Name", "1")],
        "not-a-tuple": ["X-Str: 1"],
    }[kind]
    start_response("200 OK", headers)
    return [b"bad header"]


def status_route(environ, start_response):
    code = query(environ).get("code", "200")
    return respond(start_response, f"status {code}".encode(), status=f"{code} Whatever")


def headers_route(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("X-Custom", "yes"),
            ("Content-Length", "2"),
        ],
    )
    return [b"ok"]


def hold_route(environ, start_response):
    """Holds its thread until the test lets go: connects to the test's port, waits for bytes."""
    port = int(query(environ)["port"])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        data = conn.recv(100)
    return respond(start_response, data)


def sleep_route(environ, start_response):
    q = query(environ)
    key = q.get("key", "")
    print(f"SLEEP-STARTED {key}", flush=True)
    time.sleep(float(q.get("s", "1")))
    print(f"SLEEP-DONE {key}", flush=True)
    return respond(start_response, b"slept")


def log_route(environ, start_response):
    msg = query(environ).get("msg", "hello")
    errors = environ["wsgi.errors"]
    errors.write(f"app-says {msg}\n")
    errors.writelines([f"app-lines {msg} 1\n", f"app-lines {msg} 2\n"])
    errors.write(f"app-flushed {msg}")
    errors.flush()
    return respond(start_response, b"logged")


def events_route(environ, start_response):
    key = query(environ)["key"]
    with _lock:
        found = list(EVENTS.get(key, []))
    return as_json(start_response, found)


def environ_route(environ, start_response):
    body = environ["wsgi.input"].read()
    out = {k: jsonable(v) for k, v in environ.items()}
    out["_body"] = body.decode("latin-1")
    out["_thread"] = threading.current_thread().name
    return as_json(start_response, out)


_barriers: dict[str, threading.Barrier] = {}


def barrier_route(environ, start_response):
    """Answers once ``n`` requests with the same key are inside the app at the same time."""
    q = query(environ)
    with _lock:
        barrier = _barriers.setdefault(q["key"], threading.Barrier(int(q["n"])))
    try:
        barrier.wait(timeout=10)
    except threading.BrokenBarrierError:
        return respond(start_response, b"alone", status="500 Internal Server Error")
    return respond(start_response, b"together")


def pid_route(environ, start_response):
    return as_json(start_response, {"pid": os.getpid()})


def wrong_length_route(environ, start_response):
    """A Content-Length that is not the body's: never put on the wire as it is."""
    declared = query(environ)["cl"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", declared)])
    return [b"hello"]


def reentrant_route(environ, start_response):
    """Headers from a generator that calls write(): the server must not lock itself up."""
    holder = {}

    def headers():
        yield ("Content-Type", "text/plain")
        try:
            holder["write"](b"too early")
        except Exception as exc:
            event("reentrant", type(exc).__name__)

    holder["write"] = start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("replace the head")
    except ValueError:
        start_response("200 OK", headers(), sys.exc_info())
    return [b"survived"]


ROUTES = {
    "/wrong-length": wrong_length_route,
    "/reentrant": reentrant_route,
    "/environ": environ_route,
    "/input": input_route,
    "/echo": echo_route,
    "/count": count_route,
    "/stream": stream_route,
    "/download": download_route,
    "/closing": closing_route,
    "/closing-list": closing_list_route,
    "/sse": sse_route,
    "/write": write_route,
    "/file": file_route,
    "/file-bytesio": file_bytesio_route,
    "/exc-info": exc_info_route,
    "/raise": raise_route,
    "/bad-status": bad_status_route,
    "/bad-header": bad_header_route,
    "/status": status_route,
    "/headers": headers_route,
    "/sleep": sleep_route,
    "/hold": hold_route,
    "/log": log_route,
    "/events": events_route,
    "/pid": pid_route,
    "/barrier": barrier_route,
}


def app(environ, start_response):
    route = ROUTES.get(environ["PATH_INFO"])
    if route is None:
        # Anything else under /environ/ echoes the environ too (for PATH_INFO tests).
        if environ["PATH_INFO"].startswith("/environ/"):
            return environ_route(environ, start_response)
        return respond(start_response, b"not found", status="404 Not Found")
    return route(environ, start_response)
