"""The database examples end to end: juggler serving each one, a real PostgreSQL behind it
(scripts/postgres.sh, through the session fixture ``postgres``), httpx in front, and the rows
checked in the database itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import psycopg
import pytest
from conftest import ROOT, start
from wsgi_servers import Server

EXAMPLES = ROOT / "examples"


def row(dsn: str, sql: str, *params) -> tuple | None:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchone()


@pytest.fixture(scope="module")
def fastapi_server(postgres):
    j = start(
        "app:app",
        "--app-dir",
        str(EXAMPLES / "fastapi_asyncpg"),
        env={"DATABASE_URL": postgres, "PG_POOL_SIZE": "4"},
    )
    yield j
    j.kill()


def test_fastapi_inserts_and_reads_rows_in_postgres(fastapi_server, postgres):
    name = f"widget-{uuid.uuid4()}"
    r = httpx.post(f"{fastapi_server.url}/items", json={"name": name, "price": 3.25})
    assert r.status_code == 201
    item = r.json()
    assert item == {"id": item["id"], "name": name, "price": 3.25}
    assert row(postgres, "SELECT name, price FROM items WHERE id = %s", item["id"]) == (name, 3.25)
    assert httpx.get(f"{fastapi_server.url}/items/{item['id']}").json() == item
    # The SQLModel variant reads the same row through SQLAlchemy's async session.
    assert httpx.get(f"{fastapi_server.url}/sqlmodel/items/{item['id']}").json() == item
    for path in ("/items/", "/sqlmodel/items/"):
        assert httpx.get(f"{fastapi_server.url}{path}{item['id'] + 10**6}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": "no price"},
        {"name": "", "price": 1},
        {"name": "negative", "price": -1},
        {"name": "text price", "price": "many"},
        ["not", "an", "object"],
    ],
)
def test_fastapi_refuses_bad_input_with_422_and_writes_nothing(fastapi_server, postgres, body):
    before = row(postgres, "SELECT count(*) FROM items")
    r = httpx.post(f"{fastapi_server.url}/items", json=body)
    assert r.status_code == 422
    assert r.json()["detail"]
    assert row(postgres, "SELECT count(*) FROM items") == before


def test_fastapi_slow_query_takes_its_10_ms(fastapi_server):
    t0 = time.perf_counter()
    r = httpx.get(f"{fastapi_server.url}/slow")
    assert r.status_code == 200 and r.json() == {"slept_ms": 10}
    assert time.perf_counter() - t0 >= 0.01


def test_fastapi_cpu_endpoint_hashes(fastapi_server):
    r = httpx.get(f"{fastapi_server.url}/cpu")
    assert r.status_code == 200 and len(r.json()["sha256"]) == 64


def test_fastapi_pool_opens_at_startup_and_closes_at_shutdown(juggler, postgres):
    j = juggler(
        "app:app",
        "--app-dir",
        str(EXAMPLES / "fastapi_asyncpg"),
        "--workers",
        "2",
        env={"DATABASE_URL": postgres, "PG_POOL_SIZE": "3"},
    ).ready()
    # Both workers open a pool (and race to create the table, which the advisory lock settles).
    for _ in range(2):
        j.wait_for(r"fastapi_asyncpg\[\d+\]: asyncpg pool open \(up to 3 connections\)")
    assert httpx.get(f"{j.url}/slow").status_code == 200
    assert j.stop() == 0
    assert j.output.count("asyncpg pool closed") == 2, j.output


def test_fastapi_without_a_database_fails_at_startup(juggler):
    j = juggler("app:app", "--app-dir", str(EXAMPLES / "fastapi_asyncpg"), env={"DATABASE_URL": ""})
    assert j.proc.wait(30) == 3  # lifespan startup failed
    assert "DATABASE_URL is not set" in j.output


def test_flask_slow_query_and_a_row_written_by_fastapi(fastapi_server, postgres):
    s = Server(
        "app:app",
        "--threads",
        "4",
        app_dir=EXAMPLES / "flask_app",
        env={"DATABASE_URL": postgres},
    ).ready()
    try:
        item = httpx.post(f"{fastapi_server.url}/items", json={"name": "shared", "price": 1}).json()
        assert httpx.get(f"{s.url}/items/{item['id']}").json() == item
        t0 = time.perf_counter()
        assert httpx.get(f"{s.url}/slow").json() == {"slept_ms": 10}
        assert time.perf_counter() - t0 >= 0.01
        assert httpx.post(f"{s.url}/items", json={"name": "x", "price": True}).status_code == 422
    finally:
        s.kill()


# ---- Django on PostgreSQL, sync over WSGI threads and async over ASGI ----


@pytest.fixture(scope="module")
def django_pg(postgres):
    env = {"DATABASE_URL": postgres, "PG_POOL_SIZE": "4"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=EXAMPLES / "django_app",
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    wsgi = Server(
        "mysite.wsgi:application", "--threads", "4", app_dir=EXAMPLES / "django_app", env=env
    ).ready()
    asgi = start("mysite.asgi:application", "--app-dir", str(EXAMPLES / "django_app"), env=env)
    yield {"wsgi": (wsgi, ""), "asgi": (asgi, "async/")}
    wsgi.kill()
    asgi.kill()


@pytest.mark.parametrize("style", ["wsgi", "asgi"])
def test_django_items_and_slow_query_on_postgres(django_pg, postgres, style):
    server, prefix = django_pg[style]
    base = f"{server.url}/{prefix}"
    name = f"{style}-{uuid.uuid4()}"
    r = httpx.post(f"{base}items/", json={"name": name, "price": 4})
    assert r.status_code == 201
    item = r.json()
    assert item == {"id": item["id"], "name": name, "price": 4.0}
    assert row(postgres, "SELECT name FROM notes_item WHERE id = %s", item["id"]) == (name,)
    assert httpx.get(f"{base}items/{item['id']}/").json() == item
    assert httpx.get(f"{base}items/{item['id'] + 10**6}/").status_code == 404
    assert httpx.post(f"{base}items/", json={"name": name}).status_code == 422
    assert httpx.post(f"{base}items/", content=b"{").status_code == 422
    t0 = time.perf_counter()
    assert httpx.get(f"{base}slow/").json() == {"slept_ms": 10}
    assert time.perf_counter() - t0 >= 0.01


# ---- an external API call: awaited over ASGI, blocking in a WSGI thread ----


class _Quotes(BaseHTTPRequestHandler):
    token = ""

    def do_GET(self) -> None:
        body = json.dumps({"quote": self.token, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def quotes():
    """An upstream of the test's own, whose quote only it knows."""
    handler = type("Quotes", (_Quotes,), {"token": str(uuid.uuid4())})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.token
    server.shutdown()


@pytest.mark.parametrize(
    ("app", "interface", "client"),
    [("app:app", "asgi", "httpx.AsyncClient"), ("app:wsgi_app", "wsgi", "httpx.Client")],
)
def test_external_api_call(juggler, quotes, app, interface, client):
    url, token = quotes
    args = ("--app-dir", str(EXAMPLES / "external_api"), "--interface", interface)
    # UPSTREAM_URL: the call reaches the service it names.
    j = juggler(app, *args, env={"UPSTREAM_URL": url}).ready()
    r = httpx.get(f"{j.url}/quote")
    assert r.status_code == 200
    assert r.json()["quote"] == token and r.json()["client"] == client
    # Without it, the example starts its own upstream, which answers after 20 ms.
    own = juggler(app, *args, env={"UPSTREAM_URL": ""}).ready()
    r = httpx.get(f"{own.url}/quote")
    assert r.status_code == 200
    body = r.json()
    assert body["quote"] == "Simple is better than complex." and body["client"] == client
    assert body["took_ms"] >= 20
