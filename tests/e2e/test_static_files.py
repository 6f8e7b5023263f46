"""--static-path-route/--static-path-mount: files served by juggler itself, safely."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Juggler, start


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    public = root / "public"
    (public / "css").mkdir(parents=True)
    (public / "index.html").write_text("<h1>hi</h1>")
    (public / "css" / "site.css").write_text("body{color:red}")
    (public / "data.bin").write_bytes(bytes(range(256)) * 40)
    (public / "a b.txt").write_text("spaced")
    (root / "secret.txt").write_text("do not serve")
    os.symlink(root / "secret.txt", public / "escape.txt")
    os.symlink(public / "index.html", public / "inside.html")
    return public


@pytest.fixture(scope="module")
def server(files: Path) -> Iterator[Juggler]:
    j = start("raw:app", "--static-path-route", "/static", "--static-path-mount", str(files))
    yield j
    j.kill()


def raw_get(port: int, target: str) -> bytes:
    """Sends the request target exactly as given (httpx would normalise the dots)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_files_with_types_and_validators(server: Juggler, files: Path) -> None:
    r = httpx.get(f"{server.url}/static/css/site.css")
    assert r.status_code == 200 and r.text == "body{color:red}"
    assert r.headers["content-type"] == "text/css; charset=utf-8"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["server"] == "juggler"
    etag, modified = r.headers["etag"], r.headers["last-modified"]
    r = httpx.get(f"{server.url}/static/css/site.css", headers={"if-none-match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    r = httpx.get(f"{server.url}/static/css/site.css", headers={"if-modified-since": modified})
    assert r.status_code == 304
    r = httpx.get(f"{server.url}/static/css/site.css", headers={"if-none-match": '"other"'})
    assert r.status_code == 200
    assert httpx.get(f"{server.url}/static/a%20b.txt").text == "spaced"
    assert (
        httpx.get(f"{server.url}/static/index.html").headers["content-type"].startswith("text/html")
    )
    assert httpx.get(f"{server.url}/static/inside.html").text == "<h1>hi</h1>"


def test_ranges_and_head(server: Juggler) -> None:
    url = f"{server.url}/static/data.bin"
    whole = bytes(range(256)) * 40
    r = httpx.get(url, headers={"range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == whole[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(whole)}"
    r = httpx.get(url, headers={"range": "bytes=-5"})
    assert r.status_code == 206 and r.content == whole[-5:]
    r = httpx.get(url, headers={"range": f"bytes={len(whole)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(whole)}"
    r = httpx.get(url, headers={"range": "bytes=0-1", "if-range": '"stale"'})
    assert r.status_code == 200 and r.content == whole
    r = httpx.head(url)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == str(len(whole))
    assert httpx.post(url).status_code == 405


@pytest.mark.parametrize(
    "target",
    [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/css/..%2f..%2fsecret.txt",
        "/static/escape.txt",  # a symlink pointing outside
        "/static/index.html%00.css",
        "/static/css",  # a directory
        "/static/nope.txt",
    ],
)
def test_nothing_outside_the_directory(server: Juggler, target: str) -> None:
    answer = raw_get(server.port, target)
    assert b"do not serve" not in answer
    status = answer.split(b"\r\n", 1)[0]
    assert status in (b"HTTP/1.1 404 Not Found", b"HTTP/1.1 400 Bad Request"), answer[:200]


def test_other_paths_reach_the_app(server: Juggler) -> None:
    r = httpx.get(f"{server.url}/staticx/a")
    assert r.headers.get("content-type") != "text/css; charset=utf-8"
    server.wait_for('"GET /staticx/a HTTP/1.1"')


def test_bad_mount_is_one_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import APPS

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "juggler",
            "raw:app",
            "--app-dir",
            str(APPS),
            "--static-path-route",
            "/s",
            "--static-path-mount",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--static-path-mount" in out.stderr
