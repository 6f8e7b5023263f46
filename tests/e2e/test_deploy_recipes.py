"""docs/deploy.md's nginx and HAProxy recipes, run as printed in front of juggler: real nginx
and HAProxy from Debian's packages, on loopback. Only addresses, ports, paths and the app's
name are replaced (``substitute`` fails if one is no longer in the recipe)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Juggler, free_port, read_response, start
from debian import require
from recipes import juggler_args, recipe, substitute
from websockets.sync.client import connect

#: The tests' client connects from this loopback address, not 127.0.0.1, so that the app can
#: only have learnt it from the proxy.
CLIENT_IP = "127.0.0.2"


def wait_listening(port: int, proc: subprocess.Popen, log: Path | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited: {proc.communicate()} {log.read_text() if log else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def client_socket(port: int) -> socket.socket:
    s = socket.socket()
    s.settimeout(10)
    s.bind((CLIENT_IP, 0))
    s.connect(("127.0.0.1", port))
    return s


def get_view(port: int) -> tuple[dict, int]:
    """GET / from CLIENT_IP through the proxy: the app's view and the client's own port."""
    with client_socket(port) as s:
        s.sendall(b"GET /?key=view HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        status, _, body = read_response(s)
        own = s.getsockname()[1]
    assert status.startswith(b"HTTP/1.1 200"), (status, body)
    return json.loads(body), own


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# nginx: the recipe is a conf.d file; the test wraps it in a main configuration of its own
# (pid file, logs and temporary files in the test's directory) as nginx.conf includes it.
NGINX_MAIN = """\
daemon off;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/juggler.conf;
}}
"""


def start_nginx(tmp: Path, sock: Path) -> tuple[subprocess.Popen, int]:
    binary = require("nginx", "nginx")
    port = free_port()
    conf = substitute(
        recipe("nginx.conf"),
        {"/run/juggler/juggler.sock": str(sock), "listen 80;": f"listen 127.0.0.1:{port};"},
    )
    (tmp / "juggler.conf").write_text(conf)
    # nginx's workers would switch to an unprivileged user that cannot open the socket.
    user = "user root;" if os.geteuid() == 0 else ""
    (tmp / "nginx.conf").write_text(NGINX_MAIN.format(dir=tmp, user=user))
    proc = subprocess.Popen(
        [binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_listening(port, proc, tmp / "error.log")
    return proc, port


def start_juggler_from(command: str, replacements: dict[str, str], *extra: str) -> Juggler:
    args = juggler_args(substitute(command, {"myapp:app": "guarded:app", **replacements}))
    return start(*args, *extra)


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("nginx")
    sock = tmp / "juggler.sock"
    j = start_juggler_from(
        recipe("nginx-juggler-command"),
        {"/run/juggler/juggler.sock": str(sock), "--workers 4": "--workers 2"},
        "--max-requests",
        "150",
    )
    proc, port = start_nginx(tmp, sock)
    yield {"juggler": j, "port": port}
    stop(proc)
    j.kill()


def test_nginx_http_and_the_clients_address(behind_nginx: dict) -> None:
    view, _ = get_view(behind_nginx["port"])
    assert view["client"][0] == CLIENT_IP
    assert view["scheme"] == "http"
    assert view["host"] == [f"example.com:{behind_nginx['port']}"]


def test_nginx_passes_websockets_through(behind_nginx: dict) -> None:
    sock = client_socket(behind_nginx["port"])
    with connect(f"ws://127.0.0.1:{behind_nginx['port']}/ws", sock=sock) as ws:
        view = json.loads(ws.recv(timeout=10))
    assert view["client"][0] == CLIENT_IP
    assert view["scheme"] == "ws"


class Load:
    """Clients with kept-alive connections through the proxy, each request a 10 ms handler;
    bounded in requests, and stopped by the test."""

    def __init__(self, port: int, clients: int = 6, most: int = 3000) -> None:
        self.url = f"http://127.0.0.1:{port}/sleep?s=0.01"
        self.statuses: list[int | str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._most = most
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as c:
            while not self._stop.is_set():
                try:
                    status: int | str = c.get(self.url).status_code
                except httpx.HTTPError as e:
                    status = f"{type(e).__name__}: {e}"
                with self._lock:
                    self.statuses.append(status)
                    if len(self.statuses) >= self._most:
                        self._stop.set()

    def count(self) -> int:
        with self._lock:
            return len(self.statuses)

    def wait_more(self, n: int) -> None:
        goal = self.count() + n
        deadline = time.monotonic() + 60
        while self.count() < goal and not self._stop.is_set():
            assert time.monotonic() < deadline, "the load stalled"
            time.sleep(0.02)

    def finish(self) -> list[int | str]:
        self._stop.set()
        for t in self._threads:
            t.join(60)
        return self.statuses


def test_nginx_loses_nothing_while_juggler_reloads_and_recycles(behind_nginx: dict) -> None:
    j: Juggler = behind_nginx["juggler"]
    load = Load(behind_nginx["port"])
    try:
        load.wait_more(100)
        for _ in range(2):
            old = set(j.workers())
            j.proc.send_signal(signal.SIGHUP)
            for pid in old:
                j.wait_for(rf"Worker \[{pid}\] stopped \(exit code 0\)", timeout=60)
            load.wait_more(100)
        # --max-requests 150 on 2 workers: the load has recycled one by now, or does soon.
        j.wait_for(r"Recycling worker \[\d+\] after \d+ requests", timeout=60)
        load.wait_more(100)
    finally:
        statuses = load.finish()
    failed = [s for s in statuses if s != 200]
    print(f"through nginx: {len(statuses)} requests, {len(failed)} not 200")
    assert len(statuses) >= 400
    assert failed == [], f"{len(failed)} of {len(statuses)} failed: {failed[:5]}"


@pytest.fixture(scope="module")
def behind_haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    binary = require("haproxy", "haproxy")
    j = start_juggler_from(
        recipe("haproxy-juggler-command"), {"--port 8000": "--port 0", "--workers 4": ""}
    )
    port = free_port()
    cfg = tmp_path_factory.mktemp("haproxy") / "haproxy.cfg"
    cfg.write_text(
        substitute(
            recipe("haproxy.cfg"),
            {"bind :80": f"bind 127.0.0.1:{port}", "127.0.0.1:8000": f"127.0.0.1:{j.port}"},
        )
    )
    proc = subprocess.Popen(
        [binary, "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    wait_listening(port, proc)
    yield {"juggler": j, "port": port}
    stop(proc)
    j.kill()


def test_haproxy_passes_the_clients_address_and_port(behind_haproxy: dict) -> None:
    view, own_port = get_view(behind_haproxy["port"])
    assert view["client"] == [CLIENT_IP, own_port]


def test_haproxy_checks_health_through_its_proxy_header(behind_haproxy: dict) -> None:
    behind_haproxy["juggler"].wait_for(re.escape("GET /healthz"), timeout=20)


def test_haproxy_passes_websockets_through(behind_haproxy: dict) -> None:
    sock = client_socket(behind_haproxy["port"])
    own_port = sock.getsockname()[1]
    with connect(f"ws://127.0.0.1:{behind_haproxy['port']}/ws", sock=sock) as ws:
        view = json.loads(ws.recv(timeout=10))
    assert view["client"] == [CLIENT_IP, own_port]
