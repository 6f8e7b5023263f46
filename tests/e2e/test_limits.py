"""--limit-request-*, --timeout-request-head, --timeout-request and --health-path over real
sockets, with hostile clients: oversized bodies with and without a Content-Length, long lines
and fields, heads trickled in, handlers that never answer."""

from __future__ import annotations

import signal
import socket
import time
import uuid

import httpx
import pytest
from conftest import raw_request, read_response, recv_until_close, start

LIMITS = (
    "--limit-request-body",
    "1000",
    "--limit-request-line",
    "100",
    "--limit-request-fields",
    "10",
    "--limit-request-field-size",
    "200",
    "--timeout-request",
    "0.5",
    "--health-path",
    "/healthz",
)


@pytest.fixture(scope="module")
def asgi():
    j = start("guarded:app", *LIMITS)
    yield j
    j.kill()


@pytest.fixture(scope="module")
def wsgi():
    j = start("guarded:wsgi", "--interface", "wsgi", *LIMITS)
    yield j
    j.kill()


def key() -> str:
    return uuid.uuid4().hex[:12]


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def chunked(port: int, path: str, chunks: list[bytes], after_first=None) -> bytes:
    """Sends a chunked body piece by piece and returns the answer up to the close;
    ``after_first`` runs once the first chunk is out (to wait until the app reads)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        try:
            for i, c in enumerate(chunks):
                s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
                if i == 0 and after_first:
                    after_first()
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return recv_until_close(s)


# --- request body -----------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_a_declared_body_over_the_limit_is_refused_before_the_app(server, request):
    j = request.getfixturevalue(server)
    over, fine = key(), key()
    r = httpx.post(f"{j.url}/read?key={over}", content=b"x" * 1001)
    assert r.status_code == 413
    assert r.headers["connection"] == "close"
    r = httpx.post(f"{j.url}/read?key={fine}", content=b"x" * 1000)
    assert (r.status_code, r.text) == (200, "1000"), "the limit itself is allowed"
    j.wait_for(f"EVENT CALLED {fine}")
    assert f"CALLED {over}" not in j.output


def test_a_declared_body_over_the_limit_is_refused_without_asking_for_it(asgi):
    # A client that waits for 100 Continue gets the 413 instead and never sends the body.
    with socket.create_connection(("127.0.0.1", asgi.port), timeout=10) as s:
        s.sendall(
            b"POST /read HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        status, _, _ = read_response(s)
    assert status == b"HTTP/1.1 413 Payload Too Large"


def test_a_chunked_body_is_cut_at_the_limit_asgi(asgi):
    k = key()
    called = lambda: asgi.wait_for(f"EVENT CALLED {k}")  # noqa: E731
    answer = chunked(asgi.port, f"/read?key={k}", [b"x" * 400] * 10, called)
    assert status_of(answer) == 413 and b"\r\nconnection: close\r\n" in answer
    asgi.wait_for(f"EVENT DISCONNECT {k}")
    within = key()
    answer = chunked(asgi.port, f"/read?key={within}", [b"x" * 500, b"y" * 500])
    assert status_of(answer) == 200 and answer.endswith(b"1000")


def test_a_chunked_body_is_cut_at_the_limit_wsgi(wsgi):
    k = key()
    called = lambda: wsgi.wait_for(f"EVENT CALLED {k}")  # noqa: E731
    answer = chunked(wsgi.port, f"/read?key={k}", [b"x" * 400] * 10, called)
    assert status_of(answer) == 413
    wsgi.wait_for(f"EVENT INPUT-ERROR {k} ClientDisconnected")
    answer = chunked(wsgi.port, "/read", [b"x" * 999])
    assert status_of(answer) == 200 and answer.endswith(b"999")


# --- request head -----------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_request_line_limit(server, request):
    j = request.getfixturevalue(server)
    # "GET /?p=... HTTP/1.1" at exactly 100 bytes passes, one more does not.
    ok = "/?p=" + "a" * (100 - len("GET /?p= HTTP/1.1"))
    assert httpx.get(f"{j.url}{ok}").status_code == 200
    assert httpx.get(f"{j.url}{ok}a").status_code == 414


def test_field_size_and_count_limits(asgi):
    assert httpx.get(asgi.url, headers={"x-big": "v" * (200 - 7)}).status_code == 200
    assert httpx.get(asgi.url, headers={"x-big": "v" * (200 - 6)}).status_code == 431
    few = "".join(f"x-{i}: v\r\n" for i in range(8))
    r = raw_request(
        asgi.port, f"GET / HTTP/1.1\r\nHost: t\r\n{few}Connection: close\r\n\r\n".encode()
    )
    assert status_of(r) == 200, "host + 8 + connection = 10 fields"
    many = "".join(f"x-{i}: v\r\n" for i in range(10))
    r = raw_request(asgi.port, f"GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n".encode())
    assert status_of(r) == 431


def test_field_limits_hold_over_http2(asgi):
    # hyper counts HTTP/1.1 fields itself; over HTTP/2 the server does.
    with httpx.Client(http1=False, http2=True) as c:
        # httpx's own fields (accept, user-agent, ...) count; HTTP/2 has no connection field.
        own = len([k for k in c.headers if k.lower() != "connection"])
        fill = {f"x-{i}": "v" for i in range(10 - own)}
        assert c.get(asgi.url, headers=fill).status_code == 200
        fill["x-one-more"] = "v"
        assert c.get(asgi.url, headers=fill).status_code == 431
        assert c.get(asgi.url, headers={"x-big": "v" * 200}).status_code == 431
        assert c.get(f"{asgi.url}/?p={'a' * 100}").status_code == 414


def test_a_head_trickled_in_is_cut_but_idle_keep_alive_is_not(juggler):
    j = juggler(
        "guarded:app", "--timeout-request-head", "0.3", "--timeout-keep-alive", "30"
    ).ready()
    with socket.create_connection(("127.0.0.1", j.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        read_response(s)
        # Idle for longer than the head timeout: still open (a fixed wait, for an absence).
        time.sleep(0.6)
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, _ = read_response(s)
        assert status == b"HTTP/1.1 200 OK"
        # A slowloris head: the first bytes, then a byte now and then.
        started = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\n")
        closed = None
        try:
            for _ in range(20):
                s.sendall(b"X")
                s.settimeout(0.1)
                try:
                    closed = s.recv(1)
                    break
                except TimeoutError:
                    continue
        except (BrokenPipeError, ConnectionResetError):
            closed = b""
        elapsed = time.monotonic() - started
    assert closed == b"", "the server closed the connection"
    assert 0.3 <= elapsed < 1.5, elapsed


# --- per-request timeout ----------------------------------------------------------------------


def test_a_slow_asgi_handler_gets_504_and_is_cancelled(asgi):
    k = key()
    started = time.monotonic()
    r = httpx.get(f"{asgi.url}/sleep?s=30&key={k}", timeout=10)
    assert r.status_code == 504
    assert time.monotonic() - started < 5
    asgi.wait_for(f"EVENT CANCELLED {k}")
    asgi.wait_for(r"request timed out after 0\.5s .*GET /sleep.*task is cancelled")
    # Fast handlers and responses that started in time are not touched.
    assert httpx.get(f"{asgi.url}/sleep?s=0.01").text == "slept"
    r = httpx.get(f"{asgi.url}/slow-stream?s=1", timeout=10)
    assert (r.status_code, r.text) == (200, "streamed")


def test_a_slow_wsgi_handler_gets_504_and_its_response_is_dropped(wsgi):
    k = key()
    r = httpx.get(f"{wsgi.url}/sleep?s=1.5&key={k}", timeout=10)
    assert r.status_code == 504
    wsgi.wait_for(r"request timed out .*GET /sleep.*thread cannot be stopped")
    wsgi.wait_for(f"EVENT SLEPT {k}")
    assert httpx.get(f"{wsgi.url}/").status_code == 200


# --- health -----------------------------------------------------------------------------------


def test_health_is_answered_without_the_app(asgi):
    for method in ("GET", "HEAD"):
        r = httpx.request(method, f"{asgi.url}/healthz")
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
    marker = key()
    httpx.get(f"{asgi.url}/?key={marker}")
    asgi.wait_for(f"EVENT CALLED {marker}")
    assert "EVENT CALLED -" not in asgi.output[asgi.output.find("healthz") :]


def test_health_says_503_while_draining(juggler):
    j = juggler("guarded:app", "--health-path", "/healthz").ready()
    with (
        socket.create_connection(("127.0.0.1", j.port), timeout=10) as busy,
        socket.create_connection(("127.0.0.1", j.port), timeout=10) as fresh,
    ):
        # A request in flight keeps the worker draining instead of gone; served, it also
        # shows that the connection opened before it (`fresh`) has been accepted.
        busy.sendall(b"GET /sleep?s=3&key=drain HTTP/1.1\r\nHost: t\r\n\r\n")
        j.wait_for("EVENT CALLED drain")
        # A check on a connection that was open before the drain began is still answered
        # (its first request gets a grace), with 503.
        fresh.sendall(b"GET /healthz HTTP/1.1\r\n")
        j.proc.send_signal(signal.SIGTERM)
        j.wait_for("Shutting down")
        fresh.sendall(b"Host: t\r\n\r\n")
        status, _, body = read_response(fresh)
        assert (status, body) == (b"HTTP/1.1 503 Service Unavailable", b"Shutting down")


def test_limit_options_are_checked():
    from juggler.config import Config, ConfigError

    for bad in ({"limit_request_body": "-1"}, {"timeout_request": "x"}, {"health_path": "x"}):
        with pytest.raises(ConfigError):
            Config.resolve("a:b", bad, env={})
