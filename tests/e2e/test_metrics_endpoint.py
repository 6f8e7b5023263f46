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
    assert endpoint.address == f"http://127.0.0.1:{endpoint.sock.getsockname()[1]}"
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
    """A listener whose accept() fails as if the process had no descriptor left, until told
    otherwise."""

    failing = True

    def accept(self):  # type: ignore[override]
        if self.failing:
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


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
    assert endpoint.resume_at is not None
    endpoint.expire(endpoint.resume_at)
    assert endpoint.listening, "the back-off is over"
    # Descriptors came back: the waiting client is served, and the endpoint keeps going.
    listener.failing = False
    turn(endpoint, selector)
    assert len(endpoint.connections) == 1
    endpoint.expire(time.monotonic() + metrics_endpoint.CONNECTION_TIMEOUT + 0.1)
    assert endpoint.connections == {} and endpoint.listening
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
        # A tie goes to OpenMetrics; no q is q=1.
        ("application/openmetrics-text,text/plain", True),
        ("application/openmetrics-text;q=1,text/plain", True),
        ("application/openmetrics-text;q=0.5,*/*;q=0.8", False),
        ("application/openmetrics-text;q=0.5,text/*;q=0.8", False),
        ("text/plain", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_which_format_an_accept_header_gets(accept: str, openmetrics: bool) -> None:
    assert wants_openmetrics(accept) is openmetrics


def ask(request: bytes, answer_with=render) -> bytes:
    """Sends ``request`` to an endpoint of its own and returns all it answered."""
    selector = selectors.DefaultSelector()
    endpoint = MetricsEndpoint(metrics_endpoint.bind("127.0.0.1:0"), selector, answer_with)
    client = socket.create_connection(endpoint.sock.getsockname())
    client.sendall(request)
    turn(endpoint, selector)
    while endpoint.connections:
        turn(endpoint, selector)
    client.settimeout(5)
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    client.close()
    endpoint.close()
    selector.close()
    return answer


def test_answers_are_whole_and_framed() -> None:
    body = b"openmetrics=False\n"
    assert ask(b"GET /metrics?x=1 HTTP/1.0\n\n") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    ), "a head ended by bare newlines is taken too"
    assert ask(b"GET /nope HTTP/1.1\r\n\r\n") == (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 10\r\nConnection: close\r\n\r\nNot Found\n"
    )
    head = ask(b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert head.endswith(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)), head
    assert ask(b"\r\n\r\n").endswith(b"\r\n\r\nBad Request\n"), "an empty head is refused"
    refused = ask(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * metrics_endpoint.MAX_HEAD)
    assert refused.startswith(b"HTTP/1.1 431 ") and refused.endswith(b"Too Large\n")
    post = ask(b"POST /metrics HTTP/1.1\r\n\r\n")
    assert b"\r\nAllow: GET, HEAD\r\nConnection: close\r\n" in post


def test_the_accept_header_is_read_wherever_it_is() -> None:
    first = ask(b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\nHost: x\r\n\r\n")
    assert first.endswith(b"openmetrics=True\n")


def test_a_failing_render_is_a_500_and_the_endpoint_goes_on() -> None:
    def broken(openmetrics: bool) -> tuple[str, str]:
        raise RuntimeError("no metrics today")

    answer = ask(b"GET /metrics HTTP/1.1\r\n\r\n", broken)
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), answer
    assert answer.endswith(b"Cannot render the metrics: no metrics today\n")


def test_deadlines_are_inclusive(selector) -> None:
    endpoint = MetricsEndpoint(metrics_endpoint.bind("127.0.0.1:0"), selector, render)
    silent = socket.create_connection(endpoint.sock.getsockname())
    turn(endpoint, selector)
    (conn,) = endpoint.connections.values()
    endpoint.expire(conn.deadline)
    assert endpoint.connections == {}
    silent.close()
    endpoint.close()


def test_an_ipv6_address_is_written_in_brackets(selector) -> None:
    try:
        sock = metrics_endpoint.bind("[::1]:0")
    except metrics_endpoint.MetricsBindError:
        pytest.skip("no IPv6 loopback here")
    endpoint = MetricsEndpoint(sock, selector, render)
    assert endpoint.address == f"http://[::1]:{sock.getsockname()[1]}"
    endpoint.close()
