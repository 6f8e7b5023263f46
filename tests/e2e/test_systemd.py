"""juggler under systemd, without systemd as PID 1: socket activation through Debian's
``systemd-socket-activate`` (which listens, and executes the command with ``LISTEN_FDS`` on
the first connection), and sd_notify through a datagram socket of the test's own that plays
systemd's part. The unit files are read from ``docs/deploy.md`` (``recipes.py``) and run as
written, but for the port, paths and app they name."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import APPS, ROOT, Juggler, free_port
from recipes import recipe, substitute

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate is not installed (Debian's systemd package)",
)

APP = "systemd_app:app"
WAIT = 30.0


def directive(unit: str, key: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^{key}=(.*)$", unit, re.M)]


class Notifications:
    """The test's NOTIFY_SOCKET: what juggler tells systemd, one datagram at a time."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.received: list[list[str]] = []

    def next(self, timeout: float = WAIT) -> list[str]:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no notification; received so far: {self.received}") from None
        lines = data.decode().splitlines()
        self.received.append(lines)
        return lines

    def pending(self) -> list[list[str]]:
        """The datagrams already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                lines = self.sock.recv(65536).decode().splitlines()
                self.received.append(lines)
                out.append(lines)
        except BlockingIOError:
            return out

    def until(self, line: str, timeout: float = WAIT) -> list[list[str]]:
        """The datagrams up to the first that holds ``line``, that one included."""
        out = []
        while True:
            lines = self.next(timeout)
            out.append(lines)
            if line in lines:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notifications]:
    n = Notifications(tmp_path / "notify")
    yield n
    n.close()


class Gate:
    """Holds a worker in its lifespan startup (``systemd_app``) until released."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.sock.settimeout(WAIT)

    def hold(self) -> socket.socket:
        """Waits for a worker to reach its startup, and keeps it there."""
        conn, _ = self.sock.accept()
        return conn

    @staticmethod
    def release(conn: socket.socket) -> None:
        conn.sendall(b"x")
        conn.close()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path / "gate")
    yield g
    g.sock.close()


class Activated(Juggler):
    """``command`` run by systemd-socket-activate with ``listen`` sockets; the output of both
    is collected (systemd-socket-activate executes the command in its own process)."""

    def __init__(
        self,
        listen: list[str],
        command: list[str],
        names: list[str] | None = None,
        setenv: dict[str, str] | None = None,
        datagram: bool = False,
    ) -> None:
        cmd = ["systemd-socket-activate", *(f"--listen={a}" for a in listen)]
        if datagram:
            cmd.append("--datagram")
        if names:
            cmd.append(f"--fdname={':'.join(names)}")
        # systemd-socket-activate passes the command only what --setenv names.
        for key, value in {"PYTHONUNBUFFERED": "1", **(setenv or {})}.items():
            cmd.append(f"--setenv={key}={value}")
        self._launch([*cmd, *command], dict(os.environ), APPS)
        # It listens before it executes anything: a connection may be made from then on.
        self.wait_for(rf"Listening on .* as {2 + len(listen)}\.")


@pytest.fixture
def activated() -> Iterator[type[Activated]]:
    started: list[Activated] = []

    class Tracked(Activated):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            started.append(self)

    yield Tracked
    for j in started:
        j.kill()


def juggler_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "juggler", "--app-dir", str(APPS), *args]


