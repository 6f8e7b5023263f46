"""Bad apps and bad clients: 500s, closed connections, 400/431, disconnects reaching the app."""

from __future__ import annotations

import socket
import uuid

import httpx
import pytest
from conftest import raw_request, read_response


def events(server, key):
    return httpx.get(f"{server.url}/events?key={key}").json()


def test_exception_before_response_gives_500_and_connection_stays_usable(raw_server):
    with socket.create_connection(("127.0.0.1", raw_server.port), timeout=10) as s:
        s.sendall(b"GET /raise-before HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = read_response(s)
        assert status == b"HTTP/1.1 500 Internal Server Error"
        assert body == b"Internal Server Error"
        s.sendall(b"GET /headers HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = read_response(s)
        assert status == b"HTTP/1.1 200 OK" and body == b"ok"
    m = raw_server.wait_for(r"Exception in ASGI application")
    assert m
    raw_server.wait_for(r"ValueError: boom before the response")


def test_exception_after_response_started_closes_connection(raw_server):
    resp = raw_request(raw_server.port, b"GET /raise-after HTTP/1.1\r\nHost: t\r\n\r\n")
    # What the app sent reaches the client (status line, headers, the chunk so far), then the
    # connection is closed (raw_request read until EOF) without the terminating chunk, so
    # the client can tell the response was cut short.
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), resp
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"7\r\npartial\r\n", resp
    raw_server.wait_for(r"ValueError: boom after the response started")


def test_app_returning_without_response_gives_500(raw_server):
    r = httpx.get(f"{raw_server.url}/no-response")
    assert r.status_code == 500
    raw_server.wait_for(r"ASGI callable returned without starting response")


def test_app_returning_with_half_response_gets_a_500_and_the_connection_stays(raw_server):
    with socket.create_connection(("127.0.0.1", raw_server.port), timeout=10) as s:
        s.sendall(b"GET /half-response HTTP/1.1\r\nHost: t\r\n\r\n")
        # The head was held back for the first body chunk that never came: the client gets a
        # whole 500, so the connection is still in step and serves the next request.
        status, _, _ = read_response(s)
        assert status.startswith(b"HTTP/1.1 500")
        s.sendall(b"GET /status?code=201 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(s)[0].startswith(b"HTTP/1.1 201")


def test_body_before_start_is_a_protocol_error(raw_server):
    r = httpx.get(f"{raw_server.url}/bad-send")
    assert r.status_code == 500
    # One exception class users can catch, with a message naming the message type.
    raw_server.wait_for(r"juggler\.ProtocolError: Expected ASGI message 'http.response.start'")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: t\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_requests_get_400_or_close(raw_server, request_bytes):
    resp = raw_request(raw_server.port, request_bytes)
    assert resp.startswith(b"HTTP/1.1 400")
    # And the server keeps serving.
    assert httpx.get(f"{raw_server.url}/headers").status_code == 200


def test_oversized_headers_get_431(raw_server):
    big = b"X-Big: " + b"a" * 70000 + b"\r\n"
    resp = raw_request(raw_server.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + big + b"\r\n")
    # Answered and closed; the unread rest of the request is drained (lingering close) so
    # the kernel does not reset the connection and discard the answer.
    assert resp.startswith(b"HTTP/1.1 431")
    assert httpx.get(f"{raw_server.url}/headers").status_code == 200


def test_a_refused_request_lets_a_client_still_sending_finish_and_read_the_answer(raw_server):
    # juggler answers 431 while the client is still sending. Closing at once would make the
    # kernel answer the client's further bytes with a reset, and a client still uploading
    # then fails on send() without ever reading the answer (and on a real network the reset
    # can destroy an answer not read yet). Lingering half-closes and drains what comes for a
    # while instead. (On loopback the answer is read either way: only the sends can show it.)
    with socket.create_connection(("127.0.0.1", raw_server.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 431")
        # The server said all it had to say; the client goes on sending, as uploads do.
        for _ in range(5):
            s.sendall(b"a" * 1024)


def test_configurable_header_limit(juggler):
    j = juggler("raw:app", "--max-header-size", "2048").ready()
    ok = raw_request(
        j.port,
        b"GET /headers HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 1000 + b"\r\nConnection: close\r\n\r\n",
    )
    assert ok.startswith(b"HTTP/1.1 200")
    big = raw_request(
        j.port, b"GET /headers HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 3000 + b"\r\n\r\n"
    )
    assert big.startswith(b"HTTP/1.1 431")
    assert j.proc.poll() is None


def test_default_header_limit_allows_large_headers(raw_server):
    resp = raw_request(
        raw_server.port,
        b"GET /headers HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 3000 + b"\r\nConnection: close\r\n\r\n",
    )
    assert resp.startswith(b"HTTP/1.1 200")


def test_disconnect_reaches_streaming_handler(raw_server):
    key = uuid.uuid4().hex
    s = socket.create_connection(("127.0.0.1", raw_server.port), timeout=10)
    s.sendall(f"GET /wait-disconnect?key={key} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = b""
    while b"tick" not in data:
        data += s.recv(65536)
    assert events(raw_server, key) == ["started"]
    s.close()
    raw_server.wait_for(f"EVENT {key} http.disconnect")
    assert events(raw_server, key) == ["started", "http.disconnect"]


def test_disconnect_reaches_handler_before_it_responds(raw_server):
    key = uuid.uuid4().hex
    s = socket.create_connection(("127.0.0.1", raw_server.port), timeout=10)
    s.sendall(f"GET /wait-disconnect-no-response?key={key} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    raw_server.wait_for(f"EVENT {key} started")
    s.close()
    raw_server.wait_for(f"EVENT {key} http.disconnect")
    assert events(raw_server, key) == ["started", "http.disconnect"]


def test_client_closing_mid_upload_does_not_hurt_the_server(raw_server):
    with socket.create_connection(("127.0.0.1", raw_server.port), timeout=10) as s:
        s.sendall(
            b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 100000
        )
    assert httpx.get(f"{raw_server.url}/headers").status_code == 200


def test_send_after_disconnect_raises_an_oserror(raw_server):
    key = uuid.uuid4().hex
    s = socket.create_connection(("127.0.0.1", raw_server.port), timeout=10)
    s.sendall(f"GET /send-after-disconnect?key={key} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.close()
    raw_server.wait_for(f"SEND-RAISED {key} ClientDisconnected True")
    # The app let it propagate. Raised by juggler for a gone client, it is not logged as an
    # application error: a later request's line shows that anything logged for it is out.
    sentinel = uuid.uuid4().hex
    httpx.get(f"{raw_server.url}/status?code=204&key={sentinel}")
    raw_server.wait_for(f"key={sentinel}")
    after = raw_server.output.split(f"SEND-RAISED {key}")[1].split(f"key={sentinel}")[0]
    assert "Exception in ASGI application" not in after
    assert "Traceback" not in after


def test_content_length_not_matching_the_body_is_a_500_not_a_desync(raw_server):
    with socket.create_connection(("127.0.0.1", raw_server.port), timeout=10) as s:
        s.sendall(
            b"GET /wrong-length HTTP/1.1\r\nHost: t\r\n\r\nGET /echo HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        first = read_response(s)
        second = read_response(s)
    assert first[0] == b"HTTP/1.1 500 Internal Server Error"
    assert second[0] == b"HTTP/1.1 200 OK"
    raw_server.wait_for(
        r"ProtocolError: the response body has 5 bytes but its Content-Length says 20"
    )


@pytest.mark.parametrize(
    ("route", "error"),
    [
        ("/no-status", r"juggler\.ProtocolError: http\.response\.start without 'status'"),
        ("/body-str", r"juggler\.ProtocolError: http\.response\.body: 'body' must be bytes"),
    ],
)
def test_malformed_messages_are_logged_naming_message_and_field_with_a_500(
    raw_server, route, error
):
    r = httpx.get(f"{raw_server.url}{route}")
    assert r.status_code == 500
    raw_server.wait_for(error)


def test_an_error_thrown_into_the_app_is_concluded_once(raw_server):
    # Found by the compat tests (FastAPI, a sync endpoint raising): the task delivered the
    # error with throw(), the ending coroutine answered None instead of StopIteration, and the
    # task stepped it again: a second access line and "Exception in ASGI application
    # StopIteration" in the log.
    key = uuid.uuid4().hex
    assert httpx.get(f"{raw_server.url}/raise-through-throw?k={key}").status_code == 500
    raw_server.wait_for(f"raise-through-throw\\?k={key}")
    # A later request's line shows the loop has moved on past any second ending.
    after = uuid.uuid4().hex
    httpx.get(f"{raw_server.url}/status?code=204&k={after}")
    raw_server.wait_for(f"k={after}")
    window = raw_server.lines[raw_server.test_start :]
    assert sum(key in line for line in window) == 1, "\n".join(window)
    assert not any(line.strip() == "StopIteration" for line in window), "\n".join(window)
