"""HTTP/2 floods from one raw h2c connection that never reads, and what they cost the server.

Shared by tests/e2e/test_h2_floods.py and benches/h2flood.py. Frames are built by hand (nine
bytes of header, RFC 9113 section 4.1) so that a flood is a byte string sent again and again;
HPACK blocks use only the static table and literals without indexing, so the same block is
valid on every stream. Each flood is bounded: it stops after a fixed number of bytes, when the
server closes the connection, or when the server stops reading (its window of unread frames
is full: the backpressure a client that never reads meets sooner or later).
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0,
    1,
    3,
    4,
    6,
    7,
    8,
    9,
)
END_STREAM, END_HEADERS = 0x1, 0x4
CANCEL = 0x8
#: The flooding socket's receive buffer: small, so the server's answers back up at once and
#: the flood meets the server's own handling of a peer that never reads.
RECEIVE_BUFFER = 4096


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream)
        + payload
    )


def block(method: str = "GET", path: str = "/") -> bytes:
    """A request header block: static-table :method, :scheme http, and literal :path and
    :authority (never indexed into the dynamic table, so it can be sent any number of times)."""
    indexed_method = {"GET": 0x82, "POST": 0x83}[method]

    def literal(index: int, value: bytes) -> bytes:
        return bytes((index, len(value))) + value

    return bytes((indexed_method, 0x86)) + literal(4, path.encode()) + literal(1, b"localhost")


#: A fragment of a header block: literal header fields without indexing ("x-pad: vvv..."),
#: 107 bytes each, nine to a CONTINUATION frame.
PAD_FIELD = b"\x00\x05x-pad\x64" + b"v" * 100


@dataclass(frozen=True)
class Flood:
    name: str
    about: str
    #: Sent once after the preface and SETTINGS.
    prologue: bytes
    #: The n-th batch of the flood (stream ids must grow, so a batch may depend on n).
    batch: Callable[[int], bytes]


BATCH = 512  # frames per batch


def _repeat(unit: bytes) -> Callable[[int], bytes]:
    chunk = unit * BATCH
    return lambda _n: chunk


def _rapid_reset(n: int) -> bytes:
    request = block()
    out = []
    for i in range(BATCH):
        stream = 1 + 2 * (n * BATCH + i)
        if stream >= 2**31:
            break
        out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream, request))
        out.append(frame(RST_STREAM, 0, stream, struct.pack(">I", CANCEL)))
    return b"".join(out)


FLOODS: dict[str, Flood] = {
    f.name: f
    for f in (
        Flood("ping", "PING frames", b"", _repeat(frame(PING, 0, 0, b"12345678"))),
        Flood(
            "settings",
            "SETTINGS frames (each asks for an ACK)",
            b"",
            # SETTINGS_INITIAL_WINDOW_SIZE = 65535, the default: valid, and each needs an ACK.
            _repeat(frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, 65535))),
        ),
        Flood(
            "continuation",
            "one header block of endless CONTINUATION frames (963 B each)",
            frame(HEADERS, 0, 1, block()),
            _repeat(frame(CONTINUATION, 0, 1, PAD_FIELD * 9)),
        ),
        Flood(
            "empty-data",
            "empty DATA frames on one request whose app never reads its body",
            frame(HEADERS, END_HEADERS, 1, block("POST", "/hold")),
            _repeat(frame(DATA, 0, 1)),
        ),
        Flood(
            "window-update",
            "WINDOW_UPDATE frames of 1 byte on the connection",
            b"",
            _repeat(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1))),
        ),
        Flood(
            "rapid-reset",
            "HEADERS and RST_STREAM at once, stream after stream (CVE-2023-44487)",
            b"",
            _rapid_reset,
        ),
    )
}


@dataclass
class Outcome:
    flood: str
    sent: int = 0  # bytes of flood frames the server took
    #: How the flood ended: "limit" (all bytes sent), "closed" (the server closed or reset
    #: the connection while we sent), "stalled" (the server stopped reading) or "stopped"
    #: (told to by :meth:`Flooder.stop`).
    ended: str = ""
    #: The error code of a GOAWAY the server sent, found when the socket is read at the end.
    goaway: int | None = None
    #: Whether the connection was closed when it was read at the end (EOF or reset).
    closed: bool = False


class Flooder:
    """One raw connection sending one flood, in a thread, without reading a byte."""

    def __init__(
        self,
        port: int,
        flood: Flood,
        limit: int,
        stall: float,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """Connects (over TLS with ALPN h2 if ``tls`` is given, else h2c by prior knowledge)
        and sends the preface, an empty SETTINGS and the flood's prologue."""
        self.flood, self.limit, self.stall = flood, limit, stall
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        raw.settimeout(stall)
        raw.connect((host, port))
        self.sock: socket.socket = raw
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            self.sock = tls.wrap_socket(raw, server_hostname=host)
            if self.sock.selected_alpn_protocol() != "h2":
                raise ConnectionError("the server did not choose h2 by ALPN")
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + flood.prologue)
        self.outcome = Outcome(flood.name)
        self.started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Flooder:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ends the flood after the batch being sent."""
        self._stop.set()

    def join(self, timeout: float) -> Outcome:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the {self.flood.name} flood did not end in {timeout} s")
        return self.outcome

    def _run(self) -> None:
        out = self.outcome
        try:
            n = 0
            while out.sent < self.limit and not self._stop.is_set():
                self._send(self.flood.batch(n))
                n += 1
                self.started.set()
            out.ended = "stopped" if self._stop.is_set() else "limit"
        except TimeoutError:
            out.ended = "stalled"
        except OSError:  # reset, broken pipe
            out.ended = "closed"
        finally:
            self.started.set()

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self.sock.send(view)
            view = view[n:]
            self.outcome.sent += n

    def finish(self, wait: float) -> Outcome:
        """Reads what the server sent (after the flood: a client that never reads would hold
        the connection forever), to see a GOAWAY and whether the connection ends. Waits at
        most ``wait`` seconds for each read; stops after 64 MiB."""
        out = self.outcome
        self.sock.settimeout(wait)
        buf = b""
        total = 0
        try:
            while total < 64 << 20:
                data = self.sock.recv(1 << 16)
                if not data:
                    out.closed = True
                    break
                total += len(data)
                buf = _goaways(buf + data, out)
        except TimeoutError:
            pass
        except OSError:
            out.closed = True
        finally:
            self.sock.close()
        return out


def _goaways(buf: bytes, out: Outcome) -> bytes:
    """Notes the error code of each GOAWAY in ``buf``; returns the unparsed rest."""
    start = 0
    while len(buf) - start >= 9:
        length = int.from_bytes(buf[start : start + 3], "big")
        if len(buf) - start < 9 + length:
            break
        if buf[start + 3] == GOAWAY and length >= 8:
            out.goaway = int.from_bytes(buf[start + 13 : start + 17], "big")
        start += 9 + length
    return buf[start:]


# ---- the serving process ----


def serving_pid(root: int, server_port: int, client_port: int, wait: float = 10) -> int:
    """The process in ``root``'s tree holding the server end of the connection from
    ``client_port`` (a worker, whatever the server calls it), once it has accepted it."""
    deadline = time.monotonic() + wait
    while True:
        # The socket has an inode (other than 0) from its accept() on.
        inode = _socket_inode(server_port, client_port)
        for pid in _tree(root):
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                continue
        if time.monotonic() > deadline:
            raise LookupError(f"no process under {root} accepted the connection from {client_port}")
        time.sleep(0.01)  # accept() is the server's business: nothing to wait on but /proc


def _socket_inode(server_port: int, client_port: int) -> str:
    local = f"0100007F:{server_port:04X}"
    remote = f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == local and cols[2] == remote:
                return cols[9]
    raise LookupError(f"no socket from port {client_port} to port {server_port}")


def _tree(pid: int) -> Iterator[int]:
    yield pid
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return
    for kid in kids:
        yield from _tree(kid)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise LookupError(f"no VmRSS for {pid}")


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@dataclass
class RssWatch:
    """Samples a process's VmRSS every ``every`` seconds in a thread; keeps the peak."""

    pid: int
    every: float = 0.02
    baseline: int = 0
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssWatch:
        self.baseline = self.peak = rss_kib(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> None:
        self.peak = max(self.peak, rss_kib(self.pid))

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.sample()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / 1024


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
