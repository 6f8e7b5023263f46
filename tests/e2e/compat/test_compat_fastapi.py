"""FastAPI under juggler and Uvicorn."""

import pytest
from harness import Req, pair_fixture

servers = pair_fixture("fastapi_compat:app", "asgi")

CRAWL = [
    Req("GET", "/"),
    Req("GET", "/items/5?q=x"),
    Req("GET", "/items/404"),
    Req("GET", "/items/notanint"),
    Req("POST", "/items", json={"name": "hammer", "price": 9.5, "tags": ["tools"]}),
    Req("POST", "/items", json={"name": "no price"}),
    Req("POST", "/items", content=b"{not json", headers={"content-type": "application/json"}),
    Req("POST", "/upload", files={"file": ("u.bin", bytes(range(256)) * 800)}, data={"note": "n"}),
    Req("GET", "/redirect"),
    Req("GET", "/boom"),
    Req("GET", "/stream"),
    Req("GET", "/file"),
    Req("GET", "/static/app.js"),
    Req("GET", "/openapi.json"),
    Req("GET", "/docs"),
    Req("OPTIONS", "/"),
    Req("GET", "/nowhere"),
]


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_fastapi(servers, req):
    servers.compare(req)