def get(sock: socket.socket) -> bytes:
    """A request on a connected socket; the whole response (the server closes it)."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    sock.settimeout(WAIT)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def served_on_tcp(port: int) -> str:
    r = httpx.get(f"http://127.0.0.1:{port}/", timeout=WAIT)
    assert r.status_code == 200
    return r.text


def served_on_unix(path: str) -> str:
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=WAIT) as client:
        r = client.get("http://localhost/")
    assert r.status_code == 200
    return r.text


def fields(datagrams: list[list[str]]) -> list[str]:
    return [line for lines in datagrams for line in lines]


def test_the_documented_units_serve_every_socket_and_tell_systemd_what_happens(
    activated: type[Activated], notify: Notifications, gate: Gate, tmp_path: Path
) -> None:
    port = free_port()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    socket_unit = substitute(
        recipe("juggler.socket"), {":8000": f":{port}", "/run/juggler": str(run_dir)}
    )
    service = substitute(
        recipe("juggler.service"),
        {
            "/srv/myapp/.venv/bin/juggler": str(ROOT / ".venv" / "bin" / "juggler"),
            "/srv/myapp": str(APPS),
            "myapp:app": APP,
        },
    )
    assert directive(service, "Type") == ["notify"]
    assert directive(service, "KillMode") == ["mixed"]
    listen = directive(socket_unit, "ListenStream")
    assert len(listen) == 2, "a TCP and a UNIX socket"
    unix_path = next(a for a in listen if a.startswith("/"))
    (name,) = directive(socket_unit, "FileDescriptorName")
    (exec_start,) = directive(service, "ExecStart")
    command = shlex.split(exec_start)
    j = activated(
        listen,
        command,
        names=[name] * len(listen),
        setenv={"NOTIFY_SOCKET": notify.path, "JUGGLER_TEST_GATE": gate.path},
    )

    # The first connection starts juggler; it waits in the socket's queue meanwhile.
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as first:
        first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for _ in range(2):  # --workers 2 in the unit: the first starts alone
            held = gate.hold()
            told = fields(notify.pending())
            assert "READY=1" not in told, "ready while a worker is still starting"
            Gate.release(held)
        ready = notify.until("READY=1")
        assert "STATUS=2 worker(s) serving" in ready[-1]
        assert b"200 OK" in get(first)

    line = j.wait_for(r"juggler running on (.*) \(Press CTRL\+C to quit\)").group(1)
    assert line == f"http://127.0.0.1:{port} ({name}), unix socket {unix_path} ({name})"
    pid = j.proc.pid
    assert served_on_tcp(port).endswith(" leaked=")
    assert served_on_unix(unix_path).endswith(" leaked=")
    seen = fields(notify.received)
    assert "STATUS=0 worker(s) serving, 1 starting" in seen
    assert "WATCHDOG=1" not in seen, "no watchdog was asked for"

    # systemctl reload: the unit's ExecReload, as written.
    (exec_reload,) = directive(service, "ExecReload")
    subprocess.run(shlex.split(exec_reload.replace("$MAINPID", str(pid))), check=True)
    reloading = notify.until("RELOADING=1")[-1]
    assert any(f.startswith("MONOTONIC_USEC=") for f in reloading)
    new = [gate.hold(), gate.hold()]
    # The old workers still serve; the status says so, and READY=1 waits for the new ones.
    told = fields(notify.until("STATUS=2 worker(s) serving (2 to be replaced), 2 starting"))
    assert "READY=1" not in told + fields(notify.pending()), "ready before the new workers are"
    served_on_tcp(port)  # the old workers serve meanwhile
    for held in new:
        Gate.release(held)
    notify.until("READY=1")
    served_on_unix(unix_path)

    # systemctl stop with KillMode=mixed: SIGTERM to the supervisor alone.
    os.kill(pid, signal.SIGTERM)
    after = notify.until("STOPPING=1")
    assert "READY=1" not in fields(after)
    assert j.stop(timeout=WAIT) == 0


def test_two_tcp_sockets_are_both_served_and_named(activated: type[Activated]) -> None:
    ports = [free_port(), free_port()]
    j = activated(
        [f"127.0.0.1:{p}" for p in ports],
        juggler_command("--workers", "1", APP),
        names=["public", "internal"],
    )
    assert served_on_tcp(ports[0])  # starts it
    j.wait_for(
        rf"juggler running on http://127\.0\.0\.1:{ports[0]} \(public\),"
        rf" http://127\.0\.0\.1:{ports[1]} \(internal\) \(Press"
    )
    assert served_on_tcp(ports[1])
    assert j.stop() == 0


def test_one_unnamed_socket_is_named_by_its_address(activated: type[Activated]) -> None:
    port = free_port()
    j = activated([f"127.0.0.1:{port}"], juggler_command("--workers", "1", APP))
    assert served_on_tcp(port)
    j.wait_for(rf"juggler running on http://127\.0\.0\.1:{port} \(Press CTRL")
    assert j.stop() == 0


def test_a_passed_socket_juggler_cannot_serve_is_one_error_line(
    activated: type[Activated],
) -> None:
    port = free_port()
    j = activated([f"127.0.0.1:{port}"], juggler_command("--workers", "1", APP), datagram=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"start", ("127.0.0.1", port))  # what starts a datagram service
    assert j.proc.wait(WAIT) == 1
    j.stop()
    errors = [line for line in j.lines if "socket activation" in line]
    assert len(errors) == 1, j.output
    assert errors[0].endswith("socket activation: descriptor 3 is not a stream socket (SOCK_DGRAM)")


def test_the_watchdog_is_fed_from_the_supervisor_loop(
    juggler: type[Juggler], notify: Notifications
) -> None:
    j = juggler(
        APP,
        "--workers",
        "1",
        env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"},
    ).ready()
    # Every 0.1 s; bounded by the number asked for, each waited for with a deadline.
    for _ in range(3):
        notify.until("WATCHDOG=1")
    assert j.stop() == 0


def test_a_notification_socket_that_is_gone_is_logged_once_and_juggler_serves(
    juggler: type[Juggler], tmp_path: Path
) -> None:
    gone = str(tmp_path / "gone")
    j = juggler(APP, "--workers", "1", env={"NOTIFY_SOCKET": gone}).ready()
    r = httpx.get(j.url, timeout=WAIT)
    assert r.status_code == 200
    assert j.stop() == 0
    failures = [line for line in j.lines if "Cannot notify systemd" in line]
    assert len(failures) == 1, j.output
    assert gone in failures[0]


class Inherited(Juggler):
    """juggler given ``sock`` as descriptor 3 with LISTEN_FDS/LISTEN_PID, as systemd does, while
    the test keeps its own copy of the socket, as systemd does too."""

    def __init__(self, sock: socket.socket, *args: str) -> None:
        # The launcher moves the socket to descriptor 3 and names its own pid, which the exec
        # keeps.
        fd = sock.fileno()
        script = (
            "import os, sys\n"
            f"os.dup2({fd}, 3)\n"
            f"os.close({fd})\n"
            "os.environ['LISTEN_PID'] = str(os.getpid())\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n"
        )
        env = {**os.environ, "LISTEN_FDS": "1", "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-c", script, *juggler_command(*args)]
        self._launch(cmd, env, APPS, pass_fds=(sock.fileno(),))


@pytest.fixture
def inherited() -> Iterator[type[Inherited]]:
    started: list[Inherited] = []

    class Tracked(Inherited):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            started.append(self)

    yield Tracked
    for j in started:
        j.kill()


def test_a_stop_leaves_the_socket_and_its_queue_to_the_next_start(
    inherited: type[Inherited],
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as systemd_copy:
        port = systemd_copy.getsockname()[1]
        first = inherited(systemd_copy, "--workers", "1", APP).ready()
        served_on_tcp(port)
        assert first.stop() == 0
        # Nobody serves the socket now; a connection still completes into its queue (a
        # closed gate would drop the SYN) and waits there for the next juggler.
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as waiting:
            waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            second = inherited(systemd_copy, "--workers", "1", APP).ready()
            assert b"200 OK" in get(waiting)
        assert second.stop() == 0


def test_with_metrics_the_status_counts_the_requests_served(
    juggler: type[Juggler], notify: Notifications
) -> None:
    j = juggler(
        APP,
        "--workers",
        "2",
        "--metrics-bind",
        "127.0.0.1:0",
        env={"NOTIFY_SOCKET": notify.path},
    ).ready()
    assert "STATUS=2 worker(s) serving, 0 requests served" in notify.until("READY=1")[-1]
    for _ in range(3):
        assert httpx.get(j.url, timeout=WAIT).status_code == 200
    notify.until("STATUS=2 worker(s) serving, 3 requests served")
    assert j.stop() == 0
