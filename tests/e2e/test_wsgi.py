"""WSGI (PEP 3333) end to end: environ, wsgi.input, start_response, iterables, files, errors,
the thread pool and its limits, shutdown and logs; tests/e2e/apps/wsgi_app.py is the app.

``JUGGLER_TEST_REFERENCE=gunicorn`` runs these against Gunicorn (see wsgi_servers.py).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from urllib.parse import quote

import httpx
import pytest
from conftest import raw_request, read_response, recv_until_close
from wsgi_servers import REFERENCE, Server, juggler_only, reference_differs, wsgi

__all__ = ["wsgi"]  # the fixture, imported for pytest

BODY = b"line one\nline two\n\nlast without newline"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One shared server; tests against it use their own keys and change nothing else."""
    s = Server("wsgi_app:app", "--threads", "8").ready()
    yield s
    s.kill()


def new_key() -> str:
    return uuid.uuid4().hex[:12]


def environ_of(server: Server, path: str = "/environ", **kwargs) -> dict:
    r = httpx.request(kwargs.pop("method", "GET"), f"{server.url}{path}", **kwargs)
    assert r.status_code == 200, r.text
    return r.json()


def raw_environ(server: Server, request: bytes) -> dict:
    resp = raw_request(server.port, request)
    assert resp.startswith(b"HTTP/1."), resp
    return json.loads(resp.split(b"\r\n\r\n", 1)[1])


def events(server: Server, key: str) -> list[str]:
    return httpx.get(f"{server.url}/events", params={"key": key}).json()


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """Decodes a chunked body as far as it goes; True if it ended with the 0-chunk."""
    body = b""
    while b"\r\n" in data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return body, True
        if len(rest) < size + 2:
            break
        body += rest[:size]
        data = rest[size + 2 :]
    return body, False


def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


# --- startup --------------------------------------------------------------------------------


@juggler_only
def test_startup_names_the_wsgi_interface_before_the_ready_line(server):
    lines = server.output.splitlines()
    using = next(i for i, line in enumerate(lines) if "Using the WSGI interface" in line)
    ready = next(i for i, line in enumerate(lines) if "juggler running on http://" in line)
    assert lines[using].startswith("INFO:")
    assert "8 threads" in lines[using]
    assert using < ready


@juggler_only
def test_auto_interface_detects_the_wsgi_app(juggler):
    j = juggler("wsgi_app:app").ready()
    assert re.search(r"Using the WSGI interface .*\(detected\)", j.output)
    assert httpx.get(f"{j.url}/environ").json()["wsgi.version"] == [1, 0]


