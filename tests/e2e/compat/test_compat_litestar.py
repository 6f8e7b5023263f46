"""Litestar under juggler and Uvicorn."""

import pytest
from harness import Req, pair_fixture

servers = pair_fixture("litestar_compat:app", "asgi")

CRAWL = [
    Req("GET", "/"),
    Req("GET", "/items/3?q=z"),
    Req("GET", "/items/404"),
    Req("GET", "/items/abc"),
    Req("POST", "/items", json={"a": [1, 2, {"b": None}]}),
    Req("POST", "/upload", files={"f": ("x.txt", b"y" * 50_000)}, data={"k": "v"}),
    Req("POST", "/echo", content=b"echo me"),
    Req("GET", "/redirect"),
    Req("GET", "/boom"),
    Req("GET", "/stream"),
    Req("GET", "/file"),
    Req("GET", "/static/style.css"),
    Req("GET", "/static/missing.css"),
    Req("GET", "/nowhere"),
    Req("PATCH", "/items/3"),
]


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_litestar(servers, req):
    servers.compare(req)
