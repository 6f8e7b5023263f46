"""Flask under juggler and Gunicorn."""

import pytest
from harness import Req, pair_fixture

servers = pair_fixture("flask_compat:app", "wsgi")

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
    Req("HEAD", "/stream"),
    Req("HEAD", "/static/data.bin"),
    Req("GET", "/static/style.css", headers={"if-modified-since": "Fri, 01 Jan 2100 00:00:00 GMT"}),
    Req("POST", "/echo", content=b"y" * 300_000, headers={"expect": "100-continue"}),
    Req("GET", "/json", content=b"a body on a GET"),
]


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_flask(servers, req):
    servers.compare(req)


def test_flask_cookies_and_repeated_headers(servers):
    servers.compare(Req("GET", "/cookie"))
