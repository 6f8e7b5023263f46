"""`http.response.pathsend`: files sent by juggler itself, never read through Python."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

GIB = 1 << 30


def pathsend_url(server, path: Path, **extra: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"path": quote(str(path)), **extra}.items())
    return f"{server.url}/pathsend?{query}"


def test_pathsend_sends_the_file_with_its_content_length(raw_server, tmp_path):
    content = bytes(range(256)) * 4000 + b"tail"  # several read chunks, not a multiple
    f = tmp_path / "data.bin"
    f.write_bytes(content)
    r = httpx.get(pathsend_url(raw_server, f))
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(content))
    assert "transfer-encoding" not in r.headers
    assert r.content == content
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    r = httpx.get(pathsend_url(raw_server, empty))
    assert (r.status_code, r.headers["content-length"], r.content) == (200, "0", b"")


def test_pathsend_keeps_a_matching_content_length_and_refuses_a_wrong_one(raw_server, tmp_path):
    f = tmp_path / "five"
    f.write_bytes(b"hello")
    with httpx.Client() as client:
        r = client.get(pathsend_url(raw_server, f, cl="5"))
        assert (r.status_code, r.content) == (200, b"hello")
        r = client.get(pathsend_url(raw_server, f, cl="9"))
        assert r.status_code == 500
        raw_server.wait_for("has 5 bytes but its Content-Length says 9")
        # Refused before anything was written: the connection is still good.
        assert client.get(pathsend_url(raw_server, f)).content == b"hello"


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda d: d / "missing", "FileNotFoundError"),
        (lambda d: d, "IsADirectoryError"),
    ],
)
def test_pathsend_of_a_missing_file_or_a_directory_is_a_logged_500(
    raw_server, tmp_path, make, error
):
    r = httpx.get(pathsend_url(raw_server, make(tmp_path)))
    assert r.status_code == 500
    raw_server.wait_for(rf"{error}: \[Errno \d+\] http\.response\.pathsend: ")


def test_starlette_file_response_uses_pathsend(juggler, tmp_path):
    # Starlette sends http.response.pathsend when the scope offers it, and reads the file
    # itself (through anyio, in Python) otherwise.
    f = tmp_path / "page.txt"
    f.write_bytes(b"from a file\n" * 1000)
    j = juggler("starlette_app:app", env={"STARLETTE_FILE": str(f)}).ready()
    r = httpx.get(f"{j.url}/file")
    assert r.status_code == 200
    assert r.content == f.read_bytes()
    assert r.headers["content-length"] == str(f.stat().st_size)
    assert httpx.get(f"{j.url}/pathsends").text == "1"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.timeout(120)
def test_a_1gib_file_is_sent_with_flat_memory(raw_server, tmp_path):
    f = tmp_path / "sparse.bin"
    with open(f, "wb") as out:
        out.truncate(GIB)  # sparse: no disk used, reads as zeros
    (worker,) = raw_server.workers()
    before = rss_kib(worker)
    peak = before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.02):
            peak = max(peak, rss_kib(worker))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    total = 0
    try:
        with httpx.stream("GET", pathsend_url(raw_server, f), timeout=60) as r:
            assert r.headers["content-length"] == str(GIB)
            for chunk in r.iter_raw(1 << 20):
                total += len(chunk)
    finally:
        stop.set()
        sampler.join()
    assert total == GIB
    grown_mib = (peak - before) / 1024
    print(f"worker RSS {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB")
    assert grown_mib < 32, f"worker RSS grew by {grown_mib:.1f} MiB for a 1 GiB file"
