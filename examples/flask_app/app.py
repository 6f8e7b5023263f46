"""A small Flask app served by juggler over WSGI, with psycopg on PostgreSQL.

    eval "$(scripts/postgres.sh)"     # a local PostgreSQL; exports DATABASE_URL
    juggler --interface wsgi --threads 16 --app-dir examples/flask_app app:app

Routes: rows read and inserted with psycopg (``/items``, 422 on bad input), a slow query
(``/slow``: ``SELECT pg_sleep(0.01)``, which holds its thread for 10 ms), about 5 ms of
hashing in Python (``/cpu``, which holds the GIL), a form with a file upload, a streamed
response, a redirect, a handled error (404 as JSON) and an unhandled one (500, logged by
juggler).

The connection pool (psycopg_pool, ``PG_POOL_SIZE`` connections at most, 32 by default: one
per thread) opens on the first request that needs it, in the worker process that serves it,
so the routes without a database work without ``DATABASE_URL``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

from flask import Flask, jsonify, redirect, request, stream_with_context, url_for
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

app = Flask(__name__)

POOL_SIZE = int(os.environ.get("PG_POOL_SIZE", "32"))
HASH_ROUNDS = 20_000  # sha256 over its own digest: about 5 ms, the GIL held throughout
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    price double precision NOT NULL
)
"""
SCHEMA_LOCK = 7_100_010  # the advisory lock the FastAPI example takes for the same table
_pool: ConnectionPool | None = None
_pool_lock = threading.Lock()


def pool() -> ConnectionPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            dsn = os.environ.get("DATABASE_URL")
            if not dsn:
                raise RuntimeError('DATABASE_URL is not set (eval "$(scripts/postgres.sh)")')
            p = ConnectionPool(dsn, min_size=2, max_size=POOL_SIZE, open=True)
            with p.connection() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                conn.execute(SCHEMA)
            _pool = p
        return _pool


@app.get("/")
def home():
    return "flask home"


@app.post("/items")
def create_item():
    data = request.get_json(silent=True)
    if not valid_item(data):
        return jsonify(error="expected {'name': non-empty str, 'price': number >= 0}"), 422
    with pool().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "INSERT INTO items (name, price) VALUES (%s, %s) RETURNING id, name, price",
            (data["name"], float(data["price"])),
        )
        row = cur.fetchone()
    return jsonify(row), 201


def valid_item(data: object) -> bool:
    """What the FastAPI example's Pydantic model accepts: a name and a price >= 0."""
    if not isinstance(data, dict):
        return False
    name, price = data.get("name"), data.get("price")
    return (
        isinstance(name, str)
        and 0 < len(name) <= 200
        and isinstance(price, int | float)
        and not isinstance(price, bool)
        and price >= 0
    )


@app.get("/items/<int:item_id>")
def get_item(item_id: int):
    with pool().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        item = cur.execute("SELECT id, name, price FROM items WHERE id = %s", (item_id,)).fetchone()
    if item is None:
        return jsonify(error="not found"), 404
    return jsonify(item)


@app.get("/slow")
def slow():
    with pool().connection() as conn:
        conn.execute("SELECT pg_sleep(0.01)")
    return jsonify(slept_ms=10)


@app.get("/cpu")
def cpu():
    digest = b"juggler"
    for _ in range(HASH_ROUNDS):
        digest = hashlib.sha256(digest).digest()
    return jsonify(sha256=digest.hex())


@app.post("/upload")
def upload():
    f = request.files.get("file")
    if f is None:
        return jsonify(error="no file"), 400
    data = f.read()
    return jsonify(
        title=request.form.get("title", ""),
        filename=f.filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


@app.get("/stream")
def stream():
    count = int(request.args.get("n", "5"))

    @stream_with_context
    def generate():
        # request is still usable inside the generator thanks to stream_with_context
        who = request.args.get("who", "world")
        for i in range(count):
            yield f"data: {i} {who}\n\n"
            time.sleep(0.01)

    return app.response_class(generate(), mimetype="text/event-stream")


@app.get("/old")
def old():
    return redirect(url_for("home"))


class Teapot(Exception):
    pass


@app.errorhandler(Teapot)
def teapot(_exc: Teapot):
    return jsonify(error="short and stout"), 418


@app.get("/teapot")
def raise_teapot():
    raise Teapot()


@app.get("/crash")
def crash():
    raise RuntimeError("flask view crashed")
