"""--metrics-bind: Prometheus metrics of all workers, served by the supervisor, scraped here
with prometheus_client's own parsers (the 0.0.4 text format and OpenMetrics)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import APPS, Juggler
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

METRICS_LINE = re.compile(r"Metrics on (http://\S+/metrics)")
OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"


class Samples:
    """One scrape: every sample, by name and labels."""

    def __init__(self, families: Any) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value) for f in families for s in f.samples
        ]

    def all(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (ls, v)
            for n, ls, v in self.samples
            if n == name and all(ls.get(k) == want for k, want in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        found = self.all(name, **labels)
        assert len(found) == 1, f"{name}{labels}: {found} in {self.samples}"
        return found[0][1]

    def total(self, name: str) -> float:
        return sum(v for _, v in self.all(name))


def scrape(url: str, openmetrics: bool = False) -> Samples:
    headers = {"Accept": OPENMETRICS} if openmetrics else {}
    r = httpx.get(url, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    if openmetrics:
        assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
        assert r.text.endswith("# EOF\n")
        return Samples(parse_openmetrics(r.text))
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return Samples(parse_text(r.text))


def until(url: str, check: Callable[[Samples], bool], timeout: float = 10) -> Samples:
    """Scrapes until ``check`` holds: the metrics have no event to wait on, so a test polls
    them, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never matched; last scrape: {samples.samples}")
        time.sleep(0.02)


def start(juggler: type[Juggler], *args: str) -> tuple[Juggler, str]:
    server = juggler(*args, "--metrics-bind", "127.0.0.1:0").ready()
    return server, server.wait_for(METRICS_LINE).group(1)


