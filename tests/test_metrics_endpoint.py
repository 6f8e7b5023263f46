"""The supervisor's metrics endpoint on its own, driven through a real selector and real
sockets on 127.0.0.1, without a server: its deadlines, its back-off when accept() fails,
and which text format a scraper's Accept header gets."""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections.abc import Iterator

import pytest
from juggler import metrics_endpoint
from juggler.metrics_endpoint import MetricsEndpoint, wants_openmetrics


def render(openmetrics: bool) -> tuple[str, str]:
    return ("text/plain; version=0.0.4; charset=utf-8", f"openmetrics={openmetrics}\n")


@pytest.fixture
def selector() -> Iterator[selectors.BaseSelector]:
    sel = selectors.DefaultSelector()
    yield sel
    sel.close()


def turn(endpoint: MetricsEndpoint, selector: selectors.BaseSelector) -> None:
    """One turn of the supervisor's loop, as far as the endpoint is concerned."""
    for key, mask in selector.select(1.0):
        assert endpoint.owns(key)
        endpoint.on_ready(key, mask)


def test_a_silent_client_is_closed_at_its_deadline_and_frees_its_place(selector) -> None:
    endpoint = MetricsEndpoint(metrics_endpoint.bind("127.0.0.1:0"), selector, render)
    silent = socket.create_connection(endpoint.sock.getsockname())
    turn(endpoint, selector)
    assert len(endpoint.connections) == 1
    endpoint.expire(time.monotonic() + metrics_endpoint.CONNECTION_TIMEOUT / 2)
    assert len(endpoint.connections) == 1, "not before its deadline"
    endpoint.expire(time.monotonic() + metrics_endpoint.CONNECTION_TIMEOUT + 0.1)
    assert endpoint.connections == {}
    silent.settimeout(5)
    assert silent.recv(1) == b"", "closed by the endpoint"
    silent.close()
    endpoint.close()


def test_the_listener_rests_while_the_endpoint_is_full(selector, monkeypatch) -> None:
    monkeypatch.setattr(metrics_endpoint, "MAX_CONNECTIONS", 2)
    endpoint = MetricsEndpoint(metrics_endpoint.bind("127.0.0.1:0"), selector, render)
    clients = [socket.create_connection(endpoint.sock.getsockname()) for _ in range(3)]
    while len(endpoint.connections) < 2:
        turn(endpoint, selector)
    assert not endpoint.listening
    assert endpoint.sock not in [k.fileobj for k in selector.get_map().values()]
    endpoint.expire(time.monotonic() + metrics_endpoint.CONNECTION_TIMEOUT + 0.1)
    assert endpoint.listening, "a place came free"
    turn(endpoint, selector)
    assert len(endpoint.connections) == 1, "the waiting client is taken"
    for c in clients:
        c.close()
    endpoint.close()


class _OutOfDescriptors(socket.socket):
    def accept(self):  # type: ignore[override]
        raise OSError(errno.EMFILE, "Too many open files")


def test_accept_failing_for_want_of_descriptors_backs_off(selector) -> None:
    listener = _OutOfDescriptors(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    endpoint = MetricsEndpoint(listener, selector, render)
    client = socket.create_connection(listener.getsockname())
    turn(endpoint, selector)
    # Watched still, the listener would be reported on every turn: the supervisor would spin.
    assert not endpoint.listening
    assert selector.select(0) == []
    endpoint.expire(time.monotonic())
    assert not endpoint.listening, "not before the back-off"
    endpoint.expire(time.monotonic() + metrics_endpoint.ACCEPT_BACKOFF + 0.1)
    assert endpoint.listening
    client.close()
    endpoint.close()


def test_a_scrape_gets_its_answer_and_the_format_it_asked_for(selector) -> None:
    endpoint = MetricsEndpoint(metrics_endpoint.bind("127.0.0.1:0"), selector, render)
    client = socket.create_connection(endpoint.sock.getsockname())
    client.sendall(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain;q=0.3\r\n"
        b"Accept: application/openmetrics-text;version=1.0.0;q=0.5\r\n\r\n"
    )
    turn(endpoint, selector)  # accepted
    while endpoint.connections:  # read, answered, closed
        turn(endpoint, selector)
    client.settimeout(5)
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nopenmetrics=True\n"), "both Accept headers were read"
    client.close()
    endpoint.close()


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        # What Prometheus sends.
        (
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
            "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,"
            "*/*;q=0.2",
            True,
        ),
        ("application/openmetrics-text", True),
        ("Application/OpenMetrics-Text; version=1.0.0", True),
        ("application/openmetrics-text;q=0", False),
        ("application/openmetrics-text;q=0.2,text/plain;q=0.9", False),
        ("application/openmetrics-text;q=nonsense", False),
        ("text/plain", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_which_format_an_accept_header_gets(accept: str, openmetrics: bool) -> None:
    assert wants_openmetrics(accept) is openmetrics
