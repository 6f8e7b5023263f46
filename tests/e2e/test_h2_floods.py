"""HTTP/2 floods (issue 19), each from one raw connection that never reads (h2c by prior
knowledge, and TLS with ALPN): the worker's memory stays bounded, a second client is served
meanwhile, and the floods that have a limit end with GOAWAY ENHANCE_YOUR_CALM. The frames
and the measures are in h2flood.py."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest
import trustme
from conftest import ROOT, Juggler, alive, start
from h2flood import FLOODS, Flooder, RssWatch, serving_pid

#: The benchmark's app (benches/apps/asgi_flood.py), so that the tests flood what it measures.
BENCH_APPS = str(ROOT / "benches" / "apps")

#: Bytes of flood frames sent at most: well past every limit (the floods that are cut off
#: end after a few hundred KiB), and enough that a server keeping anything per frame would
#: show it (16 MiB of empty DATA frames is 1.9 million frames).
LIMIT = 16 << 20
#: The busy-connection test's flood: served without a hold-up, the second client's requests
#: take a few hundred KiB of it; held back (until a heartbeat, each second), some 200 MiB.
BUSY_LIMIT = 64 << 20
#: How long the flooder waits on a send before it counts the server as no longer reading.
STALL = 1.0
MAX_GROWTH_MIB = 64
#: Requests the second client makes while the flooding connection is open.
SECOND_CLIENT_REQUESTS = 10
ENHANCE_YOUR_CALM = 11
#: The floods a limit cuts off (the others are bounded by backpressure, or cost nothing).
CUT_OFF = {"continuation", "empty-data", "rapid-reset"}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def h2c_server() -> Iterator[Juggler]:
    j = start("asgi_flood:app", "--app-dir", BENCH_APPS, "--no-access-log")
    yield j
    j.kill()


@pytest.fixture(scope="module")
def tls_server(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Juggler]:
    d = tmp_path_factory.mktemp("flood-certs")
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    tls = ("--ssl-certfile", str(d / "cert.pem"), "--ssl-keyfile", str(d / "key.pem"))
    j = start("asgi_flood:app", "--app-dir", BENCH_APPS, "--no-access-log", *tls)
    yield j
    j.kill()


@pytest.mark.parametrize("transport", ["h2c", "tls"])
@pytest.mark.parametrize("name", list(FLOODS))
def test_flood_from_a_client_that_never_reads(
    request: pytest.FixtureRequest, ca: trustme.CA, transport: str, name: str
) -> None:
    server: Juggler = request.getfixturevalue(f"{transport}_server")
    tls, verify = (trusting(ca), trusting(ca)) if transport == "tls" else (None, True)
    flooder = Flooder(server.port, FLOODS[name], LIMIT, STALL, tls)
    worker = serving_pid(server.proc.pid, server.port, flooder.sock.getsockname()[1])
    url = f"{server.url}/"
    with httpx.Client(http1=False, http2=True, timeout=30, verify=verify) as second:
        second.get(url)  # its connection (and the worker's for it) exists before the baseline
        with RssWatch(worker) as rss:
            flooder.start()
            flooder.started.wait()
            codes = [second.get(url).status_code for _ in range(SECOND_CLIENT_REQUESTS)]
            outcome = flooder.join(120)
    assert codes == [200] * SECOND_CLIENT_REQUESTS, f"second client during the {name} flood"
    assert rss.growth_mib < MAX_GROWTH_MIB, f"{name}: {outcome}"
    assert alive(worker) and worker in server.workers(), "the worker neither died nor restarted"
    if name in CUT_OFF:
        outcome = flooder.finish(wait=10)
        assert outcome.goaway == ENHANCE_YOUR_CALM, outcome
        assert outcome.closed, outcome
    else:
        flooder.sock.close()
    # The worker still serves new connections once the flood is over.
    assert httpx.get(url, verify=verify).status_code == 200


@pytest.fixture(scope="module")
def h2c_wsgi_server() -> Iterator[Juggler]:
    j = start("wsgi_hello:app", "--app-dir", BENCH_APPS, "--interface", "wsgi", "--no-access-log")
    yield j
    j.kill()


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_a_busy_connection_does_not_hold_other_requests_back(
    request: pytest.FixtureRequest, interface: str
) -> None:
    """A flood the server takes in full (WINDOW_UPDATE frames cost it next to nothing) keeps
    its I/O thread from ever parking; the second client's requests must still be handed to
    the app (the event loop, or a WSGI thread) meanwhile, not when the flood pauses. Bytes are
    the clock: the requests must be done long before the flood has sent its (large) limit."""
    h2c_server: Juggler = request.getfixturevalue(
        "h2c_server" if interface == "asgi" else "h2c_wsgi_server"
    )
    flooder = Flooder(h2c_server.port, FLOODS["window-update"], BUSY_LIMIT, STALL)
    url = f"{h2c_server.url}/"
    with httpx.Client(http1=False, http2=True, timeout=30) as second:
        second.get(url)
        flooder.start()
        flooder.started.wait()
        codes = [second.get(url).status_code for _ in range(SECOND_CLIENT_REQUESTS)]
        flooder.stop()
        outcome = flooder.join(120)
    flooder.sock.close()
    assert codes == [200] * SECOND_CLIENT_REQUESTS
    assert outcome.ended == "stopped", f"the second client was served only after {outcome}"


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx
