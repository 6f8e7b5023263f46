"""FastAPI and Starlette apps served by juggler, through httpx."""

from __future__ import annotations

import socket

import httpx
import pytest


@pytest.fixture(scope="module")
def fastapi_server():
    from conftest import start

    j = start("fastapi_app:app")
    yield j
    j.kill()


def test_path_and_query_params(fastapi_server):
    r = httpx.get(f"{fastapi_server.url}/items/42?q=hello")
    assert r.status_code == 200
    assert r.json() == {"item_id": 42, "q": "hello"}


def test_json_body_and_validation(fastapi_server):
    r = httpx.post(f"{fastapi_server.url}/items", json={"name": "x", "price": 1.5, "tags": ["a"]})
    assert r.json() == {"created": {"name": "x", "price": 1.5, "tags": ["a"]}}
    bad = httpx.post(f"{fastapi_server.url}/items", json={"name": "x", "price": "not a number"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "price"]
    assert httpx.get(f"{fastapi_server.url}/items/notint").status_code == 422


def test_background_tasks_run_after_the_response(fastapi_server):
    r = httpx.post(f"{fastapi_server.url}/tasks?name=bg1")
    assert r.json() == {"scheduled": "bg1"}
    fastapi_server.wait_for("BACKGROUND-DONE bg1")
    assert "bg1" in httpx.get(f"{fastapi_server.url}/tasks").json()


def test_shutdown_waits_for_background_tasks_after_their_response(juggler):
    j = juggler("fastapi_app:app").ready()
    r = httpx.post(f"{j.url}/tasks?name=slow-bg")
    assert r.json() == {"scheduled": "slow-bg"}
    # The response is out, the task still has 0.5 s to go: a graceful stop waits for it.
    assert j.stop() == 0
    assert "BACKGROUND-DONE slow-bg" in j.output
    assert "Graceful shutdown timed out" not in j.output


def test_streaming_response(fastapi_server):
    with httpx.stream("GET", f"{fastapi_server.url}/stream?n=4") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    assert text == "".join(f"data: {i}\n\n" for i in range(4))


def test_sse_generator_is_closed_when_client_leaves(fastapi_server):
    s = socket.create_connection(("127.0.0.1", fastapi_server.port), timeout=10)
    s.sendall(b"GET /sse?key=s1 HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while data.count(b"tick") < 2:
        data += s.recv(4096)
    s.close()
    fastapi_server.wait_for("SSE-CLOSED s1")


def test_cookies_and_headers(fastapi_server):
    r = httpx.get(f"{fastapi_server.url}/cookies")
    assert r.cookies["session"] == "abc" and r.cookies["theme"] == "dark"
    assert len(r.headers.get_list("set-cookie")) == 2
    assert r.headers["x-extra"] == "1"


def test_handler_exception_is_500_and_server_survives(fastapi_server):
    r = httpx.get(f"{fastapi_server.url}/boom")
    assert r.status_code == 500
    fastapi_server.wait_for("RuntimeError: handler failed")
    assert httpx.get(f"{fastapi_server.url}/items/1").status_code == 200


def test_openapi_schema(fastapi_server):
    schema = httpx.get(f"{fastapi_server.url}/openapi.json").json()
    assert "/items/{item_id}" in schema["paths"]


def test_root_path_with_fastapi(juggler):
    j = juggler("fastapi_app:app", "--root-path", "/api").ready()
    r = httpx.get(f"{j.url}/state")
    assert r.json()["root_path"] == "/api"
    assert r.json()["url"].endswith("/api/state")


def test_starlette(juggler):
    j = juggler("starlette_app:app").ready()
    assert httpx.get(j.url).text == "starlette home"
    r = httpx.put(f"{j.url}/echo?a=b", content=b"x" * 70000)
    assert r.json() == {"len": 70000, "method": "PUT", "q": {"a": "b"}}
