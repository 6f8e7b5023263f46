"""Worker processes and their supervisor, with real processes and real signals."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import APPS, alive, children

pytestmark = pytest.mark.timeout(90)


def fetch(url: str, path: str = "/", timeout: float = 10) -> tuple[int, str]:
    """One request on a connection of its own (so it cannot land on a closing keep-alive)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def pids_of_held_connections(url: str, n: int) -> list[int]:
    """Opens ``n`` connections one after another, keeping each open, and asks each which
    worker serves it."""
    parts = urlsplit(url)
    held = [http.client.HTTPConnection(parts.hostname, parts.port, timeout=10) for _ in range(n)]
    try:
        served = []
        for conn in held:
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.status == 200
            served.append(int(resp.read()))
        return served
    finally:
        for conn in held:
            conn.close()


def wait_until(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Load:
    """A steady load on a thread: back-to-back requests, each on a new connection, counting
    failures, until stopped. Bounded by ``limit`` requests."""

    def __init__(self, url: str, path: str = "/", limit: int = 20000) -> None:
        self.url, self.path, self.limit = url, path, limit
        self.bodies: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for _ in range(self.limit):
            if self._stop.is_set():
                return
            try:
                status, body = fetch(self.url, self.path)
            except OSError as exc:
                self.failures.append(repr(exc))
                continue
            if status == 200:
                self.bodies.append(body)
            else:
                self.failures.append(f"status {status}: {body}")

    def wait_for(self, predicate, timeout: float = 30, what: str = "bodies") -> None:
        wait_until(lambda: predicate(self.bodies), timeout, what)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()


def test_workers_all_serve_and_the_supervisor_imports_no_app_code(juggler):
    j = juggler("workers_app:app", "--workers", "3").ready()
    workers = j.workers()
    assert len(workers) == 3
    # Connections held open spread one per worker: a worker woken for a new connection while
    # a sibling holds fewer leaves it to that sibling.
    served = pids_of_held_connections(j.url, 6)
    # Without balancing one worker takes them all; with it, each gets some (not always 2
    # each on a loaded machine, where a nudged sibling may take longer than the wait).
    assert min(served.count(pid) for pid in workers) >= 1, served
    imported = {int(p) for p in re.findall(r"imported workers_app in (\d+)", j.output)}
    assert imported == set(workers), "only the workers import the app"
    # The first worker starts alone, the interface is named once.
    assert j.output.count("Using the ASGI interface") == 1
    assert j.stop() == 0


def test_preload_imports_the_app_once_in_the_supervisor(juggler):
    j = juggler("workers_app:app", "--workers", "2", "--preload").ready()
    imported = [int(line.split()[-1]) for line in j.output.splitlines() if "imported" in line]
    assert imported == [j.proc.pid]
    # Both workers serve (without balancing one takes them all); more connections than
    # workers, so that a nudged sibling slow to accept on a loaded machine does not decide it.
    assert set(pids_of_held_connections(j.url, 6)) == set(j.workers())
    assert j.stop() == 0


def test_reuse_port_gives_each_worker_its_own_socket(juggler):
    j = juggler("workers_app:app", "--workers", "2", "--reuse-port").ready()
    workers = j.workers()
    # No balancing here (each worker has its own queue): the kernel spreads connections by a
    # hash of their addresses, so some of 40 reach each worker.
    seen = set(pids_of_held_connections(j.url, 40))
    assert seen == set(workers)
    # Each worker listens on a socket of its own.
    listening = [_listening_sockets(pid, j.port) for pid in workers]
    assert all(len(s) == 1 for s in listening), listening
    assert listening[0] != listening[1]
    assert j.stop() == 0


def test_a_killed_worker_is_replaced_while_the_others_serve(juggler):
    j = juggler("workers_app:app", "--workers", "2").ready()
    victim, survivor = j.workers()
    for i in range(200):
        status, body = fetch(j.url)
        assert status == 200, body
        if i == 20:
            # Between two requests of the steady load: nothing is in flight on the victim.
            os.kill(victim, signal.SIGKILL)
    m = j.wait_for(rf"Worker \[{victim}\] died unexpectedly \(killed by SIGKILL\)")
    assert m
    wait_until(lambda: len(j.workers()) == 2 and victim not in j.workers(), what="replacement")
    replacement = (set(j.workers()) - {survivor}).pop()
    j.wait_for(rf"Worker \[{replacement}\] started")
    # Held connections spread over both: the dead worker serves none.
    assert set(pids_of_held_connections(j.url, 12)) == {survivor, replacement}
    assert j.stop() == 0


def test_a_worker_whose_event_loop_is_stuck_is_killed_with_its_stack(juggler):
    j = juggler("workers_app:app", "--timeout-worker", "1").ready()
    (stuck,) = j.workers()
    spinner = threading.Thread(target=lambda: _ignore_errors(fetch, j.url, "/spin", 30))
    spinner.start()
    j.wait_for(f"spinning in {stuck}")
    m = j.wait_for(rf"Worker \[{stuck}\] timed out: its event loop has not turned for ([\d.]+) s")
    assert 1.0 <= float(m.group(1)) < 5
    # The stack names the handler's line, inside the app.
    # The loop's two lines (`while True:` and `pass`): the stack may be caught on either.
    spin = _line_of(APPS / "workers_app.py", "while True:  # a handler that never yields")
    j.wait_for(rf'File ".*workers_app.py", line ({spin}|{spin + 1}) in app')
    j.wait_for(rf"Worker \[{stuck}\] stopped \(killed by SIGKILL\)")
    new = wait_until(lambda: [p for p in j.workers() if p != stuck], what="a replacement")
    j.wait_for(rf"Worker \[{new[0]}\] started")
    assert fetch(j.url) == (200, str(new[0]))
    spinner.join(10)
    assert j.stop() == 0


def test_a_wsgi_call_without_progress_gets_its_worker_replaced(juggler):
    j = juggler(
        "workers_app:wsgi",
        "--interface",
        "wsgi",
        "--timeout-worker",
        "1",
        "--timeout-graceful-shutdown",
        "1",
    ).ready()
    (stuck,) = j.workers()
    hung = threading.Thread(target=lambda: _ignore_errors(fetch, j.url, "/hang", 30))
    hung.start()
    j.wait_for(f"hanging in {stuck}")
    # The event loop keeps turning: other requests are served meanwhile.
    assert fetch(j.url) == (200, str(stuck))
    j.wait_for(rf"Worker \[{stuck}\] timed out: the WSGI call GET /hang has made no progress")
    hang = _line_of(APPS / "workers_app.py", "time.sleep(0.01)")
    j.wait_for(rf'File ".*workers_app.py", line ({hang - 1}|{hang}) in wsgi')
    # Replaced first, then stopped: the graceful drain gives up on the stuck thread.
    j.wait_for(rf"Worker \[{stuck}\] stopped")
    (new,) = j.workers()
    assert new != stuck
    assert fetch(j.url) == (200, str(new))
    hung.join(10)
    assert j.stop() == 0


def test_max_requests_recycles_workers_with_no_failed_request(juggler):
    j = juggler("workers_app:app", "--workers", "2", "--max-requests", "30").ready()
    first = set(j.workers())
    load = Load(j.url)
    # Every worker of the first generation recycled, and their replacements serving.
    load.wait_for(lambda b: len({int(x) for x in b} - first) >= 2, what="two new workers")
    load.stop()
    assert load.failures == []
    assert len(re.findall(r"Recycling worker \[\d+\]", j.output)) >= 2
    assert all(not alive(p) for p in first - set(j.workers()))
    # Each recycled worker stopped only once a replacement was up.
    replaced = [int(m) for m in re.findall(r"Recycling worker \[(\d+)\]", j.output)]
    for pid in replaced[:2]:
        j.wait_for(rf"Worker \[{pid}\] stopped")
    lines = j.output.splitlines()
    for pid in replaced[:2]:
        recycled_at = _index(lines, f"Recycling worker [{pid}]")
        stopped_at = _index(lines, f"Worker [{pid}] stopped")
        assert any("] started" in line for line in lines[recycled_at:stopped_at]), j.output
    assert j.stop() == 0


def test_sigterm_lets_slow_requests_finish_then_exits_with_no_process_left(juggler):
    j = juggler("workers_app:app", "--workers", "2").ready()
    workers = j.workers()
    results: list[tuple[int, str] | str] = []

    def slow():
        try:
            results.append(fetch(j.url, "/sleep?s=1"))
        except OSError as exc:
            results.append(repr(exc))

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: j.output.count("sleeping in") == 4, what="4 slow requests in flight")
    assert j.stop(signal.SIGTERM) == 0
    for t in threads:
        t.join(10)
    assert sorted(r[0] for r in results if isinstance(r, tuple)) == [200] * 4, results
    assert not any(alive(p) for p in workers)


@pytest.mark.parametrize("signals", [(signal.SIGINT, signal.SIGINT), (signal.SIGQUIT,)])
def test_a_second_sigint_or_sigquit_stops_at_once(juggler, signals):
    j = juggler("workers_app:app", "--timeout-graceful-shutdown", "60").ready()
    (worker,) = j.workers()
    slow = threading.Thread(target=lambda: _ignore_errors(fetch, j.url, "/sleep?s=60", 60))
    slow.start()
    j.wait_for("sleeping in")
    if len(signals) == 2:
        j.proc.send_signal(signals[0])
        j.wait_for("Received SIGINT: shutting down gracefully")
    started = time.monotonic()
    j.proc.send_signal(signals[-1])
    j.wait_for(rf"Received {signals[-1].name}.*stopping at once")
    assert j.proc.wait(15) == 0
    assert time.monotonic() - started < 10
    assert not alive(worker)
    slow.join(10)


def test_sighup_reloads_edited_code_with_no_failed_request(juggler, tmp_path):
    module = _versioned_app(tmp_path, "one")
    j = juggler(
        "versioned:app",
        "--app-dir",
        str(tmp_path),
        "--workers",
        "2",
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    ).ready()
    old = set(j.workers())
    load = Load(j.url)
    load.wait_for(lambda b: len(b) > 20)
    _versioned_app(tmp_path, "two, edited", module)
    j.proc.send_signal(signal.SIGHUP)
    load.wait_for(lambda b: b[-1] == "two, edited" if b else False, what="the edited code")
    for pid in old:
        j.wait_for(rf"Worker \[{pid}\] stopped \(exit code 0\)")
    load.stop()
    assert load.failures == []
    new = set(j.workers())
    assert not (new & old)
    _assert_started_before_stopped(j.output, new, old)
    assert j.stop() == 0


def test_reload_on_file_change_keeps_the_last_good_code_on_a_syntax_error(juggler, tmp_path):
    module = _versioned_app(tmp_path, "one")
    j = juggler(
        "versioned:app",
        "--app-dir",
        str(tmp_path),
        "--reload",
        "--reload-dir",
        str(tmp_path),
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    ).ready()
    j.wait_for("Watching for file changes in")
    assert fetch(j.url) == (200, "one")
    module.write_text("def app(:\n")
    j.wait_for(r"Detected changes in .*versioned\.py")
    j.wait_for("failed to start .*; the running workers keep serving the code they have")
    assert fetch(j.url) == (200, "one")
    _versioned_app(tmp_path, "three", module)
    wait_until(lambda: fetch(j.url) == (200, "three"), what="the fixed code")
    # A change to a file that is not watched does nothing.
    lines = len(j.output.splitlines())
    (tmp_path / "notes.txt").write_text("x")
    _versioned_app(tmp_path, "four", module)
    wait_until(lambda: fetch(j.url) == (200, "four"), what="the second edit")
    assert "notes.txt" not in "\n".join(j.output.splitlines()[lines:])
    assert j.stop() == 0


def test_sigttin_and_sigttou_add_and_remove_a_worker(juggler):
    j = juggler("workers_app:app").ready()
    (first,) = j.workers()
    j.proc.send_signal(signal.SIGTTIN)
    j.wait_for("Received SIGTTIN: 2 workers")
    second = wait_until(lambda: [p for p in j.workers() if p != first], what="a second worker")
    j.wait_for(rf"Worker \[{second[0]}\] started")
    j.proc.send_signal(signal.SIGTTOU)
    j.wait_for(rf"Stopping worker \[{first}\] \(fewer workers asked for\)")
    wait_until(lambda: j.workers() == second, what="one worker left")
    assert fetch(j.url) == (200, str(second[0]))
    assert j.stop() == 0


def test_app_that_fails_to_import_stops_the_supervisor_at_once(juggler):
    started = time.monotonic()
    j = juggler("broken_import:app", "--workers", "4")
    assert j.proc.wait(20) == 4
    assert time.monotonic() - started < 10
    j.stop()
    errors = [line for line in j.lines if line.startswith("juggler: error:")]
    assert len(errors) == 1, j.output


def test_workers_that_keep_failing_to_start_stop_the_supervisor(juggler, tmp_path):
    marker = tmp_path / "fail"
    (tmp_path / "flaky.py").write_text(
        "import os, pathlib\n"
        f"if pathlib.Path({str(marker)!r}).exists():\n"
        "    raise RuntimeError('the database is gone')\n"
        "from workers_app import app\n"
    )
    j = juggler("flaky:app", "--app-dir", str(tmp_path), env={"PYTHONPATH": str(APPS)}).ready()
    (worker,) = j.workers()
    marker.write_text("")
    os.kill(worker, signal.SIGKILL)
    assert j.proc.wait(30) == 4
    j.stop()
    assert j.output.count("the database is gone") == 5
    assert "Workers failed to start 5 times in a row" in j.output
    assert "trying again in" in j.output


