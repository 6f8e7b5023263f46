"""Starting juggler as a real subprocess on a free port and talking to it over real sockets."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
APPS = ROOT / "tests" / "e2e" / "apps"
READY = re.compile(r"juggler running on (https?://[^ ]+|unix socket [^ ]+)")


class Juggler:
    """A juggler process; its output is collected line by line so tests can wait on it."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        port: bool = True,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        cmd = [sys.executable, "-m", "juggler", *args]
        if "--app-dir" not in args:
            cmd += ["--app-dir", str(APPS)]
        if port and not any(a in ("--uds", "--fd", "--port") for a in args):
            cmd += ["--port", "0"]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._launch(cmd, full_env, APPS, pass_fds=pass_fds)

    def _launch(
        self,
        cmd: list[str],
        env: dict[str, str],
        cwd: Path,
        pass_fds: tuple[int, ...] = (),
        new_session: bool = False,
    ) -> None:
        """Starts ``cmd`` and collects its output line by line."""
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(cwd),
            pass_fds=pass_fds,
            start_new_session=new_session,
        )
        self.lines: list[str] = []
        #: Where the current test's output begins (moved on for servers shared by tests).
        self.test_start = 0
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._pump, args=(s,), daemon=True)
            for s in (self.proc.stdout, self.proc.stderr)
        ]
        for t in self._readers:
            t.start()
        self.url = ""

    def _pump(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 20) -> re.Match[str]:
        """Waits for a line matching ``pattern``, written since the current test began (a
        shared server's earlier lines cannot satisfy it); fails with the output so far."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = self.test_start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                exited = self.proc.poll() is not None and not any(
                    t.is_alive() for t in self._readers
                )
                if left <= 0 or exited:
                    raise AssertionError(f"no line matching {rx.pattern!r}; output:\n{self.output}")
                self._cond.wait(min(left, 0.5))

    def mark_test_start(self) -> None:
        with self._cond:
            self.test_start = len(self.lines)

    def ready(self, timeout: float = 30) -> Juggler:
        m = self.wait_for(READY, timeout)
        self.url = m.group(1)
        return self

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            for t in self._readers:
                t.join(5)

    def kill(self) -> None:
        # Workers would notice the supervisor's death and drain, but one stuck in a CPU
        # loop never would: they go first.
        for pid in children(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def workers(self) -> list[int]:
        """The pids of the supervisor's worker processes (and its file watcher, if any)."""
        return children(self.proc.pid)


def free_port() -> int:
    """A loopback port that is free now, for a program that must be told one (a database,
    systemd-socket-activate, HAProxy's configuration)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def start(*args: str, **kwargs) -> Juggler:
    return Juggler(*args, **kwargs).ready()


@pytest.fixture
def juggler() -> Iterator[type[Juggler]]:
    """Starts servers for one test and makes sure none outlives it."""
    started: list[Juggler] = []

    class Tracked(Juggler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    yield Tracked
    for j in started:
        j.kill()


@pytest.fixture(autouse=True)
def _log_window_per_test(request: pytest.FixtureRequest) -> None:
    """A server shared between tests: its lines before this test do not count for wait_for."""
    for name in request.fixturenames:
        if name.startswith("_"):
            continue
        value = request.getfixturevalue(name)
        if isinstance(value, Juggler):
            value.mark_test_start()


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The DSN of a fresh database on a real PostgreSQL, started by scripts/postgres.sh (which
    installs the server from Debian's packages when it is missing and we are root). Skips only
    when it cannot be installed, and then fails instead if JUGGLER_REQUIRE_POSTGRES is set (as
    in CI). A server this session started is stopped at its end."""
    script = subprocess.run(
        ["bash", str(ROOT / "scripts" / "postgres.sh")], capture_output=True, text=True
    )
    if script.returncode == 3 and not os.environ.get("JUGGLER_REQUIRE_POSTGRES"):
        pytest.skip(f"PostgreSQL cannot be installed here: {script.stderr.strip()}")
    assert script.returncode == 0, script.stderr
    base = re.search(r"DATABASE_URL=(\S+)", script.stdout).group(1)
    started = "JUGGLER_PG_STARTED=1" in script.stdout
    import psycopg

    # A database of its own per session: no rows left over from a developer's runs.
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS juggler_test WITH (FORCE)")
        conn.execute("CREATE DATABASE juggler_test")
    yield base.rsplit("/", 1)[0] + "/juggler_test"
    if started:
        subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop"], check=True)


