"""Starlette under juggler and Uvicorn."""

import pytest
from harness import Req, pair_fixture

servers = pair_fixture("starlette_compat:app", "asgi")

CRAWL = [
    Req("GET", "/"),
    Req("HEAD", "/"),
    Req("GET", "/items/42?x=1&y=%C3%A9"),
    Req("GET", "/nowhere"),
    Req("POST", "/nowhere"),
    Req("DELETE", "/items/1"),
    Req("POST", "/form", data={"name": "juggler", "multi": ["a", "b"]}),
    Req("POST", "/form", files={"up": ("a.txt", b"x" * 100_000, "text/plain")}, data={"k": "v"}),
    Req("POST", "/echo", content=b"raw bytes \x00\xff"),
    Req("PUT", "/echo", content=b""),
    Req("GET", "/redirect"),
    Req("GET", "/boom"),
    Req("GET", "/stream"),
    Req("GET", "/file"),
    Req("HEAD", "/file"),
    Req("GET", "/file", headers={"range": "bytes=10-99"}),
    Req("GET", "/cookies"),
    Req("GET", "/empty"),
    Req("GET", "/static/style.css"),
    Req("GET", "/static/page.html"),
    Req("GET", "/static/data.bin"),
    Req("GET", "/static/missing.css"),
    Req("GET", "/static/style.css", headers={"if-none-match": '"nope"'}),
]


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_starlette(servers, req):
    servers.compare(req)
