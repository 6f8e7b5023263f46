"""HTTP/1.1 over real sockets: scope, bodies, keep-alive, pipelining, HEAD, 100-continue."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid

import httpx
import pytest
from conftest import raw_request, read_response


def test_scope_is_complete(raw_server):
    r = httpx.get(f"{raw_server.url}/scope?a=1&b=%20x", headers={"X-Multi": "1"})
    assert r.status_code == 200
    scope = r.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == "a=1&b=%20x"
    assert scope["root_path"] == ""
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    assert scope["server"] == ["127.0.0.1", raw_server.port]
    assert ["x-multi", "1"] in scope["headers"]
    assert ["host", f"127.0.0.1:{raw_server.port}"] in scope["headers"]
    assert scope["state"] == {"started": "yes"}


def test_path_is_percent_decoded_and_raw_path_is_not(raw_server):
    resp = raw_request(
        raw_server.port,
        b"GET /sc%6Fpe/%E2%82%AC?x=%41 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    # /scope/€ does not route to /scope, so ask the scope route through a decoded alias.
    assert resp.startswith(b"HTTP/1.1 404")
    r = httpx.get(f"{raw_server.url}/sc%6Fpe")
    assert r.json()["path"] == "/scope"
    assert r.json()["raw_path"] == "/sc%6Fpe"


def test_repeated_request_headers_keep_their_order(raw_server):
    req = (
        b"GET /scope HTTP/1.1\r\nHost: t\r\nX-Rep: one\r\nX-Other: o\r\nX-Rep: two\r\n"
        b"X-UPPER: Keep\r\nConnection: close\r\n\r\n"
    )
    resp = raw_request(raw_server.port, req)
    scope = json.loads(resp.split(b"\r\n\r\n", 1)[1])
    reps = [v for k, v in scope["headers"] if k == "x-rep"]
    assert reps == ["one", "two"]
    assert ["x-upper", "Keep"] in scope["headers"]


def test_echo_content_length_body(raw_server):
    payload = bytes(range(256)) * 100
    r = httpx.post(f"{raw_server.url}/echo", content=payload)
    assert r.status_code == 200
    assert r.content == payload


def test_chunked_request_body(raw_server):
    def gen():
        yield b"hello "
        yield b"chunked "
        yield b"world"

    r = httpx.post(f"{raw_server.url}/echo", content=gen())
    assert r.content == b"hello chunked world"


def test_streaming_response_is_chunked(raw_server):
    with socket.create_connection(("127.0.0.1", raw_server.port)) as s:
        s.sendall(b"GET /stream?n=4&size=3 HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = read_response(s)
    assert status == b"HTTP/1.1 200 OK"
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers
    assert body == b"000111222333"


def test_http10_response_is_close_delimited(raw_server):
    resp = raw_request(raw_server.port, b"GET /stream?n=2&size=2 HTTP/1.0\r\n\r\n")
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"0011"


def test_http10_scope_version(raw_server):
    resp = raw_request(raw_server.port, b"GET /scope HTTP/1.0\r\n\r\n")
    assert json.loads(resp.split(b"\r\n\r\n", 1)[1])["http_version"] == "1.0"


def test_head_sends_no_body(raw_server):
    with socket.create_connection(("127.0.0.1", raw_server.port)) as s:
        s.sendall(
            b"HEAD /headers HTTP/1.1\r\nHost: t\r\n\r\nGET /scope HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"}"):
            data += s.recv(65536)
    first, second = data.split(b"HTTP/1.1 200", 2)[1:]
    # The head announces the GET body's length, and no body bytes follow it.
    assert b"content-length: 2\r\n" in first.lower()
    assert first.endswith(b"\r\n\r\n")
    assert b'"method": "GET"' in second


def test_keep_alive_reuses_the_connection(raw_server):
    with socket.create_connection(("127.0.0.1", raw_server.port)) as s:
        ports = set()
        for _ in range(5):
            s.sendall(b"GET /scope HTTP/1.1\r\nHost: t\r\n\r\n")
            _, _, body = read_response(s)
            ports.add(json.loads(body)["client"][1])
        assert len(ports) == 1


def test_pipelined_requests_are_answered_in_order(raw_server):
    # The first takes longest and the second finishes first: answers still come in order.
    slow = (("0.05", "-a"), ("0", "-b"), ("0.02", "-c"))
    reqs = (
        b"".join(f"GET /sleep?s={d}&tag={t} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for d, t in slow)
        + b"GET /status?code=204 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    resp = raw_request(raw_server.port, reqs)
    assert resp.count(b"HTTP/1.1 200 OK") == 3
    assert resp.index(b"HTTP/1.1 204") > resp.rindex(b"HTTP/1.1 200 OK")
    assert resp.index(b"slept-a") < resp.index(b"slept-b") < resp.index(b"slept-c")


def test_expect_100_continue(raw_server):
    with socket.create_connection(("127.0.0.1", raw_server.port), timeout=10) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = s.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"hello")
        _, _, body = read_response(s)
    assert body == b"hello"


def test_expect_100_continue_not_sent_when_app_ignores_body(raw_server):
    with socket.create_connection(("127.0.0.1", raw_server.port), timeout=10) as s:
        s.sendall(
            b"POST /status?code=413 HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        status, _, _ = read_response(s)
    assert status.startswith(b"HTTP/1.1 413")


def test_response_headers_repeated_and_default_headers(raw_server):
    r = httpx.get(f"{raw_server.url}/headers")
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert r.headers["x-custom"] == "yes"
    assert r.headers["server"] == "juggler"
    assert "date" in r.headers
    assert httpx.get(f"{raw_server.url}/server-header").headers.get_list("server") == ["mine"]


@pytest.mark.timeout(120)
def test_100mib_upload_is_streamed(raw_server):
    size = 100 << 20
    block = b"u" * (1 << 20)

    def gen():
        for _ in range(size // len(block)):
            yield block

    r = httpx.post(f"{raw_server.url}/count", content=gen(), timeout=60)
    stats = r.json()
    assert stats["total"] == size
    # The app saw the body in bounded pieces, never the whole of it at once.
    assert stats["largest"] <= 1 << 20
    assert stats["chunks"] > 50


@pytest.mark.timeout(120)
def test_100mib_download_is_streamed(raw_server):
    total = 0
    with httpx.stream("GET", f"{raw_server.url}/download?mib=100", timeout=60) as r:
        assert r.headers["transfer-encoding"] == "chunked"
        for chunk in r.iter_raw():
            total += len(chunk)
    assert total == 100 << 20


def test_download_with_content_length(raw_server):
    r = httpx.get(f"{raw_server.url}/download?mib=3&cl=1", timeout=30)
    assert r.headers["content-length"] == str(3 << 20)
    assert len(r.content) == 3 << 20


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_get_and_post(raw_server):
    out = subprocess.run(
        ["curl", "-sS", "-i", f"{raw_server.url}/headers"],
        capture_output=True,
        check=True,
        timeout=10,
    ).stdout
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert out.endswith(b"ok")
    out = subprocess.run(
        ["curl", "-sS", "--data-binary", "@-", f"{raw_server.url}/echo"],
        input=b"from curl" * 1000,
        capture_output=True,
        check=True,
        timeout=10,
    ).stdout
    assert out == b"from curl" * 1000


def test_app_runs_inside_a_named_asyncio_task(raw_server):
    # anyio and asyncio.timeout() need a current task; juggler names it for debugging.
    assert httpx.get(f"{raw_server.url}/task").text == "juggler.request"


def test_slow_reader_pauses_the_app(raw_server):
    """send() waits while the client does not read, so memory stays bounded."""
    key = uuid.uuid4().hex
    total_mib = 128
    with socket.socket() as s:
        # A small, fixed receive window (set before connecting, so autotuning stays off).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.settimeout(30)
        s.connect(("127.0.0.1", raw_server.port))
        s.sendall(f"GET /produce?mib={total_mib}&key={key} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        raw_server.wait_for(f"PRODUCED {key} 1")
        # Let the app run until backpressure stops it: its progress must stall well short of
        # the whole body while nothing is read.
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            time.sleep(0.1)
        produced = max(
            int(line.split()[-1])
            for line in raw_server.lines
            if line.startswith(f"PRODUCED {key} ")
        )
        # At most the 1 MiB juggler queues ahead of the socket, plus what the kernel buffers
        # (up to tcp_wmem's 4 MiB) and one MiB of progress granularity.
        assert produced <= 7, produced
        received = 0
        while received < total_mib << 20:
            chunk = s.recv(1 << 20)
            assert chunk
            received += len(chunk)
    raw_server.wait_for(f"PRODUCED {key} {total_mib}")


def test_receive_after_a_complete_response_returns_disconnect(raw_server):
    key = uuid.uuid4().hex
    assert httpx.get(f"{raw_server.url}/receive-after-response?key={key}").text == "done"
    raw_server.wait_for(f"AFTER-RESPONSE {key} http.disconnect")


@pytest.mark.parametrize("shape", ["list", "generator", "tuple", "none"])
def test_response_messages_in_every_shape_the_spec_allows(raw_server, shape):
    r = httpx.get(f"{raw_server.url}/shapes?h={shape}")
    assert r.status_code == 200
    assert r.content == b"abcd"
    if shape != "none":
        assert r.headers["content-type"] == "text/css"
    if shape == "list":
        assert r.headers["x-a"] == "1"


def test_str_headers_are_a_protocol_error_naming_the_message(raw_server):
    r = httpx.get(f"{raw_server.url}/bad-header-str")
    assert r.status_code == 500
    raw_server.wait_for(r"juggler\.ProtocolError: http\.response\.start: 'headers' must be")


def test_optional_keys_of_response_messages_may_be_left_out(raw_server):
    # No headers, no body, no more_body on the start and body messages.
    r = httpx.get(f"{raw_server.url}/minimal-messages")
    assert r.status_code == 204
    assert r.content == b""
