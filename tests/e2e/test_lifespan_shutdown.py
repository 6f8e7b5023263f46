"""Lifespan startup/shutdown and graceful stop on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import httpx
import pytest
from conftest import read_response


def test_startup_failed_exits_non_zero_with_the_apps_message(juggler):
    j = juggler("lifespans:startup_failed")
    code = j.proc.wait(30)
    assert code == 3
    assert "database is unreachable" in j.output
    assert "juggler running on" not in j.output


def test_shutdown_failed_exits_non_zero_with_the_apps_message(juggler):
    j = juggler("lifespans:shutdown_failed").ready()
    assert j.stop() == 3
    assert "could not flush the queue" in j.output


def test_startup_exception_with_lifespan_on_exits(juggler):
    j = juggler("lifespans:startup_raises", "--lifespan", "on")
    assert j.proc.wait(30) == 3
    assert "config file missing" in j.output


def test_startup_exception_in_auto_mode_means_unsupported(juggler):
    j = juggler("lifespans:no_lifespan").ready()
    assert "lifespan' protocol appears unsupported" in j.output
    assert httpx.get(j.url).status_code == 200
    assert j.stop() == 0


def test_lifespan_off_never_calls_lifespan(juggler):
    j = juggler("lifespans:startup_failed", "--lifespan", "off").ready()
    assert httpx.get(j.url).text == "[]"


def test_state_reaches_requests_and_shutdown_runs(juggler):
    j = juggler("lifespans:with_state").ready()
    assert httpx.get(j.url).text == "[('db', 'connected')]"
    assert j.stop(signal.SIGINT) == 0
    assert "SHUTDOWN-HOOK" in j.output
    assert "Application shutdown complete." in j.output


def test_state_is_a_copy_per_request(juggler):
    # raw:/scope shows state; mutating a request's copy must not leak into the next request.
    j = juggler("raw:app").ready()
    assert httpx.get(f"{j.url}/scope").json()["state"] == {"started": "yes"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_finishes_in_flight_requests(juggler, sig):
    j = juggler("raw:app").ready()
    result = {}

    def slow():
        result["r"] = httpx.get(f"{j.url}/sleep?s=0.5&key=g", timeout=10)

    t = threading.Thread(target=slow)
    t.start()
    j.wait_for("SLEEP-STARTED g")
    j.proc.send_signal(sig)
    t.join(10)
    assert result["r"].status_code == 200 and result["r"].text == "slept"
    assert j.proc.wait(10) == 0
    assert "LIFESPAN-SHUTDOWN-RAN" in j.output
    # The listener is closed: new connections are refused.
    with pytest.raises(httpx.ConnectError):
        httpx.get(j.url)


def test_idle_keep_alive_connection_does_not_delay_shutdown(juggler):
    j = juggler("raw:app", "--timeout-keep-alive", "60").ready()
    s = socket.create_connection(("127.0.0.1", j.port))
    s.sendall(b"GET /headers HTTP/1.1\r\nHost: t\r\n\r\n")
    read_response(s)
    started = time.monotonic()
    assert j.stop() == 0
    assert time.monotonic() - started < 5
    assert s.recv(1) == b""  # the server closed the idle connection
    s.close()


def test_graceful_timeout_cancels_stuck_requests(juggler):
    j = juggler("raw:app", "--timeout-graceful-shutdown", "0.5").ready()
    s = socket.create_connection(("127.0.0.1", j.port))
    s.sendall(b"GET /sleep?s=60&key=stuck HTTP/1.1\r\nHost: t\r\n\r\n")
    j.wait_for("SLEEP-STARTED stuck")
    started = time.monotonic()
    assert j.stop() == 0
    assert time.monotonic() - started < 10
    assert "Graceful shutdown timed out" in j.output
    assert "LIFESPAN-SHUTDOWN-RAN" in j.output
    s.close()


def test_streaming_handler_sees_disconnect_on_shutdown(juggler):
    j = juggler("raw:app", "--timeout-graceful-shutdown", "0.5").ready()
    s = socket.create_connection(("127.0.0.1", j.port))
    s.sendall(b"GET /wait-disconnect?key=k HTTP/1.1\r\nHost: t\r\n\r\n")
    assert b"tick" in s.recv(4096)
    assert j.stop() == 0
    # The handler was told, and ran the code after its receive(): not cancelled.
    assert "EVENT k http.disconnect" in j.output
    assert "Traceback" not in j.output
    s.close()


def test_a_second_sigterm_does_not_cut_a_workers_lifespan_shutdown(juggler):
    """systemd's default KillMode signals every process of the service: each worker gets
    SIGTERM from systemd and again from the supervisor, the second one possibly while the
    app's shutdown runs. It must change nothing."""
    j = juggler("lifespans:slow_shutdown", "--workers", "2").ready()
    workers = j.workers()
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    for pid in workers:
        j.wait_for(f"SHUTDOWN-BEGAN {pid}")
    assert j.stop(signal.SIGTERM) == 0  # the supervisor signals them again
    for pid in workers:
        assert f"SHUTDOWN-DONE {pid}" in j.output, j.output
        assert f"Worker [{pid}] stopped (exit code 0)" in j.output, j.output
