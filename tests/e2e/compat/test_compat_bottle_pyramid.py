"""Bottle and Pyramid (WSGI) under juggler and Gunicorn."""

import pytest
from harness import Req, pair_fixture

bottle = pair_fixture("bottle_compat:app", "wsgi")
pyramid = pair_fixture("pyramid_compat:app", "wsgi")

COMMON = [
    Req("GET", "/"),
    Req("HEAD", "/"),
    Req("GET", "/json?a=1&b=two"),
    Req("POST", "/form", data={"name": "juggler"}),
    Req("POST", "/form", files={"up": ("u.txt", b"u" * 90_000)}, data={"k": "v"}),
    Req("GET", "/redirect"),
    Req("GET", "/boom", server_error=True),
    Req("GET", "/static/style.css"),
    Req("GET", "/static/data.bin"),
    Req("GET", "/static/none.css"),
    Req("GET", "/nowhere"),
]


@pytest.mark.parametrize(
    "req", [*COMMON, Req("GET", "/abort"), Req("GET", "/stream")], ids=lambda r: r.id
)
def test_bottle(bottle, req):
    bottle.compare(req)


@pytest.mark.parametrize("req", [*COMMON, Req("GET", "/missing")], ids=lambda r: r.id)
def test_pyramid(pyramid, req):
    pyramid.compare(req)
