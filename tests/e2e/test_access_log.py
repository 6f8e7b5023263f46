"""Access log formats: Uvicorn's default line, Gunicorn's atoms, JSON, and --log-config."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import APPS, Juggler

GUNICORN_DEFAULT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def test_gunicorn_atoms(juggler: type[Juggler]) -> None:
    fmt = GUNICORN_DEFAULT + " %(m)s|%(U)s|%(q)s|%(H)s|%(B)s|%({X-Trace}i)s|%(D)s|%(p)s|100%%"
    j = juggler("proto_app:app", "--access-log-format", fmt).ready()
    r = httpx.get(
        f"{j.url}/info?x=1",
        headers={"user-agent": "probe/1", "referer": "http://r/", "x-trace": "t1"},
    )
    size = len(r.content)
    line = j.wait_for(r'"GET /info\?x=1 HTTP/1.1"').string
    pattern = (
        r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /info\?x=1 HTTP/1\.1" '
        rf'200 {size} "http://r/" "probe/1" '
        rf"GET\|/info\|x=1\|HTTP/1\.1\|{size}\|t1\|\d+\|<\d+>\|100%$"
    )
    assert re.match(pattern, line), line
    # A header the request lacks prints as "-".
    httpx.get(f"{j.url}/events")
    line = j.wait_for(r'"GET /events HTTP/1.1"').string
    assert ' "-" "python-httpx/' in line, line


def test_json_lines(juggler: type[Juggler]) -> None:
    j = juggler("proto_app:app", "--access-log-json").ready()
    httpx.get(f"{j.url}/info?a=b", headers={"x-request-id": 'id-"1"'})
    httpx.post(f"{j.url}/upload", content=b"x" * 10)
    first = json.loads(j.wait_for(r'^\{"time".*"path":"/info"').string)
    second = json.loads(j.wait_for(r'^\{"time".*"path":"/upload"').string)
    assert first["method"] == "GET" and first["query"] == "a=b" and first["status"] == 200
    assert first["request_id"] == 'id-"1"'
    assert first["client"].startswith("127.0.0.1:")
    assert first["http_version"] == "1.1"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first["time"])
    assert first["bytes"] > 0 and first["duration_ms"] >= 0 and first["pid"] > 0
    assert re.match(r"^[0-9a-f]{32}$", second["request_id"]), "generated"
    assert second["method"] == "POST" and second["query"] == ""


def test_wsgi_lines_count_the_body(juggler: type[Juggler]) -> None:
    j = juggler(
        "proto_app:wsgi", "--interface", "wsgi", "--access-log-format", "%(s)s %(B)s"
    ).ready()
    r = httpx.post(j.url + "/", content=b"abc")
    j.wait_for(rf"^200 {len(r.content)}$")


def test_log_config_takes_the_access_lines_through_python(
    juggler: type[Juggler], tmp_path: Path
) -> None:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"tagged": {"format": "TAGGED %(levelname)s %(message)s"}},
        "handlers": {
            "out": {
                "class": "logging.StreamHandler",
                "formatter": "tagged",
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {"juggler.access": {"handlers": ["out"], "level": "INFO", "propagate": False}},
    }
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    j = juggler("proto_app:app", "--log-config", str(path)).ready()
    httpx.get(f"{j.url}/info")
    j.wait_for(r'^TAGGED INFO 127\.0\.0\.1:\d+ - "GET /info HTTP/1\.1" 200$')
    ini = tmp_path / "logging.ini"
    ini.write_text(
        "[loggers]\nkeys=root,access\n[handlers]\nkeys=out\n[formatters]\nkeys=f\n"
        "[logger_root]\nhandlers=\n[logger_access]\nqualname=juggler.access\nhandlers=out\n"
        "propagate=0\nlevel=INFO\n[handler_out]\nclass=StreamHandler\nformatter=f\n"
        "args=(sys.stdout,)\n[formatter_f]\nformat=INI %(message)s\n"
    )
    k = juggler("proto_app:app", "--log-config", str(ini), "--access-log-format", "%(r)s").ready()
    httpx.get(f"{k.url}/info")
    k.wait_for(r"^INI GET /info HTTP/1\.1$")


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_answers_given_without_the_app_are_logged_too(
    juggler: type[Juggler], tmp_path: Path, interface: str
) -> None:
    """Static files, the health path and refusals are answered in Rust, before any app: each
    still gets its line, with the bytes of its body."""
    (tmp_path / "site.css").write_bytes(b"body{}" * 10)
    app = "proto_app:app" if interface == "asgi" else "proto_app:wsgi"
    j = juggler(
        app,
        "--interface",
        interface,
        "--access-log-format",
        "OWN %(r)s %(s)s %(B)s",
        "--static-path-route",
        "/static",
        "--static-path-mount",
        str(tmp_path),
        "--health-path",
        "/healthz",
        "--limit-request-body",
        "100",
    ).ready()
    assert httpx.get(f"{j.url}/static/site.css").status_code == 200
    j.wait_for(r"^OWN GET /static/site\.css HTTP/1\.1 200 60$")
    assert httpx.get(f"{j.url}/static/missing.css").status_code == 404
    j.wait_for(r"^OWN GET /static/missing\.css HTTP/1\.1 404 \d+$")
    assert httpx.get(f"{j.url}/healthz").status_code == 200
    j.wait_for(r"^OWN GET /healthz HTTP/1\.1 200 2$")
    assert httpx.post(f"{j.url}/upload", content=b"x" * 500).status_code == 413
    j.wait_for(r"^OWN POST /upload HTTP/1\.1 413 \d+$")


def test_answers_without_the_app_go_through_python_logging_when_configured(
    juggler: type[Juggler], tmp_path: Path
) -> None:
    ini = tmp_path / "logging.ini"
    ini.write_text(
        "[loggers]\nkeys=root,access\n[handlers]\nkeys=out\n[formatters]\nkeys=f\n"
        "[logger_root]\nhandlers=\n[logger_access]\nqualname=juggler.access\nhandlers=out\n"
        "propagate=0\nlevel=INFO\n[handler_out]\nclass=StreamHandler\nformatter=f\n"
        "args=(sys.stdout,)\n[formatter_f]\nformat=VIA-PYTHON %(message)s\n"
    )
    j = juggler("proto_app:app", "--log-config", str(ini), "--health-path", "/healthz").ready()
    assert httpx.get(f"{j.url}/healthz").status_code == 200
    j.wait_for(r'^VIA-PYTHON 127\.0\.0\.1:\d+ - "GET /healthz HTTP/1\.1" 200$')


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--access-log-format", "%(nope)s"], "unknown atom 'nope'"),
        (["--access-log-format", "%(h)s", "--access-log-json"], "cannot be used together"),
        (["--log-config", "/nonexistent/logging.json"], "--log-config /nonexistent/logging.json"),
    ],
)
def test_bad_logging_options_are_one_error(args: list[str], message: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "juggler", "proto_app:app", "--app-dir", str(APPS), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], out.stderr
