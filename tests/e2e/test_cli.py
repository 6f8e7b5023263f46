"""The command line and juggler.run(): options, errors as one readable line, exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import juggler
import pytest
from conftest import APPS, ROOT


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    return subprocess.run(
        [sys.executable, "-m", "juggler", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(APPS),
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(proc, *fragments: str, code: int | None = None):
    assert proc.returncode != 0
    if code is not None:
        assert proc.returncode == code
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("juggler: error: ")
    for f in fragments:
        assert f in err
    assert "panicked" not in err and "Traceback" not in err


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"juggler {juggler.__version__}"


def test_help_lists_uvicorn_style_options():
    out = run_cli("--help").stdout
    for flag in (
        "--host",
        "--port",
        "--uds",
        "--fd",
        "--root-path",
        "--lifespan",
        "--log-level",
        "--access-log",
        "--no-access-log",
        "--timeout-keep-alive",
        "--limit-concurrency",
        "--backlog",
        "--factory",
        "--app-dir",
        "--loop",
        "--header",
        "--no-server-header",
        "--no-date-header",
        "--timeout-graceful-shutdown",
    ):
        assert flag in out


@pytest.mark.parametrize(
    ("args", "fragments", "code"),
    [
        (("raw:app", "--port", "notaport"), ("--port", "notaport"), 2),
        (("raw:app", "--port", "70000"), ("--port",), 2),
        (("raw:app", "--loop", "tornado"), ("--loop", "tornado"), 2),
        (("raw:app", "--lifespan", "maybe"), ("--lifespan",), 2),
        (("raw:app", "--limit-concurrency", "0"), ("--limit-concurrency",), 2),
        (("raw:app", "--header", "novalue"), ("--header", "NAME:VALUE"), 2),
        (("raw:app", "--timeout-keep-alive", "-1"), ("--timeout-keep-alive",), 2),
        (("raw:app", "--interface", "cgi"), ("--interface", "cgi", "auto, asgi, wsgi"), 2),
        (("raw:app", "--threads", "0"), ("--threads", "at least 1"), 2),
        (("raw:app", "--threads", "many"), ("--threads", "many"), 2),
        (("raw:app", "--queue-size", "-1"), ("--queue-size", "at least 1"), 2),
        (("raw:app", "--timeout-write", "-1"), ("--timeout-write", "non-negative"), 2),
        (("raw:app", "--no-such-flag"), ("--no-such-flag",), 2),
        ((), ("APP",), 2),
        (("no_such_module:app",), ('Could not import module "no_such_module"',), 4),
        (("raw:missing",), ('Attribute "missing" not found in module "raw"',), 4),
        (("raw",), ("must be in format",), 4),
        (("broken_syntax:app",), ("SyntaxError", "broken_syntax.py", "line 1"), 4),
        (("broken_import:app",), ("ModuleNotFoundError", "a_module_that_does_not_exist"), 4),
        (("lifespans:with_state", "--factory"), ("Error calling factory", "TypeError"), 4),
        (("raw:EVENTS",), ("not callable",), 4),
        (("raw:app", "--workers", "0"), ("--workers", "at least 1"), 2),
        (("raw:app", "--max-requests", "0"), ("--max-requests", "at least 1"), 2),
        (("raw:app", "--max-requests-jitter", "-5"), ("--max-requests-jitter",), 2),
        (("raw:app", "--timeout-worker", "-1"), ("--timeout-worker", "non-negative"), 2),
        (("raw:app", "--reuse-port", "--uds", "/tmp/x.sock"), ("--reuse-port", "--uds"), 2),
        (("raw:app", "--reload", "--preload"), ("--reload and --preload",), 2),
        (("raw:app", "--pid", "/no/such/dir/j.pid"), ("--pid", "/no/such/dir/j.pid"), 2),
        # Several workers, one error line: the first worker starts alone.
        (("no_such_module:app", "--workers", "3"), ("no_such_module",), 4),
    ],
)
def test_bad_input_gives_one_readable_line(args, fragments, code):
    assert_one_line_error(
        run_cli(*args, "--app-dir", str(APPS)) if args else run_cli(), *fragments, code=code
    )


def test_bad_env_var_names_the_variable():
    proc = run_cli("raw:app", env={"JUGGLER_PORT": "eighty"})
    assert_one_line_error(proc, "JUGGLER_PORT", code=2)


def test_port_in_use_is_one_line(juggler):
    j = juggler("raw:app").ready()
    proc = run_cli("raw:app", "--port", str(j.port))
    assert_one_line_error(proc, f"127.0.0.1:{j.port}", code=1)


def test_python_dash_m_and_console_script_both_serve(juggler):
    j = juggler("hello_env:app").ready()
    assert httpx.get(j.url).text == "hello"
    script = os.path.join(os.path.dirname(sys.executable), "juggler")
    proc = subprocess.Popen(
        [script, "hello_env:app", "--port", "0", "--app-dir", str(APPS)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
    )
    try:
        for line in proc.stderr:
            if "juggler running on" in line:
                url = line.split("running on ")[1].split()[0]
                assert httpx.get(url).text == "hello"
                break
        else:
            pytest.fail("console script never became ready")
    finally:
        proc.terminate()
        proc.wait(10)


def test_factory_and_attribute_path(juggler):
    j = juggler("lifespans:factory", "--factory").ready()
    assert httpx.get(j.url).text == "[('db', 'connected')]"
    j2 = juggler("lifespans:Holder.app").ready()
    assert httpx.get(j2.url).text == "[('db', 'connected')]"


def test_env_vars_configure_the_server(juggler):
    j = juggler(
        "raw:app",
        env={
            "JUGGLER_ROOT_PATH": "/api",
            "JUGGLER_SERVER_HEADER": "false",
            "JUGGLER_HEADER": "x-env:1",
        },
    ).ready()
    r = httpx.get(f"{j.url}/scope")
    assert r.json()["root_path"] == "/api"
    assert r.json()["path"] == "/api/scope"
    assert r.json()["raw_path"] == "/scope"
    assert "server" not in r.headers
    assert r.headers["x-env"] == "1"


def test_cli_flag_beats_env_var(juggler):
    j = juggler("raw:app", "--root-path", "/cli", env={"JUGGLER_ROOT_PATH": "/env"}).ready()
    assert httpx.get(f"{j.url}/scope").json()["root_path"] == "/cli"


def test_juggler_run_serves_an_app_object(tmp_path, juggler):
    script = tmp_path / "serve.py"
    script.write_text(
        "import juggler\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'from run'})\n"
        "juggler.run(app, port=0, header=[('x-run', 'yes')], access_log=False)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "juggler running on" in line:
                url = line.split("running on ")[1].split()[0]
                r = httpx.get(url)
                assert r.text == "from run" and r.headers["x-run"] == "yes"
                break
        else:
            pytest.fail("juggler.run never became ready")
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_juggler_run_rejects_unknown_option():
    with pytest.raises(TypeError, match="unknown option 'prot'"):
        juggler.run("raw:app", prot=1)
    with pytest.raises(TypeError, match="--port"):
        juggler.run("raw:app", port="x")


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"interface": "cgi"}, "--interface"),
        ({"threads": 0}, "--threads"),
        ({"threads": 2.5}, "--threads"),
        ({"queue_size": -1}, "--queue-size"),
        ({"timeout_write": -1}, "--timeout-write"),
    ],
)
def test_juggler_run_rejects_bad_interface_options(options, flag):
    with pytest.raises(TypeError, match=re.escape(flag)):
        juggler.run("raw:app", **options)


def test_help_lists_interface_and_wsgi_options():
    out = run_cli("--help").stdout
    for text in (
        "--interface",
        "--threads",
        "--queue-size",
        "--timeout-write",
        "JUGGLER_INTERFACE",
        "JUGGLER_THREADS",
        "JUGGLER_QUEUE_SIZE",
        "JUGGLER_TIMEOUT_WRITE",
    ):
        assert text in out


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"JUGGLER_INTERFACE": "cgi"}, ("JUGGLER_INTERFACE", "cgi")),
        ({"JUGGLER_THREADS": "0"}, ("JUGGLER_THREADS", "at least 1")),
        ({"JUGGLER_QUEUE_SIZE": "-1"}, ("JUGGLER_QUEUE_SIZE",)),
        ({"JUGGLER_TIMEOUT_WRITE": "-1"}, ("JUGGLER_TIMEOUT_WRITE",)),
        ({"JUGGLER_WORKERS": "none"}, ("JUGGLER_WORKERS", "none")),
        ({"WEB_CONCURRENCY": "0"}, ("WEB_CONCURRENCY", "at least 1")),
    ],
)
def test_bad_interface_env_vars_name_the_variable(env, fragments):
    assert_one_line_error(run_cli("raw:app", env=env), *fragments, code=2)


@pytest.mark.parametrize(
    ("args", "env", "fragments"),
    [
        (
            ("raw:app", "--interface", "wsgi"),
            {},
            (
                "--interface wsgi was given, but 'raw:app' is an ASGI app "
                "(async callable taking scope, receive, send)",
            ),
        ),
        (
            ("raw:app",),
            {"JUGGLER_INTERFACE": "wsgi"},
            ("--interface wsgi was given, but 'raw:app' is an ASGI app",),
        ),
        (
            ("iface_flask:app", "--interface", "asgi"),
            {},
            (
                "--interface asgi was given, but 'iface_flask:app' is a WSGI app "
                "(plain callable taking environ, start_response)",
            ),
        ),
        (
            ("iface_django:asgi_app", "--interface", "wsgi"),
            {},
            ("but 'iface_django:asgi_app' is an ASGI app",),
        ),
        (
            ("iface_django:wsgi_app", "--interface", "asgi"),
            {},
            ("but 'iface_django:wsgi_app' is a WSGI app",),
        ),
        (
            ("iface_apps:ambiguous",),
            {},
            (
                "cannot tell whether 'iface_apps:ambiguous' is an ASGI or a WSGI app",
                "(*args)",
                "pass --interface asgi or --interface wsgi",
            ),
        ),
        # Fatal errors are logged at CRITICAL, so the quietest log level still shows them.
        (
            ("iface_apps:ambiguous", "--log-level", "critical"),
            {},
            ("cannot tell whether 'iface_apps:ambiguous'",),
        ),
    ],
)
def test_interface_mismatch_or_doubt_is_one_line_and_exit_4(args, env, fragments):
    if any(a.startswith(("iface_flask", "iface_django")) for a in args):
        pytest.importorskip(args[0].split(":")[0].removeprefix("iface_"))
    proc = run_cli(*args, "--app-dir", str(APPS), env=env)
    assert_one_line_error(proc, *fragments, code=4)
    assert "juggler running on" not in proc.stderr


def test_fatal_errors_go_through_the_error_logger():
    # iface_logged adds its own handler to juggler.error on import, then fails detection.
    proc = run_cli("iface_logged:app", "--app-dir", str(APPS))
    assert_one_line_error(proc, "cannot tell whether 'iface_logged:app'", code=4)
    assert proc.stdout.splitlines() == [
        "CAPTURED CRITICAL fatal=True " + proc.stderr.strip().removeprefix("juggler: error: ")
    ]


def test_fatal_errors_are_seen_when_the_app_disabled_juggler_loggers():
    proc = run_cli("iface_silenced:app", "--app-dir", str(APPS))
    assert_one_line_error(proc, "cannot tell whether 'iface_silenced:app'", code=4)


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (("raw:app",), {}, "Using the ASGI interface (detected)"),
        (("raw:app", "--interface", "asgi"), {}, "Using the ASGI interface (chosen)"),
        (("raw:app",), {"JUGGLER_INTERFACE": "asgi"}, "Using the ASGI interface (chosen)"),
        (
            ("iface_apps:wsgi_app",),
            {},
            "Using the WSGI interface with up to 32 threads (detected)",
        ),
        (
            ("iface_apps:wsgi_object", "--threads", "4"),
            {},
            "Using the WSGI interface with up to 4 threads (detected)",
        ),
        (
            ("iface_apps:ambiguous",),
            {"JUGGLER_INTERFACE": "wsgi", "JUGGLER_THREADS": "8"},
            "Using the WSGI interface with up to 8 threads (chosen)",
        ),
    ],
)
def test_startup_line_names_the_interface(juggler, args, env, line):
    # Only the line logged before the worker starts: serving WSGI is tested elsewhere.
    j = juggler(*args, "--lifespan", "off", env=env)
    j.wait_for("^INFO: +" + re.escape(line) + "$")
    j.kill()
