"""Starlette under juggler and Uvicorn."""

import pytest
from harness import Req, pair_fixture, sub

servers = pair_fixture("starlette_compat:app", "asgi")

boundary = sub(rb"\b[0-9a-f]{26}\b", b"BOUNDARY")

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
    Req("GET", "/static/style.css", headers={"if-modified-since": "Fri, 01 Jan 2100 00:00:00 GMT"}),
    Req("HEAD", "/static/data.bin"),
    Req("HEAD", "/stream"),
    # Starlette picks a random boundary for each multipart answer.
    Req("GET", "/file", headers={"range": "bytes=0-9,20-29"}, normalise=boundary),
    Req("GET", "/file", headers={"range": "bytes=999999-"}),
    Req("POST", "/echo", content=b"x" * 300_000, headers={"expect": "100-continue"}),
]


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_starlette(servers, req):
    servers.compare(req)
