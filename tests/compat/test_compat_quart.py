"""Quart under juggler and Uvicorn."""

import pytest
from harness import Req, pair_fixture

servers = pair_fixture("quart_compat:app", "asgi")

CRAWL = [
    Req("GET", "/"),
    Req("HEAD", "/"),
    Req("GET", "/json?a=1&a=2&b=%20"),
    Req("POST", "/form", data={"name": "juggler", "many": ["1", "2"]}),
    Req("POST", "/form", files={"up": ("f.txt", b"z" * 70_000, "text/plain")}, data={"k": "v"}),
    Req("POST", "/echo", content=bytes(range(256)) * 100),
    Req("GET", "/redirect"),
    Req("GET", "/abort"),
    Req("GET", "/boom"),
    Req("GET", "/stream"),
    Req("GET", "/static/style.css"),
    Req("GET", "/static/data.bin"),
    Req("GET", "/static/nope.css"),
    Req("GET", "/nowhere"),
    Req("DELETE", "/json"),
]


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_quart(servers, req):
    servers.compare(req)
