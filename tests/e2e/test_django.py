"""A real Django project (examples/django_app): sync views over WSGI, async views over ASGI."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import httpx
import pytest
from conftest import ROOT, start
from wsgi_servers import Server, juggler_only

PROJECT = ROOT / "examples" / "django_app"


def sqlite(path) -> dict[str, str]:
    """The project on the SQLite file ``path``, even in a shell that exported DATABASE_URL
    (which would switch it to PostgreSQL: tests/e2e/test_examples_postgres.py covers that)."""
    return {"NOTES_DB": str(path), "DATABASE_URL": ""}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("django") / "notes.sqlite3"
    env = {**os.environ, **sqlite(path)}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=PROJECT,
        env=env,
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture(scope="module")
def wsgi(db):
    """Django's WSGI handler (under Gunicorn with JUGGLER_TEST_REFERENCE=gunicorn)."""
    s = Server("mysite.wsgi:application", "--threads", "4", app_dir=PROJECT, env=sqlite(db)).ready()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def asgi(db):
    """Django's ASGI handler, always under juggler."""
    j = start("mysite.asgi:application", "--app-dir", str(PROJECT), env=sqlite(db))
    yield j
    j.kill()


@juggler_only
def test_interfaces_detected(wsgi, asgi):
    # Start-up lines, written before this test began.
    assert "Using the WSGI interface with up to 4 threads (chosen)" in wsgi.output
    assert "Using the ASGI interface (detected)" in asgi.output


def test_orm_sync_over_wsgi(wsgi):
    r = httpx.post(f"{wsgi.url}/notes/", json={"title": "first", "body": "over wsgi"})
    assert r.status_code == 201
    created = r.json()
    listed = httpx.get(f"{wsgi.url}/notes/").json()["notes"]
    assert created in listed
    assert httpx.post(f"{wsgi.url}/notes/", content=b"{").status_code == 422


def test_form_post_with_csrf_over_wsgi(wsgi):
    with httpx.Client(base_url=wsgi.url) as client:
        page = client.get("/form/")
        assert page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        assert client.cookies.get("csrftoken")
        r = client.post("/form/", data={"csrfmiddlewaretoken": token, "title": "from form"})
        assert r.status_code == 200 and r.text.startswith("saved ")
    # Without the token Django's CSRF protection refuses it.
    r = httpx.post(f"{wsgi.url}/form/", data={"title": "forged"})
    assert r.status_code == 403


def test_multipart_upload_over_wsgi(wsgi):
    data = os.urandom(3 * 1024 * 1024 + 7)
    r = httpx.post(
        f"{wsgi.url}/upload/",
        data={"note": "big"},
        files={"file": ("data.bin", data, "application/octet-stream")},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.json() == {
        "name": "data.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "big",
    }


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_streaming_http_response(request, server):
    j = request.getfixturevalue(server)
    with httpx.stream("GET", f"{j.url}/stream/", params={"n": 4}) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    assert lines == [f"row {i}" for i in range(4)]


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_file_response(request, server):
    j = request.getfixturevalue(server)
    r = httpx.get(f"{j.url}/file/")
    assert r.status_code == 200
    assert r.content == bytes(range(256)) * 4096
    assert r.headers["content-length"] == str(256 * 4096)


def test_async_orm_over_asgi(asgi, wsgi):
    r = httpx.post(f"{asgi.url}/async/notes/", json={"title": "async one"})
    assert r.status_code == 201
    body = httpx.get(f"{asgi.url}/async/notes/").json()
    assert body["async"] is True
    assert r.json() in body["notes"]
    # The same database, seen from the WSGI side.
    assert r.json() in httpx.get(f"{wsgi.url}/notes/").json()["notes"]


def test_unknown_url_is_a_404(wsgi):
    assert httpx.get(f"{wsgi.url}/nope/").status_code == 404
