"""--proxy-protocol: the PROXY header (v1 and v2) that HAProxy and cloud load balancers send
before TLS and HTTP. Believed from --forwarded-allow-ips peers only; anything else about it
closes that one connection. The last tests put a real HAProxy in front."""

from __future__ import annotations

import json
import re
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from conftest import Juggler, free_port, read_response, recv_until_close, start
from debian import require

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
GET = b"GET /?key=pp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def proxied() -> Iterator[Juggler]:
    """--proxy-protocol with the default --forwarded-allow-ips (127.0.0.1: the tests)."""
    j = start("guarded:app", "--proxy-protocol", "--timeout-request-head", "1")
    yield j
    j.kill()


@pytest.fixture(scope="module")
def proxied_wsgi() -> Iterator[Juggler]:
    j = start("guarded:wsgi", "--interface", "wsgi", "--proxy-protocol")
    yield j
    j.kill()


def v1(src: str, src_port: int, dst: str = "127.0.0.1", dst_port: int = 80) -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {family} {src} {dst} {src_port} {dst_port}\r\n".encode()


def v2(command: int, family: int, block: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def v2_inet(src: str, src_port: int, tlvs: bytes = b"") -> bytes:
    block = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", src_port, 80)
    return v2(1, 0x11, block + tlvs)


def v2_inet6(src: str, src_port: int) -> bytes:
    addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "::1")
    return v2(1, 0x21, addrs + struct.pack("!HH", src_port, 443))


def exchange(port: int, data: bytes, *pieces: bytes) -> dict:
    """Sends ``data`` (then ``pieces`` one by one), returns the app's JSON view."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        for piece in pieces:
            time.sleep(0.05)  # apart on the wire, so that the server reads them apart
            s.sendall(piece)
        status, _, body = read_response(s)
    assert status.startswith(b"HTTP/1.1 200"), (status, body)
    return json.loads(body)


def closed_unanswered(port: int, data: bytes) -> bool:
    """True when the server closes the connection without a byte of answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        return recv_until_close(s) == b""


def test_v1_names_the_client_and_the_access_line_shows_it(proxied: Juggler) -> None:
    v = exchange(proxied.port, v1("192.0.2.44", 41234) + GET)
    assert v["client"] == ["192.0.2.44", 41234]
    assert v["server"] == ["127.0.0.1", proxied.port]
    proxied.wait_for(re.escape("192.0.2.44:41234"))


def test_v1_and_the_request_in_pieces(proxied: Juggler) -> None:
    header = v1("198.51.100.3", 9)
    v = exchange(proxied.port, header[:7], header[7:20], header[20:] + GET[:10], GET[10:])
    assert v["client"] == ["198.51.100.3", 9]


def test_v2_inet_inet6_and_tlvs(proxied: Juggler) -> None:
    unique_id = b"\x05" + struct.pack("!H", 4) + b"abcd"
    assert exchange(proxied.port, v2_inet("203.0.113.5", 65535, unique_id) + GET)["client"] == [
        "203.0.113.5",
        65535,
    ]
    assert exchange(proxied.port, v2_inet6("2001:db8::7", 4242) + GET)["client"] == [
        "2001:db8::7",
        4242,
    ]


def test_local_and_unknown_keep_the_peer(proxied: Juggler) -> None:
    for header in (v2(0, 0x00, b""), b"PROXY UNKNOWN\r\n"):
        with socket.create_connection(("127.0.0.1", proxied.port), timeout=10) as s:
            s.sendall(header + GET)
            status, _, body = read_response(s)
            assert status.startswith(b"HTTP/1.1 200")
            assert json.loads(body)["client"] == ["127.0.0.1", s.getsockname()[1]]


def test_a_trusted_peer_may_send_no_header(proxied: Juggler) -> None:
    assert exchange(proxied.port, GET)["client"][0] == "127.0.0.1"


@pytest.mark.parametrize(
    "bad",
    [
        b"PROXY TCP4 1.2.3.4 10.0.0.1 99999 80\r\n",
        b"PROXY TCP5 1.2.3.4 10.0.0.1 1 80\r\n",
        b"PROXY TCP4 " + b"1" * 120,
        V2_SIGNATURE + b"\x21\x11\x00\x04abcd",
        V2_SIGNATURE + b"\x13\x11\x00\x0c" + bytes(12),
    ],
    ids=["v1-port", "v1-family", "v1-long", "v2-short", "v2-version"],
)
def test_a_malformed_header_closes_that_connection_only(proxied: Juggler, bad: bytes) -> None:
    assert closed_unanswered(proxied.port, bad + GET)
    assert exchange(proxied.port, v1("192.0.2.1", 1) + GET)["client"] == ["192.0.2.1", 1]