def mysql_args(url: str) -> dict:
    """PyMySQL's connection arguments from a ``mysql://user:password@host:port/db`` URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return {
        "host": parts.hostname,
        "port": parts.port,
        "user": parts.username,
        "password": parts.password,
        "database": parts.path.lstrip("/") or None,
        "autocommit": True,
    }


@pytest.fixture(scope="session")
def mariadb() -> Iterator[str]:
    """The URL (``mysql://...``) of a fresh database on a real MariaDB, started by
    scripts/mariadb.sh (which installs the server from Debian's packages when it is missing and
    we are root). Skips only when it cannot be installed, and then fails instead if
    JUGGLER_REQUIRE_MARIADB is set (as in CI). A server this session started is stopped at its
    end."""
    script = subprocess.run(
        ["bash", str(ROOT / "scripts" / "mariadb.sh")], capture_output=True, text=True
    )
    if script.returncode == 3 and not os.environ.get("JUGGLER_REQUIRE_MARIADB"):
        pytest.skip(f"MariaDB cannot be installed here: {script.stderr.strip()}")
    assert script.returncode == 0, script.stderr
    base = re.search(r"MYSQL_URL=(\S+)", script.stdout).group(1)
    started = "JUGGLER_MY_STARTED=1" in script.stdout
    import pymysql

    # A database of its own per session: no rows left over from a developer's runs.
    conn = pymysql.connect(**{**mysql_args(base), "database": None})
    with conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS juggler_test")
        cur.execute("CREATE DATABASE juggler_test")
    yield base.rsplit("/", 1)[0] + "/juggler_test"
    if started:
        subprocess.run(["bash", str(ROOT / "scripts" / "mariadb.sh"), "stop"], check=True)


@pytest.fixture(scope="session")
def raw_server() -> Iterator[Juggler]:
    """One shared server for the raw app; tests against it must not change its state."""
    j = start("raw:app")
    yield j
    j.kill()


def raw_request(
    port: int, data: bytes, *, timeout: float = 10, read_until_close: bool = True
) -> bytes:
    """Sends bytes as they are and returns everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if not read_until_close:
            return s.recv(65536)
        return recv_until_close(s)


def recv_until_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or resets it)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


#: Bytes read past the end of a response, kept for the next ``read_response`` on that socket:
#: pipelined responses often arrive in one read.
_read_ahead: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """Reads one Content-Length or chunked response from a keep-alive socket; what comes after
    it (the next pipelined response) is kept for the next call."""
    status, headers, body, rest = _read_one(sock, _read_ahead.pop(sock, b""))
    if rest:
        _read_ahead[sock] = rest
    return status, headers, body


def _read_one(sock: socket.socket, buf: bytes) -> tuple[bytes, dict[str, str], bytes, bytes]:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed mid-head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            rest += chunk
        return status_line.encode(), headers, rest[:n], rest[n:]
    if headers.get("transfer-encoding") == "chunked":

        def more() -> bytes:
            chunk = sock.recv(65536)
            if not chunk:
                # A chunked body cut short: the server closed it to say the response broke.
                raise ConnectionError(f"closed mid-chunked-body after {body!r}")
            return chunk

        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += more()
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            while len(rest) < size + 2:
                rest += more()
            body += rest[:size]
            rest = rest[size + 2 :]
            if size == 0:
                return status_line.encode(), headers, body, rest
    # Neither length nor chunks: the body runs to the close.
    return status_line.encode(), headers, rest, b""