def test_workers_share_a_unix_socket(juggler, tmp_path):
    path = tmp_path / "j.sock"
    j = juggler("workers_app:app", "--workers", "2", "--uds", str(path)).ready()
    workers = set(j.workers())
    held = [socket.socket(socket.AF_UNIX) for _ in range(4)]
    try:
        served = set()
        for s in held:
            s.connect(str(path))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            served.add(int(_read_response(s).rsplit(b"\r\n\r\n", 1)[1]))
    finally:
        for s in held:
            s.close()
    assert served == workers
    assert j.stop() == 0


def test_workers_end_when_the_supervisor_is_killed(juggler):
    j = juggler("workers_app:app", "--workers", "2").ready()
    workers = j.workers()
    j.proc.kill()
    j.proc.wait(10)
    wait_until(lambda: not any(alive(p) for p in workers), what="the workers to exit")


def test_reload_with_reuse_port_fails_no_request(juggler):
    j = juggler("workers_app:app", "--workers", "2", "--reuse-port").ready()
    old = set(j.workers())
    load = Load(j.url)
    load.wait_for(lambda b: len(b) > 20)
    # Slow requests keep the old workers draining for a while: connections the kernel hashes
    # to a draining worker's own socket meanwhile must not be lost.
    slow = [threading.Thread(target=fetch, args=(j.url, "/sleep?s=1")) for _ in range(8)]
    for t in slow:
        t.start()
    wait_until(lambda: j.output.count("sleeping in") == 8, what="slow requests in flight")
    j.proc.send_signal(signal.SIGHUP)
    load.wait_for(lambda b: len({int(x) for x in b[-40:]} - old) == 2, what="the new workers")
    for pid in old:
        j.wait_for(rf"Worker \[{pid}\] stopped \(exit code 0\)")
    done = len(load.bodies)
    load.wait_for(lambda b: len(b) > done + 50, what="more requests after the old ones left")
    load.stop()
    for t in slow:
        t.join(10)
    assert load.failures == []
    assert j.stop() == 0


def test_pid_file_is_written_and_removed(juggler, tmp_path):
    pid_file = tmp_path / "juggler.pid"
    j = juggler("workers_app:app", "--pid", str(pid_file)).ready()
    assert pid_file.read_text().strip() == str(j.proc.pid)
    assert j.stop() == 0
    assert not pid_file.exists()


def test_web_concurrency_sets_the_number_of_workers(juggler):
    j = juggler("workers_app:app", env={"WEB_CONCURRENCY": "2"}).ready()
    assert len(j.workers()) == 2
    assert j.stop() == 0


def test_juggler_run_with_workers_from_a_main_block(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(
        "import os, juggler\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200})\n"
        "    await send({'type': 'http.response.body', 'body': str(os.getpid()).encode()})\n"
        "if __name__ == '__main__':\n"
        "    juggler.run(app, port=0, workers=2)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stderr=subprocess.PIPE, text=True, cwd=str(tmp_path)
    )
    try:
        url = ""
        assert proc.stderr is not None
        for line in proc.stderr:
            if "juggler running on" in line:
                url = line.split("running on ")[1].split()[0]
                break
        assert url
        pids = {int(fetch(url)[1]) for _ in range(200)}
        assert pids <= set(children(proc.pid)) and pids
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _versioned_app(directory: Path, version: str, module: Path | None = None) -> Path:
    module = module or directory / "versioned.py"
    module.write_text(
        f"VERSION = {version!r}\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200})\n"
        "    await send({'type': 'http.response.body', 'body': VERSION.encode()})\n"
    )
    return module


def _assert_started_before_stopped(output: str, new: set[int], old: set[int]) -> None:
    lines = output.splitlines()
    first_stop = min(_index(lines, f"Worker [{pid}] stopped") for pid in old)
    for pid in new:
        assert _index(lines, f"Worker [{pid}] started") < first_stop, output


def _index(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


def _listening_sockets(pid: int, port: int) -> set[str]:
    """The inodes of the sockets listening on ``port`` that ``pid`` holds."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held.add(target)
    return held


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().split(b"\r\n\r\n", 1)[1]:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def _ignore_errors(func, *args) -> None:
    try:
        func(*args)
    except OSError:
        pass
