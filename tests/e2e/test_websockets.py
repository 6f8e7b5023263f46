"""WebSockets end to end: the `websockets` client library and a raw socket against juggler."""

from __future__ import annotations

import ast
import signal
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import Juggler, start
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from wsclient import RawWebSocket


@pytest.fixture(scope="module")
def ws_server() -> Iterator[Juggler]:
    """One server for the apps in tests/e2e/apps/ws_app.py (pings off, so that raw clients
    need not answer them)."""
    j = start("ws_app:app", "--ws-ping-interval", "0")
    yield j
    j.kill()


def url(server: Juggler, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def events(server: Juggler, wanted: Any = None, timeout: float = 10) -> list[Any]:
    """What the app recorded (disconnect codes, errors), read through the app itself; with
    ``wanted``, read until that entry came (it may be recorded after the socket closed)."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while True:
        with connect(url(server, "/events")) as ws:
            got += ast.literal_eval(str(ws.recv(timeout=10)))
        if wanted is None or wanted in got or time.monotonic() > deadline:
            return got


def test_echo_text_binary_and_a_large_message(ws_server: Juggler) -> None:
    with connect(url(ws_server, "/echo"), max_size=None) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=10) == "héllo"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=10) == b"\x00\xff"
        big = bytes(range(256)) * 4096  # 1 MiB, barely compressible
        ws.send(big)
        assert ws.recv(timeout=10) == big


def test_fragmented_messages_are_reassembled(ws_server: Juggler) -> None:
    with connect(url(ws_server, "/echo")) as ws:
        ws.send(["frag", "ment", "ed €"])
        assert ws.recv(timeout=10) == "fragmented €"
        ws.send([b"ab", b"", b"cd"])
        assert ws.recv(timeout=10) == b"abcd"


def test_scope_subprotocol_extra_headers_and_close_code(ws_server: Juggler) -> None:
    with connect(url(ws_server, "/scope?x=1"), subprotocols=["chat", "v2"]) as ws:
        assert ws.subprotocol == "v2"
        assert ws.response.headers["x-extra"] == "yes"
        scope = ast.literal_eval(str(ws.recv(timeout=10)))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "done")
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope"
    assert scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["chat", "v2"]
    assert scope["http_version"] == "1.1"
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope
    # After its own close, the app's receive() reports the end of the close handshake.
    (_, message), *_ = [e for e in events(ws_server) if e[0] == "scope_info closed"]
    assert message["type"] == "websocket.disconnect"
    assert message["code"] == 4000


def test_client_close_code_reaches_the_app_and_later_sends_raise(ws_server: Juggler) -> None:
    with connect(url(ws_server, "/disconnect")) as ws:
        ws.close(code=4001, reason="bye")
    got = events(ws_server, ("send after disconnect", "ClientDisconnected"))
    assert ("disconnect", {"type": "websocket.disconnect", "code": 4001, "reason": "bye"}) in got
    assert ("send after disconnect", "ClientDisconnected") in got


def test_concurrent_senders_on_one_socket_all_finish(ws_server: Juggler) -> None:
    with connect(url(ws_server, "/broadcast"), max_size=None) as ws:
        got = sorted(bytes(ws.recv(timeout=20))[:2] for _ in range(6))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
    assert got == [b"A\x00", b"A\x01", b"A\x02", b"B\x00", b"B\x01", b"B\x02"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4100


def test_a_vanished_client_is_a_disconnect_with_1006(ws_server: Juggler) -> None:
    raw = RawWebSocket(ws_server.port, "/disconnect")
    assert raw.status_line.startswith("HTTP/1.1 101")
    raw.close()  # no close frame: the TCP connection just ends
    wanted = ("disconnect", {"type": "websocket.disconnect", "code": 1006, "reason": ""})
    assert wanted in events(ws_server, wanted)


def test_close_before_accept_is_403(ws_server: Juggler) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(url(ws_server, "/close-before-accept"))
    assert refused.value.response.status_code == 403
    ws_server.wait_for(r'"GET /close-before-accept HTTP/1.1" 403$')


def test_denial_response_extension(ws_server: Juggler) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(url(ws_server, "/deny"))
    response = refused.value.response
    assert response.status_code == 401
    assert response.body == b"denied"
    assert response.headers["content-type"] == "text/plain"


def test_app_errors_before_and_after_accept(ws_server: Juggler) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(url(ws_server, "/raise-before-accept"))
    assert refused.value.response.status_code == 500
    ws_server.wait_for("boom before accept")
    with connect(url(ws_server, "/raise-after-accept")) as ws:
        ws.send("go")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    ws_server.wait_for("boom after accept")
    with connect(url(ws_server, "/return-after-accept")) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    # And the server goes on serving.
    with connect(url(ws_server, "/echo")) as ws:
        ws.send("still here")
        assert ws.recv(timeout=10) == "still here"


def test_message_shapes_the_spec_allows_and_a_clear_error(ws_server: Juggler) -> None:
    with connect(url(ws_server, "/bad-send")) as ws:
        error = ws.recv(timeout=10)
        assert error == "ProtocolError: websocket.send: give 'bytes' or 'text', not both"
        assert ws.recv(timeout=10) == b"ba"  # bytearray, with "text": None
        assert ws.recv(timeout=10) == b"mv"  # memoryview
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_a_sender_blocked_on_a_slow_client_gets_client_disconnected(ws_server: Juggler) -> None:
    raw = RawWebSocket(ws_server.port, "/flood")
    raw.read_frame()  # it is sending; this client now stops reading
    raw.close()
    wanted = ("flood stopped", "ClientDisconnected")
    assert wanted in events(ws_server, wanted)


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        # invalid UTF-8 in a text frame
        ([(0x1, b"\xc3\x28", True, 0)], 1007),
        # ... also when it only shows once the fragments are joined
        ([(0x1, b"ok\xe2", False, 0), (0x0, b"\x28", True, 0)], 1007),
        # a continuation with nothing to continue
        ([(0x0, b"x", True, 0)], 1002),
        # a new message inside a fragmented one
        ([(0x1, b"a", False, 0), (0x1, b"b", True, 0)], 1002),
        # reserved bits without an extension that defines them
        ([(0x1, b"x", True, 0x2)], 1002),
        # reserved opcodes, data and control (RFC 6455 §5.2: a protocol error)
        ([(0x3, b"x", True, 0)], 1002),
        ([(0x1, b"ok", True, 0), (0xB, b"", True, 0)], 1002),
        # a fragmented control frame
        ([(0x9, b"x", False, 0)], 1002),
        # a control frame over 125 bytes (Autobahn 7.3.6: it used to be echoed)
        ([(0x8, struct.pack("!H", 1000) + b"*" * 124, True, 0)], 1002),
    ],
)
def test_protocol_violations_close_with_their_code(
    ws_server: Juggler, frames: list[tuple[int, bytes, bool, int]], code: int
) -> None:
    raw = RawWebSocket(ws_server.port, "/echo")
    for opcode, payload, fin, rsv in frames:
        raw.send_frame(opcode, payload, fin=fin, rsv=rsv)
    assert raw.read_close()[0] == code
    assert raw.closed_by_server()
    with connect(url(ws_server, "/echo")) as ws:  # and others are served
        ws.send("ok")
        assert ws.recv(timeout=10) == "ok"


def test_bad_utf8_fails_before_the_message_is_over(ws_server: Juggler) -> None:
    # A bad byte in the first fragment: the close comes while the client still holds the
    # rest of the message.
    raw = RawWebSocket(ws_server.port, "/echo")
    raw.send_frame(0x1, b"fine \xf4\x90\x80\x80", fin=False)
    assert raw.read_close()[0] == 1007
    # In the middle of a frame: its header announces 20 bytes, and only the first 8 (with
    # U+110000 cut after two bytes) are ever sent.
    raw = RawWebSocket(ws_server.port, "/echo")
    raw.sock.sendall(struct.pack("!BBI", 0x81, 0x80 | 20, 0) + b"hello \xf4\x90")
    assert raw.read_close()[0] == 1007
    assert raw.closed_by_server()


def test_several_deflate_offers_take_the_first_one_honoured(ws_server: Juggler) -> None:
    # Autobahn 13.7's offers: the first asks for a 512-byte window, which is kept to.
    offers = (
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; "
        "client_max_window_bits; server_no_context_takeover; server_max_window_bits=9, "
        "permessage-deflate; server_no_context_takeover, permessage-deflate\r\n"
    )
    raw = RawWebSocket(ws_server.port, "/echo", extra=offers)
    assert raw.headers["sec-websocket-extensions"] == (
        "permessage-deflate; server_max_window_bits=9; server_no_context_takeover; "
        "client_no_context_takeover"
    )
    # Repeats 700 bytes apart: a 32 KiB window would refer back further than 512 bytes, and
    # an inflater held to 512 (as the client is entitled to be) would refuse it.
    chunk = bytes((i * 7919) % 251 for i in range(700))
    raw.send_frame(0x2, chunk * 8)
    opcode, rsv, payload = raw.read_frame()
    assert (opcode, rsv & 0x4) == (0x2, 0x4)
    inflate = zlib.decompressobj(-9)
    assert inflate.decompress(payload + b"\x00\x00\xff\xff") == chunk * 8
    # An offer the server cannot keep to alone: no extension.
    raw = RawWebSocket(
        ws_server.port,
        "/echo",
        extra="Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n",
    )
    assert raw.status_line.startswith("HTTP/1.1 101")
    assert "sec-websocket-extensions" not in raw.headers


def test_unmasked_client_frames_are_refused(ws_server: Juggler) -> None:
    raw = RawWebSocket(ws_server.port, "/echo")
    raw.send_frame(0x1, b"naked", mask=False)
    assert raw.read_close()[0] == 1002


def test_pings_are_answered_and_peer_close_is_echoed(ws_server: Juggler) -> None:
    raw = RawWebSocket(ws_server.port, "/echo")
    raw.send_frame(0x9, b"are you there")
    assert raw.read_frame() == (0xA, 0, b"are you there")
    raw.send_frame(0x8, struct.pack("!H", 1000) + b"done")
    assert raw.read_close() == (1000, "done")
    assert raw.closed_by_server()


def test_handshake_errors(ws_server: Juggler) -> None:
    base = f"http://127.0.0.1:{ws_server.port}/echo"
    upgrade = {"upgrade": "websocket", "connection": "upgrade"}
    r = httpx.get(base, headers={**upgrade, "sec-websocket-version": "8", "sec-websocket-key": "k"})
    assert r.status_code == 426
    assert r.headers["sec-websocket-version"] == "13"
    r = httpx.get(base, headers={**upgrade, "sec-websocket-version": "13"})
    assert r.status_code == 400
    # Without the upgrade, the same path is plain HTTP.
    r = httpx.get(base)
    assert r.status_code == 200 and r.text.startswith("http /echo")


def test_permessage_deflate_is_negotiated_and_used(ws_server: Juggler) -> None:
    with connect(url(ws_server, "/echo")) as ws:
        assert [type(e).__name__ for e in ws.protocol.extensions] == ["PerMessageDeflate"]
        text = "compress me " * 10000
        ws.send(text)
        assert ws.recv(timeout=10) == text
    # A browser's offer. The answer imposes no context takeover both ways (RFC 7692 lets a
    # server), so that an idle socket holds no deflate state.
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    raw = RawWebSocket(ws_server.port, "/echo", extra=offer)
    assert raw.headers["sec-websocket-extensions"] == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    )
    for _ in range(2):
        raw.send_frame(0x1, b"a" * 10000)
        opcode, rsv, payload = raw.read_frame()
        assert opcode == 0x1
        assert rsv & 0x4, "RSV1: the echo went out compressed"
        assert len(payload) < 1000
        # Each message alone, with an inflater that never saw the one before: refers back
        # to nothing earlier (with context kept, the second would be a few bytes pointing
        # at the first).
        assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == b"a" * 10000
    # The client was told to compress with no context too, and the server inflates each
    # message with fresh state: a message deflated alone comes back, one that refers back to
    # the message before (a client keeping its context against the terms) does not inflate.
    deflate = zlib.compressobj(wbits=-15)
    text = bytes(range(32, 127)) * 20
    first = deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH)
    raw.send_frame(0x1, first[:-4], rsv=0x4)
    opcode, rsv, payload = raw.read_frame()
    assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == text
    second = deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(zlib.error):  # what the test sends needs the first message's context
        zlib.decompressobj(-15).decompress(second)
    raw.send_frame(0x1, second[:-4], rsv=0x4)
    assert raw.read_close()[0] == 1011


def test_deflate_off_and_message_size_limit(juggler: type[Juggler]) -> None:
    j = juggler("ws_app:app", "--no-ws-per-message-deflate", "--ws-max-size", "1000").ready()
    with connect(f"ws://127.0.0.1:{j.port}/echo") as ws:
        assert ws.protocol.extensions == []
        ws.send("x" * 1000)
        assert ws.recv(timeout=10) == "x" * 1000
        with pytest.raises(ConnectionClosed) as closed:
            ws.send([b"x" * 600, b"x" * 600])  # too big only once joined
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with connect(f"ws://127.0.0.1:{j.port}/echo") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.send(b"y" * 1001)
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_ws_none_serves_upgrades_as_http(juggler: type[Juggler]) -> None:
    j = juggler("ws_app:app", "--ws", "none").ready()
    raw = RawWebSocket(j.port, "/echo")
    assert raw.status_line.startswith("HTTP/1.1 200")


def test_wsgi_apps_get_upgrade_requests_as_plain_http(juggler: type[Juggler]) -> None:
    j = juggler("proto_app:wsgi", "--interface", "wsgi").ready()
    raw = RawWebSocket(j.port, "/")
    assert raw.status_line.startswith("HTTP/1.1 200")


def test_a_peer_that_stops_answering_pings_is_dropped(juggler: type[Juggler]) -> None:
    j = juggler("ws_app:app", "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3").ready()
    raw = RawWebSocket(j.port, "/disconnect", timeout=10)
    opcode, _, _ = raw.read_frame()
    assert opcode == 0x9, "a ping"
    started = time.monotonic()
    assert raw.closed_by_server()  # this client never answers
    assert time.monotonic() - started < 5
    with connect(f"ws://127.0.0.1:{j.port}/events") as ws:
        got = ast.literal_eval(str(ws.recv(timeout=10)))
    assert (
        "disconnect",
        {"type": "websocket.disconnect", "code": 1006, "reason": "keepalive ping timeout"},
    ) in got
    # A client that answers (the websockets library does) stays connected across pings.
    with connect(f"ws://127.0.0.1:{j.port}/echo") as ws:
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            ws.send("alive")
            assert ws.recv(timeout=10) == "alive"
            ws.ping().wait(5)


def test_a_slow_app_is_not_a_dead_peer(juggler: type[Juggler]) -> None:
    """Reading pauses while the app is behind, pongs included: that must not look like a
    ping timeout."""
    j = juggler(
        "ws_app:app", "--ws-max-queue", "4", "--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.5"
    ).ready()
    with connect(f"ws://127.0.0.1:{j.port}/slow-reader") as ws:
        for i in range(30):
            ws.send(f"m{i}")
        assert [ws.recv(timeout=20) for _ in range(30)] == [f"m{i}" for i in range(30)]


def test_shutdown_closes_open_websockets_with_1001(juggler: type[Juggler]) -> None:
    j = juggler("ws_app:app", "--timeout-graceful-shutdown", "0.5").ready()
    with connect(f"ws://127.0.0.1:{j.port}/wait") as ws:
        # The app waits in receive(); the drain waits for it until its timeout.
        j.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert j.stop(timeout=15) == 0


def test_fastapi_and_starlette_endpoints(juggler: type[Juggler]) -> None:
    j = juggler("ws_frameworks:fastapi_app").ready()
    with connect(f"ws://127.0.0.1:{j.port}/rooms/lobby?name=ada") as ws:
        assert ast.literal_eval(str(ws.recv(timeout=10))) == {"room": "lobby", "name": "ada"}
        ws.send('{"hi": 1}')
        assert '"echo":{"hi":1}' in str(ws.recv(timeout=10)).replace(" ", "")
    j.wait_for("fastapi disconnect 1000")
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{j.port}/private")
    assert refused.value.response.status_code == 403
    with connect(
        f"ws://127.0.0.1:{j.port}/private", additional_headers={"authorization": "secret"}
    ) as ws:
        assert ws.recv(timeout=10) == "welcome"
    s = juggler("ws_frameworks:starlette_app").ready()
    with connect(f"ws://127.0.0.1:{s.port}/reverse") as ws:
        ws.send(b"abc")
        assert ws.recv(timeout=10) == b"cba"
        ws.close(code=4002)
    s.wait_for("starlette disconnect 4002")
