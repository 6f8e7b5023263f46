"""TLS (rustls) and HTTP/2 (h2c and ALPN) end to end, with httpx, h2, curl and websockets."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import httpx
import pytest
import trustme
from conftest import Juggler, start
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as files."""
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.com")
    files = {
        "ca": d / "ca.pem",
        "cert": d / "cert.pem",
        "key": d / "key.pem",
        "client": d / "client.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return {"ca": ca, "server": server, "client": client, "dir": d, **files}


@pytest.fixture(scope="module")
def tls_server(certs: dict[str, Any]) -> Iterator[Juggler]:
    j = start("proto_app:app", *tls_args(certs))
    yield j
    j.kill()


@pytest.fixture(scope="module")
def h2c_server() -> Iterator[Juggler]:
    j = start("proto_app:app")
    yield j
    j.kill()


def tls_args(certs: dict[str, Any]) -> tuple[str, ...]:
    return ("--ssl-certfile", str(certs["cert"]), "--ssl-keyfile", str(certs["key"]))


def client_context(certs: dict[str, Any], with_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    if with_cert:
        ctx.load_cert_chain(str(certs["client"]))
    return ctx


def test_https_over_http1_and_http2(tls_server: Juggler, certs: dict[str, Any]) -> None:
    assert tls_server.url.startswith("https://")
    ctx = client_context(certs)
    with httpx.Client(verify=ctx) as c:
        r = c.get(f"{tls_server.url}/info")
    assert r.http_version == "HTTP/1.1"
    assert r.json()["scheme"] == "https"
    assert r.json()["http_version"] == "1.1"
    with httpx.Client(verify=ctx, http2=True) as c:
        r = c.get(f"{tls_server.url}/info")
    assert r.http_version == "HTTP/2", "ALPN chose h2"
    assert r.json() == {**r.json(), "scheme": "https", "http_version": "2"}


def test_wss(tls_server: Juggler, certs: dict[str, Any]) -> None:
    with connect(f"wss://127.0.0.1:{tls_server.port}/ws", ssl=client_context(certs)) as ws:
        assert ws.recv(timeout=10) == "wss"


def test_plain_http_and_garbage_on_the_tls_port_close_only_that_connection(
    tls_server: Juggler, certs: dict[str, Any]
) -> None:
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello", b"\x00" * 64):
        with socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as s:
            s.sendall(junk)
            try:
                while s.recv(65536):
                    pass
            except ConnectionResetError:
                pass
    with httpx.Client(verify=client_context(certs)) as c:
        assert c.get(f"{tls_server.url}/info").status_code == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_over_tls_and_h2c(
    tls_server: Juggler, h2c_server: Juggler, certs: dict[str, Any]
) -> None:
    out = subprocess.run(
        [
            "curl",
            "-s",
            "--http2",
            "--cacert",
            str(certs["ca"]),
            "-w",
            " %{http_version}",
            f"{tls_server.url}/info",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert out.endswith(" 2") and '"scheme": "https"' in out
    out = subprocess.run(
        [
            "curl",
            "-s",
            "--http2-prior-knowledge",
            "-w",
            " %{http_version}",
            f"{h2c_server.url}/info",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert out.endswith(" 2") and '"http_version": "2"' in out


def test_h2c_many_streams_share_one_connection(h2c_server: Juggler) -> None:
    async def run() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(http1=False, http2=True) as c:
            rs = await asyncio.gather(*(c.get(f"{h2c_server.url}/slow") for _ in range(100)))
        assert all(r.http_version == "HTTP/2" for r in rs)
        return [r.json() for r in rs]

    httpx.get(f"{h2c_server.url}/peak")  # resets it
    bodies = asyncio.run(run())
    assert len({b["client_port"] for b in bodies}) == 1, "one connection"
    assert {b["scheme"] for b in bodies} == {"http"}
    assert httpx.get(f"{h2c_server.url}/peak").json() >= 50, "streams served side by side"


def test_h2_large_bodies_each_way(
    h2c_server: Juggler, tls_server: Juggler, certs: dict[str, Any]
) -> None:
    data = bytes(range(256)) * (20 * 4096)  # 20 MiB: many times the flow-control windows
    for url, verify in ((h2c_server.url, True), (tls_server.url, client_context(certs))):
        with httpx.Client(http1=False, http2=True, verify=verify, timeout=30) as c:
            r = c.post(f"{url}/upload", content=data)
            assert r.json() == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            r = c.get(f"{url}/download?{len(data)}")
            assert r.http_version == "HTTP/2"
            assert len(r.content) == len(data)


def h2_client(port: int) -> tuple[socket.socket, h2.connection.H2Connection]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def h2_events(sock: socket.socket, conn: h2.connection.H2Connection) -> list[Any]:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("closed")
    try:
        events = conn.receive_data(data)
    except h2.exceptions.StreamClosedError:
        # Frames the server sent on a stream this client had already reset.
        events = []
    sock.sendall(conn.data_to_send())
    return events


def headers(path: str) -> list[tuple[str, str]]:
    return [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "x")]


def test_a_reset_stream_reaches_its_app_as_a_disconnect(h2c_server: Juggler) -> None:
    sock, conn = h2_client(h2c_server.port)
    with sock:
        conn.send_headers(1, headers("/wait-disconnect"), end_stream=True)
        sock.sendall(conn.data_to_send())
        got_data = False
        while not got_data:
            got_data = any(isinstance(e, h2.events.DataReceived) for e in h2_events(sock, conn))
        conn.reset_stream(1)
        # A second stream on the same connection is served after the reset.
        conn.send_headers(3, headers("/info"), end_stream=True)
        sock.sendall(conn.data_to_send())
        while not any(isinstance(e, h2.events.StreamEnded) for e in h2_events(sock, conn)):
            pass
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while "/wait-disconnect http.disconnect" not in seen and time.monotonic() < deadline:
        seen += httpx.get(f"{h2c_server.url}/events").json()
    assert "/wait-disconnect http.disconnect" in seen


def test_rapid_reset_is_cut_off(h2c_server: Juggler) -> None:
    sock, conn = h2_client(h2c_server.port)
    terminated = None
    with sock:
        for stream in range(1, 2 * 400, 2):
            conn.send_headers(stream, headers("/slow"), end_stream=True)
            conn.reset_stream(stream)
        try:
            sock.sendall(conn.data_to_send())
            for _ in range(1000):
                for e in h2_events(sock, conn):
                    if isinstance(e, h2.events.ConnectionTerminated):
                        terminated = e
                if terminated:
                    break
        except (ConnectionError, OSError):
            pass
    assert terminated is not None, "the server sent GOAWAY"
    assert terminated.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert httpx.get(f"{h2c_server.url}/info").status_code == 200


def test_http_option_picks_the_versions(juggler: type[Juggler]) -> None:
    only1 = juggler("proto_app:app", "--http", "1").ready()
    with httpx.Client(http1=False, http2=True) as c, pytest.raises(httpx.HTTPError):
        c.get(f"{only1.url}/info")
    assert httpx.get(f"{only1.url}/info").json()["http_version"] == "1.1"
    only2 = juggler("proto_app:app", "--http", "2").ready()
    with httpx.Client(http1=False, http2=True) as c:
        assert c.get(f"{only2.url}/info").json()["http_version"] == "2"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{only2.url}/info")


def test_http2_only_over_tls_refuses_http1_clients_cleanly(
    juggler: type[Juggler], certs: dict[str, Any]
) -> None:
    j = juggler(
        "proto_app:app",
        "--http",
        "2",
        *tls_args(certs),
    ).ready()
    with httpx.Client(verify=client_context(certs)) as c, pytest.raises(httpx.ConnectError):
        c.get(f"{j.url}/info")  # no protocol in common: the handshake says so
    with httpx.Client(verify=client_context(certs), http2=True) as c:
        assert c.get(f"{j.url}/info").http_version == "HTTP/2"


def test_a_stalled_tls_handshake_does_not_hold_up_shutdown(
    juggler: type[Juggler], certs: dict[str, Any]
) -> None:
    j = juggler(
        "proto_app:app",
        "--timeout-graceful-shutdown",
        "0.5",
        *tls_args(certs),
    ).ready()
    with socket.create_connection(("127.0.0.1", j.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x02")  # the start of a ClientHello, and then nothing
        started = time.monotonic()
        assert j.stop(timeout=15) == 0
    assert time.monotonic() - started < 5, "the 10 s handshake limit was not waited out"


def test_wsgi_over_tls_and_http2(juggler: type[Juggler], certs: dict[str, Any]) -> None:
    j = juggler(
        "proto_app:wsgi",
        "--interface",
        "wsgi",
        *tls_args(certs),
    ).ready()
    with httpx.Client(verify=client_context(certs), http2=True) as c:
        r = c.post(f"{j.url}/", content=b"x" * 100_000)
    assert r.json() == {"url_scheme": "https", "protocol": "HTTP/2", "length": 100_000}


def test_client_certificates_required_and_optional(
    juggler: type[Juggler], certs: dict[str, Any]
) -> None:
    args = ("proto_app:app", *tls_args(certs), "--ssl-ca-certs", str(certs["ca"]))
    required = juggler(*args, "--ssl-cert-reqs", "2").ready()
    with httpx.Client(verify=client_context(certs, with_cert=True)) as c:
        assert c.get(f"{required.url}/info").status_code == 200
    with httpx.Client(verify=client_context(certs)) as c, pytest.raises(httpx.HTTPError):
        c.get(f"{required.url}/info")
    # A certificate from another CA is refused too.
    stranger = trustme.CA().issue_cert("mallory@example.com")
    ctx = client_context(certs)
    stranger_file = certs["dir"] / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(stranger_file))
    ctx.load_cert_chain(str(stranger_file))
    with httpx.Client(verify=ctx) as c, pytest.raises(httpx.HTTPError):
        c.get(f"{required.url}/info")
    optional = juggler(*args, "--ssl-cert-reqs", "1").ready()
    for with_cert in (True, False):
        with httpx.Client(verify=client_context(certs, with_cert=with_cert)) as c:
            assert c.get(f"{optional.url}/info").status_code == 200


def test_encrypted_key_with_its_password(juggler: type[Juggler], certs: dict[str, Any]) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(certs["server"].private_key_pem.bytes(), None)
    encrypted = certs["dir"] / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    j = juggler(
        "proto_app:app",
        "--ssl-certfile",
        str(certs["cert"]),
        "--ssl-keyfile",
        str(encrypted),
        "--ssl-keyfile-password",
        "s3cret",
    ).ready()
    with httpx.Client(verify=client_context(certs)) as c:
        assert c.get(f"{j.url}/info").status_code == 200


def run_failing(*args: str) -> subprocess.CompletedProcess[str]:
    j = Juggler(*args)
    code = j.proc.wait(30)
    for t in j._readers:
        t.join(5)
    return subprocess.CompletedProcess(args, code, j.output, "")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ssl-certfile", "/nonexistent/cert.pem"], "cannot read the certificate file"),
        (["--ssl-certfile", "{cert}"], "no private key found"),
        (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{other_key}"], "do not fit"),
        (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{encrypted}"], "--ssl-keyfile-password"),
        (
            [
                "--ssl-certfile",
                "{cert}",
                "--ssl-keyfile",
                "{encrypted}",
                "--ssl-keyfile-password",
                "nope",
            ],
            "cannot decrypt",
        ),
        (
            ["--ssl-certfile", "{cert}", "--ssl-keyfile", "{key}", "--ssl-ciphers", "RC4"],
            "unknown cipher",
        ),
        (
            ["--ssl-certfile", "{cert}", "--ssl-keyfile", "{key}", "--ssl-cert-reqs", "2"],
            "needs ssl_ca_certs",
        ),
        (["--ssl-keyfile", "{key}"], "--ssl-keyfile needs --ssl-certfile"),
    ],
)
def test_bad_tls_settings_are_one_error_at_startup(
    certs: dict[str, Any], extra: list[str], message: str
) -> None:
    from cryptography.hazmat.primitives import serialization

    other = trustme.CA().issue_cert("127.0.0.1")
    files = {
        "cert": certs["cert"],
        "key": certs["key"],
        "other_key": certs["dir"] / "other.pem",
        "encrypted": certs["dir"] / "enc.pem",
    }
    other.private_key_pem.write_to_path(str(files["other_key"]))
    key = serialization.load_pem_private_key(certs["server"].private_key_pem.bytes(), None)
    files["encrypted"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"right"),
        )
    )
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in extra]
    result = run_failing("proto_app:app", *args)
    assert result.returncode == 2, result.stdout
    errors = [line for line in result.stdout.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and message in errors[0], result.stdout
    assert "Traceback" not in result.stdout
