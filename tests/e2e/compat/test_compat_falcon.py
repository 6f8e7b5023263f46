"""Falcon, one set of resources as an ASGI app (against Uvicorn) and a WSGI app (Gunicorn)."""

import pytest
from harness import Req, pair_fixture

asgi = pair_fixture("falcon_compat:asgi_app", "asgi")
wsgi = pair_fixture("falcon_compat:wsgi_app", "wsgi")

CRAWL = [
    Req("GET", "/things"),
    Req("GET", "/things/7?x=1&x=2"),
    Req("GET", "/things/notint"),
    Req("POST", "/things", json={"name": "thing"}),
    Req("POST", "/things", content=b"{bad", headers={"content-type": "application/json"}),
    Req("GET", "/redirect"),
    Req("GET", "/refuse"),
    Req("GET", "/boom"),
    Req("GET", "/stream"),
    Req("GET", "/static/page.html"),
    Req("GET", "/static/data.bin"),
    Req("GET", "/static/none.txt"),
    Req("GET", "/nowhere"),
    Req("PUT", "/things"),
    Req("HEAD", "/things/7"),
    Req("HEAD", "/stream"),
    Req("HEAD", "/static/data.bin"),
]


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_falcon_asgi(asgi, req):
    asgi.compare(req)


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_falcon_wsgi(wsgi, req):
    wsgi.compare(req)
