"""A burst of WSGI requests beyond the threads: by default it waits (as under Gunicorn's
gthread worker); it is refused only when the operator asks, by count (``--queue-size``) or by
time (``--queue-timeout``). Every request of the app ``/hold?port=P`` connects back to the
test's listener and holds its thread until the test closes that connection, so an accepted
connection is an app call that ran, and the test decides when calls end.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import recv_until_close
from test_metrics import start, until
from wsgi_servers import Server, juggler_only, wsgi

__all__ = ["wsgi"]  # the fixture, imported for pytest

BURST = 50
WAIT = 20.0


@pytest.fixture
def app_calls() -> Iterator[socket.socket]:
    """The listener each app call connects to."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)
        yield listener


def send_burst(server: Server, n: int, listener: socket.socket) -> list[socket.socket]:
    port = listener.getsockname()[1]
    clients = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        c.sendall(
            f"GET /hold?port={port} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
        )
        clients.append(c)
    return clients


class Answers:
    """Responses by client, and how many app calls ran while they were awaited."""

    def __init__(self) -> None:
        self.by_client: dict[socket.socket, bytes] = {}
        self.calls = 0

    def statuses(self) -> set[bytes]:
        return {r.split(b"\r\n", 1)[0] for r in self.by_client.values()}


def responses(
    clients: list[socket.socket], count: int, serve: socket.socket | None = None
) -> Answers:
    """Waits for ``count`` of the clients to be answered (each closes after its response);
    with ``serve``, lets every app call that connects there end at once, counting them."""
    got = Answers()
    with selectors.DefaultSelector() as sel:
        for c in clients:
            sel.register(c, selectors.EVENT_READ)
        if serve is not None:
            sel.register(serve, selectors.EVENT_READ)
        deadline = time.monotonic() + WAIT
        while len(got.by_client) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(got.by_client)} of {count} answered"
            for key, _ in sel.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is serve:
                    sock.accept()[0].close()
                    got.calls += 1
                    continue
                sel.unregister(sock)
                got.by_client[sock] = recv_until_close(sock)
    return got


def no_more_calls(listener: socket.socket) -> bool:
    """No app call is waiting to be accepted right now."""
    listener.setblocking(False)
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        return True
    finally:
        listener.settimeout(WAIT)
    return False


@juggler_only
def test_by_default_a_burst_waits_for_the_threads_and_none_is_refused(juggler, app_calls):
    server, metrics = start(juggler, "wsgi_app:app", "--interface", "wsgi", "--threads", "2")
    clients = send_burst(server, BURST, app_calls)
    try:
        held = [app_calls.accept()[0] for _ in range(2)]
        # Every other request of the burst is in the queue, none answered: 24 x threads,
        # where the old default (4 x threads) refused all but 8.
        until(metrics, lambda s: s.value("juggler_wsgi_requests_queued", worker="0") == BURST - 2)
        for h in held:
            h.close()
        answered = responses(clients, BURST, serve=app_calls)
        assert answered.statuses() == {b"HTTP/1.1 200 OK"}
        assert answered.calls == BURST - 2
    finally:
        for c in clients:
            c.close()


@juggler_only
def test_a_queue_size_refuses_the_excess_at_once(wsgi, app_calls):
    s = wsgi("wsgi_app:app", "--threads", "2", "--queue-size", "3").ready()
    clients = send_burst(s, BURST, app_calls)
    try:
        held = [app_calls.accept()[0] for _ in range(2)]
        # Two run and at most three wait: the others are answered while the two still hold.
        refused = responses(clients, BURST - 5)
        assert refused.statuses() == {b"HTTP/1.1 503 Service Unavailable"}
        assert no_more_calls(app_calls), "the threads are held: nothing else ran"
        for h in held:
            h.close()
        waiting = [c for c in clients if c not in refused.by_client]
        rest = responses(waiting, len(waiting), serve=app_calls)
        oks = [r for r in rest.by_client.values() if r.startswith(b"HTTP/1.1 200 OK")]
        # One more may have found the queue full: the I/O thread can take in the whole burst
        # before the second thread starts, which then counts as free.
        assert len(oks) - 2 == rest.calls and rest.calls in (2, 3), rest.statuses()
        assert len(rest.by_client) - len(oks) == len(waiting) - 2 - rest.calls
    finally:
        for c in clients:
            c.close()


@juggler_only
def test_a_queue_timeout_refuses_what_waited_past_it_without_running_it(wsgi, app_calls):
    s = wsgi("wsgi_app:app", "--threads", "2", "--queue-timeout", "0.2").ready()
    clients = send_burst(s, 10, app_calls)
    try:
        held = [app_calls.accept()[0] for _ in range(2)]
        # The threads stay held: the eight queued are answered by the time bound alone.
        refused = responses(clients, 8)
        assert refused.statuses() == {b"HTTP/1.1 503 Service Unavailable"}
        for r in refused.by_client.values():
            assert b"\r\nretry-after: 1\r\n" in r.lower(), r
        assert no_more_calls(app_calls)
        for h in held:
            h.close()
        ran = responses([c for c in clients if c not in refused.by_client], 2)
        assert ran.statuses() == {b"HTTP/1.1 200 OK"}
        assert no_more_calls(app_calls), "none of the refused requests ran the app"
        assert httpx.get(f"{s.url}/status?code=201").status_code == 201, "the pool goes on serving"
    finally:
        for c in clients:
            c.close()
