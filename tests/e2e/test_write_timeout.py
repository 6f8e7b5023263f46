"""--timeout-write for ASGI over real sockets: a client that takes nothing of a streamed
response or of a WebSocket's messages is cut off, its app's send() raises ClientDisconnected
and its receive() says it left, and the access line says why; a client that reads slowly but
steadily is served to the end."""

from __future__ import annotations

import json
import socket
import time
import uuid

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
from conftest import Juggler, recv_until_close

#: The app's chunks (write_timeout_app.py).
CHUNK = 65536


def key() -> str:
    return uuid.uuid4().hex[:12]


def tiny_client(port: int, request: bytes) -> socket.socket:
    """A connection whose receive buffer holds almost nothing, with `request` sent."""
    sock = socket.socket()
    # Before connect(), so that the window the handshake offers is small too.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def test_a_streamed_response_nobody_reads_is_cut_off(juggler: type[Juggler]) -> None:
    j = juggler("write_timeout_app:app", "--timeout-write", "1").ready()
    k = key()
    with tiny_client(j.port, f"GET /stream?key={k} HTTP/1.1\r\nHost: t\r\n\r\n".encode()) as s:
        j.wait_for(f"EVENT {k} send raised ClientDisconnected")
        j.wait_for(f"EVENT {k} receive gave http.disconnect")
        j.wait_for(rf'"GET /stream\?key={k} HTTP/1\.1" 200 \[write timeout\]$')
        # Closed: what the kernel still held drains, then the end (a kept connection would
        # block here until the socket's timeout).
        received = recv_until_close(s)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert len(received) < 64 * CHUNK, "far less than the app had to send"
    assert f"EVENT {k} complete" not in j.output
    # The worker serves on.
    done = key()
    assert httpx.get(f"{j.url}/stream?key={done}&chunks=1").status_code == 200
    j.wait_for(f"EVENT {done} complete")


def test_websocket_messages_nobody_reads_are_cut_off(juggler: type[Juggler]) -> None:
    j = juggler("write_timeout_app:app", "--timeout-write", "1", "--access-log-json").ready()
    k = key()
    handshake = (
        f"GET /ws?key={k} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with tiny_client(j.port, handshake.encode()) as s:
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # the 101's head and nothing more
            byte = s.recv(1)
            assert byte, head
            head += byte
        assert head.startswith(b"HTTP/1.1 101 ")
        j.wait_for(f"EVENT {k} send raised ClientDisconnected")
        j.wait_for(f"EVENT {k} receive gave websocket.disconnect 1006")
        line = json.loads(j.wait_for(rf'^\{{"time".*"query":"key={k}"').string)
        assert (line["status"], line["aborted"]) == (101, "write timeout")
        recv_until_close(s)
    assert f"EVENT {k} complete" not in j.output


def test_a_slow_but_steady_reader_is_served_to_the_end(juggler: type[Juggler]) -> None:
    j = juggler("write_timeout_app:app", "--timeout-write", "1").ready()
    k = key()
    chunks = 128  # 8 MiB: more than the server's socket buffer (4 MiB at most) and queue hold
    with tiny_client(
        j.port, f"GET /stream?key={k}&chunks={chunks} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    ) as s:
        received = bytearray()
        end = b"0\r\n\r\n"
        # About 2.5 MB/s in steps: the server's writes wait a tenth of a second at a time,
        # over a few seconds in all, longer than the limit.
        while not received.endswith(end):
            step = 0
            while step < 4 * CHUNK and not received.endswith(end):
                data = s.recv(CHUNK)
                assert data, f"closed after {len(received)} bytes"
                received += data
                step += len(data)
            time.sleep(0.1)
    j.wait_for(f"EVENT {k} complete")
    assert len(received) > chunks * CHUNK
    assert "write timeout" not in j.output


def h2_stream_request(path: str, window: int | None = None) -> h2.connection.H2Connection:
    """A client connection with its preface and one GET for ``path`` ready to send; with
    ``window``, the connection's and every stream's flow-control window that large."""
    h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    h2c.initiate_connection()
    if window is not None:
        h2c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        h2c.increment_flow_control_window(window - 65535)
    headers = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "t")]
    h2c.send_headers(1, headers, end_stream=True)
    return h2c


def test_an_http2_connection_nobody_reads_is_cut_off(juggler: type[Juggler]) -> None:
    j = juggler("write_timeout_app:app", "--timeout-write", "1").ready()
    k = key()
    # Windows wide open: the stream is never held back by flow control, only by the socket.
    h2c = h2_stream_request(f"/stream?key={k}", window=2**31 - 1)
    with tiny_client(j.port, h2c.data_to_send()) as s:
        j.wait_for(f"EVENT {k} send raised ClientDisconnected")
        j.wait_for(f"EVENT {k} receive gave http.disconnect")
        j.wait_for(rf'"GET /stream\?key={k} HTTP/2" 200 \[write timeout\]$')
        recv_until_close(s)


def test_an_http2_stream_whose_window_never_opens_is_cut_off(juggler: type[Juggler]) -> None:
    """The client reads the socket to the end (nothing ever blocks there), answers SETTINGS,
    and never opens the stream's window: after its first 64 KiB the stream takes nothing, and
    only the stream's waiting send() shows it."""
    j = juggler("write_timeout_app:app", "--timeout-write", "1").ready()
    k = key()
    h2c = h2_stream_request(f"/stream?key={k}")
    received = 0
    closed_by_server = False
    with socket.create_connection(("127.0.0.1", j.port), timeout=20) as s:
        s.sendall(h2c.data_to_send())
        while True:
            data = s.recv(65536)
            if not data:
                closed_by_server = True
                break
            for event in h2c.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    received += len(event.data)  # and never acknowledged: no WINDOW_UPDATE
                if isinstance(event, h2.events.ConnectionTerminated):
                    closed_by_server = True
            s.sendall(h2c.data_to_send())  # SETTINGS and PING acknowledgements only
            if closed_by_server:
                break
    assert closed_by_server
    assert received <= 65535, "no more than the initial window"
    j.wait_for(f"EVENT {k} send raised ClientDisconnected")
    j.wait_for(f"EVENT {k} receive gave http.disconnect")
    j.wait_for(rf'"GET /stream\?key={k} HTTP/2" 200 \[write timeout\]$')
    assert f"EVENT {k} complete" not in j.output
    done = key()
    assert httpx.get(f"{j.url}/stream?key={done}&chunks=1").status_code == 200
    j.wait_for(f"EVENT {done} complete")
