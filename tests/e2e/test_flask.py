"""A real Flask app (examples/flask_app) served over WSGI."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from conftest import ROOT
from wsgi_servers import REFERENCE, Server


@pytest.fixture(scope="module")
def flask_server(postgres):
    s = Server(
        "app:app",
        "--threads",
        "4",
        app_dir=ROOT / "examples" / "flask_app",
        interface="auto",
        env={"DATABASE_URL": postgres},
    )
    s.ready()
    yield s
    s.kill()


def test_detected_as_wsgi(flask_server):
    if not REFERENCE:
        # A start-up line, written before this test began.
        assert "Using the WSGI interface with up to 4 threads (detected)" in flask_server.output
    assert httpx.get(f"{flask_server.url}/").text == "flask home"


def test_json_in_and_out(flask_server):
    r = httpx.post(f"{flask_server.url}/items", json={"name": "widget", "price": 2.5})
    assert r.status_code == 201
    item = r.json()
    assert item["name"] == "widget" and item["price"] == 2.5
    assert httpx.get(f"{flask_server.url}/items/{item['id']}").json() == item
    assert httpx.get(f"{flask_server.url}/items/999999").status_code == 404
    bad = httpx.post(f"{flask_server.url}/items", content=b"not json")
    assert bad.status_code == 422


def test_form_with_file_upload(flask_server):
    data = bytes(range(256)) * 4096  # 1 MiB
    r = httpx.post(
        f"{flask_server.url}/upload",
        data={"title": "résumé"},
        files={"file": ("blob.bin", data, "application/octet-stream")},
    )
    assert r.status_code == 200
    assert r.json() == {
        "title": "résumé",
        "filename": "blob.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_streamed_response_with_context(flask_server):
    with httpx.stream("GET", f"{flask_server.url}/stream", params={"n": 4, "who": "jo"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["transfer-encoding"] == "chunked"
        events = [line for line in r.iter_lines() if line]
    assert events == [f"data: {i} jo" for i in range(4)]


def test_redirect(flask_server):
    r = httpx.get(f"{flask_server.url}/old")
    assert r.status_code == 302
    assert r.headers["location"] == "/"
    assert httpx.get(f"{flask_server.url}/old", follow_redirects=True).text == "flask home"


def test_handled_and_unhandled_errors(flask_server):
    r = httpx.get(f"{flask_server.url}/teapot")
    assert r.status_code == 418 and r.json() == {"error": "short and stout"}
    r = httpx.get(f"{flask_server.url}/crash")
    assert r.status_code == 500
    # Flask answers the 500 itself and logs through its own logger; the server keeps serving.
    flask_server.wait_for(r"RuntimeError: flask view crashed")
    assert httpx.get(f"{flask_server.url}/").status_code == 200
