"""--proxy-headers and --forwarded-allow-ips: what a trusted proxy says reaches the scope and
the environ, per request; what anyone else says changes nothing."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import start
from wsclient import RawWebSocket


@pytest.fixture(scope="module")
def trusting():
    """Defaults: proxy headers on, 127.0.0.1 (the tests' own address) trusted."""
    j = start("guarded:app")
    yield j
    j.kill()


@pytest.fixture(scope="module")
def distrusting():
    """Proxy headers on, but the tests' address is not among the trusted peers."""
    j = start("guarded:app", "--forwarded-allow-ips", "10.0.0.0/8, ::2")
    yield j
    j.kill()


@pytest.fixture(scope="module")
def trusting_wsgi():
    j = start("guarded:wsgi", "--interface", "wsgi")
    yield j
    j.kill()


def view(j, headers, path="/", **kw):
    with httpx.Client(headers=headers, **kw) as c:
        r = c.get(f"{j.url}{path}")
    assert r.status_code == 200, r.text
    return r.json()


def test_without_proxy_headers_the_scope_is_the_connection(trusting):
    v = view(trusting, {})
    assert v["client"][0] == "127.0.0.1" and v["client"][1] > 0
    assert v["scheme"] == "http"
    assert v["server"] == ["127.0.0.1", trusting.port]


def test_x_forwarded_headers_from_a_trusted_peer(trusting):
    v = view(
        trusting,
        {
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-proto": "https",
            "x-forwarded-host": "example.com",
        },
    )
    assert v["client"] == ["203.0.113.7", 0]
    assert v["scheme"] == "https"
    assert v["server"] == ["example.com", 443]
    assert v["host"] == ["example.com"], "frameworks build URLs from the Host header"


def test_the_right_most_untrusted_hop_is_the_client(trusting):
    # The client wrote the left-most entry itself; 127.0.0.1 is a trusted proxy on the way.
    v = view(trusting, {"x-forwarded-for": "6.6.6.6, 203.0.113.7, 127.0.0.1"})
    assert v["client"] == ["203.0.113.7", 0]
    # Each proxy may add its own line: they read as one list.
    with httpx.Client() as c:
        r = c.get(
            f"{trusting.url}/",
            headers=[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.2:4711")],
        )
    assert r.json()["client"] == ["198.51.100.2", 4711]


def test_rfc7239_forwarded(trusting):
    v = view(
        trusting,
        {"forwarded": 'for=6.6.6.6, for="[2001:db8::17]:4711";proto=https;host="example.org:8443"'},
    )
    assert v["client"] == ["2001:db8::17", 4711]
    assert v["scheme"] == "https"
    assert v["server"] == ["example.org", 8443]
    assert v["host"] == ["example.org:8443"]


def test_x_forwarded_port_rewrites_server_and_host(trusting):
    v = view(trusting, {"x-forwarded-proto": "https", "x-forwarded-port": "8443"})
    assert v["server"] == ["127.0.0.1", 8443]
    assert v["host"] == ["127.0.0.1:8443"]


@pytest.mark.parametrize(
    "headers",
    [
        {"x-forwarded-for": "<script>alert(1)</script>"},
        {"x-forwarded-for": "unknown"},
        {"x-forwarded-for": "1.2.3.4:99999"},
        {"x-forwarded-for": "203.0.113.7, not-an-ip"},
        {"x-forwarded-proto": "javascript"},
        {"x-forwarded-host": "evil.com/path?x"},
        {"x-forwarded-host": "evil.com:80:80"},
        {"x-forwarded-host": "user@evil.com"},
        {"forwarded": 'for="6.6.6.6'},
        {"forwarded": "for=6.6.6.6;for=7.7.7.7"},
        {"forwarded": "for=6.6.6.6 junk"},
    ],
    ids=lambda h: repr(h)[:40],
)
def test_malformed_proxy_headers_change_nothing(trusting, headers):
    v = view(trusting, headers)
    assert v["client"][0] == "127.0.0.1"
    assert v["scheme"] == "http"
    assert v["server"] == ["127.0.0.1", trusting.port]
    assert v["host"] == [f"127.0.0.1:{trusting.port}"]


def test_x_forwarded_headers_are_never_mixed_with_forwarded(trusting):
    # A proxy that sets X-Forwarded-For passes a client's own Forwarded header through: its
    # host and proto must not be believed.
    v = view(
        trusting,
        {"x-forwarded-for": "203.0.113.7", "forwarded": "for=6.6.6.6;proto=https;host=evil.com"},
    )
    assert v["client"] == ["203.0.113.7", 0]
    assert v["scheme"] == "http"
    assert v["host"] == [f"127.0.0.1:{trusting.port}"]


def test_a_spoofing_peer_changes_nothing(distrusting):
    spoof = {
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "example.com",
        "x-forwarded-port": "443",
    }
    for headers in (spoof, {"forwarded": "for=203.0.113.7;proto=https;host=example.com"}):
        v = view(distrusting, headers)
        assert v["client"][0] == "127.0.0.1"
        assert v["scheme"] == "http"
        assert v["server"] == ["127.0.0.1", distrusting.port]
        assert v["host"] == [f"127.0.0.1:{distrusting.port}"]


def test_overrides_are_per_request_on_one_connection(trusting):
    # The connection's addresses are cached: a forwarded request must not leak into the next.
    with httpx.Client() as c:
        first = c.get(f"{trusting.url}/", headers={"x-forwarded-for": "203.0.113.7"}).json()
        second = c.get(f"{trusting.url}/").json()
    assert first["client"] == ["203.0.113.7", 0]
    assert second["client"][0] == "127.0.0.1"
    assert first["client"] != second["client"]


def test_the_access_log_names_the_forwarded_client(trusting):
    view(trusting, {"x-forwarded-for": "203.0.113.99"}, path="/?key=access-xff")
    trusting.wait_for(r'203\.0\.113\.99:0 - "GET /\?key=access-xff HTTP/1\.1" 200')


def test_websocket_scheme_follows_the_proxy(trusting):
    ws = RawWebSocket(
        trusting.port, "/", extra="X-Forwarded-Proto: https\r\nX-Forwarded-For: 203.0.113.8\r\n"
    )
    assert ws.status_line.startswith("HTTP/1.1 101")
    _, _, payload = ws.read_frame()
    v = json.loads(payload)
    assert v["scheme"] == "wss"
    assert v["client"] == ["203.0.113.8", 0]
    ws.close()


def test_wsgi_environ(trusting_wsgi):
    env = view(
        trusting_wsgi,
        {
            "x-forwarded-for": "6.6.6.6, 203.0.113.7",
            "x-forwarded-proto": "https",
            "x-forwarded-host": "example.com",
        },
    )
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "example.com"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "443")
    plain = view(trusting_wsgi, {"x-forwarded-proto": "javascript"})
    assert plain["REMOTE_ADDR"] == "127.0.0.1"
    assert plain["wsgi.url_scheme"] == "http"


def test_proxy_headers_can_be_switched_off(juggler):
    j = juggler("guarded:app", "--no-proxy-headers").ready()
    v = view(j, {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"})
    assert v["client"][0] == "127.0.0.1"
    assert v["scheme"] == "http"


def test_unix_socket_peers_are_trusted_only_when_listed(juggler, tmp_path):
    headers = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}
    for trust, believed in ((None, False), ("unix:", True), ("*", True)):
        path = str(tmp_path / f"{believed}{trust}.sock")
        args = ["guarded:app", "--uds", path]
        if trust:
            args += ["--forwarded-allow-ips", trust]
        j = juggler(*args, port=False).ready()
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), headers=headers) as c:
            v = c.get("http://localhost/").json()
        assert (v["client"] == ["203.0.113.7", 0]) is believed, (trust, v)
        assert (v["scheme"] == "https") is believed, (trust, v)
        j.kill()


def test_forwarded_allow_ips_from_the_environment_and_typos():
    from juggler._juggler import CoreConfig
    from juggler.config import Config

    c = Config.resolve("a:b", {}, env={"FORWARDED_ALLOW_IPS": "10.0.0.1"})
    assert c.proxy.forwarded_allow_ips == "10.0.0.1"
    c = Config.resolve("a:b", {"forwarded_allow_ips": "*"}, env={"FORWARDED_ALLOW_IPS": "x"})
    assert c.proxy.forwarded_allow_ips == "*"
    # Unset, the core trusts the local host only.
    core = repr(CoreConfig(Config.resolve("a:b", {}, env={})))
    assert "networks: [Network { addr: 127.0.0.1, prefix: 32 }]" in core


def test_a_bad_trusted_address_is_one_readable_error(juggler):
    j = juggler("guarded:app", "--forwarded-allow-ips", "127.0.0.1,localhost")
    assert j.proc.wait(30) != 0
    assert "'localhost' is not an IP address" in j.output.replace('"', "'")
