"""A worker out of file descriptors: quiet, no spin, and serving again once some are freed."""

from __future__ import annotations

import os
import resource
import socket
import time

from conftest import Juggler, read_response

#: How long the worker is held without descriptors.
HELD = 4.0


def _request(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /count HTTP/1.1\r\nhost: x\r\n\r\n")
    status, _, _ = read_response(sock)
    return status


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_out_of_descriptors_is_quiet_cheap_and_recovers(juggler: type[Juggler]) -> None:
    j = juggler("raw:app", "--timeout-keep-alive", "60", "--log-level", "info").ready()
    (worker,) = j.workers()
    port = j.port
    # Room for exactly a few more connections: the limit is set from outside, as an
    # operator's `prlimit --pid` would.
    spare = 3
    limit = _open_fds(worker) + spare
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (limit, limit))
    held = []
    try:
        for _ in range(spare):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            assert _request(s).startswith(b"HTTP/1.1 200"), "served while descriptors last"
            held.append(s)
        # These complete in the kernel's backlog, but the worker cannot accept them.
        waiting = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        for s in waiting:
            s.sendall(b"GET /count HTTP/1.1\r\nhost: x\r\n\r\n")
        j.wait_for("accept failed: .*Too many open files")
        j.mark_test_start()
        cpu_before = _cpu_seconds(worker)
        time.sleep(HELD)  # the absence of a spin and of a flood is what is measured
        cpu = _cpu_seconds(worker) - cpu_before
        with j._cond:
            lines = [line for line in j.lines[j.test_start :] if "accept failed" in line]
        assert cpu < 0.2, f"the worker spun: {cpu:.2f} s of CPU in {HELD} s"
        assert 1 <= len(lines) <= 5, "\n".join(lines)
        assert "times since the last report" in lines[-1], lines[-1]
        assert "limit is" in lines[-1] and "--limit-concurrency" in lines[-1], lines[-1]
        # Freed descriptors: the waiting connections are taken in and answered.
        for s in held:
            s.close()
        held.clear()
        for s in waiting:
            s.settimeout(10)
            status, _, _ = read_response(s)
            assert status.startswith(b"HTTP/1.1 200")
            s.close()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            assert _request(s).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()
    assert j.stop() == 0
