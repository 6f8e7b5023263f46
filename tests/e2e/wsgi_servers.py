"""Starting apps under juggler, or under a reference server: Gunicorn to check the WSGI tests'
expectations, and Gunicorn or Uvicorn for the differential tests in tests/e2e/compat/.

``JUGGLER_TEST_REFERENCE=gunicorn pytest tests/e2e/test_wsgi.py`` runs the WSGI, Django and Flask
tests against ``gunicorn -k gthread`` instead of juggler (``pip install gunicorn``); tests of
juggler's own behaviour are skipped there (``juggler_only``).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import APPS, READY, Juggler

REFERENCE = os.environ.get("JUGGLER_TEST_REFERENCE", "")
juggler_only = pytest.mark.skipif(bool(REFERENCE), reason=f"juggler-specific, not {REFERENCE}")


def reference_differs(why: str) -> pytest.MarkDecorator:
    """For a test the reference server is known to fail: it must fail there, and pass here."""
    return pytest.mark.xfail(bool(REFERENCE), reason=f"{REFERENCE}: {why}", strict=True)


GUNICORN_READY = re.compile(r"Listening at: (http://\S+)")
UVICORN_READY = re.compile(r"Uvicorn running on (http://\S+)")


class Server(Juggler):
    """A server process serving an app (WSGI unless ``interface`` says otherwise) under juggler
    or ``reference``; same helpers as conftest's Juggler."""

    def __init__(
        self,
        app: str,
        *args: str,
        app_dir: Path = APPS,
        env: dict | None = None,
        interface: str = "wsgi",
        reference: str = REFERENCE,
    ) -> None:
        self.ready_rx = READY
        self.reference = reference
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        if reference == "gunicorn":
            cmd = gunicorn_command(app, args, app_dir, full_env)
            self.ready_rx = GUNICORN_READY
        elif reference == "uvicorn":
            if args:
                raise ValueError(f"no Uvicorn options mapped yet: {args}")
            cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "0"]
            cmd += ["--app-dir", str(app_dir), "--lifespan", "auto"]
            self.ready_rx = UVICORN_READY
        else:
            cmd = [sys.executable, "-m", "juggler", "--interface", interface, app, *args]
            cmd += ["--port", "0", "--app-dir", str(app_dir)]
        # A session of its own: Gunicorn's worker goes down with its group.
        self._launch(cmd, full_env, app_dir, new_session=True)

    def ready(self, timeout: float = 30) -> Server:
        self.url = self.wait_for(self.ready_rx, timeout).group(1)
        if self.reference == "gunicorn":
            self.wait_for("Booting worker", timeout)
        return self

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def gunicorn_command(app: str, args: tuple[str, ...], app_dir: Path, env: dict) -> list[str]:
    """Juggler's options, as far as Gunicorn has them."""
    cmd = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-b", "127.0.0.1:0"]
    cmd += ["--chdir", str(app_dir), "--access-logfile", "-", "--threads", "4"]
    cmd += ["--no-control-socket"]
    it = iter(args)
    for a in it:
        if a == "--threads":
            cmd += ["--threads", next(it)]
        elif a == "--root-path":
            env["SCRIPT_NAME"] = next(it)
        elif a == "--timeout-keep-alive":
            cmd += ["--keep-alive", next(it)]
        elif a == "--timeout-graceful-shutdown":
            cmd += ["--graceful-timeout", next(it)]
        elif a == "--no-access-log":
            cmd.remove("--access-logfile")
            cmd.remove("-")
        else:
            raise ValueError(f"no Gunicorn equivalent for {a}: mark the test juggler_only")
    return [*cmd, app]


@pytest.fixture
def wsgi() -> Iterator[type[Server]]:
    """Starts WSGI servers for one test and makes sure none outlives it."""
    started: list[Server] = []

    class Tracked(Server):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    yield Tracked
    for s in started:
        s.kill()
