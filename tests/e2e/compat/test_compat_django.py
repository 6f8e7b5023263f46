"""Django (admin login page, views, WhiteNoise static files) over ASGI against Uvicorn and
over WSGI against Gunicorn."""

import pytest
from harness import Req, chain, pair_fixture, sub

asgi = pair_fixture("django_compat.asgi:application", "asgi")
wsgi = pair_fixture("django_compat.wsgi:application", "wsgi")

# A new CSRF secret per visitor, and cookies that expire a year from the second they were set.
csrf = chain(
    sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b'name="csrfmiddlewaretoken" value="X"'),
    sub(rb"csrftoken=[^;]+", b"csrftoken=X"),
    sub(rb"expires=[^;]+", b"expires=X"),
)

CRAWL = [
    Req("GET", "/"),
    Req("HEAD", "/"),
    Req("GET", "/json/?a=1&a=2&b=%C3%A9"),
    Req("POST", "/json/"),
    Req("POST", "/form/", data={"name": "juggler", "many": ["1", "2"]}),
    Req("POST", "/form/", files={"up": ("f.txt", b"f" * 120_000, "text/plain")}),
    Req("GET", "/redirect/"),
    Req("GET", "/boom/"),
    Req("GET", "/stream/"),
    Req("GET", "/file/"),
    Req("GET", "/json"),  # APPEND_SLASH redirect
    Req("GET", "/nowhere/"),
    Req("GET", "/admin/"),
    Req("GET", "/admin/login/?next=/admin/", normalise=csrf),
    Req("POST", "/admin/login/", data={"username": "a", "password": "b"}, normalise=csrf),
    Req("GET", "/static/admin/css/base.css"),
    Req("GET", "/static/admin/js/core.js"),
    Req("GET", "/static/style.css"),
    Req("GET", "/static/data.bin"),
    Req("GET", "/static/nope.css"),
    Req("HEAD", "/stream/"),
    Req("HEAD", "/file/"),
    Req("HEAD", "/static/admin/css/base.css"),
    Req(
        "POST",
        "/form/",
        content=b"k=" + b"v" * 300_000,
        headers={"content-type": "application/x-www-form-urlencoded", "expect": "100-continue"},
    ),
]


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_django_asgi(asgi, req):
    asgi.compare(req)


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_django_wsgi(wsgi, req):
    wsgi.compare(req)
