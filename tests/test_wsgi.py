"""WSGI end to end: PEP 3333 environ and input, responses, errors, the thread pool, shutdown."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import APPS, READY, raw_request, read_response, start

#: What tests/apps/wsgi_app.py fills its files with.
FILE_PATTERN = bytes(range(256))


@pytest.fixture(scope="module")
def wsgi():
    """One shared WSGI server; tests against it must not change its state."""
    j = start("wsgi_app:app", "--interface", "wsgi", "--threads", "8")
    yield j
    j.kill()


def environ(server, path="/environ", **kwargs) -> dict:
    r = httpx.get(f"{server.url}{path}", **kwargs)
    assert r.status_code == 200, r.text
    return r.json()


def events(server, key: str) -> list[str]:
    return httpx.get(f"{server.url}/events", params={"key": key}).json()


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# ---- environ ----


def test_environ_has_every_required_key(wsgi):
    env = environ(
        wsgi,
        "/environ/a%20b?x=1&y=%20",
        headers=[
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
            ("Content-Type", "text/x-test"),
            ("X_Spoofed", "1"),
        ],
    )
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ/a b"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(wsgi.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"].isdigit()
    assert env["HTTP_HOST"] == f"127.0.0.1:{wsgi.port}"
    assert env["HTTP_X_MULTI"] == "a,b"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["CONTENT_TYPE"] == "text/x-test"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "CONTENT_LENGTH" not in env
    # A name with '_' would pose as the '-' one; it is dropped, as Gunicorn does.
    assert "HTTP_X_SPOOFED" not in env
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert "ErrorStream" in env["wsgi.errors"]
    assert "FileWrapper" in env["wsgi.file_wrapper"]
    assert env["_thread"] != "MainThread", "the app runs on a pool thread, not the loop thread"


def test_path_info_is_decoded_as_latin1_per_pep_3333(wsgi):
    env = environ(wsgi, "/environ/a/%E2%82%AC")
    assert env["PATH_INFO"] == "/environ/a/\xe2\x82\xac"
    # What Django and Werkzeug do with it gives the text back.
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/environ/a/€"


def test_content_length_and_body(wsgi):
    r = httpx.post(f"{wsgi.url}/environ", content=b"hello")
    env = r.json()
    assert env["CONTENT_LENGTH"] == "5"
    assert env["_body"] == "hello"
    assert env["REQUEST_METHOD"] == "POST"


def test_root_path_is_script_name(juggler):
    j = juggler("wsgi_app:app", "--interface", "wsgi", "--root-path", "/mount").ready()
    env = environ(j, "/environ/x")
    assert env["SCRIPT_NAME"] == "/mount"
    assert env["PATH_INFO"] == "/environ/x"


def test_http10_protocol(wsgi):
    resp = raw_request(wsgi.port, b"GET /environ HTTP/1.0\r\nHost: t\r\n\r\n")
    assert resp.startswith(b"HTTP/1.0 200")
    env = json.loads(resp.partition(b"\r\n\r\n")[2])
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"


# ---- wsgi.input ----

BODY = b"line1\nline2\n\nlast-no-newline"


@pytest.mark.parametrize(
    ("how", "pieces"),
    [
        ("read", [BODY]),
        ("read-none", [BODY]),
        ("read-minus1", [BODY]),
        ("read-10", [BODY[0:10], BODY[10:20], BODY[20:]]),
        ("readline", [b"line1\n", b"line2\n", b"\n", b"last-no-newline"]),
        (
            "readline-4",
            [b"line", b"1\n", b"line", b"2\n", b"\n", b"last", b"-no-", b"newl", b"ine"],
        ),
        ("readlines", [b"line1\n", b"line2\n", b"\n", b"last-no-newline"]),
        ("iter", [b"line1\n", b"line2\n", b"\n", b"last-no-newline"]),
    ],
)
def test_input_methods(wsgi, how, pieces):
    r = httpx.post(f"{wsgi.url}/input", params={"how": how}, content=BODY)
    got = r.json()
    assert [p.encode("latin-1") for p in got["pieces"]] == pieces
    assert got["types"] == ["bytes"]
    assert got["after"] == ["", "", ""], "the end of the body reads as b''"


def test_chunked_request_body_ends_with_eof(wsgi):
    req = (
        b"POST /input?how=read-4 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    resp = raw_request(wsgi.port, req)
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    got = json.loads(body)
    assert "".join(got["pieces"]) == "hello world"
    assert got["after"] == ["", "", ""]


def test_expect_100_continue(wsgi):
    with socket.create_connection(("127.0.0.1", wsgi.port), timeout=10) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"hello")
        status, _, body = read_response(s)
        assert status == b"HTTP/1.1 200 OK" and body == b"hello"


def test_keep_alive_and_pipelining(wsgi):
    with socket.create_connection(("127.0.0.1", wsgi.port), timeout=10) as s:
        s.sendall(
            b"GET /status?code=201 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        )
        first = read_response(s)
        second = read_response(s)
    assert first[0] == b"HTTP/1.1 201 Created" and first[2] == b"status 201"
    assert second[0] == b"HTTP/1.1 200 OK" and second[2] == b"abc"


def test_100mib_upload_and_download_in_flat_memory(wsgi):
    mib = 100
    block = b"u" * (1 << 20)
    before = vm_hwm_kib(wsgi.proc.pid)
    r = httpx.post(f"{wsgi.url}/count", content=(block for _ in range(mib)), timeout=60)
    assert r.json()["total"] == mib << 20
    assert r.json()["largest"] <= 65536
    received = 0
    with httpx.stream("GET", f"{wsgi.url}/download", params={"mib": mib}, timeout=60) as r:
        assert r.headers.get("transfer-encoding") == "chunked"
        for chunk in r.iter_bytes():
            received += len(chunk)
    assert received == mib << 20
    grown = vm_hwm_kib(wsgi.proc.pid) - before
    # Buffers are a few MiB at most: the bodies never sit in memory whole.
    assert grown < 40 * 1024, f"peak RSS grew by {grown} KiB"


# ---- responses ----


def test_head_sends_no_body_but_keeps_the_length(wsgi):
    with socket.create_connection(("127.0.0.1", wsgi.port), timeout=10) as s:
        s.sendall(
            b"HEAD /headers HTTP/1.1\r\nHost: t\r\n\r\nGET /status HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1024)
        first, _, rest = head.partition(b"\r\n\r\n")
        assert b"content-length: 2" in first.lower()
        # The next response follows at once: no body bytes came in between.
        s.settimeout(5)
        while b"\r\n\r\n" not in rest:
            rest += s.recv(1024)
        assert rest.startswith(b"HTTP/1.1 200 OK")


def test_repeated_response_headers_and_status_reason(wsgi):
    r = httpx.get(f"{wsgi.url}/headers")
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert r.headers["x-custom"] == "yes"
    assert r.headers["server"] == "juggler"
    assert r.text == "ok"


def test_generator_body_is_chunked_and_streamed(wsgi):
    r = httpx.get(f"{wsgi.url}/stream", params={"n": 5, "size": 3})
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.text == "000111222333444"


def test_write_callable_then_iterable(wsgi):
    assert httpx.get(f"{wsgi.url}/write").text == "written-1;written-2;returned-1;returned-2"


def test_small_list_body_gets_a_content_length(wsgi):
    r = httpx.get(f"{wsgi.url}/closing-list", params={"key": "cl-len"})
    assert r.headers["content-length"] == "4" and r.text == "abcd"


def test_file_wrapper_is_sent_without_python_reading_it(wsgi):
    key = "fw1"
    r = httpx.get(f"{wsgi.url}/file", params={"key": key, "size": 300_000})
    assert r.content == (FILE_PATTERN * 1200)[:300_000]
    assert r.headers["content-length"] == "300000"
    wsgi.wait_for(rf"EVENT {key} file-closed")
    assert events(wsgi, key) == ["file-closed"], "the file was read through Python"


def test_file_wrapper_adds_content_length(wsgi):
    r = httpx.get(f"{wsgi.url}/file", params={"key": "fw2", "size": 5000, "cl": "0"})
    assert r.headers["content-length"] == "5000"
    assert r.content == (FILE_PATTERN * 20)[:5000]


def test_file_wrapper_over_a_file_like_without_descriptor(wsgi):
    r = httpx.get(f"{wsgi.url}/file-bytesio", params={"size": 20_000})
    assert r.content == (FILE_PATTERN * 80)[:20_000]


# ---- close() ----


@pytest.mark.parametrize("mode", ["finite", "raise"])
def test_close_is_always_called(wsgi, mode):
    key = f"close-{mode}"
    req = f"GET /closing?key={key}&mode={mode}&n=2 HTTP/1.1\r\nHost: t\r\nConnection: close"
    resp = raw_request(wsgi.port, f"{req}\r\n\r\n".encode())
    # "raise" fails after two chunks: those arrive, then the response is cut.
    assert b"chunk1;" in resp and b"chunk2;" in resp
    assert resp.endswith(b"0\r\n\r\n") == (mode == "finite")
    wsgi.wait_for(rf"EVENT {key} closed")


def test_close_is_called_on_a_list_subclass(wsgi):
    httpx.get(f"{wsgi.url}/closing-list", params={"key": "close-list"})
    wsgi.wait_for(r"EVENT close-list closed")


def test_close_is_called_when_the_client_disconnects_mid_body(wsgi):
    key = "close-gone"
    with socket.create_connection(("127.0.0.1", wsgi.port), timeout=10) as s:
        s.sendall(
            f"GET /closing?key={key}&mode=forever&delay=0.01 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        )
        assert b"chunk1;" in s.recv(4096)
    wsgi.wait_for(rf"EVENT {key} closed")


# ---- errors ----


def test_exception_before_start_gives_500_with_traceback(wsgi):
    r = httpx.get(f"{wsgi.url}/raise", params={"where": "before-start", "key": "e1"})
    assert r.status_code == 500
    wsgi.wait_for(r"Exception in WSGI application")
    wsgi.wait_for(r"RuntimeError: boom before start e1")
    # The worker keeps serving.
    assert httpx.get(f"{wsgi.url}/status").status_code == 200


@pytest.mark.parametrize("where", ["after-start", "first-chunk"])
def test_exception_before_any_body_byte_still_gives_500(wsgi, where):
    r = httpx.get(f"{wsgi.url}/raise", params={"where": where, "key": where})
    assert r.status_code == 500


def test_exception_midway_sends_what_was_sent_then_cuts(wsgi):
    resp = raw_request(wsgi.port, b"GET /raise?where=midway&key=mid HTTP/1.1\r\nHost: t\r\n\r\n")
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == b"7\r\npart-1;\r\n7\r\npart-2;\r\n", (
        "no terminating chunk: the client sees a cut"
    )
    wsgi.wait_for(r"RuntimeError: boom midway mid")


def test_exc_info_replaces_headers_not_yet_sent(wsgi):
    r = httpx.get(f"{wsgi.url}/exc-info", params={"when": "before"})
    assert r.status_code == 500
    assert r.text == "replaced"
    assert "x-second" in r.headers and "x-first" not in r.headers
    r = httpx.get(f"{wsgi.url}/exc-info", params={"when": "in-generator"})
    assert r.status_code == 503 and r.text == "replaced in generator"


def test_exc_info_after_headers_were_sent_reraises(wsgi):
    resp = raw_request(wsgi.port, b"GET /exc-info?when=after HTTP/1.1\r\nHost: t\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200 OK")
    assert resp.endswith(b"6\r\nfirst;\r\n")
    wsgi.wait_for(r"ValueError: exc-info after headers were sent")


def test_start_response_twice_is_a_protocol_error(wsgi):
    r = httpx.get(f"{wsgi.url}/exc-info", params={"when": "twice"})
    assert r.status_code == 500
    assert r.text == "Internal Server Error"
    wsgi.wait_for(r"juggler\.ProtocolError: start_response\(\) called again without exc_info")


@pytest.mark.parametrize("status", ["abc", "99 X", "2000 OK", "200OK", "20 OK", "200 A\r\nX: y"])
def test_bad_status_gives_500(wsgi, status):
    r = httpx.get(f"{wsgi.url}/bad-status", params={"status": status})
    assert r.status_code == 500
    assert r.text == "Internal Server Error"


@pytest.mark.parametrize(
    "kind", ["bytes-name", "int-value", "newline", "lf", "colon-name", "not-a-tuple"]
)
def test_bad_header_gives_500_never_a_malformed_response(wsgi, kind):
    resp = raw_request(
        wsgi.port,
        f"GET /bad-header?kind={kind} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode(),
    )
    assert resp.startswith(b"HTTP/1.1 500")
    assert b"x-injected" not in resp.lower()


def test_wsgi_errors_go_to_the_error_log(wsgi):
    httpx.get(f"{wsgi.url}/log", params={"msg": "zz9"})
    wsgi.wait_for(r"ERROR: +app-says zz9$")
    wsgi.wait_for(r"app-lines zz9 1$")
    wsgi.wait_for(r"app-lines zz9 2$")
    wsgi.wait_for(r"app-flushed zz9$")


def test_access_log_line(wsgi):
    httpx.get(f"{wsgi.url}/status", params={"code": "202"})
    wsgi.wait_for(r'127\.0\.0\.1:\d+ - "GET /status\?code=202 HTTP/1\.1" 202')


# ---- the thread pool ----


def get_in_thread(url: str, results: list, **kwargs) -> threading.Thread:
    def run():
        try:
            results.append(httpx.get(url, timeout=30, **kwargs))
        except httpx.HTTPError as exc:
            results.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_full_queue_answers_503(juggler):
    j = juggler(
        "wsgi_app:app", "--interface", "wsgi", "--threads", "1", "--queue-size", "1"
    ).ready()
    results: list = []
    busy = get_in_thread(f"{j.url}/sleep?s=1.5&key=q1", results)
    j.wait_for(r"SLEEP-STARTED q1")
    # The only thread is busy: of two more requests one waits in the queue of one, and the
    # other is refused at once instead of piling up.
    waiting = [get_in_thread(f"{j.url}/sleep?s=0&key=q{i}", results) for i in (2, 3)]
    for t in [busy, *waiting]:
        t.join(15)
    assert sorted(r.status_code for r in results) == [200, 200, 503]
    assert httpx.get(f"{j.url}/status").status_code == 200


def test_streams_do_not_starve_the_pool(juggler):
    j = juggler("wsgi_app:app", "--interface", "wsgi", "--threads", "2").ready()
    stop = threading.Event()
    started = []

    def sse(i):
        with httpx.stream("GET", f"{j.url}/sse", params={"key": f"sse{i}"}, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data:") and i not in started:
                    started.append(i)
                if stop.is_set():
                    break

    streams = [threading.Thread(target=sse, args=(i,), daemon=True) for i in range(4)]
    for t in streams:
        t.start()
    for i in range(4):
        j.wait_for(rf"EVENT sse{i} started")
    t0 = time.monotonic()
    r = httpx.get(f"{j.url}/status", timeout=10)
    assert r.status_code == 200
    assert time.monotonic() - t0 < 2, "a plain request waited behind the streams"
    stop.set()
    for t in streams:
        t.join(10)
    for i in range(4):
        j.wait_for(rf"EVENT sse{i} closed")


def test_slow_client_does_not_hold_a_thread_forever(juggler):
    j = juggler("wsgi_app:app", "--interface", "wsgi", "--timeout-write", "1").ready()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", j.port))
    try:
        s.sendall(b"GET /closing?key=slow&mode=forever HTTP/1.1\r\nHost: t\r\n\r\n")
        # Never read: after the write time-out the server gives up and close() runs.
        j.wait_for(r"EVENT slow closed", timeout=15)
    finally:
        s.close()
    assert httpx.get(f"{j.url}/status").status_code == 200


def test_graceful_shutdown_waits_for_running_calls(juggler):
    j = juggler("wsgi_app:app", "--interface", "wsgi").ready()
    results: list = []
    t = get_in_thread(f"{j.url}/sleep?s=1&key=drain", results)
    j.wait_for(r"SLEEP-STARTED drain")
    assert j.stop(signal.SIGTERM) == 0
    t.join(10)
    assert len(results) == 1 and results[0].status_code == 200
    assert results[0].text == "slept"


def test_auto_detects_wsgi(juggler):
    j = juggler("wsgi_app:app").ready()
    j.wait_for(r"Using the WSGI interface with up to 32 threads \(detected\)")
    assert httpx.get(f"{j.url}/status").text == "status 200"


def test_juggler_run_serves_a_wsgi_app():
    code = (
        "import juggler, wsgi_app; juggler.run(wsgi_app.app, interface='wsgi', port=0, threads=2)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=str(APPS),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = None
        assert proc.stderr is not None
        for line in proc.stderr:
            m = READY.search(line)
            if m:
                url = m.group(1)
                break
        assert url, "no ready line"
        assert httpx.get(f"{url}/status").text == "status 200"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_interleaved_requests_across_threads_all_answered(wsgi):
    results: list = []
    threads = [
        get_in_thread(f"{wsgi.url}/echo", results, params={"how": "read-3"}) for _ in range(20)
    ]
    for t in threads:
        t.join(20)
    assert len(results) == 20
    assert all(r.status_code == 200 for r in results)


def test_mutated_environ_does_not_leak_between_requests(wsgi):
    first = environ(wsgi, "/environ", headers={"X-Once": "1"})
    second = environ(wsgi)
    assert first["HTTP_X_ONCE"] == "1"
    assert "HTTP_X_ONCE" not in second
    assert re.fullmatch(r"\d+", second["REMOTE_PORT"])
