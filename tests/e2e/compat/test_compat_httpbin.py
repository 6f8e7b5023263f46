"""httpbin, a real WSGI app (Flask), under juggler and Gunicorn: its endpoints echo the
request back, so a server that changes what the app sees shows up here."""

import pytest
from harness import Req, pair_fixture, sub

servers = pair_fixture("httpbin:app", "wsgi")

uuid = sub(rb'"uuid": "[0-9a-f-]+"', b'"uuid": "X"')

CRAWL = [
    Req("GET", "/get?a=1&a=2&b=%20c"),
    Req("GET", "/headers", headers={"x-custom": "one", "x-empty": ""}),
    Req("GET", "/ip"),
    Req("GET", "/user-agent"),
    Req("POST", "/post", json={"k": [1, 2, None]}),
    Req("POST", "/post", data={"field": "value", "many": ["1", "2"]}),
    Req("POST", "/anything/x", files={"up": ("b.bin", bytes(range(256)) * 300)}),
    Req("PUT", "/put", content=b"raw \x00 body"),
    Req("PATCH", "/patch", content=b""),
    Req("DELETE", "/delete"),
    Req("GET", "/status/418"),
    Req("GET", "/status/204"),
    Req("GET", "/status/500"),
    Req("GET", "/redirect/2"),
    Req("GET", "/absolute-redirect/1"),
    Req("GET", "/redirect-to?url=/get&status_code=307"),
    Req("GET", "/cookies/set?a=1&b=2"),
    Req("GET", "/cookies", headers={"cookie": "a=1; b=2"}),
    Req("GET", "/basic-auth/u/p"),
    Req("GET", "/basic-auth/u/p", headers={"authorization": "Basic dTpw"}),
    Req("GET", "/html"),
    Req("GET", "/json"),
    Req("GET", "/robots.txt"),
    Req("GET", "/image/png"),
    Req("GET", "/bytes/2048?seed=7"),
    Req("GET", "/stream-bytes/5000?seed=3&chunk_size=700"),
    Req("GET", "/stream/4"),
    Req("GET", "/range/3000", headers={"range": "bytes=100-1999"}),
    Req("GET", "/response-headers?x-a=1&x-a=2"),
    Req("GET", "/etag/abc", headers={"if-none-match": '"abc"'}),
    Req("GET", "/uuid", normalise=uuid),
    Req("HEAD", "/get"),
]


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_httpbin(servers, req):
    servers.compare(req)
