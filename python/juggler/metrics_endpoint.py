"""``--metrics-bind``: the supervisor answers Prometheus' scrapes itself.

The numbers are in memory the workers share with the supervisor (written by the Rust core,
see ``src/metrics``), so one address covers every worker, and a scrape still answers while
workers restart. The supervisor runs no thread (it forks), so this endpoint lives in its
loop: the listening socket and each connection are registered with the supervisor's
selector, never block, and each connection gets one answer and is closed. Connections are
few (a scraper or two), bounded in number, head size and time, so a stuck or hostile client
costs the supervisor nothing but a descriptor for a few seconds.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable

from .config import split_host_port

#: Path Prometheus scrapes by default.
METRICS_PATH = "/metrics"
#: Connections open at once; more wait in the listen backlog.
MAX_CONNECTIONS = 16
#: Time a connection has to send its request head and read the answer.
CONNECTION_TIMEOUT = 5.0
#: A request head larger than this is refused.
MAX_HEAD = 8192
BACKLOG = 64

#: Renders the metrics: given whether the client takes OpenMetrics, returns (content type,
#: text).
Render = Callable[[bool], "tuple[str, str]"]


class MetricsBindError(OSError):
    """The metrics address cannot be bound; the message names it."""


def bind(address: str) -> socket.socket:
    """A non-blocking listening socket on ``address`` (``HOST:PORT``, validated by config)."""
    host, port = split_host_port(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise MetricsBindError(f"cannot bind --metrics-bind {address}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise MetricsBindError(
            f"cannot bind --metrics-bind {address}: {exc.strerror or exc}"
        ) from None
    sock.setblocking(False)
    sock.set_inheritable(False)
    return sock


#: After accept() failed for want of descriptors or memory, how long before trying again
#: (the listener is not watched meanwhile, or the selector would report it on every turn).
ACCEPT_BACKOFF = 0.5


def wants_openmetrics(accept: str) -> bool:
    """Whether an ``Accept`` header prefers OpenMetrics to the 0.0.4 text format: the
    OpenMetrics media range has the higher quality, and not 0."""
    best = {"openmetrics": 0.0, "text": 0.0}
    for media_range in accept.split(","):
        kind, *params = (p.strip() for p in media_range.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kind = kind.lower()
        if kind == "application/openmetrics-text":
            best["openmetrics"] = max(best["openmetrics"], quality)
        elif kind in ("text/plain", "text/*", "*/*"):
            best["text"] = max(best["text"], quality)
    return best["openmetrics"] > 0 and best["openmetrics"] >= best["text"]


class _Connection:
    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.deadline = now + CONNECTION_TIMEOUT
        self.head = bytearray()
        self.out = memoryview(b"")


class MetricsEndpoint:
    def __init__(
        self, sock: socket.socket, selector: selectors.BaseSelector, render: Render
    ) -> None:
        self.sock = sock
        self.selector = selector
        self.render = render
        self.connections: dict[int, _Connection] = {}
        #: Whether the listening socket is watched: not while MAX_CONNECTIONS are open, or the
        #: selector would report the waiting ones again on every turn of the loop.
        self.listening = True
        #: When to watch the listener again after accept() ran out of descriptors.
        self.resume_at: float | None = None
        selector.register(sock, selectors.EVENT_READ, self)

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def fds(self) -> list[int]:
        """Descriptors a forked worker must close."""
        return [self.sock.fileno(), *self.connections]

    def owns(self, key: selectors.SelectorKey) -> bool:
        return key.data is self or isinstance(key.data, _Connection)

    def on_ready(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.data is self:
            self._accept()
            return
        conn: _Connection = key.data
        if mask & selectors.EVENT_READ and not len(conn.out):
            self._read(conn)
        elif mask & selectors.EVENT_WRITE:
            self._write(conn)

    def expire(self, now: float | None = None) -> None:
        """Closes connections that ran out of time."""
        now = time.monotonic() if now is None else now
        for conn in [c for c in self.connections.values() if c.deadline <= now]:
            self._close(conn)
        if self.resume_at is not None and now >= self.resume_at:
            self.resume_at = None
            self._listen(len(self.connections) < MAX_CONNECTIONS)

    def close(self) -> None:
        for conn in list(self.connections.values()):
            self._close(conn)
        if self.listening:
            self.selector.unregister(self.sock)
        self.sock.close()

    def _listen(self, on: bool) -> None:
        if on != self.listening:
            self.listening = on
            if on:
                self.selector.register(self.sock, selectors.EVENT_READ, self)
            else:
                self.selector.unregister(self.sock)

    # -- connections ----------------------------------------------------------------------

    def _accept(self) -> None:
        while len(self.connections) < MAX_CONNECTIONS:
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError:
                # Out of descriptors or memory: the client stays queued; try again a little
                # later instead of on every turn of the loop.
                self._listen(False)
                self.resume_at = time.monotonic() + ACCEPT_BACKOFF
                return
            sock.setblocking(False)
            conn = _Connection(sock, time.monotonic())
            self.connections[sock.fileno()] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)
        self._listen(False)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end < 0:
            end = conn.head.find(b"\n\n")
        if end < 0:
            if len(conn.head) > MAX_HEAD:
                self._answer(conn, 431, "Request Header Fields Too Large", head_only=False)
            return
        self._respond(conn, bytes(conn.head[:end]))

    def _respond(self, conn: _Connection, head: bytes) -> None:
        lines = head.decode("latin-1").splitlines()
        parts = lines[0].split() if lines else []
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._answer(conn, 400, "Bad Request", head_only=False)
            return
        method, target, _ = parts
        head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            self._answer(conn, 405, "Method Not Allowed", head_only, extra="Allow: GET, HEAD\r\n")
            return
        if target.split("?", 1)[0] != METRICS_PATH:
            self._answer(conn, 404, "Not Found", head_only)
            return
        accept = ",".join(
            value
            for name, _, value in (line.partition(":") for line in lines[1:])
            if name.strip().lower() == "accept"
        )
        try:
            content_type, text = self.render(wants_openmetrics(accept))
        except Exception as exc:
            self._answer(conn, 500, f"Cannot render the metrics: {exc}", head_only)
            return
        self._send(conn, 200, "OK", content_type, text.encode(), head_only)

    def _answer(
        self, conn: _Connection, status: int, text: str, head_only: bool, extra: str = ""
    ) -> None:
        body = (text + "\n").encode()
        self._send(conn, status, text, "text/plain; charset=utf-8", body, head_only, extra)

    def _send(
        self,
        conn: _Connection,
        status: int,
        reason: str,
        content_type: str,
        body: bytes,
        head_only: bool,
        extra: str = "",
    ) -> None:
        reason = reason.splitlines()[0] if status != 500 else "Internal Server Error"
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n"
        ).encode("latin-1")
        conn.out = memoryview(head if head_only else head + body)
        self.selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if not len(conn.out):
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        fd = conn.sock.fileno()
        if self.connections.pop(fd, None) is None:
            return
        self.selector.unregister(conn.sock)
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.sock.close()
        if self.resume_at is None:
            self._listen(True)