def exchange(port: int, request: bytes) -> bytes:
    """Sends ``request`` on a connection of its own and reads until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()


def test_requests_statuses_durations_and_bytes_are_counted_across_workers(juggler) -> None:
    server, url = start(juggler, "metrics_app:app", "--workers", "2")
    sent = received = 0
    for path in ["/"] * 5 + ["/missing"] * 2 + ["/error"]:
        request = get(path)
        answer = exchange(server.port, request)
        assert answer.startswith(b"HTTP/1.1 "), answer
        sent += len(request)
        received += len(answer)
    samples = until(
        url,
        lambda s: (
            s.total("juggler_connections_active") == 0 and s.total("juggler_requests_total") == 8
        ),
    )
    for parsed in (samples, scrape(url, openmetrics=True)):
        assert parsed.value("juggler_requests_total", code="200") == 5
        assert parsed.value("juggler_requests_total", code="404") == 2
        assert parsed.value("juggler_requests_total", code="500") == 1
        assert parsed.value("juggler_request_duration_seconds_count") == 8
        assert parsed.value("juggler_request_duration_seconds_bucket", le="+Inf") == 8
        assert 0 < parsed.value("juggler_request_duration_seconds_sum") < 8 * 5
        # Counted where they cross the wire: exactly what the clients sent and read.
        assert parsed.value("juggler_received_bytes_total") == sent
        assert parsed.value("juggler_sent_bytes_total") == received
        assert parsed.value("juggler_connections_total") == 8
    buckets = [v for _, v in samples.all("juggler_request_duration_seconds_bucket")]
    assert buckets == sorted(buckets), "buckets are cumulative"
    per_worker = samples.all("juggler_worker_requests_total")
    assert sum(v for _, v in per_worker) == 8
    info = samples.all("juggler_worker_info")
    assert sorted(int(ls["pid"]) for ls, _ in info) == sorted(server.workers())
    assert {ls["worker"] for ls, _ in per_worker} == {ls["worker"] for ls, _ in info}
    assert samples.total("juggler_requests_in_flight") == 0
    assert samples.all("juggler_wsgi_threads_busy") == [], "no WSGI gauges for ASGI workers"


def test_in_flight_connections_and_a_client_that_left(juggler) -> None:
    server, url = start(juggler, "metrics_app:app")
    with socket.create_server(("127.0.0.1", 0)) as hold:
        port = hold.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(get(f"/hold?port={port}"))
        held, _ = hold.accept()  # the app is inside the request now
        samples = scrape(url)
        assert samples.value("juggler_requests_in_flight", worker="0") == 1
        assert samples.value("juggler_connections_active", worker="0") == 1
        # The client gives up before any answer: counted as 499, as nginx does.
        client.close()
        until(url, lambda s: s.all("juggler_requests_total", code="499") != [])
        held.close()
        samples = until(url, lambda s: s.value("juggler_requests_in_flight", worker="0") == 0)
        assert samples.value("juggler_requests_total", code="499") == 1
        assert samples.value("juggler_connections_active", worker="0") == 0
        assert samples.all("juggler_requests_total", code="200") == []

        # Held and let go: a 200 whose duration covers the hold.
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(get(f"/hold?port={port}"))
        held, _ = hold.accept()
        started = time.monotonic()
        # The request's duration is what is measured: it is held this long on purpose.
        time.sleep(0.06)
        held.close()
        answer = client.recv(65536)
        waited = time.monotonic() - started
        client.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    samples = until(url, lambda s: s.all("juggler_requests_total", code="200") != [])
    # The 200 took at least the hold, so it is not in the 50 ms bucket (the 499 may be).
    assert samples.value("juggler_request_duration_seconds_bucket", le="0.05") <= 1
    assert samples.value("juggler_request_duration_seconds_bucket", le="+Inf") == 2
    assert 0.06 <= samples.value("juggler_request_duration_seconds_sum") <= waited + 1


def test_loop_lag_shows_the_blocked_worker(juggler) -> None:
    server, url = start(juggler, "metrics_app:app", "--workers", "2")
    client = socket.create_connection(("127.0.0.1", server.port))
    client.sendall(get("/block?s=1.5"))
    samples = until(url, lambda s: max(v for _, v in s.all("juggler_event_loop_lag_seconds")) > 0.3)
    lags = sorted(v for _, v in samples.all("juggler_event_loop_lag_seconds"))
    assert lags[0] < 0.1, f"only the worker serving /block lags: {lags}"
    assert client.recv(65536).startswith(b"HTTP/1.1 200")
    client.close()
    until(url, lambda s: max(v for _, v in s.all("juggler_event_loop_lag_seconds")) < 0.1)


def test_wsgi_threads_busy_and_queued(juggler) -> None:
    server, url = start(
        juggler, "metrics_app:wsgi", "--interface", "wsgi", "--threads", "2", "--queue-size", "4"
    )
    with socket.create_server(("127.0.0.1", 0)) as hold:
        port = hold.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
        for c in clients:
            c.sendall(get(f"/hold?port={port}"))
        held = [hold.accept()[0] for _ in range(2)]  # both threads are inside a call
        samples = until(url, lambda s: s.all("juggler_wsgi_requests_queued", worker="0") != [])
        samples = until(
            url,
            lambda s: (
                s.value("juggler_wsgi_requests_queued", worker="0") == 1
                and s.value("juggler_wsgi_threads_busy", worker="0") == 2
            ),
        )
        assert samples.value("juggler_wsgi_threads", worker="0") == 2
        assert samples.value("juggler_requests_in_flight", worker="0") == 3
        for h in held:
            h.close()
        third, _ = hold.accept()
        third.close()
        for c in clients:
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
            c.close()
    until(
        url,
        lambda s: (
            s.value("juggler_wsgi_threads_busy", worker="0") == 0
            and s.value("juggler_wsgi_requests_queued", worker="0") == 0
            and s.value("juggler_requests_total", code="200") == 3
        ),
    )


def test_restarts_are_counted_and_totals_survive_a_dead_worker(juggler) -> None:
    server, url = start(juggler, "metrics_app:app", "--workers", "2")
    for _ in range(4):
        exchange(server.port, get("/"))
    # A connection left open on the worker about to die: its gauge must not outlive it.
    idle = socket.create_connection(("127.0.0.1", server.port))
    idle.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    assert idle.recv(65536).startswith(b"HTTP/1.1 200")
    samples = until(
        url,
        lambda s: (
            s.total("juggler_requests_total") == 5 and s.total("juggler_connections_active") == 1
        ),
    )
    (slot,) = [ls["worker"] for ls, v in samples.all("juggler_connections_active") if v == 1]
    victim = int(samples.all("juggler_worker_info", worker=slot)[0][0]["pid"])
    os.kill(victim, signal.SIGKILL)
    server.wait_for(rf"Worker \[{victim}\] died unexpectedly")
    samples = until(
        url,
        lambda s: (
            len(s.all("juggler_worker_info")) == 2
            and victim not in {int(ls["pid"]) for ls, _ in s.all("juggler_worker_info")}
        ),
    )
    idle.close()
    assert samples.value("juggler_worker_restarts_total", reason="died") == 1
    assert samples.value("juggler_requests_total", code="200") == 5, "totals never go back"
    assert samples.total("juggler_worker_requests_total") == 5
    assert samples.total("juggler_connections_active") == 0, "the dead worker's gauges"


def test_the_endpoint_answers_only_scrapes_and_survives_bad_clients(juggler) -> None:
    server, url = start(juggler, "metrics_app:app")
    host, port = url.removeprefix("http://").removesuffix("/metrics").rsplit(":", 1)
    base = url.removesuffix("/metrics")
    silent = [socket.create_connection((host, int(port))) for _ in range(3)]
    try:
        # Clients that send nothing do not hold up a scrape.
        assert httpx.get(url, timeout=5).status_code == 200
        assert httpx.get(base + "/", timeout=5).status_code == 404
        assert httpx.get(url + "?name[]=x", timeout=5).status_code == 200
        r = httpx.post(url, content=b"x", timeout=5)
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD"
        head = httpx.head(url, timeout=5)
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) > 100
        assert exchange(int(port), b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10000
        assert exchange(int(port), huge).startswith(b"HTTP/1.1 431 ")
    finally:
        for s in silent:
            s.close()
    # The workers never noticed.
    assert exchange(server.port, get("/")).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    ("value", "code", "message"),
    [
        ("nonsense", 2, "invalid value 'nonsense' for --metrics-bind"),
        ("::1:9100", 2, "in brackets"),
        ("127.0.0.1:99999", 2, "--metrics-bind"),
    ],
)
def test_a_bad_metrics_address_is_one_line(value: str, code: int, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "juggler", "metrics_app:app", "--metrics-bind", value],
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_metrics_address_in_use_is_one_line_and_exit_1() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "juggler",
                "metrics_app:app",
                "--port",
                "0",
                "--metrics-bind",
                f"127.0.0.1:{port}",
            ],
            cwd=APPS,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot bind --metrics-bind 127.0.0.1:{port}" in lines[0]


def test_scrapers_beyond_the_limit_wait_without_the_supervisor_spinning(juggler) -> None:
    server, url = start(juggler, "metrics_app:app")
    host, port = url.removeprefix("http://").removesuffix("/metrics").rsplit(":", 1)

    def cpu_seconds() -> float:
        with open(f"/proc/{server.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # More silent clients than the endpoint takes: the rest wait in the backlog, and the
    # supervisor must not wake up for them on every turn of its loop.
    silent = [socket.create_connection((host, int(port))) for _ in range(20)]
    try:
        before = cpu_seconds()
        waiting = threading.Event()
        waiting.wait(1.0)  # the absence of work is what is measured
        assert cpu_seconds() - before < 0.5, "the supervisor spins on the waiting clients"
    finally:
        for s in silent:
            s.close()
    assert httpx.get(url, timeout=10).status_code == 200
    assert exchange(server.port, get("/")).startswith(b"HTTP/1.1 200")


def test_a_websocket_is_one_connection(juggler) -> None:
    from websockets.sync.client import connect

    server, url = start(juggler, "ws_app:app")
    with connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "hi"
        samples = until(url, lambda s: s.all("juggler_requests_total", code="101") != [])
        assert samples.value("juggler_connections_active", worker="0") == 1
        assert samples.value("juggler_connections_total") == 1
    samples = until(url, lambda s: s.value("juggler_connections_active", worker="0") == 0)
    assert samples.value("juggler_connections_total") == 1, "the upgrade is not a second one"
    assert samples.value("juggler_requests_total", code="101") == 1


def restarts(samples: Samples) -> dict[str, float]:
    return {ls["reason"]: v for ls, v in samples.all("juggler_worker_restarts_total")}


def test_restart_reasons_start_at_zero_and_count_reloads_and_recycling(juggler) -> None:
    server, url = start(juggler, "metrics_app:app", "--workers", "2", "--max-requests", "3")
    assert restarts(scrape(url)) == {
        "died": 0,
        "timeout": 0,
        "recycled": 0,
        "reload": 0,
        "memory": 0,
    }
    server.proc.send_signal(signal.SIGHUP)
    samples = until(url, lambda s: restarts(s)["reload"] == 2)
    assert restarts(samples) == {"died": 0, "timeout": 0, "recycled": 0, "reload": 2, "memory": 0}
    # Four requests on one connection: a worker reaches --max-requests and is recycled.
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        for _ in range(4):
            s.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
    samples = until(url, lambda s: restarts(s)["recycled"] >= 1)
    assert restarts(samples)["died"] == 0, "a worker stopped on purpose did not die"
    assert restarts(samples)["reload"] == 2


def test_a_hung_worker_counts_as_a_timeout(juggler) -> None:
    server = juggler(
        "workers_app:app", "--timeout-worker", "1", "--metrics-bind", "127.0.0.1:0"
    ).ready()
    url = server.wait_for(METRICS_LINE).group(1)
    client = socket.create_connection(("127.0.0.1", server.port))
    client.sendall(get("/spin"))
    server.wait_for(r"timed out: its event loop has not turned")
    samples = until(url, lambda s: restarts(s)["timeout"] == 1)
    assert restarts(samples)["died"] == 0, "killed for hanging, counted once"
    client.close()


def test_http2_streams_are_requests_of_one_connection(juggler) -> None:
    server, url = start(juggler, "metrics_app:app")
    with httpx.Client(http1=False, http2=True, base_url=server.url) as client:
        for path in ("/", "/missing", "/"):
            r = client.get(path)
            assert r.http_version == "HTTP/2"
    samples = until(url, lambda s: s.total("juggler_requests_total") == 3)
    assert samples.value("juggler_requests_total", code="200") == 2
    assert samples.value("juggler_requests_total", code="404") == 1
    assert samples.value("juggler_connections_total") == 1
    assert samples.value("juggler_requests_in_flight", worker="0") == 0
