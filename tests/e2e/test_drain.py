"""No request lost in a graceful stop: while 16 clients keep opening a fresh connection per
request, SIGTERM serves every connection the kernel completed for juggler; a client that comes
too late waits or is refused, and is never accepted and then reset (``benches/drain.py``
measures the same against the peers)."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections import Counter

import pytest
from conftest import Juggler

CLIENTS = 16
ROUNDS = 3
#: Each attempt is bounded; a round ends when every client was refused, or after this long.
ATTEMPT_TIMEOUT = 10.0
ROUND_LIMIT = 30.0


def _attempt(port: int, path: str) -> str:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=ATTEMPT_TIMEOUT)
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "lost: connect timed out"
    with sock:
        try:
            sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    return "lost: closed unanswered"
                head += chunk
        except ConnectionResetError:
            return "lost: reset"
        except TimeoutError:
            return "lost: unanswered"
    return "answered" if head.startswith(b"HTTP/1.1 200") else f"lost: {head[:20]!r}"


def _stop_under_load(j: Juggler, path: str) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    port = j.port

    def client() -> None:
        deadline = time.monotonic() + ROUND_LIMIT
        while time.monotonic() < deadline:
            outcome = _attempt(port, path)
            with lock:
                outcomes[outcome] += 1
            if outcome == "refused":
                return

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    # Requests in flight and connections queued: wait until some have been answered.
    deadline = time.monotonic() + 10
    while outcomes["answered"] < 2 * CLIENTS and time.monotonic() < deadline:
        time.sleep(0.01)
    assert j.stop() == 0
    for t in threads:
        t.join()
    return outcomes


@pytest.mark.parametrize(
    ("app", "path", "extra"),
    [
        ("raw:app", "/sleep?s=0.05", ()),
        ("wsgi_app:app", "/sleep?s=0.05", ("--threads", "32")),
    ],
    ids=["asgi", "wsgi"],
)
def test_a_graceful_stop_under_load_loses_no_request(juggler, app, path, extra):
    for _ in range(ROUNDS):
        j = juggler(app, "--workers", "2", "--no-access-log", *extra).ready()
        outcomes = _stop_under_load(j, path)
        lost = {k: v for k, v in outcomes.items() if k.startswith("lost")}
        assert not lost, f"lost in a stop: {lost} (all: {dict(outcomes)})"
        assert outcomes["answered"] >= 2 * CLIENTS
        assert outcomes["refused"] == CLIENTS, "every client ends refused by a closed port"


def test_a_worker_beyond_the_balancing_slots_retires_without_closing_the_shared_gate(juggler):
    # Eight slots share connection counts; a ninth worker (SIGTTIN) serves unbalanced. When it
    # retires in a reload, the shared socket must stay open to the new workers: only the
    # supervisor closes its gate, and only for a stop.
    j = juggler("workers_app:app", "--workers", "1", "--no-access-log").ready()
    for n in range(2, 10):
        j.proc.send_signal(signal.SIGTTIN)
        j.wait_for(f"Received SIGTTIN: {n} workers")
    deadline = time.monotonic() + 60
    while len(j.workers()) < 9 or len(re.findall(r"Worker \[\d+\] started", j.output)) < 9:
        assert time.monotonic() < deadline, j.output
        time.sleep(0.05)
    old = set(j.workers())
    j.mark_test_start()
    j.proc.send_signal(signal.SIGHUP)
    for pid in old:
        j.wait_for(rf"Worker \[{pid}\] stopped", timeout=60)
    # Every retired worker is gone; the new ones must still be handed connections.
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", j.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 200")
    assert j.stop() == 0


def _get(port: int, path: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        return int(s.recv(64).split()[1])


def test_a_shutdown_delay_fails_health_checks_and_serves_on_until_it_is_over(juggler):
    delay = 3.0
    j = juggler(
        "raw:app", "--workers", "2", "--health-path", "/health", "--shutdown-delay", str(delay)
    ).ready()
    assert _get(j.port, "/health") == 200
    signalled = time.monotonic()
    j.proc.send_signal(signal.SIGTERM)
    j.wait_for(r"failing health checks for 3 s \(--shutdown-delay\)")
    # Each worker hears it within moments; until the delay is over, the rest is served.
    deadline = time.monotonic() + 2
    while _get(j.port, "/health") != 503 or _get(j.port, "/health") != 503:
        assert time.monotonic() < deadline, "health checks still pass"
    while time.monotonic() < signalled + delay - 0.5:
        assert _get(j.port, "/count") == 200, "served during the delay"
        assert _get(j.port, "/health") == 503
    assert j.proc.wait(30) == 0
    assert time.monotonic() - signalled >= delay
    assert "--shutdown-delay is over: shutting down gracefully" in j.output


def test_a_second_signal_skips_the_shutdown_delay(juggler):
    j = juggler("raw:app", "--health-path", "/health", "--shutdown-delay", "60").ready()
    j.proc.send_signal(signal.SIGTERM)
    j.wait_for("--shutdown-delay")
    signalled = time.monotonic()
    j.proc.send_signal(signal.SIGINT)
    assert j.proc.wait(30) == 0
    assert time.monotonic() - signalled < 30, "the delay was skipped"
    assert "Received SIGINT again: skipping the rest of --shutdown-delay" in j.output
