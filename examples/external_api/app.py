"""Calling another HTTP service from a handler: awaited over ASGI, blocking in a WSGI thread.

    juggler --app-dir examples/external_api app:app                             # async
    juggler --app-dir examples/external_api --interface wsgi --threads 16 app:wsgi_app  # sync

``GET /quote`` asks an upstream service for a quote and returns it with how long the call
took. ``app`` (FastAPI) awaits it with one shared ``httpx.AsyncClient``, opened in lifespan
startup and closed in shutdown: while it waits, the event loop serves other requests.
``wsgi_app`` (Flask) makes the same call with one shared ``httpx.Client``: the WSGI thread
that serves the request waits for the answer, so ``--threads`` calls can wait at once.

The upstream is ``UPSTREAM_URL`` when set. Otherwise the example starts its own on 127.0.0.1
(a free port, in a thread of each worker process): it answers ``/quote`` after 20 ms, the
stand-in for a remote API's latency.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from fastapi import FastAPI
from flask import Flask, jsonify

UPSTREAM_DELAY = 0.02


class Upstream(BaseHTTPRequestHandler):
    """The local stand-in for a remote API."""

    protocol_version = "HTTP/1.1"  # keep-alive, so the clients' connection pools are used

    def do_GET(self) -> None:
        time.sleep(UPSTREAM_DELAY)
        body = json.dumps({"quote": "Simple is better than complex.", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: juggler's access log shows the requests that matter


_upstream_url = os.environ.get("UPSTREAM_URL", "")
_upstream_lock = threading.Lock()


def upstream_url() -> str:
    """UPSTREAM_URL, or the URL of this process's own upstream, started on first use."""
    global _upstream_url
    with _upstream_lock:
        if not _upstream_url:
            server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            _upstream_url = f"http://127.0.0.1:{server.server_address[1]}"
        return _upstream_url


# ---- ASGI: FastAPI awaiting httpx.AsyncClient ----


@asynccontextmanager
async def lifespan(app: FastAPI):
    async with httpx.AsyncClient(base_url=upstream_url(), timeout=5) as client:
        app.state.client = client
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/quote")
async def quote():
    start = time.perf_counter()
    r = await app.state.client.get("/quote")
    r.raise_for_status()
    took_ms = (time.perf_counter() - start) * 1000
    return {**r.json(), "client": "httpx.AsyncClient", "took_ms": round(took_ms, 1)}


# ---- WSGI: Flask blocking on httpx.Client in its thread ----

wsgi_app = Flask(__name__)
_sync_client: httpx.Client | None = None


def sync_client() -> httpx.Client:
    # httpx.Client is thread-safe: one per process shares its connection pool between threads.
    global _sync_client
    with _upstream_lock:
        if _sync_client is None:
            _sync_client = httpx.Client(timeout=5)
        return _sync_client


@wsgi_app.get("/quote")
def quote_sync():
    start = time.perf_counter()
    r = sync_client().get(f"{upstream_url()}/quote")
    r.raise_for_status()
    took_ms = (time.perf_counter() - start) * 1000
    return jsonify({**r.json(), "client": "httpx.Client", "took_ms": round(took_ms, 1)})