@juggler_only
def test_juggler_run_serves_a_wsgi_app(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(
        "import juggler\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'wsgi from run ', environ['SERVER_PROTOCOL'].encode()]\n"
        "juggler.run(app, interface='wsgi', port=0, threads=2, access_log=False)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "juggler running on" in line:
                url = line.split("running on ")[1].split()[0]
                assert httpx.get(url).text == "wsgi from run HTTP/1.1"
                break
        else:
            pytest.fail("juggler.run never became ready")
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait(10)


# --- environ --------------------------------------------------------------------------------


def test_environ_of_a_get(server):
    env = environ_of(server, "/environ?a=1&b=%20x", headers={"X-Custom": "v"})
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "a=1&b=%20x"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert isinstance(env["REMOTE_PORT"], str) and int(env["REMOTE_PORT"]) > 0
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert env["HTTP_X_CUSTOM"] == "v"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    for key in ("wsgi.input", "wsgi.errors", "wsgi.file_wrapper"):
        assert key in env
    # Nothing was sent, so neither is there.
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        assert key not in env
    # The environ's keys and values are all native strings (or the wsgi.* objects).
    assert all(isinstance(v, str) for k, v in env.items() if k.isupper())
    assert env["_thread"] != "MainThread", "the app runs on a pool thread"


def test_environ_is_fresh_for_each_request(server):
    first = environ_of(server, headers={"X-Once": "1"})
    second = environ_of(server)
    assert first["HTTP_X_ONCE"] == "1"
    assert "HTTP_X_ONCE" not in second


def test_content_type_and_length_when_sent_without_http_duplicates(server):
    env = environ_of(
        server,
        method="POST",
        content=b"hello",
        headers={"Content-Type": "text/x-test; charset=utf-8"},
    )
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "text/x-test; charset=utf-8"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["_body"] == "hello"


def test_path_info_is_percent_decoded_then_latin1(server):
    env = raw_environ(
        server,
        b"GET /environ/%E2%82%AC/sp%20ace/%41?x=%41&y=%E2%82%AC HTTP/1.1\r\n"
        b"Host: t\r\nConnection: close\r\n\r\n",
    )
    assert env["PATH_INFO"] == "/environ/\xe2\x82\xac/sp ace/A"
    # Round-trips to the UTF-8 the client meant, as PEP 3333 intends.
    assert env["PATH_INFO"].encode("latin-1").decode() == "/environ/€/sp ace/A"
    assert env["QUERY_STRING"] == "x=%41&y=%E2%82%AC"


def test_http10_server_protocol(server):
    env = raw_environ(server, b"GET /environ HTTP/1.0\r\n\r\n")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_repeated_headers_are_joined_with_commas(server):
    env = raw_environ(
        server,
        b"GET /environ HTTP/1.1\r\nHost: t\r\nX-Rep: one\r\nX-Other: o\r\nX-Rep: two\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert env["HTTP_X_REP"] == "one,two"
    assert env["HTTP_X_OTHER"] == "o"


@juggler_only
def test_repeated_cookie_headers_are_joined_with_semicolons(server):
    env = raw_environ(
        server,
        b"GET /environ HTTP/1.1\r\nHost: t\r\nCookie: a=1\r\nCookie: b=2; c=3\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert env["HTTP_COOKIE"] == "a=1; b=2; c=3"


def test_header_names_with_underscores_are_dropped(server):
    env = raw_environ(
        server,
        b"GET /environ HTTP/1.1\r\nHost: t\r\nX_Auth_User: spoofed\r\nX-Auth-User: real\r\n"
        b"X_Only_Underscore: 1\r\nConnection: close\r\n\r\n",
    )
    assert env["HTTP_X_AUTH_USER"] == "real"
    assert "HTTP_X_ONLY_UNDERSCORE" not in env
    assert not any("spoofed" in str(v) for v in env.values())


def test_root_path_becomes_script_name(wsgi):
    s = wsgi("wsgi_app:app", "--root-path", "/mnt").ready()
    # juggler, like Uvicorn, expects the proxy to have stripped the prefix; Gunicorn wants it.
    prefix = "/mnt" if REFERENCE == "gunicorn" else ""
    env = environ_of(s, f"{prefix}/environ/x?q=1")
    assert env["SCRIPT_NAME"] == "/mnt"
    assert env["PATH_INFO"] == "/environ/x"
    assert env["QUERY_STRING"] == "q=1"


def test_wsgi_errors_lines_reach_the_error_log(server):
    key = new_key()
    assert httpx.get(f"{server.url}/log", params={"msg": key}).text == "logged"
    for line in (f"app-says {key}", f"app-lines {key} 1", f"app-lines {key} 2"):
        server.wait_for(re.escape(line) + "$")
    if not REFERENCE:  # Gunicorn writes the stream as it is: the unfinished line waits
        server.wait_for(f"app-flushed {key}$")


# --- wsgi.input -----------------------------------------------------------------------------


def expected_pieces(how: str, body: bytes) -> list[bytes]:
    if how in ("read", "read-none", "read-minus1"):
        return [body]
    if how.startswith("read-"):
        n = int(how.split("-")[1])
        return [body[i : i + n] for i in range(0, len(body), n)]
    lines = body.splitlines(keepends=True)
    if how.startswith("readline-"):
        n = int(how.split("-")[1])
        return [line[i : i + n] for line in lines for i in range(0, len(line), n)]
    return lines  # readline, readlines, iter


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    "how",
    "read read-none read-minus1 read-5 read-1 readline readline-4 readlines iter".split(),
)
def test_wsgi_input_methods(server, how, chunked):
    def gen():
        yield BODY[:7]
        yield BODY[7:20]
        yield BODY[20:]

    r = httpx.post(f"{server.url}/input", params={"how": how}, content=gen() if chunked else BODY)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["pieces"] == [p.decode() for p in expected_pieces(how, BODY)]
    assert out["types"] == ["bytes"]
    # At the end of the body every method returns b"" (and does not block).
    assert out["after"] == ["", "", ""]


def test_wsgi_input_of_a_request_without_body_is_empty(server):
    r = httpx.get(f"{server.url}/input", params={"how": "read"})
    assert r.json() == {"pieces": [""], "types": ["bytes"], "after": ["", "", ""]}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_binary_body_round_trips(server, chunked):
    payload = bytes(range(256)) * 4000 + b"\r\n0\r\n\r\n"

    def gen():
        for i in range(0, len(payload), 100_000):
            yield payload[i : i + 100_000]

    r = httpx.post(
        f"{server.url}/echo",
        params={"how": "read-65536"},
        content=gen() if chunked else payload,
        timeout=30,
    )
    assert r.status_code == 200
    assert r.content == payload


def test_expect_100_continue(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        status, _, body = read_response(s)
    assert status == b"HTTP/1.1 200 OK"
    assert body == b"hello"


def test_expect_100_continue_app_that_ignores_the_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /status?code=413 HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        data = recv_until_close(s) if REFERENCE else s.recv(65536)
    # An interim 100 may come first (Gunicorn sends it at once); the answer is the 413.
    data = data.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 413")


@pytest.mark.timeout(120)
def test_100mib_each_way_in_flat_server_memory(wsgi):
    s = wsgi("wsgi_app:app", "--threads", "4", "--no-access-log").ready()
    pid = httpx.get(f"{s.url}/pid").json()["pid"]
    before = vm_kib(pid, "VmHWM")
    size = 100 << 20
    block = b"u" * (1 << 20)

    def gen():
        for _ in range(size // len(block)):
            yield block

    r = httpx.post(f"{s.url}/count", content=gen(), timeout=60)
    assert r.json()["total"] == size
    assert r.json()["chunks"] >= size // 65536

    total = 0
    with httpx.stream("GET", f"{s.url}/download", params={"mib": 100}, timeout=60) as r:
        assert r.headers["transfer-encoding"] == "chunked"
        for chunk in r.iter_raw():
            total += len(chunk)
    assert total == size
    # Peak resident memory of the process running the app: far below one copy of a body.
    peak = vm_kib(pid, "VmHWM")
    assert peak - before < 40 * 1024, f"peak RSS grew from {before} to {peak} KiB"
    assert peak < 150 * 1024


# --- responses ------------------------------------------------------------------------------


def test_generator_without_length_is_chunked(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /stream?n=4&size=3 HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = read_response(s)
        # ... and the connection is still usable.
        s.sendall(b"GET /stream?n=2&size=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(s)[2] == b"01"
    assert status == b"HTTP/1.1 200 OK"
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers
    assert body == b"000111222333"


def test_http10_streamed_response_is_close_delimited(server):
    resp = raw_request(server.port, b"GET /stream?n=3&size=2 HTTP/1.0\r\n\r\n")
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"001122"


def test_content_length_from_the_app_is_kept(server):
    r = httpx.get(f"{server.url}/download", params={"mib": 3, "cl": 1}, timeout=30)
    assert r.headers["content-length"] == str(3 << 20)
    assert "transfer-encoding" not in r.headers
    assert r.content == b"d" * (3 << 20)


def test_head_sends_no_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"HEAD /headers HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD /stream?n=3&size=5 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /status?code=202 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        data = recv_until_close(s)
    first, second, third = data.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and first.endswith(b"\r\n\r\n")
    assert b"content-length: 2\r\n" in first.lower()
    assert second.startswith(b"200") and second.endswith(b"\r\n\r\n")
    assert b"00000" not in second
    assert third.startswith(b"202") and third.endswith(b"status 202")


def test_keep_alive_reuses_the_connection(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        ports = set()
        for _ in range(5):
            s.sendall(b"GET /environ HTTP/1.1\r\nHost: t\r\n\r\n")
            status, _, body = read_response(s)
            assert status == b"HTTP/1.1 200 OK"
            ports.add(json.loads(body)["REMOTE_PORT"])
    assert len(ports) == 1


def test_pipelined_requests_are_answered_in_order(server):
    reqs = (
        b"GET /sleep?s=0.05 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nfirst;"
        b"GET /sleep?s=0 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nsec\r\n4\r\nond;\r\n0\r\n\r\n"
        b"GET /status?code=204 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    resp = raw_request(server.port, reqs)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3})", resp)
    assert statuses == [b"200"] * 4 + [b"204"]
    assert resp.index(b"slept") < resp.index(b"first;") < resp.rindex(b"slept")
    assert resp.rindex(b"slept") < resp.index(b"second;")


def test_response_headers_are_passed_through(server):
    r = httpx.get(f"{server.url}/headers")
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert r.headers["x-custom"] == "yes"
    assert r.text == "ok"
    assert "date" in r.headers
    if not REFERENCE:
        assert r.headers["server"] == "juggler"


def test_status_reason_is_passed_through(server):
    r = httpx.get(f"{server.url}/status", params={"code": 299})
    assert r.status_code == 299
    assert r.reason_phrase == "Whatever"


def test_write_callable_then_iterable(server):
    r = httpx.get(f"{server.url}/write")
    assert r.status_code == 200
    assert r.text == "written-1;written-2;returned-1;returned-2"


def test_close_is_called_after_the_iterable_is_exhausted(server):
    key = new_key()
    r = httpx.get(f"{server.url}/closing", params={"key": key, "n": 3})
    assert r.text == "chunk1;chunk2;chunk3;"
    server.wait_for(f"EVENT {key} closed")
    assert events(server, key) == ["first-chunk", "closed"]


def test_close_is_called_on_a_list_subclass(server):
    key = new_key()
    assert httpx.get(f"{server.url}/closing-list", params={"key": key}).text == "abcd"
    server.wait_for(f"EVENT {key} closed")
    assert events(server, key) == ["closed"]


def test_close_is_called_when_the_client_goes_away_mid_body(server):
    key = new_key()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(
        f"GET /closing?key={key}&mode=forever&delay=0.01 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    )
    data = b""
    while b"chunk2;" not in data:
        data += s.recv(65536)
    s.close()
    server.wait_for(f"EVENT {key} closed")
    assert events(server, key) == ["first-chunk", "closed"]


def test_close_is_called_when_the_iterable_raises(server):
    key = new_key()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(f"GET /closing?key={key}&mode=raise&n=2 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        data = recv_until_close(s)
    server.wait_for(f"EVENT {key} closed")
    assert events(server, key) == ["first-chunk", "raising", "closed"]
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert dechunk(body) == (b"chunk1;chunk2;", False)


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "no-length"])
def test_file_wrapper_sends_the_file_without_python_reading_it(server, length):
    key = new_key()
    size = 300_001
    r = httpx.get(
        f"{server.url}/file", params={"key": key, "size": size, "cl": int(length)}, timeout=30
    )
    assert r.status_code == 200
    assert r.content == (bytes(range(256)) * (size // 256 + 1))[:size]
    if length or not REFERENCE:
        # Without one from the app, juggler sends the file's size as Content-Length.
        assert r.headers["content-length"] == str(size)
    server.wait_for(f"EVENT {key} file-closed")
    seen = events(server, key)
    assert seen == ["file-closed"], seen  # no read(), readinto() or readall() from Python


def test_file_wrapper_sends_no_more_than_the_apps_content_length(server):
    full = (bytes(range(256)) * 400)[:100_000]
    r = httpx.get(f"{server.url}/file", params={"key": new_key(), "size": 100_000, "cl": 1000})
    assert (r.status_code, r.headers["content-length"], r.content) == (200, "1000", full[:1000])


@juggler_only
def test_file_wrapper_with_a_content_length_past_the_file_is_a_500(server):
    # Refused before anything is sent, instead of a response that can never be completed.
    r = httpx.get(f"{server.url}/file", params={"key": new_key(), "size": 1000, "cl": 5000})
    assert r.status_code == 500
    server.wait_for("has 1000 bytes but its Content-Length says 5000")
    assert httpx.get(f"{server.url}/file", params={"key": new_key(), "size": 10}).status_code == 200


def test_file_wrapper_over_a_file_like_without_fileno(server):
    r = httpx.get(f"{server.url}/file-bytesio", params={"size": 25_000})
    assert r.status_code == 200
    assert r.content == (bytes(range(256)) * 98)[:25_000]


# --- errors ---------------------------------------------------------------------------------


@reference_differs("keeps the first headers next to the replacing ones")
def test_exc_info_before_headers_were_sent_replaces_them(server):
    r = httpx.get(f"{server.url}/exc-info", params={"when": "before"})
    assert r.status_code == 500
    assert r.headers["x-second"] == "1"
    assert "x-first" not in r.headers
    assert r.text == "replaced"


@reference_differs("keeps the first headers next to the replacing ones")
def test_exc_info_in_a_generator_before_the_first_byte_replaces_headers(server):
    r = httpx.get(f"{server.url}/exc-info", params={"when": "in-generator"})
    assert r.status_code == 503
    assert r.headers["x-second"] == "1"
    assert "x-first" not in r.headers
    assert r.text == "replaced in generator"


def test_exc_info_after_headers_were_sent_reraises_and_cuts_the_response(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /exc-info?when=after HTTP/1.1\r\nHost: t\r\n\r\n")
        data = recv_until_close(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert dechunk(body) == (b"first;", False)
    server.wait_for("ValueError: exc-info after headers were sent")


def test_start_response_twice_without_exc_info_is_500(server):
    r = httpx.get(f"{server.url}/exc-info", params={"when": "twice"})
    assert r.status_code == 500
    assert "should not be sent" not in r.text
    if not REFERENCE:
        server.wait_for(r"ProtocolError: start_response\(\) called again without exc_info")


@pytest.mark.parametrize("where", ["before-start", "after-start", "first-chunk"])
def test_exception_before_the_response_started_is_500(server, where):
    key = new_key()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(f"GET /raise?where={where}&key={key} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        status, _, body = read_response(s)
        assert status.startswith(b"HTTP/1.1 500")
        assert key.encode() not in body  # no traceback to the client
        if not REFERENCE:
            # juggler keeps the connection.
            s.sendall(b"GET /status?code=201 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(s)[0].startswith(b"HTTP/1.1 201")
    server.wait_for(f"RuntimeError: boom .*{key}")
    assert "Traceback (most recent call last)" in server.output
    if not REFERENCE:
        assert re.search(r"Exception in (the )?WSGI application", server.output, re.I)
    assert httpx.get(f"{server.url}/status", params={"code": 200}).status_code == 200


def test_exception_midway_cuts_the_chunked_response(server):
    key = new_key()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(f"GET /raise?where=midway&key={key} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        data = recv_until_close(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert dechunk(body) == (b"part-1;part-2;", False)
    server.wait_for(f"RuntimeError: boom midway {key}")
    # httpx sees a cut response, not a complete one.
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{server.url}/raise", params={"where": "midway", "key": key})


@pytest.mark.parametrize(
    "status", ["abc", "99 X", "20 OK", "2000 Big", "200OK", "200 A\r\nX-Injected: 1"]
)
def test_bad_status_from_the_app_is_500(server, status):
    resp = raw_request(
        server.port,
        f"GET /bad-status?status={quote(status)} HTTP/1.1\r\nHost: t\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    if status in ("99 X", "20 OK") and REFERENCE:
        pytest.xfail(f"{REFERENCE} passes a 2-digit status through")
    assert resp.startswith(b"HTTP/1.1 500 "), resp[:200]
    assert b"bad status" not in resp
    assert b"X-Injected" not in resp


@pytest.mark.parametrize(
    "kind", ["bytes-name", "int-value", "newline", "lf", "colon-name", "not-a-tuple"]
)
def test_bad_header_from_the_app_is_500(server, kind):
    resp = raw_request(
        server.port,
        f"GET /bad-header?kind={kind} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode(),
    )
    assert resp.startswith(b"HTTP/1.1 500 "), resp[:200]
    assert b"bad header" not in resp
    assert b"x-injected" not in resp.lower()


# --- threads, limits, timeouts ---------------------------------------------------------------


def test_many_concurrent_requests_are_all_answered(server):
    with ThreadPoolExecutor(20) as pool:
        futures = [
            pool.submit(httpx.post, f"{server.url}/echo?how=read-3", content=b"x" * i, timeout=20)
            for i in range(40)
        ]
        assert [f.result().content for f in futures] == [b"x" * i for i in range(40)]


def test_requests_run_in_parallel_threads(server):
    key = new_key()
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(httpx.get, f"{server.url}/barrier?key={key}&n=4", timeout=20)
            for _ in range(4)
        ]
        assert [f.result().text for f in futures] == ["together"] * 4


def hold_a_thread(s: Server) -> tuple[socket.socket, socket.socket]:
    """Starts a request whose app holds its thread until ``release``.

    The app connects back to a port of the test's and waits for bytes there: once the
    connection is accepted the app is running.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        client.sendall(f"GET /hold?port={port} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        app_side, _ = listener.accept()
    return client, app_side


def release(held: tuple[socket.socket, socket.socket]) -> None:
    client, app_side = held
    app_side.sendall(b"done")
    app_side.close()
    assert read_response(client)[::2] == (b"HTTP/1.1 200 OK", b"done")
    client.close()


@juggler_only
def test_full_queue_answers_503(wsgi):
    s = wsgi("wsgi_app:app", "--threads", "1", "--queue-size", "1").ready()
    held = hold_a_thread(s)
    with ThreadPoolExecutor(2) as pool:
        # The only thread is busy: one of these waits in the queue, the other finds it full
        # and is answered at once, while the first still waits.
        both = [pool.submit(httpx.get, f"{s.url}/status?code=200", timeout=20) for _ in range(2)]
        done, _ = wait(both, timeout=20, return_when=FIRST_COMPLETED)
        assert [f.result().status_code for f in done] == [503]
        release(held)
        assert sorted(f.result().status_code for f in both) == [200, 503]
    assert httpx.get(f"{s.url}/status?code=201").status_code == 201


@juggler_only
def test_limit_concurrency_answers_503(wsgi):
    s = wsgi("wsgi_app:app", "--limit-concurrency", "1").ready()
    held = hold_a_thread(s)
    assert httpx.get(f"{s.url}/status?code=200").status_code == 503
    release(held)
    assert httpx.get(f"{s.url}/status?code=200").status_code == 200


@juggler_only
def test_sse_streams_do_not_starve_the_pool(wsgi):
    s = wsgi("wsgi_app:app", "--threads", "2").ready()
    keys = [new_key() for _ in range(4)]
    socks = []
    try:
        for key in keys:
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            sock.sendall(f"GET /sse?key={key} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            data = b""
            while b"data: tick 1\n\n" not in data:
                data += sock.recv(65536)
            socks.append(sock)
        # Four endless streams on two threads, and a plain request still answers promptly.
        r = httpx.get(f"{s.url}/status?code=200", timeout=3)
        assert r.status_code == 200
        assert all(socks[0].recv(65536) for _ in range(3))  # the streams go on
    finally:
        for sock in socks:
            sock.close()
    for key in keys:
        s.wait_for(f"EVENT {key} closed")


@juggler_only
def test_write_timeout_cuts_a_client_that_does_not_read(wsgi):
    s = wsgi("wsgi_app:app", "--timeout-write", "0.5").ready()
    key = new_key()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", s.port))
    try:
        sock.sendall(f"GET /download?mib=500&key={key} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        # Never read: the server gives up on the write and closes the generator.
        s.wait_for(f"EVENT {key} closed", timeout=20)
        assert httpx.get(f"{s.url}/status?code=200").status_code == 200
    finally:
        sock.close()


@juggler_only
def test_options_access_log_header_keep_alive(wsgi):
    s = wsgi(
        "wsgi_app:app", "--header", "x-a:1", "--timeout-keep-alive", "0.3", "--threads", "2"
    ).ready()
    r = httpx.get(f"{s.url}/status?code=201")
    assert r.headers["x-a"] == "1"
    s.wait_for(r'127\.0\.0\.1:\d+ - "GET /status\?code=201 HTTP/1\.1" 201')
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(b"GET /environ HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[0] == b"HTTP/1.1 200 OK"
        assert sock.recv(1) == b""  # closed once idle for 0.3 s (the socket waits 10 s)

    quiet = wsgi("wsgi_app:app", "--no-access-log", "--threads", "2").ready()
    httpx.get(f"{quiet.url}/status?code=202")
    assert quiet.stop() == 0
    assert '" 202' not in quiet.output


# --- shutdown -------------------------------------------------------------------------------


def test_sigterm_waits_for_running_requests(wsgi):
    s = wsgi("wsgi_app:app", "--threads", "2").ready()
    key = new_key()
    result: dict[str, httpx.Response] = {}

    def slow():
        result["r"] = httpx.get(f"{s.url}/sleep?s=1&key={key}", timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    s.wait_for(f"SLEEP-STARTED {key}")
    s.proc.send_signal(signal.SIGTERM)
    t.join(20)
    assert result["r"].status_code == 200 and result["r"].text == "slept"
    assert s.proc.wait(20) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(s.url)


def test_graceful_timeout_does_not_wait_for_a_stuck_call_forever(wsgi):
    s = wsgi("wsgi_app:app", "--threads", "2", "--timeout-graceful-shutdown", "1").ready()
    client, app_side = hold_a_thread(s)
    try:
        s.proc.send_signal(signal.SIGTERM)
        # The call never returns (its thread cannot be cancelled); the process leaves anyway.
        assert s.proc.wait(15) == 0
        if not REFERENCE:
            assert "still running after the graceful timeout" in s.output
        assert recv_until_close(client) == b""  # cut, never answered
    finally:
        client.close()
        app_side.close()


@juggler_only
@pytest.mark.parametrize(
    ("declared", "status", "body"),
    [
        ("20", b"HTTP/1.1 500", b"Internal Server Error"),
        # Longer than declared: cut at the Content-Length, as PEP 3333 says.
        ("3", b"HTTP/1.1 200", b"hel"),
        ("abc", b"HTTP/1.1 500", b"Internal Server Error"),
        ("+5", b"HTTP/1.1 500", b"Internal Server Error"),
    ],
)
def test_content_length_not_matching_the_body_never_reaches_the_wire(wsgi, declared, status, body):
    s = wsgi("wsgi_app:app").ready()
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(
            f"GET /wrong-length?cl={declared} HTTP/1.1\r\nHost: t\r\n\r\n"
            "GET /status?code=200 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        )
        first = read_response(sock)
        second = read_response(sock)
    assert first[0].startswith(status) and first[2] == body
    # The connection stays in step: the next response is whole and separate.
    assert second[0].startswith(b"HTTP/1.1 200") and second[2] == b"status 200"


@juggler_only
def test_start_response_reentered_from_its_headers_does_not_lock_up(wsgi):
    s = wsgi("wsgi_app:app").ready()
    # The generator's write() sends the first head; the second start_response then fails.
    resp = raw_request(s.port, b"GET /reentrant HTTP/1.1\r\nHost: t\r\n\r\n", timeout=10)
    assert resp.startswith(b"HTTP/1.1 200") and b"too early" in resp
    s.wait_for(r"ProtocolError: start_response\(\) called while its headers were being sent")
    assert httpx.get(f"{s.url}/status", timeout=10).status_code == 200
