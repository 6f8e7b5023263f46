"""Flask under juggler and Gunicorn."""

import pytest
from harness import FLASK_STYLE_CRAWL, Req, pair_fixture

servers = pair_fixture("flask_compat:app", "wsgi")

CRAWL = [
    *FLASK_STYLE_CRAWL,
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
