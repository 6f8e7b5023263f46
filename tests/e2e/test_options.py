"""Server options over real sockets: limits, headers, keep-alive timeout, UNIX sockets, --fd.

Also, without a server: the interface options and how ``--interface`` tells ASGI from WSGI.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from conftest import raw_request, read_response


def test_limit_concurrency_answers_503(juggler):
    j = juggler("raw:app", "--limit-concurrency", "1").ready()
    holder = {}

    def slow():
        holder["r"] = httpx.get(f"{j.url}/sleep?s=1&key=busy", timeout=10)

    t = threading.Thread(target=slow)
    t.start()
    j.wait_for("SLEEP-STARTED busy")
    r = httpx.get(f"{j.url}/headers")
    assert r.status_code == 503
    t.join(10)
    assert holder["r"].status_code == 200
    assert httpx.get(f"{j.url}/headers").status_code == 200


def test_custom_headers_and_switched_off_defaults(juggler):
    j = juggler(
        "raw:app",
        "--header",
        "x-a:1",
        "--header",
        "X-B: two",
        "--no-server-header",
        "--no-date-header",
    ).ready()
    r = httpx.get(f"{j.url}/headers")
    assert r.headers["x-a"] == "1" and r.headers["x-b"] == "two"
    assert "server" not in r.headers
    assert "date" not in r.headers


def test_keep_alive_timeout_closes_idle_connections(juggler):
    j = juggler("raw:app", "--timeout-keep-alive", "0.3").ready()
    with socket.create_connection(("127.0.0.1", j.port), timeout=10) as s:
        sent = time.monotonic()
        s.sendall(b"GET /headers HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, _ = read_response(s)
        assert status == b"HTTP/1.1 200 OK"
        # Kept alive (a timeout rounded down to 0 would close at once) ...
        assert headers.get("connection") != "close"
        # ... then closed once idle for 0.3 s, not 1 s (rounded up) or 5 s (ignored). Timed
        # from before the request, so a slow client cannot make it look too short.
        assert s.recv(1) == b""
        elapsed = time.monotonic() - sent
        assert 0.3 <= elapsed < 0.95, elapsed


def test_keep_alive_timeout_does_not_cut_slow_handlers(juggler):
    j = juggler("raw:app", "--timeout-keep-alive", "0.2").ready()
    with socket.create_connection(("127.0.0.1", j.port), timeout=10) as s:
        s.sendall(b"GET /sleep?s=0.6 HTTP/1.1\r\nHost: t\r\n\r\n")
        _, _, body = read_response(s)
        assert body == b"slept"


def test_keep_alive_zero_closes_after_each_response(juggler):
    j = juggler("raw:app", "--timeout-keep-alive", "0").ready()
    resp = raw_request(j.port, b"GET /headers HTTP/1.1\r\nHost: t\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200") and b"connection: close" in resp.lower()


def test_unix_socket(juggler, tmp_path):
    path = str(tmp_path / "j.sock")
    juggler("raw:app", "--uds", path, port=False).ready()
    transport = httpx.HTTPTransport(uds=path)
    with httpx.Client(transport=transport) as client:
        r = client.get("http://localhost/scope")
    assert r.status_code == 200
    scope = r.json()
    assert scope["server"] == [path, None]
    assert scope["client"] is None


def test_inherited_fd(juggler):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    try:
        j = juggler("raw:app", "--fd", str(sock.fileno()), port=False, pass_fds=(sock.fileno(),))
        j.ready()
        assert httpx.get(f"http://127.0.0.1:{port}/headers").status_code == 200
    finally:
        sock.close()


def test_ipv6_loopback(juggler):
    if not socket.has_ipv6:
        pytest.skip("Python was built without IPv6")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    j = juggler("raw:app", "--host", "::1").ready()
    assert j.url.startswith("http://[::1]:")
    r = httpx.get(f"{j.url}/scope")
    assert r.json()["client"][0] == "::1"


def test_access_log_lines_and_switch(juggler):
    j = juggler("raw:app").ready()
    httpx.get(f"{j.url}/status?code=201")
    j.wait_for(r'127\.0\.0\.1:\d+ - "GET /status\?code=201 HTTP/1\.1" 201')
    quiet = juggler("raw:app", "--no-access-log").ready()
    httpx.get(f"{quiet.url}/status?code=202")
    quiet.stop()
    assert '" 202' not in quiet.output


def test_uvloop_and_asyncio_loops(juggler):
    for loop in ("asyncio", "uvloop"):
        j = juggler("raw:app", "--loop", loop).ready()
        payload = b"z" * 300_000
        assert httpx.post(f"{j.url}/echo", content=payload).content == payload
        # The loop asked for is the one the app runs on.
        assert httpx.get(f"{j.url}/loop").text.split(".")[0] == loop
        assert j.stop() == 0