def test_a_header_that_never_ends_is_dropped_after_the_head_timeout(proxied: Juggler) -> None:
    with socket.create_connection(("127.0.0.1", proxied.port), timeout=15) as s:
        s.sendall(b"PROXY TCP4 192.0.2.1")
        # --timeout-request-head 1: closed by the server, long before the socket's timeout.
        assert recv_until_close(s) == b""


def test_proxy_headers_still_apply_on_top(proxied: Juggler) -> None:
    forwarded = GET.replace(b"Host: x\r\n", b"Host: x\r\nX-Forwarded-For: 203.0.113.99\r\n")
    # The header names a trusted peer (a proxy in a chain): its X-Forwarded-For is believed.
    assert exchange(proxied.port, v1("127.0.0.1", 5555) + forwarded)["client"] == [
        "203.0.113.99",
        0,
    ]
    # The header names an outside client: what that client claims is not.
    assert exchange(proxied.port, v1("192.0.2.8", 5555) + forwarded)["client"] == [
        "192.0.2.8",
        5555,
    ]


def test_wsgi_gets_remote_addr_and_port(proxied_wsgi: Juggler) -> None:
    v = exchange(proxied_wsgi.port, v1("192.0.2.60", 6060) + GET)
    assert (v["REMOTE_ADDR"], v["REMOTE_PORT"]) == ("192.0.2.60", "6060")


def test_a_header_from_an_untrusted_peer_closes_the_connection() -> None:
    j = start("guarded:app", "--proxy-protocol", "--forwarded-allow-ips", "10.0.0.0/8")
    try:
        assert closed_unanswered(j.port, v1("192.0.2.1", 1) + GET)
        assert closed_unanswered(j.port, v2_inet("192.0.2.1", 1) + GET)
        # Without a header, the same peer is served as itself.
        assert exchange(j.port, GET)["client"][0] == "127.0.0.1"
    finally:
        j.kill()


def test_without_the_flag_a_header_is_not_read() -> None:
    j = start("guarded:app")
    try:
        with socket.create_connection(("127.0.0.1", j.port), timeout=10) as s:
            s.sendall(v1("192.0.2.1", 1) + GET)
            status = recv_until_close(s).split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 400"), status
    finally:
        j.kill()


def test_the_header_comes_before_the_tls_handshake(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    j = start(
        "guarded:app",
        "--proxy-protocol",
        "--ssl-certfile",
        str(tmp_path / "cert.pem"),
        "--ssl-keyfile",
        str(tmp_path / "key.pem"),
    )
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with socket.create_connection(("127.0.0.1", j.port), timeout=10) as raw:
            raw.sendall(v2_inet("192.0.2.77", 7777))
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(GET)
                status, _, body = read_response(s)
        assert status.startswith(b"HTTP/1.1 200")
        v = json.loads(body)
        assert v["client"] == ["192.0.2.77", 7777] and v["scheme"] == "https"
    finally:
        j.kill()


# A real HAProxy in front, in TCP mode: `send-proxy` (v1) on one frontend, `send-proxy-v2` on
# another, and a health check on --health-path that sends its own PROXY header.
HAPROXY_CFG = """\
global
    maxconn 256
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:{v1_port}
    default_backend juggler_v1
frontend v2
    bind 127.0.0.1:{v2_port}
    default_backend juggler_v2
backend juggler_v1
    server juggler 127.0.0.1:{juggler_port} send-proxy
backend juggler_v2
    option httpchk GET /healthz
    server juggler 127.0.0.1:{juggler_port} send-proxy-v2 check check-send-proxy inter 500ms
"""


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    binary = require("haproxy", "haproxy")
    j = start("guarded:app", "--proxy-protocol", "--health-path", "/healthz")
    ports = {"v1_port": free_port(), "v2_port": free_port(), "juggler_port": j.port}
    cfg = tmp_path_factory.mktemp("haproxy") / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(**ports))
    proc = subprocess.Popen(
        [binary, "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_listening(ports["v1_port"], proc)
        wait_listening(ports["v2_port"], proc)
        yield {**ports, "juggler": j}
    finally:
        proc.terminate()
        proc.wait(10)
        j.kill()


@pytest.mark.parametrize("frontend", ["v1_port", "v2_port"])
def test_behind_haproxy_the_app_sees_the_clients_own_port(haproxy: dict, frontend: str) -> None:
    with socket.socket() as s:
        s.settimeout(10)
        s.bind(("127.0.0.1", 0))
        own_port = s.getsockname()[1]
        s.connect(("127.0.0.1", haproxy[frontend]))
        s.sendall(GET)
        status, _, body = read_response(s)
    assert status.startswith(b"HTTP/1.1 200"), (status, body)
    assert json.loads(body)["client"] == ["127.0.0.1", own_port]


def test_haproxys_health_check_passes_through_its_proxy_header(haproxy: dict) -> None:
    # HAProxy checks every 500 ms; juggler answers the check itself, after its PROXY v2 header.
    haproxy["juggler"].wait_for(r"GET /healthz", timeout=20)
